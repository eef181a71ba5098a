#!/usr/bin/env bash
# Replay throughput and peak memory, end to end, with the default rules.
#
#   bench/replay.sh [EVENTS...]        default: 1000000 5000000
#
# Builds the release binary, generates benign traffic (and a copy with 1% malformed
# records spread evenly, the worst case an attacker can force on the decoder), replays
# each file, and prints a Markdown table: records, seconds, records/s, peak RSS.
set -euo pipefail
source "$(dirname "$0")/common.sh"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 5000000)

measure() { # name file records
  local name=$1 file=$2 n=$3
  /usr/bin/time -f '%e %M' -o "$work/time" \
    "$bin" replay --config examples/replay.yaml --input "$file" --no-progress >"$work/stdout" 2>"$work/summary" \
    || { cat "$work/summary" >&2; exit 1; }
  read -r secs kb <"$work/time"
  local bad
  bad=$(awk '/bad \(dead letter\)/ {print $NF}' "$work/summary")
  awk -v name="$name" -v n="$n" -v bad="$bad" -v s="$secs" -v kb="$kb" \
    'BEGIN { printf "| %s | %d | %d | %.2f | %.0f | %.0f |\n", name, n, bad, s, n / s, kb / 1024 }'
}

machine
echo
echo "| input | records | bad | seconds | records/s | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
  "$bin" gen --scenario benign --seed 1 --events "$n" --out "$work/benign.jsonl" 2>/dev/null
  measure "benign" "$work/benign.jsonl" "$n"
  # 1% garbage, evenly spread: every 100th line cut in half.
  awk 'NR % 100 == 0 { print substr($0, 1, length($0) / 2); next } { print }' "$work/benign.jsonl" >"$work/garbage.jsonl"
  measure "benign, 1% truncated" "$work/garbage.jsonl" "$n"
  rm -f "$work/benign.jsonl" "$work/garbage.jsonl"
done
