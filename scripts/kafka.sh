#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, for tests and demos.
#
#   scripts/kafka.sh start|stop|resume|status|env
#   scripts/kafka.sh topic NAME PARTITIONS    (creates a topic if it does not exist)
#
# The broker's jars come from Maven Central through scripts/kafka/pom.xml (cached in
# ~/.m2 and in the jar folder below); it runs on the machine's JDK 17 with its data in
# a temporary folder that `start` wipes (`resume` starts it again on the data it has).
# KAFKA_HOME and the port variables below run a second broker beside the first. Listeners:
#   PLAINTEXT      127.0.0.1:$KAFKA_PORT        (default 19092)
#   SASL_PLAINTEXT 127.0.0.1:$KAFKA_SCRAM_PORT  (default 19094), SCRAM-SHA-256/512,
#                  user $KAFKA_SCRAM_USER / $KAFKA_SCRAM_PASSWORD
# `env` prints the variables tests read (KAFKA_BROKERS, KAFKA_SCRAM_BROKERS, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
libs=${KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/kafka-$version}
home=${KAFKA_HOME:-${TMPDIR:-/tmp}/inferwatch-kafka}
port=${KAFKA_PORT:-19092}
scram_port=${KAFKA_SCRAM_PORT:-19094}
controller_port=${KAFKA_CONTROLLER_PORT:-19093}
user=${KAFKA_SCRAM_USER:-inferwatch}
password=${KAFKA_SCRAM_PASSWORD:-inferwatch-test-secret}

fetch() {
  [ -f "$libs/.complete" ] && return
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
  mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
  touch "$libs/.complete"
}

java=(java -Xms256m -Xmx768m -cp "$libs/*"
  -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.file="$home/broker.log")

running() { [ -f "$home/broker.pid" ] && kill -0 "$(cat "$home/broker.pid")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

config() {
  cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_PLAINTEXT://127.0.0.1:$scram_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$scram_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$home/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.ms=1000
PROPS
}

start() {
  fetch
  running && stop
  rm -rf "$home"
  mkdir -p "$home/data"
  config >"$home/server.properties"
  local id
  id=$("${java[@]}" kafka.tools.StorageTool random-uuid)
  "${java[@]}" kafka.tools.StorageTool format -t "$id" -c "$home/server.properties" \
    --add-scram "SCRAM-SHA-256=[name=$user,password=$password]" \
    --add-scram "SCRAM-SHA-512=[name=$user,password=$password]" >"$home/format.log" 2>&1 \
    || { cat "$home/format.log" >&2; exit 1; }
  launch
}

# Starts the broker on the data in $home and waits for its listeners. A port that
# answers before the broker starts belongs to someone else: fail rather than report
# another process's listener as this broker's.
launch() {
  local p
  for p in "$port" "$controller_port" "$scram_port"; do
    if port_open "$p"; then
      echo "kafka.sh: port $p is in use" >&2
      exit 1
    fi
  done
  nohup "${java[@]}" kafka.Kafka "$home/server.properties" >"$home/stdout.log" 2>&1 &
  echo $! >"$home/broker.pid"
  for _ in $(seq 1 120); do
    if running && port_open "$port" && port_open "$scram_port"; then
      echo "kafka.sh: broker $version up on 127.0.0.1:$port (SCRAM on $scram_port), data in $home"
      return
    fi
    running || break
    sleep 0.5
  done
  echo "kafka.sh: the broker did not come up; its log:" >&2
  tail -n 40 "$home/broker.log" "$home/stdout.log" >&2 || true
  stop
  exit 1
}

resume() {
  running && return 0
  [ -f "$home/server.properties" ] || { echo "kafka.sh: nothing to resume in $home: use start" >&2; exit 1; }
  fetch
  launch
}

stop() {
  running || { rm -f "$home/broker.pid"; return 0; }
  local pid
  pid=$(cat "$home/broker.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$home/broker.pid"
  echo "kafka.sh: broker stopped"
}

status() {
  if running && port_open "$port"; then
    echo "kafka.sh: running on 127.0.0.1:$port (pid $(cat "$home/broker.pid"))"
  else
    echo "kafka.sh: not running"
    return 1
  fi
}

topic() {
  [ $# -eq 2 ] || { echo "usage: scripts/kafka.sh topic NAME PARTITIONS" >&2; exit 2; }
  "${java[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" \
    --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1
}

produce() {
  [ $# -eq 1 ] || { echo "usage: scripts/kafka.sh produce TOPIC < FILE (one record per line)" >&2; exit 2; }
  "${java[@]}" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$port" \
    --topic "$1" --producer-property compression.type=lz4 --producer-property linger.ms=20 \
    --producer-property batch.size=262144
}

env_vars() {
  echo "KAFKA_BROKERS=127.0.0.1:$port"
  echo "KAFKA_SCRAM_BROKERS=127.0.0.1:$scram_port"
  echo "KAFKA_SCRAM_USER=$user"
  echo "KAFKA_SCRAM_PASSWORD=$password"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  resume) resume ;;
  topic) shift; topic "$@" ;;
  produce) shift; produce "$@" ;;
  status) status ;;
  env) env_vars ;;
  *) echo "usage: scripts/kafka.sh start|stop|resume|status|env|topic NAME PARTITIONS|produce TOPIC" >&2; exit 2 ;;
esac
