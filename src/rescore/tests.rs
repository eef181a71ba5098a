use super::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn meta() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("breast_cancer_lr.json")).unwrap()).unwrap()
}

fn config() -> ModelConfig {
    let m = meta();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    ModelConfig {
        name: "cancer".into(),
        path: dir().join("breast_cancer_lr.onnx"),
        sha256: m["sha256"].as_str().unwrap().into(),
        features: strings(&m["features"]),
        probabilities_output: "probabilities".into(),
        labels: strings(&m["labels"]),
    }
}

/// The fixture of scripts/train_model.py: the test split and scikit-learn's
/// probabilities for it.
#[test]
fn embedded_probabilities_equal_the_python_model_within_1e_5() {
    let model = EmbeddedModel::load(&config()).unwrap();
    let f: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir().join("breast_cancer_lr.fixture.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<Vec<f32>> = f["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert!(rows.len() > 100);
    let got = model.probabilities(&rows).unwrap();
    let want = f["sklearn_probabilities"].as_array().unwrap();
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.iter().zip(w.as_array().unwrap()) {
            worst = worst.max((f64::from(*a) - b.as_f64().unwrap()).abs());
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(worst < 1e-5, "max |embedded - scikit-learn| = {worst}");
}

#[test]
fn a_model_that_is_not_the_pinned_one_is_refused() {
    let mut c = config();
    c.sha256 = "00".repeat(32);
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(
        e.contains("refusing") && e.contains(&meta()["sha256"].as_str().unwrap()[..16]),
        "{e}"
    );
    let mut c = config();
    c.path = dir().join("missing.onnx");
    assert!(
        EmbeddedModel::load(&c)
            .err()
            .unwrap()
            .contains("cannot read")
    );
}

#[test]
fn declared_features_outputs_and_labels_must_fit_the_model() {
    let mut c = config();
    c.features.pop();
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("29 features declared"), "{e}");
    let mut c = config();
    c.probabilities_output = "scores".into();
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("probabilities") && e.contains("scores"), "{e}");
    let mut c = config();
    c.labels.push("unsure".into());
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("2 probabilities"), "{e}");
    let mut c = config();
    let junk = std::env::temp_dir().join(format!("driftwatch-junk-{}.onnx", std::process::id()));
    std::fs::write(&junk, b"not a model").unwrap();
    c.path = junk.clone();
    c.sha256 = sha256_hex(b"not a model");
    let e = EmbeddedModel::load(&c).err().unwrap();
    let _ = std::fs::remove_file(&junk);
    assert!(e.contains("not a loadable ONNX model"), "{e}");
}
