#!/usr/bin/env python3
"""Evidently's own PSI, Jensen-Shannon, normed Wasserstein and Hellinger on the fixture
samples of src/stats/drift_fixtures.json: writes src/stats/evidently_fixtures.json, which
the Rust tests compare with (1e-9 relative).

    python3 -m venv .evenv && .evenv/bin/pip install -r scripts/evidently_requirements.txt
    .evenv/bin/python scripts/evidently_fixtures.py

drift_fixtures.py computes the same values from Evidently's binning rules written out
with NumPy (so that its fixtures need no Evidently install); this script calls
Evidently's functions themselves, so a difference between the two is caught. Evidently's
numeric Hellinger bins differently (Sturges bins over the distinct values, not over both
samples), so the numeric Hellinger reference here is SciPy's Euclidean distance between
the square roots of the shares that Evidently's own binning (`get_binned_data`) gives,
over sqrt(2); for categories it is Evidently's `_hellinger_distance` itself.
"""
import json
import math
import os
import pathlib
import sys

# Evidently sums over a set of categories, in the order of Python's string hashes: a
# fixed hash seed makes the output the same on every run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import evidently  # noqa: E402
from evidently.legacy.calculations.stattests.hellinger_distance import (  # noqa: E402
    _hellinger_distance,
)
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon  # noqa: E402
from evidently.legacy.calculations.stattests.psi import _psi  # noqa: E402
from evidently.legacy.calculations.stattests.utils import get_binned_data  # noqa: E402
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (  # noqa: E402
    _wasserstein_distance_norm,
)
from evidently.legacy.core import ColumnType  # noqa: E402
from scipy.spatial import distance  # noqa: E402


def hellinger(p, q):
    """||sqrt(p) - sqrt(q)|| / sqrt(2) of two share vectors, the norm SciPy's."""
    return float(distance.euclidean(np.sqrt(p), np.sqrt(q)) / math.sqrt(2))


root = pathlib.Path(__file__).resolve().parent.parent
cases = json.loads((root / "src/stats/drift_fixtures.json").read_text())["distances"]
out = []
for c in cases:
    ref, cur = pd.Series(c["reference"]), pd.Series(c["current"])
    num = ColumnType.Numerical
    shares = get_binned_data(ref.copy(), cur.copy(), num, 0, feel_zeroes=False)
    out.append({
        "name": c["name"],
        "psi": float(_psi(ref.copy(), cur.copy(), num, 0.1)[0]),
        "js_distance": float(_jensenshannon(ref.copy(), cur.copy(), num, 0.1)[0]),
        "wasserstein_normed": float(_wasserstein_distance_norm(ref.copy(), cur.copy(), num, 0.1)[0]),
        "hellinger": hellinger(*shares),
    })
# Categorical columns: PSI, Jensen-Shannon and Hellinger on category shares.
categorical = [
    ("five_categories", ["a"] * 40 + ["b"] * 30 + ["c"] * 15 + ["d"] * 10 + ["e"] * 5,
     ["a"] * 20 + ["b"] * 30 + ["c"] * 15 + ["d"] * 10 + ["e"] * 25),
    ("unseen_category", ["x"] * 70 + ["y"] * 30, ["x"] * 50 + ["y"] * 30 + ["z"] * 20),
    ("vanished_category", ["x"] * 50 + ["y"] * 30 + ["z"] * 20, ["x"] * 60 + ["y"] * 40),
]
cat = []
for name, r, c in categorical:
    ref, cur = pd.Series(r), pd.Series(c)
    kind = ColumnType.Categorical
    cat.append({
        "name": name,
        "reference": r,
        "current": c,
        "psi": float(_psi(ref.copy(), cur.copy(), kind, 0.1)[0]),
        "js_distance": float(_jensenshannon(ref.copy(), cur.copy(), kind, 0.1)[0]),
        "hellinger": float(_hellinger_distance(ref.copy(), cur.copy(), kind, 0.1)[0]),
    })
(root / "src/stats/evidently_fixtures.json").write_text(json.dumps(
    {"evidently": evidently.__version__, "numerical": out, "categorical": cat}, indent=1) + "\n")
print(f"{len(out)} numerical and {len(cat)} categorical cases, Evidently {evidently.__version__}")
