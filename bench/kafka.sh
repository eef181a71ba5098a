#!/usr/bin/env bash
# Kafka end to end: records/s of `inferwatch run` with the default rules, consuming a
# 6-partition topic from the start, next to the consume-only loop (`inferwatch consume`:
# the same source code and client settings, no decoding, windows or rules) on the same
# topic, as a ratio. Both rates run from the first record to the last (joining the
# group and waiting for the end are not counted).
#
#   bench/kafka.sh [EVENTS] [RUNS]     default: 1000000 records, 3 runs
#
# Uses the broker at $KAFKA_BROKERS, or starts the test broker (scripts/kafka.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"
events=${1:-1000000}
runs=${2:-3}
kafka_broker

topic=bench-$$
scripts/kafka.sh topic "$topic" 6 >&2
"$bin" gen --scenario benign --seed 1 --events "$events" --kafka "$KAFKA_BROKERS" --topic "$topic" >&2

rate() { sed -n "s/.*$1 *\([0-9]*\) rec\/s.*/\1/p; s/.*(\([0-9]*\) records\/s).*/\1/p" "$2" | head -n 1; }

machine
echo "topic: $topic, 6 partitions, $events benign records"
echo
echo "| run | consume-only (records/s) | inferwatch run (records/s) | ratio | peak RSS of run (MiB) |"
echo "|---|---:|---:|---:|---:|"
for i in $(seq 1 "$runs"); do
  "$bin" consume --config "$(kafka_config consume-$i)" --until-idle 3s 2>"$work/consume.err" \
    || { cat "$work/consume.err" >&2; exit 1; }
  raw=$(rate x "$work/consume.err")
  rm -rf "$work/state"
  /usr/bin/time -f '%M' -o "$work/time" \
    "$bin" run --http off --config "$(kafka_config run-$i)" --until-idle 3s 2>"$work/run.err" \
    || { cat "$work/run.err" >&2; exit 1; }
  e2e=$(rate "streaming rate" "$work/run.err")
  kb=$(cat "$work/time")
  awk -v i="$i" -v raw="$raw" -v e2e="$e2e" -v kb="$kb" \
    'BEGIN { printf "| %d | %d | %d | %.2f | %.0f |\n", i, raw, e2e, e2e / raw, kb / 1024 }'
done
