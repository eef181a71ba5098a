#!/usr/bin/env bash
# Detection of the per-client attacks: the `clients` scenario (flood, near-duplicate
# probing, boundary walking, uniform-random, Jacobian and natural-data extraction among
# 200 honest clients and 3 heavy batch users) over several seeds, replayed with the
# default rules; scored by bench/detection.py against the truth file.
#
#   bench/detection.sh [SEEDS...]     default: 1 2 3 4 5
#
# SCENARIOS, CONFIG, EVENTS and RATE choose other traffic (bench/rescore_detection.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
read -r -a scenarios <<<"${SCENARIOS:-clients}"
machine
echo
echo "| seed | episode | rule | detected | attacker queries until the alert | minutes from its start |"
echo "|---|---|---|---|---:|---:|"
for seed in "${seeds[@]}"; do
  for scenario in "${scenarios[@]}"; do
    "$bin" gen --scenario "$scenario" --seed "$seed" --events "${EVENTS:-300000}" --rate "${RATE:-30}" \
      --out "$work/c.jsonl" --truth "$work/truth.jsonl" 2>/dev/null
    rm -f "$work/alerts.jsonl"
    "$bin" replay --config "${CONFIG:-examples/replay.yaml}" --input "$work/c.jsonl" --no-progress \
      --alerts-out "$work/alerts.jsonl" >/dev/null 2>"$work/summary"
    python3 bench/detection.py "$work/truth.jsonl" "$work/alerts.jsonl" "$work/c.jsonl" "$seed"
  done
done
