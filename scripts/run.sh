#!/usr/bin/env bash
# `make run`: cimstream against KAFKA_BROKERS when set; otherwise `cimstream dev`, with an in-process
# Kafka-protocol broker on 127.0.0.1:9092 (no Java, no Docker needed).
# `make run-kafka` (run.sh kafka): against a local Apache Kafka on 127.0.0.1:9092 started here and left
# running for the next time (stop it with `make kafka-down`).
# A cimstream.yaml in the repository root is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."

config=()
[ -f cimstream.yaml ] && config=(--config cimstream.yaml)
mode=${1:-auto}
if [ "$mode" = auto ] && [ -z "${KAFKA_BROKERS:-}" ]; then
  exec bin/cimstream dev "${config[@]}" --log-format console
fi
if [ -z "${KAFKA_BROKERS:-}" ]; then
  KAFKA_BROKERS=$(scripts/kafka.sh up)
fi
export CIMSTREAM_KAFKA_BROKERS=$KAFKA_BROKERS
bin/cimstream topics create "${config[@]}" --log-format console
echo "run.sh: starting cimstream against $KAFKA_BROKERS; health on http://127.0.0.1:8080/readyz; Ctrl-C stops it" >&2
exec bin/cimstream run "${config[@]}" --log-format console
