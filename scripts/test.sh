#!/usr/bin/env bash
# Runs Kvorum's whole test suite: vet, unit and property tests, in-process
# clusters, multi-process clusters of the built binaries, and the
# comparison with the official etcdctl (which the tests build from the Go
# module proxy on first use and cache under ~/.cache/kvorum-test).
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 45m "$@" ./...
# Each fuzz target runs 20,000 inputs (a few seconds) beyond its committed
# corpus (testdata/fuzz): config parsing, request admission, the peer
# message decoder. A crash fails the run and writes the input to
# testdata/fuzz. The budget is a count, not a duration: Go 1.26's fuzzing
# coordinator can report "context deadline exceeded" as a failure when a
# duration runs out while a worker is busy (golang/go#75804, fixed in 1.27).
for target in ./internal/config:FuzzParse ./internal/admission:FuzzAdmit ./internal/transport:FuzzReadFrame; do
	go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "${KVORUM_FUZZTIME:-20000x}" "${target%%:*}"
done
