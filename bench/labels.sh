#!/usr/bin/env bash
# Delayed labels at scale: N predictions of a 10-class model (1,000 a second, ~200 B each,
# probabilities logged) replayed with and without their labels, the labels arriving
# `DELAY` seconds after each prediction (default 1200: at 1M predictions the whole last
# 20 minutes, 1.2M at its peak, wait for their labels at once). Throughput, peak RSS, the
# predictions waiting at the peak, and the final checkpoint (which holds them).
#
#   bench/labels.sh [N]     default 1000000; DELAY=seconds, RUNS=3
set -euo pipefail
source "$(dirname "$0")/common.sh"
n="${1:-1000000}"
delay="${DELAY:-1200}"
runs="${RUNS:-3}"
python3 - "$n" "$delay" "$work" <<'PY'
import json, random, sys
n, delay, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(1)
t0 = 1795255200000
classes = [str(c) for c in range(10)]
labels = []
with open(f"{work}/predictions.jsonl", "w") as out:
    for i in range(n):
        ts = t0 + i  # 1,000 a second
        truth = rnd.randrange(10)
        answer = truth if rnd.random() < 0.9 else rnd.randrange(10)
        probs = [0.01] * 10
        probs[answer] = 0.91
        rec = {"ts": ts, "request_id": f"r-{i}", "client_id": f"key-{i % 500}",
               "model": "m", "model_version": "1", "features": {"x": rnd.random()},
               "prediction": {"label": classes[answer], "score": 0.91, "probs": probs}}
        out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        labels.append((ts + delay * 1000, i, truth))
with open(f"{work}/labels.jsonl", "w") as out:
    for ts, i, truth in labels:
        out.write(json.dumps({"request_id": f"r-{i}", "ts": ts, "model": "m",
                              "label": classes[truth]}, separators=(",", ":")) + "\n")
PY
cat >"$work/config.yaml" <<YAML
source: {type: file, paths: []}
decode:
  features: [{name: x, type: numerical}]
queries: $(pwd)/queries
alerts: {stdout: false}
labels:
  source: {type: file, paths: [$work/labels.jsonl]}
  classes: {m: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]}
  max_pending: 2000000
YAML
machine
echo "predictions: $n, labels $delay s after each; $runs runs each, median"
echo
echo "| labels | records/s | peak RSS (MiB) | labels joined | waiting at the peak | checkpoint (MB) | checkpoint write (ms) | longest checkpoint pause (ms) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in off on; do
  rates=() rss=()
  for r in $(seq "$runs"); do
    rm -rf "$work/state"
    args=(replay --config "$work/config.yaml" --input "$work/predictions.jsonl" --no-progress --state-dir "$work/state")
    [ "$mode" = on ] && args+=(--labels "$work/labels.jsonl")
    if [ "$mode" = off ]; then
      grep -v '^labels:\|^  source: {type: file, paths: \[.*labels\|^  classes\|^  max_pending' "$work/config.yaml" >"$work/plain.yaml"
      args[2]="$work/plain.yaml"
    fi
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" "${args[@]}" >"$work/stdout" 2>"$work/summary" \
      || { cat "$work/summary" >&2; exit 1; }
    read -r secs kb <"$work/time"
    rates+=("$(awk -v s="$secs" -v n="$n" 'BEGIN{printf "%.0f", n/s}')")
    rss+=("$((kb / 1024))")
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  ckpt=$(sed -n 's/.*last checkpoint .*, \([0-9]*\) bytes, written in \([0-9.]*\) ms.*/\1 \2/p' "$work/summary")
  read -r cbytes cms <<<"$ckpt"
  joined=$(awk 'index($0, "labels joined") == 3 { print $NF }' "$work/summary")
  pause=$(awk 'index($0, "longest pause (ms)") == 3 { print $NF }' "$work/summary")
  echo "| $mode | $(median "${rates[@]}") (${rates[*]}) | $(median "${rss[@]}") | ${joined:--} | $([ "$mode" = on ] && echo "$n" || echo -) | $(awk -v b="$cbytes" 'BEGIN{printf "%.1f", b/1e6}') | $cms | ${pause:--} |"
done
