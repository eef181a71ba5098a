#!/usr/bin/env bash
# The report's cost: replay throughput, CPU time (user + system, less swayed by other
# tenants of a shared machine than the wall clock) and peak memory with `--report` and
# without, run
# alternately (off on on off ...), medians; with it, the time the run spent keeping the
# report's windows and alerts (last run), the page's size, the time to render
# and write it, and the time headless Chromium takes to start, load it and take a
# screenshot (the browser's own start included).
#
#   bench/report.sh [ROUNDS]        default: 3 rounds
#
# Inputs: 1,000,000 records of the generator's `mixed` scenario (examples/replay.yaml),
# and, when bench/eval_detection.sh has cached them, the evaluation generator's digits
# and cancer hours with their delayed labels (seed 2, the config eval_detection.sh
# wrote; EVAL_CACHE, default ~/.cache/eval-traffic).
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/common.sh"
cache=${EVAL_CACHE:-$HOME/.cache/eval-traffic}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run() { # on|off config input [labels] -> "records/s peakMiB cpu-seconds"
  local mode=$1 config=$2 input=$3 labels=${4:-}
  local args=(replay --log-format json --config "$config" --input "$input" --no-progress)
  [ -n "$labels" ] && args+=(--labels "$labels")
  [ "$mode" = on ] && args+=(--report "$work/report.html")
  INFERWATCH_LOG=info /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$bin" "${args[@]}" >/dev/null 2>"$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  local n secs kb user sys
  n=$(awk '/records read/ {print $NF; exit}' "$work/err")
  read -r secs kb user sys <"$work/time"
  awk -v n="$n" -v s="$secs" -v kb="$kb" -v u="$user" -v y="$sys" \
    'BEGIN { printf "%.0f %.0f %.2f\n", n / s, kb / 1024, u + y }'
  if [ "$mode" = on ]; then
    sed -n 's/.*"report written".*"bytes":\([0-9]*\),"render_ms":\([0-9]*\),"keeping_ms":\([0-9]*\).*/\1 \2 \3/p' \
      "$work/err" >"$work/written"
    # Opening it: headless Chromium's start, load and first paint (a screenshot).
    /usr/bin/time -f '%e' -o "$work/open" chromium --headless --no-sandbox --disable-gpu \
      --user-data-dir="$work/chromium" --screenshot="$work/report.png" \
      "file://$work/report.html" >/dev/null 2>&1 || echo "chromium failed" >&2
    cat "$work/open" >>"$work/opens"
  fi
}

measure() { # name config input [labels]
  local name=$1
  shift
  : >"$work/off"
  : >"$work/on"
  : >"$work/opens"
  for ((i = 0; i < rounds; i++)); do
    if ((i % 2 == 0)); then
      run off "$@" >>"$work/off"
      run on "$@" >>"$work/on"
    else
      run on "$@" >>"$work/on"
      run off "$@" >>"$work/off"
    fi
  done
  local off on rss_off rss_on bytes ms
  off=$(cut -d' ' -f1 "$work/off" | median)
  on=$(cut -d' ' -f1 "$work/on" | median)
  rss_off=$(cut -d' ' -f2 "$work/off" | median)
  rss_on=$(cut -d' ' -f2 "$work/on" | median)
  local cpu_off cpu_on
  cpu_off=$(cut -d' ' -f3 "$work/off" | median)
  cpu_on=$(cut -d' ' -f3 "$work/on" | median)
  local keep
  read -r bytes ms keep <"$work/written"
  local opens
  opens=$(median <"$work/opens")
  awk -v name="$name" -v a="$off" -v b="$on" -v ra="$rss_off" -v rb="$rss_on" -v by="$bytes" -v ms="$ms" -v op="$opens" -v kp="$keep" -v ca="$cpu_off" -v cb="$cpu_on" \
    'BEGIN { printf "| %s | %.0f | %.0f | %+.1f %% | %.2f | %.2f | %+.1f %% | %d | %d | %d | %.2f | %d | %.2f |\n", name, a, b, 100 * (b / a - 1), ca, cb, 100 * (cb / ca - 1), ra, rb, kp, by / 1048576, ms, op }'
}

machine
echo "$rounds rounds each, order alternating; medians"
echo
echo "| input | records/s, report off | records/s, report on | change | CPU s, off | CPU s, on | change | peak RSS off (MiB) | peak RSS on (MiB) | keeping (ms) | report (MiB) | render + write (ms) | open in Chromium (s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
"$bin" gen --scenario mixed --seed 1 --events 1000000 --out "$work/mixed.jsonl" 2>/dev/null
measure "generator, mixed, 1M records" examples/replay.yaml "$work/mixed.jsonl"
rm -f "$work/mixed.jsonl"
for model in digits cancer; do
  base="$cache/out/eval-$model-s2"
  data="$base.jsonl"
  [ -f "$data" ] || data="$base.jsonl.gz"
  config="$cache/runs/$model/config.yaml"
  if [ -f "$data" ] && [ -f "$config" ]; then
    measure "eval $model hour, labels" "$config" "$data" "$base.ground_truth.jsonl.gz"
  else
    echo "(no cached $model hour: run bench/eval_detection.sh $model 2 first)" >&2
  fi
done
