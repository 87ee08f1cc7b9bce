package config

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestStaticPodManifestStartsAMember keeps contrib/kubernetes/kvorum.yaml
// from rotting: it must be a Pod whose kvorum container's command Parse
// accepts as a whole, with no flag that Kvorum takes without effect, and
// with the probes pointing at the metrics URL it serves plain HTTP on.
func TestStaticPodManifestStartsAMember(t *testing.T) {
	path := filepath.Join("..", "..", "contrib", "kubernetes", "kvorum.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet *struct {
			Host, Path, Scheme string
			Port               int
		} `json:"httpGet"`
	}
	var pod struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Spec       struct {
			HostNetwork bool `json:"hostNetwork"`
			Containers  []struct {
				Name                                        string
				Command, Args                               []string
				Env                                         []struct{ Name, Value string }
				LivenessProbe, StartupProbe, ReadinessProbe *probe
			}
		}
	}
	if err := yaml.Unmarshal(b, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || !pod.Spec.HostNetwork || len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: want one v1 Pod with hostNetwork and one container, got %s %s hostNetwork=%v with %d containers",
			path, pod.APIVersion, pod.Kind, pod.Spec.HostNetwork, len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	argv := append(c.Command, c.Args...)
	if len(argv) < 2 || filepath.Base(argv[0]) != "kvorum" {
		t.Fatalf("%s: the container's command %q does not run kvorum with flags", path, argv)
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		envs[e.Name] = e.Value
	}
	cfg, err := Parse(argv[1:], func(k string) string { return envs[k] })
	if err != nil {
		t.Fatalf("%s: kvorum refuses the flags: %v", path, err)
	}
	if len(cfg.Ignored) > 0 {
		t.Errorf("%s: flags Kvorum accepts but gives no meaning: %s", path, strings.Join(cfg.Ignored, ", "))
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("%s: kvorum would warn: %s", path, strings.Join(cfg.Warnings, "; "))
	}
	if len(cfg.InitialCluster) != 3 {
		t.Errorf("%s: --initial-cluster names %d members, want 3", path, len(cfg.InitialCluster))
	}
	var metrics []string
	for _, u := range cfg.ListenMetricsURLs {
		metrics = append(metrics, u.Host)
	}
	for name, p := range map[string]*probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s probe with httpGet", path, name)
			continue
		}
		hostPort := p.HTTPGet.Host + ":" + strconv.Itoa(p.HTTPGet.Port)
		if p.HTTPGet.Scheme != "HTTP" || !slices.Contains(metrics, hostPort) {
			t.Errorf("%s: the %s probe asks %s://%s%s, but plain HTTP is served on the metrics URLs %v only",
				path, name, p.HTTPGet.Scheme, hostPort, p.HTTPGet.Path, metrics)
		}
	}
}
