#!/usr/bin/env bash
# Runs a three-node Apache Kafka cluster on 127.0.0.1 from the same jars as scripts/kafka.sh, for fault
# tests: three KRaft nodes, each broker and controller in one process (a static quorum of three voters),
# replication factor 3 and min.insync.replicas=2 by default, for topics and for the offsets and
# transaction state logs.
#
#   scripts/kafka-cluster.sh up          fetch the jars if needed, format and start the three nodes, wait
#                                        until every broker is registered; prints the bootstrap list
#   scripts/kafka-cluster.sh down        SIGKILL every node and wipe the data
#   scripts/kafka-cluster.sh kill N      SIGKILL node N (1..3), keeping its data
#   scripts/kafka-cluster.sh stop N      SIGTERM node N (a controlled shutdown: leadership moves first),
#                                        SIGKILL after 30 s, keeping its data
#   scripts/kafka-cluster.sh start N     start node N again on its data and wait until it is registered
#   scripts/kafka-cluster.sh status [N]  exit 0 when every node (or node N) is running and answers
#   scripts/kafka-cluster.sh tool CLASS [ARGS...]   a Kafka tool class on the classpath (as kafka.sh tool)
#
# Environment: KAFKA_CLUSTER_PORTS (three client ports, comma-separated, default 29092,29093,29094),
# KAFKA_CLUSTER_CONTROLLER_PORTS (default each client port + 1000), CIMSTREAM_KAFKA_HOME (as kafka.sh),
# KAFKA_HEAP (per node, default -Xmx384m -Xms128m), KAFKA_EXTRA_PROPS (extra server.properties lines).
#
# Failure detection is tuned for tests: a broker that stops heartbeating is fenced after 3 s (its
# partitions get new leaders from the in-sync replicas) and a controller election takes about a second.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home=${CIMSTREAM_KAFKA_HOME:-$root/.cache/kafka}
libs=$home/libs
IFS=, read -r -a ports <<<"${KAFKA_CLUSTER_PORTS:-29092,29093,29094}"
[ ${#ports[@]} -eq 3 ] || { echo "kafka-cluster.sh: KAFKA_CLUSTER_PORTS needs three ports" >&2; exit 2; }
if [ -n "${KAFKA_CLUSTER_CONTROLLER_PORTS:-}" ]; then
  IFS=, read -r -a cports <<<"$KAFKA_CLUSTER_CONTROLLER_PORTS"
else
  cports=($((ports[0] + 1000)) $((ports[1] + 1000)) $((ports[2] + 1000)))
fi
run=$home/cluster-${ports[0]}

die() { echo "kafka-cluster.sh: $*" >&2; exit 1; }

java_tool() {
  local class=$1; shift
  java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$libs/*" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2-tools.properties" "$class" "$@"
}

port_of() { echo "${ports[$(($1 - 1))]}"; }
dir_of() { echo "$run/node-$1"; }
pid_of() { cat "$(dir_of "$1")/kafka.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$1")") 2>/dev/null; }
bootstrap() { echo "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"; }

# registered N exits 0 when the metadata of a running node lists broker N (registered and unfenced).
registered() {
  local id=$1 other
  for other in 1 2 3; do
    running "$other" && answers "$other" || continue
    if command -v kcat >/dev/null 2>&1; then
      kcat -L -b "127.0.0.1:$(port_of "$other")" -m 3 2>/dev/null | grep -q "broker $id at " && return 0
    else
      java_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$(port_of "$other")" 2>/dev/null |
        grep -q "(id: $id " && return 0
    fi
  done
  return 1
}

launch() {
  local id=$1 dir
  dir=$(dir_of "$id")
  KAFKA_LOG_DIR="$dir/logs" setsid java ${KAFKA_HEAP:--Xmx384m -Xms128m} -XX:TieredStopAtLevel=1 \
    -XX:+UseSerialGC -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" >>"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

# wait_registered waits (at most 120 s) until every node named is registered.
wait_registered() {
  local deadline=$((SECONDS + 120)) id
  for id in "$@"; do
    until registered "$id"; do
      running "$id" || die "node $id exited during start-up; last lines of $(dir_of "$id")/logs/stdout.log:
$(tail -20 "$(dir_of "$id")/logs/stdout.log")"
      [ $SECONDS -lt $deadline ] || die "node $id was not registered within 120 s (logs in $(dir_of "$id")/logs)"
      sleep 0.5
    done
  done
}

up() {
  command -v java >/dev/null 2>&1 || die "Java 17 is needed (Debian: apt-get install openjdk-17-jre-headless)"
  "$root/scripts/kafka.sh" fetch
  if running 1 && running 2 && running 3; then
    echo "kafka-cluster.sh: reusing the cluster already running" >&2
    bootstrap
    return 0
  fi
  down_quiet
  local id voters="" cluster_id
  for id in 1 2 3; do
    answers "$id" && die "port $(port_of "$id") is taken by another process; set KAFKA_CLUSTER_PORTS"
    voters+="${voters:+,}$id@127.0.0.1:${cports[$((id - 1))]}"
  done
  cluster_id=$(java_tool kafka.tools.StorageTool random-uuid)
  for id in 1 2 3; do
    local dir port cport
    dir=$(dir_of "$id"); port=$(port_of "$id"); cport=${cports[$((id - 1))]}
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.cleaner.backoff.ms=1000
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
controller.quorum.election.timeout.ms=1000
controller.quorum.fetch.timeout.ms=2000
replica.lag.time.max.ms=10000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
${KAFKA_EXTRA_PROPS:-}
EOF
    java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 ||
      die "formatting node $id failed: $(tail -5 "$dir/logs/format.log")"
  done
  for id in 1 2 3; do launch "$id"; done
  wait_registered 1 2 3
  echo "kafka-cluster.sh: three nodes ready on $(bootstrap) (data and logs in $run)" >&2
  bootstrap
}

kill_node() {
  local id=$1 pid
  pid=$(pid_of "$id")
  [ -n "$pid" ] || die "node $id was not started"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$(dir_of "$id")/kafka.pid"
  echo "kafka-cluster.sh: node $id killed (SIGKILL); its data is kept" >&2
}

stop_node() {
  local id=$1 pid
  pid=$(pid_of "$id")
  [ -n "$pid" ] || die "node $id was not started"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(dir_of "$id")/kafka.pid"
  echo "kafka-cluster.sh: node $id stopped (SIGTERM); its data is kept" >&2
}

start_node() {
  local id=$1
  [ -f "$(dir_of "$id")/server.properties" ] || die "node $id has no data to start on (use up)"
  if ! running "$id"; then
    launch "$id"
  fi
  wait_registered "$id"
  echo "kafka-cluster.sh: node $id running on 127.0.0.1:$(port_of "$id")" >&2
}

down_quiet() {
  local id pid
  for id in 1 2 3; do
    pid=$(pid_of "$id")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$run"
}

node_arg() {
  case "${1:-}" in 1 | 2 | 3) echo "$1" ;; *) die "a node number 1, 2 or 3 is needed" ;; esac
}

case "${1:-}" in
up) up ;;
down) down_quiet; echo "kafka-cluster.sh: cluster on $(bootstrap) stopped and wiped" >&2 ;;
kill) kill_node "$(node_arg "${2:-}")" ;;
stop) stop_node "$(node_arg "${2:-}")" ;;
start) start_node "$(node_arg "${2:-}")" ;;
status)
  if [ -n "${2:-}" ]; then
    id=$(node_arg "$2"); running "$id" && answers "$id"
  else
    for id in 1 2 3; do running "$id" && answers "$id" || exit 1; done
  fi
  ;;
tool) shift; "$root/scripts/kafka.sh" fetch; java_tool "$@" ;;
*) echo "usage: $0 up|down|kill N|stop N|start N|status [N]|tool CLASS [ARGS...]" >&2; exit 2 ;;
esac
