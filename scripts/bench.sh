#!/usr/bin/env bash
# `make bench`: end-to-end benchmarks against a real Apache Kafka broker started here on its own port
# (127.0.0.1:19392, stopped afterwards), with baselines measured in the same run. Writes
# bench/results.json and the generated table in docs/benchmarks.md. BENCH_ONLY=egress measures only the
# webhook egress and its baseline (keeping the other figures of bench/results.json), BENCH_ONLY=inbound the
# inbound figures alone (printed, with the broker ceiling and the start-up latency), BENCH_ONLY=startup only
# the latency from a process start and over a second instance joining (printed; BENCH_STARTUP_SECONDS,
# default 60, the join half-way); with KAFKA_BROKERS set it uses that broker instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [[ -z "${KAFKA_BROKERS:-}" || -z "${BENCH_ONLY:-}" ]]; then
  export KAFKA_PORT=${CIMSTREAM_BENCH_KAFKA_PORT:-19392}
  trap 'scripts/kafka.sh down' EXIT
  KAFKA_BROKERS=$(KAFKA_HEAP=-Xmx2g scripts/kafka.sh up)
  export KAFKA_BROKERS
fi
make --no-print-directory build
go run ./cmd/cimstream-bench     # BENCH_ONLY=ingress|startup: only that figure, printed, docs untouched
