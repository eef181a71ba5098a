#!/usr/bin/env bash
# Cost of checkpoints: replay throughput with checkpoints off, every 10 s and every
# 100 ms (a stress setting), with the size of a checkpoint, its write time (off the
# pipeline's thread), the longest pause of the pipeline while its state was taken, and
# the CPU seconds of the run (user + system: the cost on a machine whose wall-clock
# speed varies more than the cost itself).
#
#   bench/checkpoint.sh [EVENTS] [RATE]    default: 2000000 records at 200 records/s
#   CLIENTS=100000 MODES="off 10s" bench/checkpoint.sh 4320000 50
#                                  a day from 100,000 distinct clients, two settings
set -euo pipefail
source "$(dirname "$0")/common.sh"
events=${1:-2000000}
rate=${2:-200}
clients=()
[ -z "${CLIENTS:-}" ] || clients=(--clients "$CLIENTS")
"$bin" gen --scenario benign --seed 1 --events "$events" --rate "$rate" "${clients[@]}" --out "$work/in.jsonl" 2>/dev/null

echo "$(machine); $events records at $rate records/s of event time${CLIENTS:+ from $CLIENTS clients}"
echo
echo "| checkpoints | records/s | CPU s | written | largest (bytes) | slowest write (ms) | longest pause (ms) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in ${MODES:-off 10s 100ms off 10s 100ms}; do
  cfg="$work/cfg.yaml"
  cp examples/replay.yaml "$cfg"
  sed -i "s|queries: ../queries|queries: $PWD/queries|" "$cfg"
  args=()
  if [ "$mode" != off ]; then
    echo "checkpoint_interval: $mode" >>"$cfg"
    rm -rf "$work/state"
    args=(--state-dir "$work/state")
  fi
  /usr/bin/time -f '%U %S' -o "$work/time" \
    "$bin" replay --config "$cfg" --input "$work/in.jsonl" --no-progress "${args[@]}" >/dev/null 2>"$work/summary"
  cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$work/time")
  awk -v mode="$mode" -v cpu="$cpu" '
    /throughput/ { rps = $2 }
    /^  checkpoints / { n = $2 }
    /largest \(bytes\)/ { size = $NF }
    /slowest write/ { ms = $NF }
    /longest pause/ { pause = $NF }
    END { printf "| %s | %s | %s | %s | %s | %s | %s |\n", mode, rps, cpu, (n == "" ? "-" : n), (size == "" ? "-" : size), (ms == "" ? "-" : ms), (pause == "" ? "-" : pause) }
  ' "$work/summary"
done
