#!/usr/bin/env python3
"""Evidently's data-drift report against inferwatch on the same data, side by side.

    bench/evidently.sh [ROWS]      (default 1,000,000; sets up the Python tools itself)

Writes a reference and a current Parquet file of ROWS rows each, 16 numeric and 4
categorical columns, some of them drifted. Then times
  - Evidently: Report([DataDriftPreset()]).run(current, reference) on pandas frames
    already in memory (reading the files is not counted for it);
  - inferwatch: `baseline build` of the reference file and `baseline compare` of the
    current file, whole processes (reading the files included);
and prints both times, their ratio, and each column's verdict and value from both tools.
The binary is $INFERWATCH (default target/release/inferwatch).
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
BIN = os.environ.get("INFERWATCH", "target/release/inferwatch")


def frame(seed, drifted):
    """16 numeric, 4 categorical columns; `drifted` moves the columns marked d below."""
    r = np.random.default_rng(seed)
    n = ROWS
    s = 1.0 if drifted else 0.0
    cols = {
        "n00_normal_d": r.normal(0.3 * s, 1.0, n),
        "n01_lognormal_d": r.lognormal(0.15 * s, 0.5, n),
        "n02_uniform": r.uniform(0, 100, n),
        "n03_exponential_d": r.exponential(2.0 + 0.6 * s, n),
        "n04_poisson": r.poisson(3.0, n).astype(np.float64),
        "n05_normal": r.normal(50, 10, n),
        "n06_beta_d": r.beta(2.0 + 0.8 * s, 5.0, n),
        "n07_steps_d": r.choice(4, n, p=[0.4, 0.3, 0.2, 0.1] if not drifted
                                else [0.2, 0.3, 0.2, 0.3]).astype(np.float64),
        "n08_gamma": r.gamma(2.0, 2.0, n),
        "n09_normal": r.normal(-5, 2, n),
        "n10_uniform": r.uniform(-1, 1, n),
        "n11_lognormal": r.lognormal(1.0, 0.8, n),
        "n12_normal": r.normal(0, 100, n),
        "n13_weibull": r.weibull(1.5, n),
        "n14_laplace": r.laplace(0, 1, n),
        "n15_chisquare": r.chisquare(4, n),
    }
    five = [f"k{i}" for i in range(5)]
    cols["c00_five_d"] = r.choice(five, n, p=[0.4, 0.3, 0.15, 0.1, 0.05] if not drifted
                                  else [0.2, 0.3, 0.15, 0.1, 0.25])
    cols["c01_fifty"] = r.choice([f"v{i:02}" for i in range(50)], n)
    cols["c02_binary"] = r.choice(["yes", "no"], n, p=[0.3, 0.7])
    zipf = np.array([1 / (i + 1) for i in range(10)])
    cols["c03_zipf"] = r.choice([f"z{i}" for i in range(10)], n, p=zipf / zipf.sum())
    return pd.DataFrame(cols)


def main():
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = frame(1, False), frame(2, True)
    numeric = [c for c in ref.columns if c.startswith("n")]
    categorical = [c for c in ref.columns if c.startswith("c")]
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        ref.to_parquet(d / "ref.parquet")
        cur.to_parquet(d / "cur.parquet")

        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        t = time.perf_counter()
        result = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition))
        evidently_s = time.perf_counter() - t
        ev = {}
        for m in result.dict()["metrics"]:
            cfg = m["config"]
            if cfg.get("type", "").endswith("ValueDrift"):
                p_value = "p_value" in cfg["method"].lower()
                v = m["value"]
                ev[cfg["column"]] = (cfg["method"], v, v < cfg["threshold"] if p_value
                                     else v >= cfg["threshold"])

        t = time.perf_counter()
        subprocess.run([BIN, "baseline", "build", "--model", "bench", "--input",
                        str(d / "ref.parquet"), "--out", str(d / "ref.baseline")],
                       check=True, capture_output=True)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        out = subprocess.run([BIN, "baseline", "compare", "--baseline", str(d / "ref.baseline"),
                              "--input", str(d / "cur.parquet"), "--json"],
                             check=True, capture_output=True, text=True)
        compare_s = time.perf_counter() - t
        dw = {}
        for line in out.stdout.splitlines():
            row = json.loads(line)
            dw[row["feature"]] = (row["test"], row.get("statistic"), row["drifted"])

    print(f"rows per file: {ROWS:,}; {len(numeric)} numeric + {len(categorical)} categorical columns")
    print()
    print("| tool | what is timed | seconds |")
    print("|---|---|---:|")
    print(f"| Evidently {__import__('evidently').__version__} | DataDriftPreset report (frames in memory) | {evidently_s:.2f} |")
    print(f"| inferwatch | `baseline build` of the reference file (once per training set) | {build_s:.2f} |")
    print(f"| inferwatch | `baseline compare` of the current file | {compare_s:.2f} |")
    print()
    print(f"Evidently / inferwatch compare: {evidently_s / compare_s:.0f}x; "
          f"Evidently / (build + compare): {evidently_s / (build_s + compare_s):.0f}x")
    print()
    print("| column | Evidently test | Evidently value | drifted | inferwatch test | inferwatch value | drifted | same verdict |")
    print("|---|---|---:|---|---|---:|---|---|")
    same = 0
    for c in numeric + categorical:
        em, ev_v, ed = ev[c]
        dt, dv, dd = dw.get(c, ("-", None, None))
        same += ed == dd
        dv_s = f"{dv:.4f}" if dv is not None else "-"
        print(f"| {c} | {em} | {ev_v:.4f} | {ed} | {dt} | {dv_s} | {dd} | {'yes' if ed == dd else 'NO'} |")
    print()
    print(f"same verdict on {same} of {len(numeric) + len(categorical)} columns")


if __name__ == "__main__":
    main()
