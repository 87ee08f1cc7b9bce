package testbin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Kube is a kube-apiserver and a kubectl of one Kubernetes version.
type Kube struct {
	Version   string
	APIServer string // path of kube-apiserver
	Ctl       string // path of kubectl
}

// KubeDirEnv names a directory holding prebuilt kube-apiserver and kubectl
// binaries to use instead of building them.
const KubeDirEnv = "KVORUM_TEST_KUBE_DIR"

// Kubernetes returns kube-apiserver and kubectl of version (such as
// "v1.37.1"), built from the Go module proxy on first use into
// <user cache dir>/kvorum-test/kubernetes-<version>/ and reused afterwards,
// built and cached like OfficialEtcd's. The first
// build takes about 10 minutes on 2 cores, with 0.9 GB of module downloads
// and 3 GB of build cache. logf, if not nil, is told when a build starts.
//
// The proxy must serve the k8s.io/kubernetes zip of that version, which it
// does not for every release: v1.37.2, for one, has only its go.mod there.
func Kubernetes(ctx context.Context, version string, logf func(format string, args ...any)) (*Kube, error) {
	if dir := os.Getenv(KubeDirEnv); dir != "" {
		k := kubeIn(dir, version)
		if !executable(k.APIServer, k.Ctl) {
			return nil, fmt.Errorf("$%s=%s holds no executable kube-apiserver and kubectl", KubeDirEnv, dir)
		}
		return k, nil
	}
	dir, err := cached(ctx, "kubernetes-"+version, []string{"kube-apiserver", "kubectl"}, func(ctx context.Context, out string) error {
		if logf != nil {
			logf("building kube-apiserver and kubectl %s from the Go module proxy into the cache (once; takes about 10 minutes)", version)
		}
		return buildKube(ctx, version, out)
	})
	if err != nil {
		return nil, err
	}
	return kubeIn(dir, version), nil
}

func kubeIn(dir, version string) *Kube {
	return &Kube{Version: version, APIServer: filepath.Join(dir, "kube-apiserver"), Ctl: filepath.Join(dir, "kubectl")}
}

// kubeVersion is a Kubernetes release; its staging modules (k8s.io/api,
// k8s.io/client-go, ...) are published as v0.<minor>.<patch>.
var kubeVersion = regexp.MustCompile(`^v1\.(\d+\.\d+)$`)

// buildKube builds the two commands in a throw-away module that requires
// k8s.io/kubernetes. Kubernetes' go.mod requires its staging modules at
// v0.0.0 and replaces them with directories of its own repository, which
// do not exist for a dependent module; the throw-away module replaces each
// with its published release instead.
func buildKube(ctx context.Context, version, out string) error {
	m := kubeVersion.FindStringSubmatch(version)
	if m == nil {
		return fmt.Errorf("Kubernetes version %q: want a release such as v1.37.1", version)
	}
	staging := "v0." + m[1]
	mod, err := os.MkdirTemp("", "kvorum-kube-module-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(mod)
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module kvorumtestkube\n"), 0o644); err != nil {
		return err
	}
	kubeMod, err := moduleGoMod(ctx, mod, env, "k8s.io/kubernetes@"+version)
	if err != nil {
		return err
	}
	goLine, stagingMods := parseKubeGoMod(kubeMod)
	if goLine == "" || len(stagingMods) == 0 {
		return fmt.Errorf("the go.mod of k8s.io/kubernetes@%s has no go line or no k8s.io modules at v0.0.0; cannot pin its staging modules", version)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module kvorumtestkube\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", goLine, version)
	for _, p := range stagingMods {
		fmt.Fprintf(&b, "\t%s => %s %s\n", p, p, staging)
	}
	b.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	// The version stamp Kubernetes' own build (hack/lib/version.sh) sets;
	// without it both commands call themselves v0.0.0-master and kubectl
	// warns about version skew.
	minor := strings.Split(m[1], ".")[0]
	var ldflags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ldflags = append(ldflags,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor=1",
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean")
	}
	return goCmd(ctx, mod, env, "build", "-trimpath", "-ldflags=-s -w "+strings.Join(ldflags, " "), "-o", out+string(filepath.Separator),
		"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl")
}

// moduleGoMod downloads module@version's go.mod and returns its text.
func moduleGoMod(ctx context.Context, dir string, env []string, modVersion string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	var info struct{ GoMod, Error string }
	if jerr := json.Unmarshal(stdout, &info); jerr == nil && info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w\n%s", modVersion, err, strings.TrimSpace(stderr.String()))
	}
	if info.GoMod == "" {
		return nil, fmt.Errorf("go mod download %s: no go.mod in its answer %q", modVersion, stdout)
	}
	return os.ReadFile(info.GoMod)
}

// stagingRequire matches a requirement of a staging module in Kubernetes'
// go.mod, in a require block ("\tk8s.io/api v0.0.0") or on its own line.
var stagingRequire = regexp.MustCompile(`^(?:require\s+)?(k8s\.io/\S+)\s+v0\.0\.0(?:\s*//.*)?$`)

// parseKubeGoMod returns the go directive of Kubernetes' go.mod and the
// k8s.io modules it requires at v0.0.0 (its staging modules).
func parseKubeGoMod(gomod []byte) (goLine string, staging []string) {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "go ") && goLine == "" {
			goLine = line
		}
		if m := stagingRequire.FindStringSubmatch(line); m != nil {
			staging = append(staging, m[1])
		}
	}
	return goLine, staging
}
