package testbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ChromiumEnv names a Chromium or Chrome binary to use instead of looking
// for one (and instead of installing one).
const ChromiumEnv = "KVORUM_TEST_CHROMIUM"

// ErrNoBrowser is wrapped by Chromium's error when no browser is installed
// and none can be: not root, or no apt-get.
var ErrNoBrowser = errors.New("no Chromium")

// chromiumNames are the binaries Debian, Ubuntu and Google name the browser.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the path of a Chromium binary for headless browser
// tests: $KVORUM_TEST_CHROMIUM, else one on $PATH, else Debian's chromium
// package installed with apt-get (as root only; it runs apt-get update
// first when the package lists are missing or stale). The install holds a
// file lock so that concurrent test processes install once; logf, if not
// nil, is told when it starts. Nothing is cached besides the package.
func Chromium(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	if p := os.Getenv(ChromiumEnv); p != "" {
		if !executable(p) {
			return "", fmt.Errorf("$%s=%s is not an executable file", ChromiumEnv, p)
		}
		return p, nil
	}
	if p := findChromium(); p != "" {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w on $PATH, and installing it needs root (install the chromium package or set $%s)", ErrNoBrowser, ChromiumEnv)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%w on $PATH, and no apt-get to install it with (set $%s)", ErrNoBrowser, ChromiumEnv)
	}
	root := filepath.Join(os.TempDir(), "kvorum-test")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(root, "chromium-install.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if p := findChromium(); p != "" {
		return p, nil // installed by another process while we waited
	}
	if logf != nil {
		logf("installing Chromium with apt-get for the browser tests (once; takes a minute or two)")
	}
	install := []string{"install", "-y", "--no-install-recommends", "chromium"}
	if err := aptGet(ctx, install...); err != nil {
		// Package lists may be missing (container images ship without
		// them) or point at versions the mirror no longer has.
		if uerr := aptGet(ctx, "update"); uerr != nil {
			return "", fmt.Errorf("install chromium: %v; apt-get update: %w", err, uerr)
		}
		if err := aptGet(ctx, install...); err != nil {
			return "", fmt.Errorf("install chromium: %w", err)
		}
	}
	if p := findChromium(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%w: apt-get installed the chromium package but none of %v is on $PATH", ErrNoBrowser, chromiumNames)
}

func findChromium() string {
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func aptGet(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 20))
	}
	return nil
}

// DumpDOM loads url in a headless browser (the binary Chromium returned),
// lets it run its scripts, and returns the document as serialized HTML
// afterwards. Each call uses a fresh profile in a temporary directory,
// so no state carries over from one load to the next.
func DumpDOM(ctx context.Context, browser, url string) (string, error) {
	profile, err := os.MkdirTemp("", "kvorum-chromium-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	// --no-sandbox: Chromium refuses to run as root with its sandbox, and
	// test containers often lack the namespaces it needs anyway.
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--user-data-dir="+profile, "--dump-dom", url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s --dump-dom %s: %w\n%s", browser, url, err, tail(stderr.String(), 20))
	}
	if stdout.Len() == 0 {
		return "", fmt.Errorf("%s --dump-dom %s printed nothing\n%s", browser, url, tail(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
