#!/usr/bin/env bash
# How throughput scales with threads (decoding, and a window's tables) and with record
# width. Records are made
# here (Python, standard library): RECORDS records from 200 clients, each with WIDTH
# numeric features (normal, one decimal place, ~7 bytes each), about 16 records/s of
# event time. Each cell is a replay with the default rules (the drift and per-client
# tables on every declared feature), the median of RUNS runs.
#
#   bench/scaling.sh [THREADS] [DECLARED]     default: "1/1 1/2 2/2" "10 64 256"
#
# Table 1: records with 256 features, DECLARED of them in the config (cost should follow
# what the tables read, not the record). Table 2: the 64-feature records, per
# DECODE/TABLES threads (`decode.threads` / `engine.table_threads`; 1/1 runs everything
# on two threads, reading+decoding and the rest). RECORDS (default 300000), RUNS (3).
set -euo pipefail
source "$(dirname "$0")/common.sh"
read -r -a threads <<<"${1:-1/1 1/2 2/2}"
for t in "${threads[@]}"; do
  [[ "$t" =~ ^[0-9]+/[0-9]+$ ]] || { echo "threads are DECODE/TABLES pairs (1/2), not $t" >&2; exit 2; }
done
read -r -a declared <<<"${2:-10 64 256}"
records=${RECORDS:-300000}
runs=${RUNS:-3}
width=256

python3 - "$work/wide.jsonl" "$records" "$width" <<'PY'
import json, random, sys
path, n, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
start = 1_795_000_000_000  # ms
with open(path, "w") as out:
    for i in range(n):
        client = f"c{rng.randrange(200)}"
        feats = {f"f{j}": round(rng.gauss(j % 7, 1 + j % 3), 1) for j in range(width)}
        p = rng.random()
        rec = {
            "ts": start + i * 60,
            "request_id": f"r{i}",
            "client_id": client,
            "model": "wide",
            "model_version": "1",
            "latency_ms": round(rng.uniform(1, 20), 2),
            "prediction": {"label": "yes" if p > 0.5 else "no", "score": round(max(p, 1 - p), 4),
                           "probs": [round(1 - p, 4), round(p, 4)]},
            "features": feats,
        }
        out.write(json.dumps(rec, separators=(",", ":")) + "\n")
PY
bytes=$(stat -c %s "$work/wide.jsonl")

config() { # $1 = declared features, $2 = DECODE/TABLES threads (or "default")
  {
    echo "source: {type: file, paths: []}"
    [ "$2" = default ] || echo "engine: {table_threads: ${2#*/}}"
    echo "decode:"
    [ "$2" = default ] || echo "  threads: ${2%/*}"
    echo "  features:"
    for j in $(seq 0 $(($1 - 1))); do echo "    - {name: f$j, type: numerical}"; done
    echo "time: {allowed_lateness: 5s}"
    echo "queries: $PWD/queries"
    echo "dead_letter: {path: $work/dead-letters.jsonl}"
    echo "alerts: {stdout: false}"
  } >"$work/cfg.yaml"
}
median_rate() { # median records/s and peak RSS (MiB) of $runs replays of $1
  local rates=() rss=()
  for _ in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" replay --config "$work/cfg.yaml" \
      --input "$1" --no-progress >"$work/stdout" 2>"$work/summary" || { cat "$work/summary" >&2; exit 1; }
    read -r secs kb <"$work/time"
    rates+=("$(awk -v n="$records" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')")
    rss+=($((kb / 1024)))
  done
  printf '%s\n' "${rates[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%s (%s-%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'
  printf ' | '
  printf '%s\n' "${rss[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

machine
echo "$records records of $width features, $((bytes / records)) bytes each; median of $runs runs (range)"
echo
echo "| features declared (of $width in the record) | records/s | peak RSS (MiB) |"
echo "|---:|---:|---:|"
for d in "${declared[@]}"; do
  config "$d" default
  median_rate "$work/wide.jsonl" >"$work/row" # not in $(…): a failed replay stops the script
  echo "| $d | $(cat "$work/row") |"
done

# The 64-feature records: the first 64 features only.
python3 - "$work/wide.jsonl" "$work/w64.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        r = json.loads(line)
        r["features"] = {f"f{j}": r["features"][f"f{j}"] for j in range(64)}
        out.write(json.dumps(r, separators=(",", ":")) + "\n")
PY
echo
echo "| decoding / table threads (64 features) | records/s | peak RSS (MiB) |"
echo "|---:|---:|---:|"
for t in "${threads[@]}"; do
  config 64 "$t"
  median_rate "$work/w64.jsonl" >"$work/row"
  echo "| $t | $(cat "$work/row") |"
done
