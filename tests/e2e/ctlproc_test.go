package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rcluster "github.com/kvorum/kvorum/internal/robustness/cluster"
)

// ctlProc is a CLI invocation that runs until it is told to stop (lease
// keep-alive, lock, elect): its stdout is read line by line as it comes.
type ctlProc struct {
	t      *testing.T
	desc   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	lines  chan string
	stderr bytes.Buffer

	mu  sync.Mutex
	out strings.Builder // every line read so far

	done chan struct{} // closed once the process exited and stdout is drained
	code int           // the exit code, once done is closed
}

// startCtl starts bin against endpoints, like runCtl does; the process is
// killed when the test ends if it still runs.
func startCtl(t *testing.T, bin string, endpoints []string, args ...string) *ctlProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	all := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=2s", "--command-timeout=5s"}, args...)
	p := &ctlProc{t: t, desc: bin + " " + strings.Join(args, " "), cancel: cancel, lines: make(chan string, 100), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, all...)
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = rcluster.ChildAttr()
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				p.mu.Lock()
				p.out.WriteString(l)
				p.mu.Unlock()
				p.lines <- l
			}
			if err != nil {
				break
			}
		}
		close(p.lines)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// waitLines waits until n more lines were printed and returns them; it
// fails the test if they do not come within timeout.
func (p *ctlProc) waitLines(n int, timeout time.Duration) string {
	p.t.Helper()
	var got strings.Builder
	deadline := time.After(timeout)
	for i := 0; i < n; i++ {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s exited after printing %q of %d more lines: %s", p.desc, got.String(), n, p.result())
			}
			got.WriteString(l)
		case <-deadline:
			p.t.Fatalf("%s: %d of %d more lines after %v: %q", p.desc, i, n, timeout, got.String())
		}
	}
	return got.String()
}

// quiet fails the test if the process prints anything or exits within d.
func (p *ctlProc) quiet(d time.Duration) {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if ok {
			p.t.Fatalf("%s printed %q, want nothing yet", p.desc, l)
		}
		p.t.Fatalf("%s exited, want it waiting: %s", p.desc, p.result())
	case <-time.After(d):
	}
}

// signal sends sig to the process.
func (p *ctlProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.desc, err)
	}
}

// wait waits until the process exits by itself and returns everything it
// printed and its exit code.
func (p *ctlProc) wait(timeout time.Duration) ctlResult {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cancel()
		<-p.done
		p.t.Fatalf("%s did not exit within %v: %s", p.desc, timeout, p.result())
	}
	return p.result()
}

// result is what the process printed so far (all of it once it exited).
func (p *ctlProc) result() ctlResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := ctlResult{stdout: p.out.String(), code: -1}
	select {
	case <-p.done:
		r.stderr, r.code = p.stderr.String(), p.code
	default:
	}
	return r
}
