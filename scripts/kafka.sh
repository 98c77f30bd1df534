#!/usr/bin/env bash
# Runs a single-node Apache Kafka (KRaft: broker and controller in one process) on 127.0.0.1
# from the official jars on Maven Central, for tests, benchmarks and `make run-kafka`.
#
#   scripts/kafka.sh up       fetch the jars if needed, start the broker (or reuse a running one), wait until ready
#   scripts/kafka.sh down     stop the broker started by `up`
#   scripts/kafka.sh status   exit 0 when a broker answers on the port
#   scripts/kafka.sh stop     stop the broker but keep its data (fault tests)
#   scripts/kafka.sh start    start a stopped broker again on its data
#   scripts/kafka.sh tool CLASS [ARGS...]   run a Kafka tool class on the broker's classpath, e.g.
#                             org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   scripts/kafka.sh fetch    only fetch the jars
#
# Environment: KAFKA_PORT (default 9092), KAFKA_CONTROLLER_PORT (default KAFKA_PORT+1000),
# CIMSTREAM_KAFKA_HOME (cache directory, default .cache/kafka in the repository; git-ignored),
# KAFKA_HEAP (default -Xmx1g), KAFKA_EXTRA_PROPS (extra lines for server.properties; the listener and
# protocol-map lines can be replaced with KAFKA_LISTENERS, KAFKA_ADVERTISED_LISTENERS and
# KAFKA_PROTOCOL_MAP), KAFKA_FORMAT_ARGS (extra storage-format arguments, e.g. --add-scram ...).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home=${CIMSTREAM_KAFKA_HOME:-$root/.cache/kafka}
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1000))}
libs=$home/libs
run=$home/run-$port
pidfile=$run/kafka.pid

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  die "'$1' is not installed: the local broker needs Java 17 and Maven (Debian: apt-get install openjdk-17-jre-headless maven).
Alternative with Docker: docker compose up -d kafka, then export KAFKA_BROKERS=127.0.0.1:9092"
}

fetch() {
  [ -f "$libs/.complete" ] && return 0
  need java
  need mvn
  echo "kafka.sh: fetching Apache Kafka jars from Maven Central into $libs" >&2
  mkdir -p "$libs"
  mvn -B -q -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >"$home/maven.log" 2>&1 ||
    die "maven could not fetch org.apache.kafka:kafka_2.13; last lines of $home/maven.log:
$(tail -20 "$home/maven.log")"
  touch "$libs/.complete"
}

# answers exits 0 when something accepts TCP connections on the client port.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

java_tool() {
  local class=$1; shift
  java -Xmx512m -cp "$libs/*" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2-tools.properties" "$class" "$@"
}

# ready exits 0 once the broker answers a metadata request (not merely accepts connections).
ready() {
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1
}

up() {
  need java
  fetch
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "kafka.sh: reusing the broker already running (pid $(cat "$pidfile"))" >&2
    echo "127.0.0.1:$port"
    return 0
  fi
  if answers; then
    die "port $port is taken by another process; set KAFKA_PORT or stop it"
  fi
  rm -rf "$run"
  mkdir -p "$run/data" "$run/logs"
  cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=${KAFKA_LISTENERS:-PLAINTEXT://127.0.0.1:$port},CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS:-PLAINTEXT://127.0.0.1:$port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,${KAFKA_PROTOCOL_MAP:-PLAINTEXT:PLAINTEXT}
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.cleaner.backoff.ms=1000
${KAFKA_EXTRA_PROPS:-}
EOF
  local cluster_id
  cluster_id=$(java_tool kafka.tools.StorageTool random-uuid)
  set -f # KAFKA_FORMAT_ARGS is split on spaces but never globbed ([name=...] looks like a pattern)
  # shellcheck disable=SC2086
  java_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$run/server.properties" ${KAFKA_FORMAT_ARGS:-} >"$run/logs/format.log" 2>&1 ||
    die "formatting the KRaft storage failed: $(tail -5 "$run/logs/format.log")"
  set +f
  launch
}

# launch starts the broker on the formatted run directory and waits until it answers.
launch() {
  # setsid: the broker outlives the shell that started it, and `down` stops it by pid.
  KAFKA_LOG_DIR="$run/logs" setsid java ${KAFKA_HEAP:--Xmx1g} -XX:+UseG1GC \
    -Dkafka.logs.dir="$run/logs" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$run/server.properties" >>"$run/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 90))
  until ready; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      die "the broker exited during start-up; last lines of $run/logs/stdout.log:
$(tail -20 "$run/logs/stdout.log")"
    fi
    [ $SECONDS -lt $deadline ] || die "the broker did not answer metadata requests within 90 s (logs in $run/logs)"
    sleep 1
  done
  echo "kafka.sh: Apache Kafka ready on 127.0.0.1:$port (pid $(cat "$pidfile"), logs in $run/logs)" >&2
  echo "127.0.0.1:$port"
}

# stop_process ends the broker process (SIGTERM, then SIGKILL after 30 s).
stop_process() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  stop_process
  echo "kafka.sh: broker on port $port stopped; its data is kept in $run" >&2
}

start() {
  [ -f "$run/server.properties" ] || die "no stopped broker on port $port to start (use up)"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "127.0.0.1:$port"
    return 0
  fi
  launch
}

down() {
  [ -f "$pidfile" ] || { echo "kafka.sh: no broker started on port $port" >&2; return 0; }
  stop_process
  echo "kafka.sh: broker on port $port stopped" >&2
}

case "${1:-}" in
up) up ;;
down) down ;;
stop) stop ;;
start) need java; start ;;
status) answers ;;
fetch) fetch ;;
tool) shift; need java; fetch; java_tool "$@" ;;
*) echo "usage: $0 up|down|status|fetch|tool CLASS [ARGS...]" >&2; exit 2 ;;
esac
