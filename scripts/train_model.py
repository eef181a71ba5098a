#!/usr/bin/env python3
"""The test model of the re-scoring issue, and its provenance.

Trains a small classifier (standard scaling + logistic regression) on scikit-learn's
bundled breast-cancer data set (no download), exports it to ONNX, and writes, next to
the model:

    models/breast_cancer_lr.onnx          the model (committed: tests need no Python)
    models/breast_cancer_lr.json          SHA-256, feature order, input/output names,
                                          label names, versions, accuracy
    models/breast_cancer_lr.fixture.json  the test split: inputs (float32 values), the
                                          probabilities of scikit-learn and of
                                          onnxruntime for each row, and each row's
                                          feature-squeezing score by scikit-learn
    models/breast_cancer_train.csv        the training split's inputs (float32 values):
                                          the benign traffic of `inferwatch gen`, the
                                          model's baseline and squeezing calibration

The metadata also holds the fitted parameters (scaler mean and scale, coefficients,
intercept) and those of a second model, trained with far stronger regularization: the
generator computes honest predictions in float64 from the first (as a serving stack
would, so re-scoring in float32 differs by rounding only), crafts FGSM inputs from its
gradient, and forges the predictions of its `tampering` scenario with the second.

The export uses core ONNX operators only (Sub, Div, MatMul, Add, Softmax, ArgMax), built
from the fitted scaler and coefficients, not skl2onnx's `ai.onnx.ml` operators (Scaler,
LinearClassifier), which pure-Rust runtimes do not all implement. Softmax over the logits
[0, z] is exactly [1 - sigmoid(z), sigmoid(z)], scikit-learn's binary probabilities. It
checks before writing that onnxruntime's probabilities equal scikit-learn's within 1e-5
on the test split, so the fixture is what the embedded runtime must reproduce.

    python3 -m venv ~/.cache/inferwatch/modelenv
    ~/.cache/inferwatch/modelenv/bin/pip install -r scripts/model_requirements.txt
    ~/.cache/inferwatch/modelenv/bin/python scripts/train_model.py

Feature names are the data set's, in snake case ("mean radius" -> "mean_radius"), so
they can be JSON keys of inference records and SQL column names.
"""
import hashlib
import json
import pathlib

import numpy as np
import onnx
import onnxruntime
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

OUT = pathlib.Path(__file__).resolve().parent.parent / "models"
NAME = "breast_cancer_lr"
OPSET = 15
SEED = 0
SQUEEZE_LEVELS = 16


def export(model, n: int) -> onnx.ModelProto:
    """The pipeline as core ONNX: probabilities = softmax(((x - mean) / scale) @ W + b)."""
    scale, clf = model.named_steps["scale"], model.named_steps["clf"]
    w = np.zeros((n, 2), dtype=np.float32)
    w[:, 1] = clf.coef_[0]
    b = np.array([0.0, clf.intercept_[0]], dtype=np.float32)
    init = [
        numpy_helper.from_array(scale.mean_.astype(np.float32), "mean"),
        numpy_helper.from_array(scale.scale_.astype(np.float32), "scale"),
        numpy_helper.from_array(w, "weights"),
        numpy_helper.from_array(b, "bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        init,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="inferwatch scripts/train_model.py")
    m.ir_version = 8
    return m


def linear(model) -> dict:
    """P(label 1) = sigmoid(((x - mean) / scale) . coef + intercept)."""
    scale, clf = model.named_steps["scale"], model.named_steps["clf"]
    return {
        "mean": [float(v) for v in scale.mean_],
        "scale": [float(v) for v in scale.scale_],
        "coef": [float(v) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }


def main():
    data = load_breast_cancer()
    features = [n.replace(" ", "_") for n in data.feature_names]
    labels = [str(t) for t in data.target_names]
    # The runtime sees float32 inputs: train and test on the float32 values.
    x = data.data.astype(np.float32)
    y = data.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = Pipeline([
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=1000, random_state=SEED)),
    ])
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    # The "other model" of the tampering scenario: same data, 100x the regularization.
    other = Pipeline([
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(C=0.01, max_iter=1000, random_state=SEED)),
    ])
    other.fit(x_train, y_train)

    onx = export(model, len(features))
    onnx.checker.check_model(onx)
    blob = onx.SerializeToString()
    outputs = [o.name for o in onx.graph.output]

    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    ort_label, ort_probs = session.run(None, {"input": x_test})
    sk_probs = model.predict_proba(x_test)
    worst = float(np.max(np.abs(ort_probs - sk_probs)))
    assert worst < 1e-5, f"onnxruntime differs from scikit-learn by {worst}"
    assert (ort_label == model.predict(x_test)).all()

    OUT.mkdir(exist_ok=True)
    (OUT / f"{NAME}.onnx").write_bytes(blob)
    meta = {
        "model": NAME,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "features": features,
        "input": "input",
        "outputs": outputs,
        "probabilities_output": "probabilities",
        "labels": labels,
        "opset": OPSET,
        "train_rows": int(len(y_train)),
        "test_rows": int(len(y_test)),
        "test_accuracy": accuracy,
        "ort_vs_sklearn_max_abs": worst,
        "versions": {
            "scikit-learn": sklearn.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "data": "sklearn.datasets.load_breast_cancer (bundled with scikit-learn)",
        "linear": linear(model),
        "other_model": dict(linear(other), how="LogisticRegression(C=0.01), same data",
                            test_accuracy=float(other.score(x_test, y_test))),
        "split": {"test_size": 0.25, "random_state": SEED, "stratify": True},
    }
    (OUT / f"{NAME}.json").write_text(json.dumps(meta, indent=1) + "\n")
    # Feature squeezing as inferwatch computes it (float32, ranges = the training split's
    # min and max, 16 levels, rounding half up), scored by scikit-learn: the peer values
    # the Rust squeezer is tested against. The quantisation is written out here, a second
    # implementation of the same rule and not an independent reference: no library does
    # exactly this (ART's FeatureSqueezing, the nearest, takes a bit depth rather than a
    # number of levels, rounds half to even and does not clip inputs outside the range),
    # so only the scores come from a library.
    lo, hi = x_train.min(axis=0), x_train.max(axis=0)
    steps = np.float32(SQUEEZE_LEVELS - 1)
    t = np.clip((x_test - lo) / (hi - lo), np.float32(0), np.float32(1))
    squeezed = (lo + np.floor(t * steps + np.float32(0.5)) / steps * (hi - lo)).astype(np.float32)
    squeeze_scores = np.abs(model.predict_proba(squeezed) - sk_probs).sum(axis=1)
    fixture = {
        "features": features,
        "labels": labels,
        # float32 values written as the float64 numbers they are exactly.
        "inputs": [[float(v) for v in row] for row in x_test],
        "sklearn_probabilities": [[float(p) for p in row] for row in sk_probs],
        "onnxruntime_probabilities": [[float(p) for p in row] for row in ort_probs],
        "labels_true": [labels[int(t)] for t in y_test],
        "squeeze_levels": SQUEEZE_LEVELS,
        "squeeze_scores": [float(v) for v in squeeze_scores],
    }
    (OUT / f"{NAME}.fixture.json").write_text(json.dumps(fixture) + "\n")
    with open(OUT / "breast_cancer_train.csv", "w") as f:
        f.write(",".join(features) + "\n")
        for row in x_train:
            # The shortest decimal that reads back as the same float32.
            f.write(",".join(str(np.float32(v)) for v in row) + "\n")
    print(f"{NAME}: test accuracy {accuracy:.4f}, onnxruntime vs scikit-learn "
          f"max |diff| {worst:.2e}, sha256 {meta['sha256']}")


if __name__ == "__main__":
    main()
