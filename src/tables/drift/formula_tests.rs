//! The drift tables against values a reader can compute by hand: which test a column
//! gets (by reference size and distinct values), the `min_current`/`min_reference`
//! gates, the p-values of small tables, label shares, and the rolling reference's
//! sampling (its size per window, its span, and that it does not depend on the order
//! the records came in). The statistics themselves are checked against SciPy in
//! `crate::stats::drift`.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use serde_json::{Value, json};

use super::{Drift, DriftConfig, drift_with};
use crate::decode::{FeatureDecl, FeatureKind};
use crate::window::ClosedWindow;

fn features() -> Vec<FeatureDecl> {
    let f = |name: &str, kind| FeatureDecl {
        name: name.into(),
        kind,
    };
    vec![
        f("many", FeatureKind::Numerical),
        f("few", FeatureKind::Numerical),
        f("two", FeatureKind::Categorical),
        f("three", FeatureKind::Categorical),
    ]
}

/// Minute `minute`'s window holding `records` (each gets a `ts` inside it).
fn window(minute: i64, records: &[Value]) -> ClosedWindow {
    crate::tables::test_support::minute_window(minute, features(), records)
}

/// A record of model `m` with these feature values (null where `None`), from a client
/// of its own (a client may fill only an eighth of a reference sample).
fn rec(id: &str, many: Option<f64>, few: Option<f64>, two: &str, three: &str) -> Value {
    json!({
        "request_id": id, "client_id": id, "model": "m",
        "features": {"many": many, "few": few, "two": two, "three": three},
        "prediction": {"label": "L", "score": 0.5},
    })
}

/// One `feature_drift` (or `prediction_drift`) row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    test: String,
    statistic: Option<f64>,
    p_value: Option<f64>,
    n_ref: u64,
    n_cur: u64,
    drifted: bool,
}

fn rows(b: &RecordBatch) -> BTreeMap<String, Row> {
    let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
    let f = |name: &str| {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let u = |name: &str| {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone()
    };
    let (feature, test, stat, p) = (s("feature"), s("test"), f("statistic"), f("p_value"));
    let (n_ref, n_cur) = (u("n_ref"), u("n_cur"));
    let drifted = b.column_by_name("drifted").unwrap().as_boolean().clone();
    let opt =
        |a: &datafusion::arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    (0..b.num_rows())
        .map(|i| {
            (
                feature.value(i).to_owned(),
                Row {
                    test: test.value(i).to_owned(),
                    statistic: opt(&stat, i),
                    p_value: opt(&p, i),
                    n_ref: n_ref.value(i),
                    n_cur: n_cur.value(i),
                    drifted: drifted.value(i),
                },
            )
        })
        .collect()
}

fn feature_rows(d: &Drift, w: &ClosedWindow) -> BTreeMap<String, Row> {
    rows(&d.computed(w).unwrap().features)
}

fn tests_of(r: &BTreeMap<String, Row>) -> BTreeMap<&str, &str> {
    r.iter()
        .map(|(k, v)| (k.as_str(), v.test.as_str()))
        .collect()
}

/// Eight records: `many` has 6 distinct values (one over the 5 of the rule), `few` 5
/// (at it), `two` two categories, `three` three.
fn eight(prefix: &str) -> Vec<Value> {
    let many = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0, 6.0];
    let few = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0];
    let two = ["x", "y", "x", "y", "x", "y", "x", "y"];
    let three = ["p", "q", "r", "p", "q", "r", "p", "q"];
    (0..8)
        .map(|i| {
            rec(
                &format!("{prefix}-{i}"),
                Some(many[i]),
                Some(few[i]),
                two[i],
                three[i],
            )
        })
        .collect()
}

#[test]
fn the_test_follows_the_reference_size_and_the_number_of_distinct_values() {
    // A reference of up to small_reference values gets a test, a larger one a distance
    // (Evidently's rule): 8 values here, then 16.
    let cfg = DriftConfig {
        small_reference: 8,
        min_reference: 1,
        min_current: 1,
        reference_sample: Some(1000),
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    // The first window has no reference yet: no rows.
    assert!(feature_rows(&d, &window(0, &eight("a"))).is_empty());
    let second = feature_rows(&d, &window(1, &eight("b")));
    assert_eq!(
        tests_of(&second),
        BTreeMap::from([
            ("many", "ks"),
            ("few", "chi2"),
            ("two", "z"),
            ("three", "chi2")
        ])
    );
    assert!(second.values().all(|r| r.n_ref == 8 && r.n_cur == 8));
    // The same values again: D = 0, p = 1; χ² and z = 0, p = 1.
    for r in second.values() {
        assert_eq!((r.statistic, r.p_value), (Some(0.0), Some(1.0)), "{r:?}");
    }
    let third = feature_rows(&d, &window(2, &eight("c")));
    assert_eq!(
        tests_of(&third),
        BTreeMap::from([
            ("many", "wasserstein"),
            ("few", "jensen_shannon"),
            ("two", "jensen_shannon"),
            ("three", "jensen_shannon")
        ])
    );
    assert!(third.values().all(|r| r.n_ref == 16 && r.p_value.is_none()));
    // `features:` overrides the choice.
    let mut over = cfg.clone();
    over.features.insert(
        "many".into(),
        super::FeatureDrift {
            test: Some(super::TestName::Psi),
            threshold: Some(0.2),
        },
    );
    let d = drift_with(&features(), &over);
    feature_rows(&d, &window(0, &eight("a")));
    assert_eq!(
        feature_rows(&d, &window(1, &eight("b")))["many"].test,
        "psi"
    );
}

#[test]
fn columns_under_min_current_or_min_reference_have_no_row() {
    let cfg = DriftConfig {
        min_reference: 8,
        min_current: 5,
        reference_sample: Some(1000),
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    // Reference: 8 values of `many`, 7 of `few` (one null).
    let mut first = eight("a");
    first[0]["features"]["few"] = Value::Null;
    feature_rows(&d, &window(0, &first));
    // Current: 5 values of `many` (at min_current), 4 of `few`... and `two` has 5.
    let mut current: Vec<Value> = eight("b")[..5].to_vec();
    current[0]["features"]["few"] = Value::Null;
    let r = feature_rows(&d, &window(1, &current));
    let present: Vec<&str> = r.keys().map(String::as_str).collect();
    // `few`: 7 reference values < 8 and 4 current < 5: no row either way.
    assert_eq!(present, ["many", "three", "two"]);
    assert_eq!((r["many"].n_ref, r["many"].n_cur), (8, 5));
    // One value fewer in the window than min_current: no row.
    let r = feature_rows(&d, &window(2, &eight("c")[..4]));
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn p_values_of_small_tables_are_the_hand_computed_ones() {
    let cfg = DriftConfig {
        min_reference: 1,
        min_current: 1,
        reference_sample: Some(1000),
        fdr: false,
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    // Reference: `many` 1..6 and `two` x×6, y×2; current: `many` 11..15 (disjoint,
    // above) and `two` x×2, y×6.
    let reference: Vec<Value> = (0..8)
        .map(|i| {
            let many = (i < 6).then(|| (i + 1) as f64);
            rec(
                &format!("a-{i}"),
                many,
                None,
                ["x", "y"][(i >= 6) as usize],
                "p",
            )
        })
        .collect();
    let current: Vec<Value> = (0..8)
        .map(|i| {
            let many = (i < 5).then(|| (i + 11) as f64);
            rec(
                &format!("b-{i}"),
                many,
                None,
                ["x", "y"][(i >= 2) as usize],
                "p",
            )
        })
        .collect();
    feature_rows(&d, &window(0, &reference));
    let r = feature_rows(&d, &window(1, &current));
    // KS, disjoint samples of 6 and 5: D = 1, and the exact two-sided p is the share of
    // the C(11, 5) = 462 orderings as extreme, the two disjoint ones: 2/462.
    let ks = &r["many"];
    assert_eq!((ks.test.as_str(), ks.statistic), ("ks", Some(1.0)));
    let p = ks.p_value.unwrap();
    assert!((p - 2.0 / 462.0).abs() <= 1e-12 * p, "{p}");
    assert!(ks.drifted);
    // Two-proportion z: shares of x 6/8 and 2/8, pooled 1/2:
    // z = (0.75 − 0.25) / √(0.5·0.5·(1/8 + 1/8)) = 2, p = 2·(1 − Φ(2)) = erfc(√2)
    // = 0.0455002638963584.
    let z = &r["two"];
    assert_eq!(z.test, "z");
    assert!((z.statistic.unwrap() - 2.0).abs() < 1e-12, "{z:?}");
    let p = z.p_value.unwrap();
    assert!((p - 0.045_500_263_896_358_4).abs() <= 1e-9 * p, "{p}");
    assert!(z.drifted);
    // One category in all: χ² = 0, p = 1, not drifted.
    assert_eq!(
        (r["three"].statistic, r["three"].p_value, r["three"].drifted),
        (Some(0.0), Some(1.0), false)
    );
}

/// Records answered with `labels`, one each, of `version` (none: no version field).
fn labelled(prefix: &str, labels: &[&str], version: Option<&str>) -> Vec<Value> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut r = rec(&format!("{prefix}-{i}"), None, None, "x", "p");
            r["prediction"]["label"] = json!(l);
            if let Some(v) = version {
                r["model_version"] = json!(v);
            }
            r
        })
        .collect()
}

#[test]
fn label_shares_are_each_labels_share_now_and_in_the_reference() {
    let cfg = DriftConfig {
        reference_sample: Some(1000),
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    d.computed(&window(0, &labelled("a", &["A", "A", "A", "B"], None)))
        .unwrap();
    let c = d
        .computed(&window(1, &labelled("b", &["A", "A", "C", "C", "C"], None)))
        .unwrap();
    let b = &c.shares;
    let label = b.column_by_name("label").unwrap().as_string::<i32>();
    let col = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (r, cur) = (col("ref_share"), col("cur_share"));
    let got: Vec<(&str, f64, f64)> = (0..b.num_rows())
        .map(|i| (label.value(i), r.value(i), cur.value(i)))
        .collect();
    assert_eq!(
        got,
        [("A", 0.75, 0.4), ("B", 0.25, 0.0), ("C", 0.0, 0.6)],
        "{got:?}"
    );
}

/// `n` records with distinct values of `many`, ids `prefix-0..n`.

#[test]
fn each_model_version_of_a_window_is_its_own_segment_against_the_models_reference() {
    let cfg = DriftConfig {
        reference_sample: Some(1000),
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    d.computed(&window(0, &labelled("a", &["A", "A", "A", "B"], Some("1"))))
        .unwrap();
    // Minute 1: version 1 answers as before, version 2 only C; one record without a
    // version. Each is compared with the model's reference (minute 0, version 1).
    let mut now = labelled("b", &["A", "A", "A", "B"], Some("1"));
    now.extend(labelled("c", &["C", "C"], Some("2")));
    now.extend(labelled("d", &["B"], None));
    let c = d.computed(&window(1, &now)).unwrap();
    let b = &c.shares;
    let text = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
    let (version, label) = (text("model_version"), text("label"));
    let cur = b
        .column_by_name("cur_share")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let got: Vec<(Option<&str>, &str, f64)> = (0..b.num_rows())
        .map(|i| {
            let v = (!version.is_null(i)).then(|| version.value(i));
            (v, label.value(i), cur.value(i))
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, "A", 0.0),
            (None, "B", 1.0),
            (Some("1"), "A", 0.75),
            (Some("1"), "B", 0.25),
            (Some("2"), "A", 0.0),
            (Some("2"), "B", 0.0),
            (Some("2"), "C", 1.0),
        ],
        "{got:?}"
    );
}

fn distinct(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            rec(
                &format!("{prefix}-{i}"),
                Some(i as f64 * 1.5),
                None,
                "x",
                "p",
            )
        })
        .collect()
}

#[test]
fn the_rolling_reference_keeps_k_records_a_window_for_reference_windows_windows() {
    let cfg = DriftConfig {
        reference_sample: Some(5),
        reference_windows: Some(2),
        min_reference: 1,
        min_current: 1,
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    let mut n_ref = Vec::new();
    for minute in 0..5 {
        let r = feature_rows(&d, &window(minute, &distinct(&format!("w{minute}"), 20)));
        n_ref.push(r.get("many").map_or(0, |r| r.n_ref));
    }
    // 5 from each earlier window, at most the last 2 windows.
    assert_eq!(n_ref, [0, 5, 10, 10, 10]);
}

#[test]
fn the_sample_does_not_depend_on_the_order_or_the_batches_records_came_in() {
    let cfg = DriftConfig {
        reference_sample: Some(7),
        min_reference: 1,
        min_current: 1,
        ..DriftConfig::default()
    };
    let records = distinct("r", 40);
    let in_order = drift_with(&features(), &cfg);
    feature_rows(&in_order, &window(0, &records));
    // The same records reversed and split over two batches.
    let shuffled = drift_with(&features(), &cfg);
    let mut reversed = records.clone();
    reversed.reverse();
    let mut w = window(0, &reversed[..15]);
    w.batches.extend(window(0, &reversed[15..]).batches);
    feature_rows(&shuffled, &w);
    let current = window(1, &distinct("now", 30));
    let (a, b) = (
        feature_rows(&in_order, &current),
        feature_rows(&shuffled, &current),
    );
    assert_eq!(a["many"].n_ref, 7);
    assert_eq!(a, b);
    // A different sample would give another distance: the check can tell them apart.
    let other = drift_with(&features(), &cfg);
    feature_rows(&other, &window(0, &distinct("s", 40)));
    assert_ne!(
        feature_rows(&other, &current)["many"].statistic,
        a["many"].statistic
    );
}

#[test]
fn records_without_a_model_or_version_are_one_segment_even_first_in_a_batch() {
    // The sender may leave out model and version; such a record first in a batch once
    // found no segment for it (and stopped the window's drift tables).
    let unnamed = |prefix: &str, labels: &[&str]| -> Vec<Value> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({"request_id": format!("{prefix}-{i}"), "client_id": format!("{prefix}-{i}"),
                       "prediction": {"label": l, "score": 0.5}})
            })
            .collect()
    };
    let cfg = DriftConfig {
        reference_sample: Some(1000),
        ..DriftConfig::default()
    };
    let d = drift_with(&features(), &cfg);
    d.computed(&window(0, &unnamed("a", &["A", "A", "A", "B"])))
        .unwrap();
    let c = d.computed(&window(1, &unnamed("b", &["B", "B"]))).unwrap();
    let b = &c.shares;
    let share = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    };
    let (model, label) = (
        b.column_by_name("model").unwrap().as_string::<i32>(),
        b.column_by_name("label").unwrap().as_string::<i32>(),
    );
    assert_eq!(b.num_rows(), 2);
    assert!(model.is_null(0) && model.is_null(1));
    assert_eq!((label.value(0), label.value(1)), ("A", "B"));
    assert_eq!(share("ref_share"), [0.75, 0.25]);
    assert_eq!(share("cur_share"), [0.0, 1.0]);
}
