#!/usr/bin/env python3
"""Reference values for the drift statistics (src/stats/drift.rs) from SciPy: writes
src/stats/drift_fixtures.json.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/stats_requirements.txt
    .venv/bin/python scripts/drift_fixtures.py

Samples are drawn here with a fixed seed and rounded to 6 significant digits, so Rust
reads exactly the numbers SciPy saw. PSI, Jensen-Shannon and Hellinger are computed
on the binning Evidently uses (equal-width bins over both samples for a numeric column
with more than 20 distinct reference values, one bin per value otherwise; zero shares
replaced as Evidently does for PSI), written out here with NumPy/SciPy so the fixtures
need no Evidently install; the normed Wasserstein distance is Evidently's
(wasserstein_distance / max(std(reference), 0.001)). These are a second implementation
of the same rules, not a reference: scripts/evidently_fixtures.py checks PSI,
Jensen-Shannon, Wasserstein and Hellinger against Evidently's own functions.

The two-proportion Z-test has no SciPy function: z is written out below, and its
p-value is SciPy's chi2_contingency on the 2 x 2 table (without correction, z^2 is that
table's chi-square), so the p-value, at least, comes from a library.
"""
import json
import math
import pathlib

import numpy as np
from scipy import stats
from scipy.spatial import distance

rng = np.random.default_rng(20261124)


def r6(x):
    return [float(f"{v:.6g}") for v in x]


ks = []


def add_ks(name, a, b):
    a, b = r6(a), r6(b)
    # inferwatch computes the exact p-value up to 10^6 pairs (SciPy's auto: up to
    # 10,000 values each), the asymptotic one beyond.
    method = "exact" if len(a) * len(b) <= 1_000_000 else "asymp"
    res = stats.ks_2samp(a, b, method=method)
    ks.append({"name": name, "a": a, "b": b,
               "statistic": float(res.statistic), "p": float(res.pvalue)})


add_ks("equal_n5", rng.normal(size=5), rng.normal(size=5))
add_ks("unequal_20_35", rng.normal(size=20), rng.normal(0.5, 1, size=35))
add_ks("shifted_100_100", rng.normal(size=100), rng.normal(1.0, 1, size=100))
add_ks("discrete_ties", rng.integers(0, 5, size=60), rng.integers(0, 6, size=45))
add_ks("identical_constant", [3.0] * 10, [3.0] * 7)
add_ks("disjoint", rng.uniform(0, 1, size=30), rng.uniform(2, 3, size=40))
add_ks("n1000_n800", rng.normal(size=1000), rng.normal(0.05, 1, size=800))
add_ks("n3000_n4000", rng.gamma(2.0, size=3000), rng.gamma(2.1, size=4000))
add_ks("n9999_n37", rng.normal(size=9999), rng.normal(0.2, 1, size=37))
# Past 10^6 pairs inferwatch switches to the asymptotic distribution.
add_ks("asymp_n10001_n60", rng.normal(size=10001), rng.normal(0.3, 1, size=60))
add_ks("asymp_n12000_n500", rng.normal(size=12000), rng.normal(0.05, 1, size=500))

# kstwo.sf(d, n): the distribution the asymptotic branch uses, over its regimes.
kstwo = []
for n in (1, 2, 5, 40, 140, 141, 500, 5000, 100000, 100001, 1000000):
    for d in (0.0, 0.3 / n, 0.7 / n, 1.5 / n, 0.001, 0.01, 0.03, 0.05, 0.1, 0.2, 0.4, 0.6,
              0.95, 1.0):
        if 0.0 <= d <= 1.0:
            kstwo.append({"n": n, "d": d, "sf": float(stats.kstwo.sf(d, n))})


def binned(ref, cur):
    """Evidently's get_binned_data (0.7), for numbers (shares per bin): Sturges bins."""
    ref, cur = np.asarray(ref), np.asarray(cur)
    if len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return (np.histogram(ref, bins)[0] / len(ref), np.histogram(cur, bins)[0] / len(cur))
    keys = sorted(set(np.unique(ref)) | set(np.unique(cur)))
    return (np.array([np.sum(ref == k) / len(ref) for k in keys]),
            np.array([np.sum(cur == k) / len(cur) for k in keys]))


def fill_zeroes(p):
    p = p.copy()
    nz = p[p != 0]
    fill = nz.min() / 10**6 if nz.min() <= 0.0001 else 0.0001
    p[p == 0] = fill
    return p


dist = []


def add_dist(name, ref, cur):
    ref, cur = r6(ref), r6(cur)
    p, q = binned(ref, cur)
    pf, qf = fill_zeroes(p), fill_zeroes(q)
    psi = float(np.sum((pf - qf) * np.log(pf / qf)))
    js = float(distance.jensenshannon(p, q))
    hellinger = float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / math.sqrt(2))
    w = float(stats.wasserstein_distance(ref, cur))
    dist.append({"name": name, "reference": ref, "current": cur, "psi": psi,
                 "js_distance": js, "hellinger": hellinger, "wasserstein": w,
                 "wasserstein_normed": w / max(float(np.std(ref)), 0.001)})


add_dist("same_normal", rng.normal(size=500), rng.normal(size=400))
add_dist("shifted_normal", rng.normal(size=500), rng.normal(0.5, 1, size=400))
add_dist("scaled_lognormal", rng.lognormal(size=800), rng.lognormal(0, 1.5, size=300))
add_dist("few_values", rng.integers(0, 4, size=200), rng.integers(1, 6, size=150))
add_dist("constant_reference", [2.0] * 50, rng.normal(2, 0.01, size=50))

chi = []


def add_chi(name, ref_counts, cur_counts):
    table = np.array([ref_counts, cur_counts])
    keep = table.sum(axis=0) > 0
    table = table[:, keep]
    if table.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        res = stats.chi2_contingency(table, correction=False)
        stat, p = float(res.statistic), float(res.pvalue)
    chi.append({"name": name, "reference": ref_counts, "current": cur_counts,
                "statistic": stat, "p": p})


add_chi("same_mix", [500, 300, 200], [260, 140, 100])
add_chi("moved_mix", [500, 300, 200], [150, 150, 200])
add_chi("unseen_category", [500, 300, 0], [240, 150, 30])
add_chi("two_categories", [90, 10], [70, 30])
add_chi("constant", [100, 0], [40, 0])
add_chi("empty_category_both", [10, 0, 5], [4, 0, 9])

z = []


def add_z(x1, n1, x2, n2):
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        zs, p = 0.0, 1.0
    else:
        zs = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        table = [[x1, n1 - x1], [x2, n2 - x2]]
        res = stats.chi2_contingency(table, correction=False)
        assert math.isclose(res.statistic, zs * zs, rel_tol=1e-9), (res.statistic, zs)
        p = float(res.pvalue)
    z.append({"x1": x1, "n1": n1, "x2": x2, "n2": n2, "z": zs, "p": p})


add_z(50, 1000, 50, 1000)
add_z(50, 1000, 80, 1000)
add_z(3, 40, 12, 35)
add_z(0, 100, 0, 50)
add_z(999, 1000, 900, 1000)

# Baseline precision (src/baseline/mod.rs): a 1,000,000-value reference against smaller
# current samples, exact here; Rust compares its quantile-summary values with these.
# Values come from SplitMix64 (top 53 bits / 2^53) and arithmetic that rounds the same
# in NumPy and Rust, so both sides see identical numbers without a data file.
GOLDEN, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def uniform(seed, n):
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def shaped(kind, u):
    return {"square": u * u * 10.0, "square_shifted": u * u * 10.0 + 0.3,
            "linear": u * 10.0, "square_steps": np.floor(u * u * 24.0),
            "linear_steps": np.floor(u * 24.0)}[kind]


sketch = []
for ref_kind, ref_seed, cur_kind, cur_seed in [
        ("square", 7, "square", 12), ("square", 7, "square_shifted", 13),
        ("square", 7, "linear", 14), ("square_steps", 8, "square_steps", 16),
        ("square_steps", 8, "linear_steps", 15)]:
    ref = shaped(ref_kind, uniform(ref_seed, 1_000_000))
    cur = shaped(cur_kind, uniform(cur_seed, 5000))
    res = stats.ks_2samp(ref, cur)
    sketch.append({"ref_kind": ref_kind, "ref_seed": ref_seed, "n_ref": len(ref),
                   "cur_kind": cur_kind, "cur_seed": cur_seed, "n_cur": len(cur),
                   "statistic": float(res.statistic), "p": float(res.pvalue),
                   "wasserstein_normed": float(stats.wasserstein_distance(ref, cur)
                                               / max(np.std(ref), 0.001))})

# Benjamini-Hochberg adjusted p-values (false-discovery control across the features
# of a window).
fdr = []
for ps in [[0.01, 0.04, 0.03, 0.20, 0.5], [0.001, 0.008, 0.039, 0.041, 0.042, 0.06,
                                           0.074, 0.205, 0.212, 0.216],
           [0.9, 0.9, 0.9], [1e-12, 0.049, 0.051], [0.3]]:
    fdr.append({"p": ps, "q": [float(x) for x in
                               stats.false_discovery_control(ps, method="bh")]})

out = pathlib.Path(__file__).resolve().parent.parent / "src" / "stats" / "drift_fixtures.json"
out.write_text(json.dumps({"scipy": __import__("scipy").__version__, "ks": ks,
                           "kstwo": kstwo, "distances": dist, "chi2": chi, "z": z,
                           "sketch": sketch, "fdr": fdr}) + "\n")
print(f"wrote {out} ({out.stat().st_size} bytes)")
