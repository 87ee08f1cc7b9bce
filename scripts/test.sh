#!/usr/bin/env bash
# Runs Kvorum's whole test suite: vet, unit and property tests, in-process
# clusters, multi-process clusters of the built binaries, and the
# comparison with the official etcdctl (which the tests build from the Go
# module proxy on first use and cache under ~/.cache/kvorum-test).
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 45m "$@" ./...
