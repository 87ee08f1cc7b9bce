// Package testbin builds the programs that multi-process tests run: Kvorum's
// own commands from the module's source (see Main, a TestMain that builds
// them first), and official etcd releases from the Go module proxy, cached
// per user so only the first run pays for them.
//
// It needs only the go command (and, for etcd, the module proxy); nothing is
// downloaded outside the Go toolchain, except Chromium for the browser
// tests, which Chromium installs from the system's Debian packages when it
// is missing and the tests run as root.
package testbin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Go builds the main package pkg (an import path, or a path relative to the
// caller's working directory inside the module) into dir with the given
// extra build flags (such as -race) and returns the binary's path. The
// binary is named after the last element of pkg.
func Go(ctx context.Context, dir, pkg string, flags ...string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	args := append(append([]string{"build", "-o", out}, flags...), pkg)
	if err := goCmd(ctx, "", nil, args...); err != nil {
		return "", err
	}
	return out, nil
}

// Etcd is a set of official etcd binaries of one version.
type Etcd struct {
	Version string
	Server  string // path of the etcd server binary
	Ctl     string // path of etcdctl
	Util    string // path of etcdutl (snapshot status and restore)
}

// EtcdDirEnv names a directory holding prebuilt etcd and etcdctl binaries
// (and etcdutl) to use instead of building them (for machines without the
// module proxy).
const EtcdDirEnv = "KVORUM_TEST_ETCD_DIR"

// OfficialEtcd returns the etcd server, etcdctl and etcdutl at version (such as
// "v3.7.3"), built from the Go module proxy on first use into
// <user cache dir>/kvorum-test/etcd-<version>/ and reused afterwards. The
// build runs in a throw-away module, holds a file lock so concurrent test
// processes build once, and appears in the cache only when complete (it is
// renamed into place). logf, if not nil, is told when a build starts.
func OfficialEtcd(ctx context.Context, version string, logf func(format string, args ...any)) (*Etcd, error) {
	if dir := os.Getenv(EtcdDirEnv); dir != "" {
		e := etcdIn(dir, version)
		if !e.complete() {
			return nil, fmt.Errorf("$%s=%s holds no executable etcd and etcdctl", EtcdDirEnv, dir)
		}
		return e, nil
	}
	dir, err := cached(ctx, "etcd-"+version, []string{"etcd", "etcdctl"}, func(ctx context.Context, out string) error {
		if logf != nil {
			logf("building official etcd %s from the Go module proxy into the cache (once; takes a few minutes)", version)
		}
		return buildEtcd(ctx, version, out)
	})
	if err != nil {
		return nil, err
	}
	e := etcdIn(dir, version)
	// etcdutl is cached on its own, so caches made before it was added
	// stay valid.
	utilDir, err := cached(ctx, "etcdutl-"+version, []string{"etcdutl"}, func(ctx context.Context, out string) error {
		if logf != nil {
			logf("building official etcdutl %s from the Go module proxy into the cache (once)", version)
		}
		return buildModuleCommand(ctx, "go.etcd.io/etcd/etcdutl/v3", version, filepath.Join(out, "etcdutl"))
	})
	if err != nil {
		return nil, err
	}
	e.Util = filepath.Join(utilDir, "etcdutl")
	return e, nil
}

// cached returns <user cache dir>/kvorum-test/<name>, building it with
// build first unless it already holds every one of files as an executable.
// The build writes into a temporary directory while holding a file lock,
// so concurrent test processes build once, and the result appears under
// its name only when complete (it is renamed into place).
func cached(ctx context.Context, name string, files []string, build func(ctx context.Context, out string) error) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		// No HOME (some CI environments): build into the temp dir instead.
		cache = os.TempDir()
	}
	root := filepath.Join(cache, "kvorum-test")
	final := filepath.Join(root, name)
	complete := func() bool {
		paths := make([]string, len(files))
		for i, f := range files {
			paths[i] = filepath.Join(final, f)
		}
		return executable(paths...)
	}
	if complete() {
		return final, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(root, name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete() {
		return final, nil // built by another process while we waited for the lock
	}
	tmp, err := os.MkdirTemp(root, name+".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := build(ctx, tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it private
		return "", err
	}
	if err := os.RemoveAll(final); err != nil { // an incomplete leftover
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// executable reports whether every path is an executable regular file.
func executable(paths ...string) bool {
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

func etcdIn(dir, version string) *Etcd {
	return &Etcd{Version: version, Server: filepath.Join(dir, "etcd"), Ctl: filepath.Join(dir, "etcdctl"), Util: filepath.Join(dir, "etcdutl")}
}

func (e *Etcd) complete() bool { return executable(e.Server, e.Ctl) }

func buildEtcd(ctx context.Context, version, out string) error {
	mod, err := os.MkdirTemp("", "kvorum-etcd-module-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(mod)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module kvorumtestetcd\n\ngo 1.24\n"), 0o644); err != nil {
		return err
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	if err := goCmd(ctx, mod, env, "get", "go.etcd.io/etcd/server/v3@"+version, "go.etcd.io/etcd/etcdctl/v3@"+version); err != nil {
		return err
	}
	if err := goCmd(ctx, mod, env, "build", "-o", filepath.Join(out, "etcd"), "go.etcd.io/etcd/server/v3"); err != nil {
		return err
	}
	return goCmd(ctx, mod, env, "build", "-o", filepath.Join(out, "etcdctl"), "go.etcd.io/etcd/etcdctl/v3")
}

// buildModuleCommand builds the main package of module at version into
// out, in a throw-away module as buildEtcd does.
func buildModuleCommand(ctx context.Context, module, version, out string) error {
	mod, err := os.MkdirTemp("", "kvorum-etcd-module-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(mod)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module kvorumtestetcd\n\ngo 1.24\n"), 0o644); err != nil {
		return err
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	if err := goCmd(ctx, mod, env, "get", module+"@"+version); err != nil {
		return err
	}
	return goCmd(ctx, mod, env, "build", "-o", out, module)
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 4000 {
			msg = "..." + msg[len(msg)-4000:]
		}
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, msg)
	}
	return nil
}
