#!/usr/bin/env bash
# Detection on traffic nobody here wrote: the independent evaluation generator in
# ../shared/eval-traffic (real scikit-learn models in ONNX, attacks made with IBM's
# Adversarial Robustness Toolbox, a truth file per hour). For each model and seed it
# generates the hour (or reuses the cached one), builds the user's config the way its
# README says a monitor is set up — the model's baseline from its reference (training)
# CSV, its ONNX file pinned to the provenance sha256, the squeezing threshold from
# `model calibrate` on the held-out CSV at 5 % FPR, the default rules — replays the
# hour with its delayed ground-truth labels, and scores the alerts against the truth
# (bench/eval_score.py).
#
#   bench/eval_detection.sh [MODELS] [SEEDS]     default: "digits cancer" "2 3 4 5 6"
#
# EVAL_SRC     the generator (default ../shared/eval-traffic beside this checkout)
# EVAL_CACHE   venv, generated hours, configs (default ~/.cache/eval-traffic); an hour
#              takes 3-5 min to generate on 2 cores, once per model and seed
# BIN          the inferwatch binary (default: the release build, built if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a models <<<"${1:-digits cancer}"
read -r -a seeds <<<"${2:-2 3 4 5 6}"
src="$(cd "${EVAL_SRC:-../shared/eval-traffic}" && pwd)"
cache="${EVAL_CACHE:-$HOME/.cache/eval-traffic}"
mkdir -p "$cache/out" "$cache/runs"
if [ -z "${BIN:-}" ]; then
  # The same target folder and linker as scripts/test.sh and the other benchmarks:
  # a build they made is reused, not redone.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inferwatch/target}"
  if command -v mold >/dev/null 2>&1; then
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
  fi
  cargo build --release --locked --quiet
  BIN="$CARGO_TARGET_DIR/release/inferwatch"
fi
bin="$(realpath "$BIN")"

if [ ! -x "$cache/venv/bin/python" ]; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q -r "$src/requirements.txt"
fi
py="$cache/venv/bin/python"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -m); $(date -u +%F)"
echo "binary: $bin ($("$bin" --version 2>/dev/null || echo unknown))"
echo
echo "| model | seed | episode | caught | attacker queries until the alert | minutes from its start | first rule (all rules) |"
echo "|---|---|---|---|---:|---:|---|"
for model in "${models[@]}"; do
  run="$cache/runs/$model"
  mkdir -p "$run"
  meta="$src/models/$model.json"
  # The user's config: the model as its provenance file describes it.
  write_config() { # $1 = squeezing threshold, or empty
    "$py" - "$meta" "$src" "$run" "$1" "$run/queries" >"$run/config.yaml" <<'EOF'
import json, sys
meta_path, src, run, threshold, queries = sys.argv[1:6]
m = json.load(open(meta_path))
name = m["model"]
feats = m["features"]
classes = m["classes"]
out = m["onnx_output"]
print(f"""source:
  type: file
  paths: []
time:
  allowed_lateness: 5s
queries: {queries}
baselines: [{run}/baseline.json]
models:
  - name: {name}
    path: {src}/models/{m['onnx_file']}
    sha256: {m['sha256']}
    version: "{m['model_version']}"
    labels: {json.dumps(classes)}
    probabilities_output: {out}
    features: {json.dumps(feats)}""")
if threshold:
    print(f"""    squeeze:
      threshold: {threshold}""")
print(f"""dead_letter:
  path: {run}/dead-letters.jsonl
alerts:
  stdout: false""")
EOF
  }
  # The default rules, and a probe that reports each window's performance row.
  rm -rf "$run/queries" && mkdir -p "$run/queries"
  cp queries/*.yaml bench/eval_rules/*.yaml "$run/queries/"
  write_config ""
  # The model's baseline: the features from its training CSV; its held-out performance
  # from the held-out CSV, whose true classes are those of the scikit-learn data set
  # rows it was split from (matched here by value), scored by the embedded model.
  "$py" - "$model" "$src/models/${model}_holdout.csv" >"$run/holdout_labelled.csv" <<'EOF'
import csv, sys
import numpy as np
from sklearn import datasets
model, path = sys.argv[1:3]
data = datasets.load_digits() if model == "digits" else datasets.load_breast_cancer()
names = [str(n) for n in data.target_names]
rows = list(csv.reader(open(path)))
out = csv.writer(sys.stdout)
out.writerow(rows[0] + ["true_label"])
for r in rows[1:]:
    x = np.array([float(v) for v in r])
    hit = np.flatnonzero(np.all(np.isclose(data.data, x, rtol=1e-9, atol=1e-12), axis=1))
    if len(hit):
        out.writerow(r + [names[data.target[hit[0]]]])
EOF
  "$bin" baseline build --model "$model" --input "$src/models/${model}_reference.csv" \
    --out "$run/baseline.json" --held-out "$run/holdout_labelled.csv" \
    --true-label-column true_label --config "$run/config.yaml" 2>"$run/baseline.err" >/dev/null \
    || { cat "$run/baseline.err" >&2; exit 1; }
  threshold=$("$bin" model calibrate --config "$run/config.yaml" --model "$model" \
    --input "$src/models/${model}_holdout.csv" --fpr 0.05 2>"$run/calibrate.err" \
    | grep -Eo 'threshold: *[0-9.eE+-]+' | grep -Eo '[0-9.eE+-]+$' || true)
  if [ -z "$threshold" ]; then
    echo "| $model | - | calibrate | **failed** | - | - | $(tr '\n' ' ' <"$run/calibrate.err" | cut -c1-200) |"
  fi
  write_config "$threshold"
  for seed in "${seeds[@]}"; do
    base="$cache/out/eval-$model-s$seed"
    if [ ! -f "$base.truth.json" ]; then
      (cd "$src" && "$py" gen_traffic.py --model "$model" --seed "$seed" --out "$base.jsonl" \
        --truth "$base.truth.json" --ground-truth "$base.ground_truth.jsonl.gz" \
        --accuracy-drop >"$base.gen.log" 2>&1)
    fi
    data="$base.jsonl"
    [ -f "$data" ] || data="$base.jsonl.gz"
    rm -f "$run/alerts-s$seed.jsonl"
    /usr/bin/time -f '%e s %M KiB' -o "$run/time-s$seed" \
      "$bin" replay --config "$run/config.yaml" --input "$data" --no-progress \
      --labels "$base.ground_truth.jsonl.gz" \
      --alerts-out "$run/alerts-s$seed.jsonl" >/dev/null 2>"$run/summary-s$seed"
    python3 bench/eval_score.py "$base.truth.json" "$run/alerts-s$seed.jsonl" \
      "$base.labels.csv.gz" "$model" "$seed"
  done
done
echo
for model in "${models[@]}"; do
  for seed in "${seeds[@]}"; do
    f="$cache/runs/$model/time-s$seed"
    [ -f "$f" ] && echo "replay $model s$seed: $(cat "$f")"
  done
done
