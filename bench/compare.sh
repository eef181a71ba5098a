#!/usr/bin/env bash
# Two builds side by side: replay and Kafka throughput of binary A and binary B on the
# same traffic, run alternately (A B B A A B ...) so that a machine whose speed drifts
# favours neither, and the median of each with B/A. For "did this change make it slower".
#
#   bench/compare.sh A B [ROUNDS] [EVENTS]     default: 6 rounds, 1,000,000 benign records
#
# Kafka: a 6-partition topic read from the start by `run --until-idle 3s` (a new group per
# run); uses the broker at $KAFKA_BROKERS, or starts the test broker.
set -euo pipefail
a=$(realpath "$1")
b=$(realpath "$2")
rounds=${3:-6}
events=${4:-1000000}
BIN=$a source "$(dirname "$0")/common.sh"
kafka_broker

"$a" gen --scenario benign --seed 1 --events "$events" --out "$work/benign.jsonl" 2>/dev/null
topic=compare-$$
scripts/kafka.sh topic "$topic" 6 >&2
"$a" gen --scenario benign --seed 1 --events "$events" --kafka "$KAFKA_BROKERS" --topic "$topic" >&2

replay_rate() { # bin
  /usr/bin/time -f '%e' -o "$work/time" "$1" replay --config examples/replay.yaml \
    --input "$work/benign.jsonl" --no-progress >/dev/null 2>"$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  awk -v n="$events" '{ printf "%.0f", n / $1 }' "$work/time"
}
kafka_rate() { # bin group
  rm -rf "$work/state"
  "$1" run --http off --config "$(kafka_config "$2")" --until-idle 3s 2>"$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  sed -n 's/.*streaming rate *\([0-9]*\) rec\/s.*/\1/p' "$work/err" | head -n 1
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine
echo "A: $a"
echo "B: $b"
echo "$events benign records; $rounds rounds, order alternating"
echo
echo "| round | order | replay A | replay B | Kafka A | Kafka B |"
echo "|---:|---|---:|---:|---:|---:|"
: >"$work/ra"; : >"$work/rb"; : >"$work/ka"; : >"$work/kb"
for i in $(seq 1 "$rounds"); do
  if [ $((i % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  declare -A r=() k=()
  for who in $order; do
    if [ "$who" = A ]; then bin_=$a; else bin_=$b; fi
    r[$who]=$(replay_rate "$bin_")
    k[$who]=$(kafka_rate "$bin_" "g-$who-$i-$$")
  done
  echo "| $i | $order | ${r[A]} | ${r[B]} | ${k[A]} | ${k[B]} |"
  echo "${r[A]}" >>"$work/ra"; echo "${r[B]}" >>"$work/rb"
  echo "${k[A]}" >>"$work/ka"; echo "${k[B]}" >>"$work/kb"
done
ra=$(median <"$work/ra"); rb=$(median <"$work/rb"); ka=$(median <"$work/ka"); kb=$(median <"$work/kb")
echo
echo "| | A (median records/s) | B (median records/s) | B / A |"
echo "|---|---:|---:|---:|"
awk -v a="$ra" -v b="$rb" 'BEGIN { printf "| replay | %.0f | %.0f | %.3f |\n", a, b, b / a }'
awk -v a="$ka" -v b="$kb" 'BEGIN { printf "| Kafka | %.0f | %.0f | %.3f |\n", a, b, b / a }'
