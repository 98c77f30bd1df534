#!/usr/bin/env bash
# `make bench`: Go micro-benchmarks for now; the end-to-end benchmarks against the local broker come
# with the performance work (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchmem ./pkg/...
