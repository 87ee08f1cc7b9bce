#!/usr/bin/env bash
# Builds Kvorum's container image from this checkout: static kvorum and
# kvorumctl binaries (CGO_ENABLED=0) copied into an image FROM scratch, so no
# base image is pulled. Usage: scripts/image.sh [tag]   (default kvorum:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-kvorum:latest}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for cmd in kvorum kvorumctl; do
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$ctx/$cmd" "./cmd/$cmd"
done
mkdir "$ctx/var-lib-kvorum"   # empty: becomes the data and certificate dirs, owned by the member's user
cp contrib/docker/Dockerfile "$ctx/"
docker build --quiet --tag "$tag" "$ctx"
