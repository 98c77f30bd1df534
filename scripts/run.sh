#!/usr/bin/env bash
# `make run`: the service against KAFKA_BROKERS, or against a local Apache Kafka on 127.0.0.1:9092
# started here (and left running for the next `make run`; stop it with `make kafka-down`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KAFKA_BROKERS:-}" ]; then
  KAFKA_BROKERS=$(scripts/kafka.sh up)
fi
export CIMSTREAM_KAFKA_BROKERS=$KAFKA_BROKERS
config=()
[ -f cimstream.yaml ] && config=(--config cimstream.yaml)
bin/cimstream topics create "${config[@]}" --log-format console
echo "run.sh: starting cimstream against $KAFKA_BROKERS; health on http://127.0.0.1:8080/readyz; Ctrl-C stops it" >&2
exec bin/cimstream run "${config[@]}" --log-format console "$@"
