#!/usr/bin/env python3
"""Evidently's own PSI, Jensen-Shannon and normed Wasserstein on the fixture samples of
src/stats/drift_fixtures.json: writes src/stats/evidently_fixtures.json, which the Rust
tests compare with (1e-9 relative).

    python3 -m venv .evenv && .evenv/bin/pip install -r scripts/evidently_requirements.txt
    .evenv/bin/python scripts/evidently_fixtures.py

drift_fixtures.py computes the same values from Evidently's binning rules written out
with NumPy (so that its fixtures need no Evidently install); this script calls
Evidently's functions themselves, so a difference between the two is caught. Evidently's
numeric Hellinger bins differently (Sturges bins over the distinct values, not over both
samples) and is not used as a reference for driftwatch's Hellinger.
"""
import json
import pathlib

import pandas as pd
import evidently
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (
    _wasserstein_distance_norm,
)
from evidently.legacy.core import ColumnType

root = pathlib.Path(__file__).resolve().parent.parent
cases = json.loads((root / "src/stats/drift_fixtures.json").read_text())["distances"]
out = []
for c in cases:
    ref, cur = pd.Series(c["reference"]), pd.Series(c["current"])
    num = ColumnType.Numerical
    out.append({
        "name": c["name"],
        "psi": float(_psi(ref.copy(), cur.copy(), num, 0.1)[0]),
        "js_distance": float(_jensenshannon(ref.copy(), cur.copy(), num, 0.1)[0]),
        "wasserstein_normed": float(_wasserstein_distance_norm(ref.copy(), cur.copy(), num, 0.1)[0]),
    })
# Categorical columns: PSI and Jensen-Shannon on category shares.
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
    })
(root / "src/stats/evidently_fixtures.json").write_text(json.dumps(
    {"evidently": evidently.__version__, "numerical": out, "categorical": cat}, indent=1) + "\n")
print(f"{len(out)} numerical and {len(cat)} categorical cases, Evidently {evidently.__version__}")
