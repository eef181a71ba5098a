//! `inferwatch baseline build` from CSV and Parquet, and `--baseline` on `replay`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame, ParquetWriter};

use crate::cli::{generate, inferwatch, jsonl, root, text};

const NUMERIC: [&str; 4] = ["amount", "age", "merchant_risk", "hour"];

/// The generator's records as a training table: features, label, score, request id.
struct Training {
    request_id: Vec<String>,
    numeric: Vec<Vec<Option<f64>>>,
    country: Vec<Option<String>>,
    label: Vec<String>,
    score: Vec<f64>,
}

fn training(input: &Path) -> Training {
    let mut t = Training {
        request_id: Vec::new(),
        numeric: vec![Vec::new(); NUMERIC.len()],
        country: Vec::new(),
        label: Vec::new(),
        score: Vec::new(),
    };
    for r in jsonl(input) {
        t.request_id
            .push(r["request_id"].as_str().unwrap().to_owned());
        for (col, name) in t.numeric.iter_mut().zip(NUMERIC) {
            col.push(r["features"][name].as_f64());
        }
        t.country
            .push(r["features"]["country"].as_str().map(str::to_owned));
        t.label
            .push(r["prediction"]["label"].as_str().unwrap().to_owned());
        t.score.push(r["prediction"]["score"].as_f64().unwrap());
    }
    t
}

fn write_csv(t: &Training, path: &Path) {
    let mut out = String::from(
        "request_id,amount,age,merchant_risk,hour,country,prediction_label,prediction_score\n",
    );
    for i in 0..t.label.len() {
        let num: Vec<String> = t
            .numeric
            .iter()
            .map(|c| c[i].map(|x| x.to_string()).unwrap_or_default())
            .collect();
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            t.request_id[i],
            num.join(","),
            t.country[i].as_deref().unwrap_or(""),
            t.label[i],
            t.score[i]
        ));
    }
    std::fs::write(path, out).unwrap();
}

fn write_parquet(t: &Training, path: &Path) {
    let mut cols = vec![Column::new("request_id".into(), &t.request_id)];
    for (name, c) in NUMERIC.iter().zip(&t.numeric) {
        cols.push(Column::new((*name).into(), c));
    }
    cols.push(Column::new("country".into(), &t.country));
    cols.push(Column::new("prediction_label".into(), &t.label));
    cols.push(Column::new("prediction_score".into(), &t.score));
    let mut df = DataFrame::new_infer_height(cols).unwrap();
    ParquetWriter::new(std::fs::File::create(path).unwrap())
        .finish(&mut df)
        .unwrap();
}

fn build(dir: &Path, input: &Path, out: &Path) -> std::process::Output {
    inferwatch(
        &[
            "baseline",
            "build",
            "--model",
            "fraud",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    )
}

/// The profile of a baseline file, without its header line and source name.
fn profile(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let (_, body) = text.split_once('\n').unwrap();
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    v.as_object_mut().unwrap().remove("source");
    v
}

fn replay_with(dir: &Path, baseline: &Path, input: &Path, alerts: &Path) -> std::process::Output {
    inferwatch(
        &[
            "replay",
            "--config",
            "examples/replay.yaml",
            "--no-progress",
            "--baseline",
            baseline.to_str().unwrap(),
            "--alerts-out",
            alerts.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        dir,
    )
}

#[test]
fn a_baseline_from_training_data_flags_exactly_the_shifted_features_after_the_shift() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Training data: 20 minutes of benign traffic of another seed.
    let (train, _) = generate(d, "benign", 5, 60_000, "50");
    let t = training(&train);
    let (csv, parquet) = (d.join("train.csv"), d.join("train.parquet"));
    write_csv(&t, &csv);
    write_parquet(&t, &parquet);
    let (from_csv, from_parquet) = (d.join("csv.baseline"), d.join("parquet.baseline"));
    let o = build(d, &csv, &from_csv);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("60000 rows, 5 features"),
        "{}",
        text(&o)
    );
    let o = build(d, &parquet, &from_parquet);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        profile(&from_csv),
        profile(&from_parquet),
        "CSV and Parquet of the same rows give one profile"
    );

    let (input, truth) = generate(d, "drift", 6, 160_000, "50");
    let shift_ms = truth[0]["start_ms"].as_i64().unwrap();
    let alerts = d.join("alerts.jsonl");
    let o = replay_with(d, &from_parquet, &input, &alerts);
    assert!(o.status.success(), "{}", text(&o));
    let firing: Vec<_> = jsonl(&alerts)
        .into_iter()
        .filter(|a| a["rule_id"] == "drift.feature" && a["state"] == "firing")
        .collect();
    let features: BTreeSet<&str> = firing
        .iter()
        .map(|a| a["labels"]["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        BTreeSet::from(["amount", "merchant_risk"]),
        "{firing:?}"
    );
    for a in &firing {
        let started = chrono_ms(a["starts_at"].as_str().unwrap());
        assert!(started >= shift_ms, "before the shift: {a}");
        // Measured against the baseline's 60,000 rows, not the rolling reference.
        assert_eq!(a["evidence"]["values"]["n_ref"], 60_000, "{a}");
    }
    // The model's outputs follow the shifted features (prediction drift, after the
    // shift too); nothing else fires.
    for a in jsonl(&alerts).iter().filter(|a| a["state"] == "firing") {
        match a["rule_id"].as_str().unwrap() {
            "drift.feature" => {}
            "drift.prediction" => {
                let started = chrono_ms(a["starts_at"].as_str().unwrap());
                assert!(started >= shift_ms, "before the shift: {a}");
            }
            _ => panic!("an alert nothing planted: {a}"),
        }
    }

    // Benign traffic of a third seed against the same baseline: nothing fires.
    let (benign, _) = generate(d, "benign", 7, 100_000, "50");
    let quiet = d.join("benign-alerts.jsonl");
    let o = replay_with(d, &from_csv, &benign, &quiet);
    assert!(o.status.success(), "{}", text(&o));
    let fired: Vec<_> = jsonl(&quiet)
        .into_iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(fired.is_empty(), "{fired:?}");
}

/// Milliseconds since the epoch of an RFC 3339 time the alerts carry
/// (`2026-11-21T10:08:00.000Z`).
fn chrono_ms(s: &str) -> i64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400_000 + ((t[0] * 3600.0 + t[1] * 60.0 + t[2]) * 1000.0).round() as i64
}

#[test]
fn a_changed_or_foreign_baseline_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (train, _) = generate(d, "benign", 3, 2_000, "50");
    let csv = d.join("train.csv");
    write_csv(&training(&train), &csv);
    let good = d.join("good.baseline");
    let o = build(d, &csv, &good);
    assert!(o.status.success(), "{}", text(&o));
    let input = train.clone();
    let alerts = d.join("a.jsonl");

    let bytes = std::fs::read(&good).unwrap();
    let changed: PathBuf = d.join("changed.baseline");
    let mut b = bytes.clone();
    let at = b.len() - 20;
    b[at] = if b[at] == b'7' { b'8' } else { b'7' };
    std::fs::write(&changed, b).unwrap();
    let o = replay_with(d, &changed, &input, &alerts);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("checksum mismatch"), "{}", text(&o));

    let o = replay_with(d, &train, &input, &alerts);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not an inferwatch baseline"),
        "{}",
        text(&o)
    );

    // Two baselines of one model: the error names both files given.
    let again = d.join("again.baseline");
    std::fs::copy(&good, &again).unwrap();
    let o = inferwatch(
        &[
            "replay",
            "--no-progress",
            "--config",
            root().join("examples/replay.yaml").to_str().unwrap(),
            "--baseline",
            good.to_str().unwrap(),
            "--baseline",
            again.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for f in [&good, &again] {
        assert!(text(&o).contains(f.to_str().unwrap()), "{}", text(&o));
    }

    // A file without the baseline's features: an error naming them, not "0 of 0".
    let other = d.join("other.csv");
    std::fs::write(&other, "x,y\n1,2\n3,4\n").unwrap();
    let o = inferwatch(
        &[
            "baseline",
            "compare",
            "--baseline",
            good.to_str().unwrap(),
            "--input",
            other.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("lacks"), "{}", text(&o));
    assert!(text(&o).contains("amount"), "{}", text(&o));

    // Input files it can't profile.
    let o = build(d, &d.join("missing.csv"), &d.join("x"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = build(d, &train, &d.join("x"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(".parquet or .csv"), "{}", text(&o));
}

/// `baseline build --held-out` scores held-out rows with the embedded model and keeps
/// its performance on them: on the embedded test model's test split (its fixture),
/// the accuracy scikit-learn measured when it trained the model, and per class the
/// recall and precision of scikit-learn's own probabilities against the true labels.
#[test]
fn held_out_performance_is_the_models_own_on_labelled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::cli::root();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("models/breast_cancer_lr.fixture.json")).unwrap(),
    )
    .unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("models/breast_cancer_lr.json")).unwrap(),
    )
    .unwrap();
    let strings = |key: &str| -> Vec<&str> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    let (features, classes, truth) = (
        strings("features"),
        strings("labels"),
        strings("labels_true"),
    );
    let mut csv = features.join(",") + ",truth\n";
    for (row, t) in fixture["inputs"].as_array().unwrap().iter().zip(&truth) {
        let values: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().to_string())
            .collect();
        csv.push_str(&format!("{},{t}\n", values.join(",")));
    }
    let held = dir.path().join("held_out.csv");
    std::fs::write(&held, csv).unwrap();
    let out = dir.path().join("b.json");
    let o = inferwatch(
        &[
            "baseline",
            "build",
            "--model",
            "breast_cancer_lr",
            "--input",
            "models/breast_cancer_train.csv",
            "--out",
            out.to_str().unwrap(),
            "--held-out",
            held.to_str().unwrap(),
            "--true-label-column",
            "truth",
            "--config",
            "examples/rescore.yaml",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let p = profile(&out);
    let h = &p["held_out"];
    assert_eq!(h["labelled"], truth.len() as u64);
    let acc = h["accuracy"].as_f64().unwrap();
    let want = meta["test_accuracy"].as_f64().unwrap();
    assert!((acc - want).abs() < 1e-12, "{acc} vs scikit-learn {want}");
    // scikit-learn's answers: the argmax of its probabilities.
    let answers: Vec<&str> = fixture["sklearn_probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p: Vec<f64> = p
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            classes[if p[1] > p[0] { 1 } else { 0 }]
        })
        .collect();
    for c in &classes {
        let tp = truth
            .iter()
            .zip(&answers)
            .filter(|(t, a)| *t == c && *a == c)
            .count() as f64;
        let support = truth.iter().filter(|t| *t == c).count() as f64;
        let predicted = answers.iter().filter(|a| *a == c).count() as f64;
        let got = &h["classes"][*c];
        assert!(
            (got["recall"].as_f64().unwrap() - tp / support).abs() < 1e-12,
            "{c}: {got}"
        );
        assert!(
            (got["precision"].as_f64().unwrap() - tp / predicted).abs() < 1e-12,
            "{c}: {got}"
        );
    }
    // Confidence bins over every row, each with its rows right.
    let bins = h["bins"].as_array().unwrap();
    let n: u64 = bins.iter().map(|b| b[0].as_u64().unwrap()).sum();
    assert_eq!(n, truth.len() as u64);
}
