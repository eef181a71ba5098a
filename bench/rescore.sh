#!/usr/bin/env bash
# Re-scoring with the embedded model: its own throughput, and what it costs the pipeline.
#
#   bench/rescore.sh [EVENTS]        default: 1000000
#
# Builds the release binary, generates honest traffic of the embedded test model
# (`gen --scenario benign-model`, 30 features a record) and replays it with
# examples/rescore.yaml three ways, twice each (the faster run counts):
#   off       the same config without `models:` (no re-scoring; the rescored table is empty)
#   default   the default budget (50 records/s of event time) and sample (1 %)
#   all       every record re-scored (sample 1, budget 1,000,000/s): the re-scoring
#             throughput, from the time the re-scorer itself took (summary
#             "re-scoring time")
# and prints a Markdown table.
set -euo pipefail
source "$(dirname "$0")/common.sh"
n=${1:-1000000}
"$bin" gen --scenario benign-model --seed 1 --events "$n" --out "$work/in.jsonl" 2>/dev/null

# The config three ways: models removed, as is, everything re-scored.
awk '/^models:/ {skip = 1; next} skip && /^[^ ]/ {skip = 0} !skip' examples/rescore.yaml >"$work/off.yaml"
cp examples/rescore.yaml "$work/default.yaml"
sed -e 's/budget_per_second: 50 /budget_per_second: 1000000 /' \
    -e 's/sample_rate: 0.01 /sample_rate: 1.0 /' examples/rescore.yaml >"$work/all.yaml"
for c in off default all; do
  # Relative paths in the config are resolved against its folder.
  sed -i -e "s|\.\./|$PWD/|g" "$work/$c.yaml"
done
grep -q 'sample_rate: 1.0' "$work/all.yaml" && ! grep -q '^models:' "$work/off.yaml"

measure() { # mode -> "seconds records/s rescored rescore_seconds"
  local best=""
  for _ in 1 2; do
    /usr/bin/time -f '%e %M' -o "$work/time" \
      "$bin" replay --config "$work/$1.yaml" --input "$work/in.jsonl" --no-progress >"$work/stdout" 2>"$work/summary" \
      || { cat "$work/summary" >&2; exit 1; }
    local secs kb rescored busy
    read -r secs kb <"$work/time"
    rescored=$(awk '$1 == "re-scored" {print $2}' "$work/summary")
    busy=$(awk '$1 == "re-scoring" && $2 == "time" {print $3}' "$work/summary")
    if [ -z "$best" ] || awk -v a="$secs" -v b="${best%% *}" 'BEGIN { exit !(a < b) }'; then
      best="$secs $kb ${rescored:-0} ${busy:-0}"
    fi
  done
  echo "$best"
}

machine
echo
echo "| re-scoring | records | seconds | records/s | vs off | re-scored | re-scoring s | re-scored/s | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
base=""
for mode in off default all; do
  read -r secs kb rescored busy < <(measure "$mode")
  [ -n "$base" ] || base=$secs
  awk -v m="$mode" -v n="$n" -v s="$secs" -v kb="$kb" -v r="$rescored" -v b="$busy" -v base="$base" 'BEGIN {
    rate = (b > 0) ? sprintf("%.0f", r / b) : "-"
    printf "| %s | %d | %.2f | %.0f | %+.1f%% | %d | %.2f | %s | %.0f |\n",
      m, n, s, n / s, 100 * (n / s - n / base) / (n / base), r, b, rate, kb / 1024 }'
done
