// Package metrics is a member's Prometheus instrumentation under etcd's
// metric names, types, labels and buckets, so that etcd's dashboards and
// alerts (the etcd-mixin) work on Kvorum unchanged; series that etcd has
// no counterpart for are named kvorum_*.
//
// Each member has its own registry (several members may run in one test
// process). The packages that do the work stay free of Prometheus: they
// count in plain atomics or call small hooks, and this package reads the
// counts when scraped (Sources) or turns the hooks into histograms.
package metrics
