#!/usr/bin/env bash
# Per-client state at scale: a day of benign traffic (50 records/s, 4.32M records) from
# N distinct honest clients, replayed with the default rules and a state directory:
# throughput, peak memory, client profiles held and evicted at the end, and the size
# and write time of the final checkpoint (which holds every profile). The last column
# checks the profile memory estimate against the memory the profiles really take: peak
# RSS above that of the same day from 100 clients, over the peak of the estimate (the
# profiles and the earlier copies a checkpoint being written still holds) above its own.
#
#   bench/clients.sh [CLIENTS...]     default: 10000 100000 1000000
set -euo pipefail
source "$(dirname "$0")/common.sh"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(10000 100000 1000000)
value() { awk -v k="$1" 'index($0, k) == 3 { print $NF; exit }' "$work/summary"; }
machine
echo
echo "| clients | records | seconds | records/s | peak RSS (MiB) | profiles at end | profile memory (est.) | peak estimate | evicted idle | evicted memory | checkpoint (MB) | checkpoint write (ms) | RSS / peak estimate (above 100 clients) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
base_kb=
base_est=
for n in 100 "${counts[@]}"; do
  "$bin" gen --scenario benign --seed 1 --events 4320000 --rate 50 --clients "$n" --out "$work/day.jsonl" 2>/dev/null
  rm -rf "$work/state"
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" replay --config examples/replay.yaml \
    --input "$work/day.jsonl" --no-progress --state-dir "$work/state" >"$work/stdout" 2>"$work/summary" \
    || { cat "$work/summary" >&2; exit 1; }
  read -r secs kb <"$work/time"
  ckpt=$(sed -n 's/.*last checkpoint .*, \([0-9]*\) bytes, written in \([0-9.]*\) ms.*/\1 \2/p' "$work/summary")
  read -r cbytes cms <<<"$ckpt"
  est=$(awk 'index($0, "profile memory") == 3 { print $3; exit }' "$work/summary")
  peak=$(sed -n 's/.*profile memory .*(peak \([0-9.]*\) MiB.*/\1/p' "$work/summary")
  if [ -z "$base_kb" ]; then
    base_kb=$kb base_est=$peak
    echo "| $n (base) | 4320000 | $secs | $(awk -v s="$secs" 'BEGIN{printf "%.0f", 4320000/s}') | $((kb / 1024)) | $(value 'client profiles') | $est MiB | $peak MiB | | | | | |"
    continue
  fi
  ratio=$(awk -v kb="$kb" -v b="$base_kb" -v e="$peak" -v be="$base_est" 'BEGIN { printf "%.2f", (kb - b) / 1024 / (e - be) }')
  echo "| $n | 4320000 | $secs | $(awk -v s="$secs" 'BEGIN{printf "%.0f", 4320000/s}') | $((kb / 1024)) | $(value 'client profiles') | $est MiB | $peak MiB | $(value 'evicted (idle)') | $(value 'evicted (memory)') | $(awk -v b="$cbytes" 'BEGIN{printf "%.1f", b/1e6}') | $cms | $ratio |"
  rm -f "$work/day.jsonl"
done
