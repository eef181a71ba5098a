#!/usr/bin/env python3
"""Reference values for src/stats from SciPy: writes src/stats/fixtures.json.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/stats_requirements.txt
    .venv/bin/python scripts/stats_fixtures.py

The inputs are generated here with a fixed seed, so the file is the same on every run
with the pinned versions.
"""
import json
import pathlib

import numpy as np
from scipy import stats

rng = np.random.default_rng(20261123)
cases = []


def add(name, x):
    x = [float(v) for v in x]
    w, p = stats.shapiro(x)
    cases.append({"name": name, "x": x, "w": float(w), "p": float(p)})


add("n3", [1.0, 2.0, 4.0])
add("n3_near_equal", [1.0, 1.0, 1.5])
add("n4", [0.3, 1.1, 2.7, 2.8])
add("n5", [5.1, 4.9, 6.2, 5.8, 7.0])
add("n6", rng.normal(size=6))
add("n11_uniform", rng.uniform(size=11))
add("n12_normal", rng.normal(10, 2, size=12))
add("n20_exponential", rng.exponential(size=20))
add("n50_normal", rng.normal(size=50))
add("n100_lognormal", rng.lognormal(size=100))
add("n200_uniform", rng.uniform(-3, 3, size=200))
add("n500_normal", rng.normal(5, 0.1, size=500))
add("n1000_gamma", rng.gamma(2.0, size=1000))
add("n2000_normal", rng.normal(size=2000))
add("n5000_mixture", np.concatenate([rng.normal(0, 1, 2500), rng.normal(4, 1, 2500)]))
add("ties", [1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5, 5, 6])
add("large_offset", 1e6 + rng.normal(size=40))

entropy = []
for counts in ([1], [1, 1], [3, 1], [10, 0, 5, 5], [1] * 8, [100, 1, 1, 1]):
    entropy.append({"counts": counts, "bits": float(stats.entropy(counts, base=2))})

out = pathlib.Path(__file__).resolve().parent.parent / "src" / "stats" / "fixtures.json"
out.write_text(json.dumps({"scipy": __import__("scipy").__version__,
                           "shapiro": cases, "entropy": entropy}, indent=1) + "\n")
print(f"wrote {out}")
