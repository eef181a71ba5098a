#!/usr/bin/env bash
# Detection by re-scoring: the `evasion` and `tampering` scenarios of the embedded test
# model over several seeds, replayed with examples/rescore.yaml (the default rules, the
# default budget and sample); scored by bench/detection.py against the truth file
# (first firing of the episode's rule, queries until then, minutes from its start, and
# firing per-client alerts on honest clients).
#
#   bench/rescore_detection.sh [SEEDS...]     default: 1 2 3 4 5
set -euo pipefail
source "$(dirname "$0")/common.sh"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
machine
echo
echo "| seed | episode | rule | detected | attacker queries until the alert | minutes from its start |"
echo "|---|---|---|---|---:|---:|"
for seed in "${seeds[@]}"; do
  for scenario in evasion tampering; do
    "$bin" gen --scenario "$scenario" --seed "$seed" --events 150000 --rate 50 \
      --out "$work/s.jsonl" --truth "$work/truth.jsonl" 2>/dev/null
    rm -f "$work/alerts.jsonl"
    "$bin" replay --config examples/rescore.yaml --input "$work/s.jsonl" --no-progress \
      --alerts-out "$work/alerts.jsonl" >"$work/summary"
    python3 bench/detection.py "$work/truth.jsonl" "$work/alerts.jsonl" "$work/s.jsonl" "$seed"
  done
done
