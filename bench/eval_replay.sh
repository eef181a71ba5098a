#!/usr/bin/env bash
# Replay throughput on the independent evaluation traffic: the hours and configs that
# bench/eval_detection.sh generates and writes (run it first for the models and seed
# asked for here): the default rules and its performance probe rule, model re-scoring
# on, with their delayed labels. Dead letters go to the eval cache's run folder, as
# there.
# Each row is the median of RUNS replays (range in brackets) of the hour unpacked to a
# plain file first (so that gunzip is not measured), with CPU time and peak memory.
#
#   bench/eval_replay.sh [MODELS] [SEED]        default: "digits cancer" 2
#
# RUNS (default 3); EVAL_CACHE as for bench/eval_detection.sh; BIN as for the others.
set -euo pipefail
source "$(dirname "$0")/common.sh"
read -r -a models <<<"${1:-digits cancer}"
seed=${2:-2}
runs=${RUNS:-3}
cache="${EVAL_CACHE:-$HOME/.cache/eval-traffic}"

machine
echo "binary: $bin; median of $runs runs (range)"
echo
echo "| hour | records | records/s | CPU s (user + system) | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|"
for model in "${models[@]}"; do
  base="$cache/out/eval-$model-s$seed"
  run="$cache/runs/$model"
  if [ ! -f "$run/config.yaml" ] || [ ! -f "$base.ground_truth.jsonl.gz" ]; then
    echo "| $model s$seed | not generated: run bench/eval_detection.sh $model $seed first | | | |"
    continue
  fi
  if [ -f "$base.jsonl" ]; then data="$base.jsonl"; else
    data="$work/$model.jsonl"
    gzip -dc "$base.jsonl.gz" >"$data"
  fi
  records=$(wc -l <"$data")
  rates=() cpus=() rss=()
  for _ in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" replay --config "$run/config.yaml" \
      --input "$data" --labels "$base.ground_truth.jsonl.gz" --no-progress \
      --alerts-out "$work/alerts.jsonl" >/dev/null 2>"$work/summary" \
      || { cat "$work/summary" >&2; exit 1; }
    rm -f "$work/alerts.jsonl"
    read -r secs user sys kb <"$work/time"
    rates+=("$(awk -v n="$records" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')")
    cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')")
    rss+=($((kb / 1024)))
  done
  med() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { printf "%s (%s-%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }
  echo "| $model s$seed | $records | $(med "${rates[@]}") | $(med "${cpus[@]}") | $(med "${rss[@]}") |"
done
