#!/usr/bin/env python3
"""Reference values for src/labels/score.rs from scikit-learn: writes src/labels/fixtures.json.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/labels_requirements.txt
    .venv/bin/python scripts/labels_fixtures.py

Each case is a set of labelled predictions with probabilities (generated here with a fixed
seed); the expected values are scikit-learn's accuracy_score, f1_score(average="macro"),
log_loss, recall/precision/f1 per class (zero_division=nan: undefined is null), and the
expected calibration error over the bins of sklearn.calibration.calibration_curve
(10 uniform bins of the top probability, weighted by the records in each bin).
"""
import json
import warnings
import pathlib

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, f1_score, log_loss, precision_score,
                             recall_score)

warnings.simplefilter("ignore", UserWarning)  # float32 rounding: sums of 1 ± 1e-7
rng = np.random.default_rng(20261203)
cases = []


def ece(y_true, probs):
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    correct = (pred == y_true).astype(float)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    # calibration_curve drops empty bins; the counts of the non-empty ones, same binning.
    bins = np.linspace(0.0, 1.0, 11)
    ids = np.searchsorted(bins[1:-1], conf)
    counts = np.bincount(ids, minlength=10)
    counts = counts[counts > 0]
    return float(np.sum(counts / len(conf) * np.abs(prob_true - prob_pred)))


def nan_to_none(xs):
    return [None if np.isnan(x) else float(x) for x in xs]


def add(name, k, y_true, probs):
    # Probabilities as float32 round them (what inferwatch keeps per waiting prediction).
    probs = np.asarray(probs, dtype=np.float32).astype(np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32).astype(np.float64)
    y_pred = probs.argmax(axis=1)
    labels = list(range(k))
    cases.append({
        "name": name,
        "classes": k,
        "y_true": [int(v) for v in y_true],
        "y_pred": [int(v) for v in y_pred],
        "probs": probs.tolist(),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "log_loss": float(log_loss(y_true, probs, labels=labels)),
        "calibration_error": ece(np.asarray(y_true), probs),
        "recall": nan_to_none(recall_score(y_true, y_pred, labels=labels, average=None,
                                           zero_division=np.nan)),
        "precision": nan_to_none(precision_score(y_true, y_pred, labels=labels, average=None,
                                                 zero_division=np.nan)),
        "f1": nan_to_none(f1_score(y_true, y_pred, labels=labels, average=None,
                                   zero_division=np.nan)),
    })


def noisy(k, n, skill):
    """n records of k classes; the model gives the true class extra weight `skill`."""
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


y, p = noisy(2, 200, 2.0)
add("binary_good", 2, y, p)
y, p = noisy(2, 57, 0.3)
add("binary_weak", 2, y, p)
y, p = noisy(10, 500, 3.0)
add("ten_classes", 10, y, p)
# A class never predicted and one never true: undefined precision / recall.
y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
p = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.45, 0.35, 0.2],
              [0.1, 0.8, 0.1], [0.55, 0.4, 0.05], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]]) + 1e-4
add("absent_classes", 3, y, p)
# Near-certain wrong answers: the log loss clips at float64 eps like scikit-learn.
y = np.array([0, 1, 1, 0])
p = np.array([[1e-30, 1.0], [1e-3, 0.999], [0.3, 0.7], [0.999999, 1e-6]])
add("confident_mistakes", 2, y, p)

out = pathlib.Path(__file__).resolve().parent.parent / "src" / "labels" / "fixtures.json"
out.write_text(json.dumps(cases) + "\n")
print(f"wrote {len(cases)} cases to {out}")
