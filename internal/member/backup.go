package member

import "github.com/kvorum/kvorum/internal/server"

// runBackups runs s's scheduled backups (see server.RunBackups) until the
// returned function is called; that function also waits for a backup under
// way, so the member stops its engine only after it.
func runBackups(s *server.Server, b server.Backups) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s.RunBackups(b, quit)
	}()
	return func() {
		close(quit)
		<-done
	}
}
