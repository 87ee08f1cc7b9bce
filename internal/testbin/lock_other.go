//go:build !unix

package testbin

// lockFile is a no-op where flock is unavailable: concurrent builds then
// race, and the rename into place keeps the cache whole either way.
func lockFile(string) (func(), error) { return func() {}, nil }
