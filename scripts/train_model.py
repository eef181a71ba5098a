#!/usr/bin/env python3
"""The test model of the re-scoring issue, and its provenance.

Trains a small classifier (standard scaling + logistic regression) on scikit-learn's
bundled breast-cancer data set (no download), exports it to ONNX with skl2onnx, and
writes, next to the model:

    models/breast_cancer_lr.onnx          the model (committed: tests need no Python)
    models/breast_cancer_lr.json          SHA-256, feature order, input/output names,
                                          label names, versions, accuracy
    models/breast_cancer_lr.fixture.json  the test split: inputs (float32 values), and
                                          the probabilities of scikit-learn and of
                                          onnxruntime for each row

It checks before writing that onnxruntime's probabilities equal scikit-learn's within
1e-5 on the test split, so the fixture is what the embedded runtime must reproduce.

    python3 -m venv ~/.cache/driftwatch/modelenv
    ~/.cache/driftwatch/modelenv/bin/pip install -r scripts/model_requirements.txt
    ~/.cache/driftwatch/modelenv/bin/python scripts/train_model.py

Feature names are the data set's, in snake case ("mean radius" -> "mean_radius"), so
they can be JSON keys of inference records and SQL column names.
"""
import hashlib
import json
import pathlib

import numpy as np
import onnx
import onnxruntime
import skl2onnx
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

OUT = pathlib.Path(__file__).resolve().parent.parent / "models"
NAME = "breast_cancer_lr"
OPSET = 15
SEED = 0


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

    onx = convert_sklearn(
        model,
        name=NAME,
        initial_types=[("input", FloatTensorType([None, len(features)]))],
        options={id(model.named_steps["clf"]): {"zipmap": False}},
        target_opset=OPSET,
    )
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
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "data": "sklearn.datasets.load_breast_cancer (bundled with scikit-learn)",
        "split": {"test_size": 0.25, "random_state": SEED, "stratify": True},
    }
    (OUT / f"{NAME}.json").write_text(json.dumps(meta, indent=1) + "\n")
    fixture = {
        "features": features,
        "labels": labels,
        # float32 values written as the float64 numbers they are exactly.
        "inputs": [[float(v) for v in row] for row in x_test],
        "sklearn_probabilities": [[float(p) for p in row] for row in sk_probs],
        "onnxruntime_probabilities": [[float(p) for p in row] for row in ort_probs],
        "labels_true": [labels[int(t)] for t in y_test],
    }
    (OUT / f"{NAME}.fixture.json").write_text(json.dumps(fixture) + "\n")
    print(f"{NAME}: test accuracy {accuracy:.4f}, onnxruntime vs scikit-learn "
          f"max |diff| {worst:.2e}, sha256 {meta['sha256']}")


if __name__ == "__main__":
    main()
