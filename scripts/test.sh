#!/usr/bin/env bash
# `make test`: installs what a fresh machine lacks, starts a local Apache Kafka broker unless
# KAFKA_BROKERS names one, runs every test with the race detector (integration tests may not skip),
# runs a short fuzz pass, and stops the broker it started, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
started=""
if [ -z "${KAFKA_BROKERS:-}" ]; then
  # A port of its own, so a broker left running by `make run` is neither reused nor stopped.
  export KAFKA_PORT=${CIMSTREAM_TEST_KAFKA_PORT:-19092}
  if ! scripts/kafka.sh status; then
    started=1
    trap 'scripts/kafka.sh down' EXIT
  fi
  KAFKA_BROKERS=$(scripts/kafka.sh up)
  export KAFKA_BROKERS
fi
export CIMSTREAM_REQUIRE_KAFKA=1
echo "test.sh: integration tests use Apache Kafka at $KAFKA_BROKERS${started:+ (started for this run)}" >&2

# The fault tests append their one-line accounts here; they are printed at the end.
export CIMSTREAM_ACCOUNTS_FILE=$PWD/.cache/chaos-accounts.txt
mkdir -p .cache && : >"$CIMSTREAM_ACCOUNTS_FILE"
if [ "${1:-}" = chaos-cluster ]; then
  # make chaos-cluster: the broker faults on a three-node cluster of the test's own (about 4 minutes), kept
  # out of make test by the build tag `cluster` so the everyday suite stays short; .ci/run runs it once.
  # Also the sink's and the readers' one-request-per-broker tests, which need partitions on several leaders.
  go test -race -count=1 -timeout 20m -v -tags cluster -run '^TestChaosCluster' ./internal/chaos
  go test -race -count=1 -p 1 -timeout 10m -v -tags cluster -run '^TestIntegrationCluster' ./internal/kafkaedge ./internal/kafkaclient
  cat "$CIMSTREAM_ACCOUNTS_FILE"
  exit 0
fi
if [ "${1:-}" = chaos ]; then
  # make chaos: the long variants of the fault tests only.
  CIMSTREAM_CHAOS_LONG=1 go test -race -count=1 -timeout 40m -v -tags chaoslong -run Chaos ./internal/chaos
  cat "$CIMSTREAM_ACCOUNTS_FILE"
  exit 0
fi
# One package at a time (-p 1): several packages start brokers and binaries of their own, and two of them
# at once on a small machine starve the shared broker into timeouts that test nothing of cimstream.
go test -race -count=1 -p 1 -timeout 30m ./...
echo "fault-test accounts:"
cat "$CIMSTREAM_ACCOUNTS_FILE"
# A short fuzz pass on decode + validate; longer runs: make fuzz.
if [ -d pkg/cim ] && grep -qs 'func FuzzDecodeValidate' pkg/cim/*_test.go; then
  go test -run '^$' -fuzz '^FuzzDecodeValidate$' -fuzztime "${CIMSTREAM_FUZZTIME:-10s}" ./pkg/cim
fi
# And on the ingress handler: never a panic, never a 2xx without a record of that body.
if grep -qs 'func FuzzIngressHandler' internal/ingress/*_test.go; then
  go test -run '^$' -fuzz '^FuzzIngressHandler$' -fuzztime "${CIMSTREAM_FUZZTIME:-10s}" ./internal/ingress
fi
