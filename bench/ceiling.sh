#!/usr/bin/env bash
# How fast replay can be on this machine whatever the rules cost: the generator's benign
# records read, decoded and windowed with one near-free rule (`ingest.bad_records`, on
# the pipeline's own counts: no client, drift or performance table is computed), on one
# decoding thread and on every core, next to the default rules and to Python's
# `json.loads` of the same lines. Three runs each, median (range).
#
#   bench/ceiling.sh [EVENTS]        default: 1000000
#
# BIN as for the other scripts.
set -euo pipefail
source "$(dirname "$0")/common.sh"
events=${1:-1000000}
cores=$(nproc)

"$bin" gen --scenario benign --seed 1 --events "$events" --out "$work/benign.jsonl" 2>/dev/null
mkdir -p "$work/ingest-only"
cp queries/ingest.yaml "$work/ingest-only/"
# examples/replay.yaml with absolute paths, the rules folder and decoding threads given.
config() { # name queries threads
  sed -e "s|^queries: .*|queries: $2|" -e "s|^decode:|decode:\n  threads: $3|" \
    examples/replay.yaml >"$work/$1.yaml"
  echo "$work/$1.yaml"
}

med() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { printf "%s (%s–%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

loads=()
for _ in 1 2 3; do
  loads+=("$(python3 -c 'import time, json, sys; t = time.time(); n = sum(1 for l in open(sys.argv[1], "rb") if json.loads(l)); print(round(n / (time.time() - t)))' "$work/benign.jsonl")")
done
base=$(median "${loads[@]}")

machine
echo "$events benign records; Python's json.loads: $(med "${loads[@]}") lines/s"
echo
echo "| rules | decoding threads | records/s | × json.loads | CPU s (user + system) |"
echo "|---|---:|---:|---:|---:|"
row() { # label queries threads
  local cfg rates=() cpus=()
  cfg=$(config "run" "$2" "$3")
  for _ in 1 2 3; do
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$bin" replay --config "$cfg" \
      --input "$work/benign.jsonl" --no-progress >/dev/null 2>"$work/summary" \
      || { cat "$work/summary" >&2; exit 1; }
    read -r secs user sys <"$work/time"
    rates+=("$(awk -v n="$events" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')")
    cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')")
  done
  local r
  r=$(median "${rates[@]}")
  echo "| $1 | $3 | $(med "${rates[@]}") | $(awk -v r="$r" -v b="$base" 'BEGIN { printf "%.1f", r / b }') | $(med "${cpus[@]}") |"
}
row "ingest.bad_records only" "$work/ingest-only" 1
row "ingest.bad_records only" "$work/ingest-only" "$cores"
row "default" "$PWD/queries" 1
row "default" "$PWD/queries" "$cores"
