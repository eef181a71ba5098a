use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::alert::{Evidence, Notification, State};
use crate::rules::Severity;
use crate::window::{ClosedWindow, WindowSpec, WindowStats};

const MIN: i64 = 60_000;

fn window(end_minute: i64) -> ClosedWindow {
    ClosedWindow {
        spec: WindowSpec {
            size_ms: MIN,
            slide_ms: MIN,
            grace_ms: 0,
        },
        start_ms: (end_minute - 1) * MIN,
        end_ms: end_minute * MIN,
        batches: Vec::new(),
        stats: WindowStats {
            records: 100,
            bad: 1,
            late: 0,
        },
        ranges: Default::default(),
    }
}

/// A `client_profile`-like batch: (client, queries, near_duplicate_share) of model m.
fn profiles(rows: &[(&str, u64, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, true),
        Field::new("client_id", DataType::Utf8, false),
        Field::new("queries", DataType::UInt64, false),
        Field::new("near_duplicate_share", DataType::Float64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["m"; rows.len()])),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

fn note(id: &str, client: &str, state: State, minute: i64) -> Notification {
    Notification {
        id: id.into(),
        notification_id: format!("{id}:{state:?}"),
        rule_id: "flood.client_rate".into(),
        name: Some("Query flood".into()),
        state,
        severity: Severity::High,
        labels: BTreeMap::from([
            ("client_id".to_string(), client.to_string()),
            ("model".to_string(), "m".to_string()),
        ]),
        annotations: BTreeMap::from([("summary".to_string(), format!("{client} sent too much"))]),
        window_start: String::new(),
        window_end: String::new(),
        starts_at: String::new(),
        ends_at: None,
        evidence: Evidence {
            values: Default::default(),
            sample_request_ids: vec!["<b>r-1</b>".into()],
            window_records: 10,
            window_bad_records: 0,
            window_late_records: 0,
            sources: Vec::new(),
            fired: None,
        },
        tags: BTreeMap::new(),
        at_ms: minute * MIN,
    }
}

fn no_threshold(_: &str, _: &str) -> f64 {
    0.1
}

#[test]
fn population_quartiles_and_rankings_come_from_the_windows_clients() {
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    // Five clients with 100 queries; one with 3 queries and the largest share, which
    // ranks by queries but not by share (under min_queries).
    let b = profiles(&[
        ("a", 100, 0.1),
        ("b", 100, 0.2),
        ("c", 100, 0.3),
        ("d", 100, 0.4),
        ("e", 100, 0.5),
        ("tiny", 3, 1.0),
    ]);
    r.window(
        &window(1),
        &[("client_profile".into(), vec![b])],
        Vec::new(),
        no_threshold,
        0.0,
    );
    let j = CLIENT_STATS
        .iter()
        .position(|s| *s == "near_duplicate_share")
        .unwrap();
    // The band is over the clients the statistic ranks (not "tiny"), by nearest rank:
    // index round((n − 1)·p) of [0.1, 0.2, 0.3, 0.4, 0.5]: 1, 2, 3.
    let q = r.bands["m"][0].1[j].unwrap();
    assert_eq!(q, [0.2, 0.3, 0.4]);
    // By queries, all six: [3, 100, 100, 100, 100, 100] at 1.25 → 1, 2.5 → 3 (half
    // away from zero), 3.75 → 4.
    assert_eq!(r.bands["m"][0].1[0].unwrap(), [100.0, 100.0, 100.0]);
    let top: Vec<&str> = r.top[j].iter().map(|t| t.client.as_str()).collect();
    assert_eq!(top, ["e", "d", "c", "b", "a"]);
    let by_queries: Vec<&str> = r.top[0].iter().map(|t| t.client.as_str()).collect();
    assert_eq!(by_queries.last(), Some(&"tiny"));
}

#[test]
fn alerts_clients_and_windows_stay_within_their_caps_and_the_span() {
    let cfg = ReportConfig {
        hours: 1,
        max_alerts: 2,
        max_clients: 2,
        ..ReportConfig::default()
    };
    let mut r = Report::new(cfg, RunInfo::default());
    for (i, c) in ["x", "y", "z"].iter().enumerate() {
        r.alerts(&[note(&format!("id{i}"), c, State::Firing, 1)]);
    }
    assert_eq!(r.alerts.len(), 2);
    assert_eq!(r.alerts_dropped, 1);
    assert_eq!(r.flagged.len(), 2);
    // The flagged clients are followed first, whatever else ranks.
    let b = profiles(&[("x", 50, 0.1), ("y", 50, 0.1), ("other", 500, 0.9)]);
    for minute in 1..=120 {
        r.window(
            &window(minute),
            &[("client_profile".into(), vec![b.clone()])],
            Vec::new(),
            no_threshold,
            0.0,
        );
    }
    let followed: Vec<&str> = r.followed.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(followed, ["x", "y"]);
    // One hour of event time: the windows ending after minute 60.
    assert_eq!(r.windows.len(), 60);
    assert_eq!(r.windows.front().unwrap().end, 61 * MIN);
    assert!(r.followed.values().all(|q| q.len() == 60));
    // Firing alerts outside the span stay (they are still firing); resolved ones go.
    r.alerts(&[note("id0", "x", State::Resolved, 2)]);
    r.window(&window(121), &[], Vec::new(), no_threshold, 0.0);
    assert!(!r.alerts.contains_key("id0") && r.alerts.contains_key("id1"));
}

#[test]
fn an_alert_is_pending_until_it_fires_and_firing_until_it_resolves() {
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    r.alerts(&[note("a", "x", State::Pending, 1)]);
    r.alerts(&[note("a", "x", State::Firing, 2)]);
    r.alerts(&[note("a", "x", State::Resolved, 5)]);
    r.alerts(&[note("b", "y", State::Pending, 3)]);
    r.alerts(&[note("b", "y", State::Resolved, 4)]);
    let spans = |id: &str| page::spans(&r.alerts[id], 10 * MIN);
    assert_eq!(
        spans("a"),
        [(MIN, 2 * MIN, false), (2 * MIN, 5 * MIN, true)]
    );
    assert_eq!(spans("b"), [(3 * MIN, 4 * MIN, false)]);
    // Only a firing alert flags its client.
    r.alerts(&[note("c", "z", State::Pending, 6)]);
    let flagged: Vec<&str> = r.flagged.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(flagged, ["x"]);
}

#[test]
fn text_from_the_traffic_is_shown_as_text_everywhere() {
    let hostile = "<script>alert(1)</script>";
    let mut r = Report::new(
        ReportConfig::default(),
        RunInfo {
            command: "replay".into(),
            sources: vec![format!("{hostile}.jsonl")],
            ..RunInfo::default()
        },
    );
    r.alerts(&[note("<id>", hostile, State::Firing, 1)]);
    let b = profiles(&[(hostile, 100, 0.5), ("a", 100, 0.1)]);
    r.window(
        &window(1),
        &[("client_profile".into(), vec![b])],
        Vec::new(),
        no_threshold,
        0.0,
    );
    r.dead_letter(&format!("bad model {hostile}: at 3"));
    let page = r.render(&Totals::default());
    assert!(!page.contains("<script"), "a script element in the page");
    assert!(!page.contains("<b>r-1"), "an element from a request id");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains(r#"id="alert-&lt;id&gt;""#));
    // Nothing is fetched: no URL but the page's own anchors.
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
}

#[test]
fn dead_letter_reasons_are_counted_by_kind() {
    assert_eq!(
        reason_kind("record of 912 bytes is over max_record_bytes"),
        "record of # bytes is over max_record_bytes"
    );
    assert_eq!(
        reason_kind("invalid JSON: expected value at line 1 column 5"),
        "invalid JSON"
    );
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    for i in 0..(MAX_REASONS + 5) {
        r.dead_letter(&format!("kind {}x: detail", "y".repeat(i)));
    }
    assert_eq!(r.reasons.len(), MAX_REASONS + 1);
    assert_eq!(r.reasons["(other)"], 5);
}

/// A `feature_drift`-like batch: one row of feature `x` per model, drifted.
fn drift_rows(models: &[&str]) -> RecordBatch {
    let rows: Vec<DriftRow> = models
        .iter()
        .map(|m| (*m, "x", "wasserstein", 0.5, None, true))
        .collect();
    drift_batch(&rows)
}

/// model, feature, test, statistic, adjusted p, drifted
type DriftRow<'a> = (&'a str, &'a str, &'a str, f64, Option<f64>, bool);

/// A `feature_drift`-like batch of these rows (no model version).
fn drift_batch(rows: &[DriftRow]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, true),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("feature", DataType::Utf8, false),
        Field::new("test", DataType::Utf8, false),
        Field::new("statistic", DataType::Float64, true),
        Field::new("p_adjusted", DataType::Float64, true),
        Field::new("drifted", DataType::Boolean, false),
    ]));
    let text = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let cols: Vec<ArrayRef> = vec![
        text(rows.iter().map(|r| r.0).collect()),
        Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        text(rows.iter().map(|r| r.1).collect()),
        text(rows.iter().map(|r| r.2).collect()),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )),
        Arc::new(datafusion::arrow::array::BooleanArray::from(
            rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

#[test]
fn model_names_from_the_traffic_cannot_crowd_out_the_configured_models() {
    let cfg = ReportConfig {
        max_models: 2,
        ..ReportConfig::default()
    };
    let info = RunInfo {
        models: vec![("real".into(), None, "00".into())],
        ..RunInfo::default()
    };
    let mut r = Report::new(cfg, info);
    // Invented names arrive first; the configured model is followed all the same.
    let b = drift_rows(&["spam1", "spam2", "spam3", "real"]);
    r.window(
        &window(1),
        &[("feature_drift".into(), vec![b])],
        Vec::new(),
        no_threshold,
        0.0,
    );
    let models: Vec<&str> = r.drift.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(models, ["real", "spam1"]);
    assert_eq!(r.models_refused, 2);
    let page = r.render(&Totals::default());
    assert!(
        page.contains("report.max_models"),
        "the page says rows were left out"
    );
}

/// A `feature_drift` row of model `m`: feature, test, statistic, adjusted p, drifted.
fn drift_row(feature: &str, test: &str, stat: f64, p: Option<f64>, drifted: bool) -> RecordBatch {
    drift_batch(&[("m", feature, test, stat, p, drifted)])
}

fn histogram(feature: &str, prediction: bool) -> Histogram {
    Histogram {
        model: Some("m".into()),
        model_version: None,
        feature: feature.into(),
        prediction,
        bins: vec!["a".into()],
        reference: vec![1.0],
        current: vec![1.0],
    }
}

#[test]
fn a_p_value_test_is_drawn_as_minus_log10_p_and_the_first_and_worst_distributions_kept() {
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    // p = 0.001 → 3, p = 1e-5 → 5, p = 0.01 → 2; the threshold 0.05 → 1.30103.
    let rows = [
        (Some(0.001), true),
        (Some(1e-5), true),
        (Some(0.01), true),
        (Some(0.5), false),
    ];
    for (minute, (p, drifted)) in rows.into_iter().enumerate() {
        r.window(
            &window(minute as i64 + 1),
            &[(
                "feature_drift".into(),
                vec![drift_row("x", "ks", 0.3, p, drifted)],
            )],
            vec![histogram("x", false), histogram("x", true)],
            |_, _| 0.05,
            0.0,
        );
    }
    let s = &r.drift[&(
        "m".to_string(),
        String::new(),
        "x".to_string(),
        false,
        "ks".to_string(),
    )];
    let values: Vec<f64> = s.points.iter().map(|p| p.1.unwrap()).collect();
    for (got, want) in values
        .iter()
        .zip([3.0, 5.0, 2.0, std::f64::consts::LOG10_2])
    {
        assert!((got - want).abs() < 1e-9, "{values:?}");
    }
    assert!((s.threshold - 1.301_029_995_663_981_2).abs() < 1e-9);
    // Kept: the first drifted window (minute 1) and the worst (minute 2, p = 1e-5);
    // the third drifted window is less drifted than the worst, the fourth not drifted.
    let kept: Vec<i64> = s.histograms.iter().map(|h| h.0 / MIN).collect();
    assert_eq!(kept, [1, 2]);
    // The outputs' distribution never lands on a feature of the same name.
    assert!(s.histograms.iter().all(|h| !h.2.prediction));
}

#[test]
fn an_alert_that_fires_at_once_is_firing_from_its_first_change() {
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    r.alerts(&[note("a", "x", State::Firing, 2)]);
    assert_eq!(
        page::spans(&r.alerts["a"], 5 * MIN),
        [(2 * MIN, 5 * MIN, true)]
    );
    // A resolve of an alert the report never saw fire (as after a restart) says
    // whether it had fired.
    let mut n = note("b", "y", State::Resolved, 3);
    n.evidence.fired = Some(true);
    r.alerts(&[n]);
    assert!(r.alerts["b"].fired());
}

#[test]
fn names_from_the_traffic_in_drift_and_label_rows_are_shown_as_text() {
    let hostile = "<svg onload=alert(1)>";
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    let shares = {
        let schema = Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, true),
            Field::new("model_version", DataType::Utf8, true),
            Field::new("label", DataType::Utf8, false),
            Field::new("cur_share", DataType::Float64, false),
            Field::new("ref_share", DataType::Float64, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![hostile])),
            Arc::new(StringArray::from(vec![Some(hostile)])),
            Arc::new(StringArray::from(vec![hostile])),
            Arc::new(Float64Array::from(vec![0.5])),
            Arc::new(Float64Array::from(vec![0.4])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    };
    r.window(
        &window(1),
        &[
            (
                "feature_drift".into(),
                vec![drift_row(hostile, "wasserstein", 0.5, None, true)],
            ),
            ("label_shares".into(), vec![shares]),
        ],
        Vec::new(),
        no_threshold,
        0.0,
    );
    let page = r.render(&Totals::default());
    assert!(
        !page.contains("<svg onload"),
        "an element from a name in the page"
    );
    assert!(page.contains("&lt;svg onload=alert(1)&gt;"));
}

#[test]
fn a_record_in_overlapping_windows_counts_once_among_the_rescored() {
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    // Two-minute windows every minute: the record at 1:30 is in the windows ending at
    // 2:00 and 3:00; it counts in the one whose last minute holds it (ending 2:00).
    let batch = {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", crate::decode::ts_type(), false),
            Field::new("model", DataType::Utf8, false),
            Field::new("client_id", DataType::Utf8, false),
            Field::new("mismatch", DataType::Boolean, true),
            Field::new("adversarial", DataType::Boolean, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                datafusion::arrow::array::TimestampMillisecondArray::from(vec![90_000])
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["m"])),
            Arc::new(StringArray::from(vec!["c"])),
            Arc::new(datafusion::arrow::array::BooleanArray::from(vec![Some(
                true,
            )])),
            Arc::new(datafusion::arrow::array::BooleanArray::from(vec![None])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    };
    for end in [2, 3] {
        let mut w = window(end);
        w.spec.size_ms = 2 * MIN;
        w.start_ms = (end - 2) * MIN;
        r.window(
            &w,
            &[("rescored".into(), vec![batch.clone()])],
            Vec::new(),
            no_threshold,
            0.0,
        );
    }
    let c = &r.rescored[&("m".to_string(), "c".to_string())];
    assert_eq!((c.rescored, c.mismatches, c.adversarial), (1, 1, 0));
}

#[test]
fn axes_end_on_round_numbers() {
    for (x, want) in [
        (3.918, 4.0),
        (0.454, 0.5),
        (375_464.0, 400_000.0),
        (35.761, 40.0),
        (1.0, 1.0),
        (0.021, 0.025),
        (7.0, 10.0),
    ] {
        let got = svg::nice(x);
        assert!((got - want).abs() <= want * 1e-12, "{x}: {got}");
    }
}

#[test]
fn a_column_judged_by_a_test_then_a_distance_has_a_series_for_each() {
    // A small rolling reference gets KS (drawn as −log10 p), a larger one Wasserstein:
    // two scales, never one line.
    let mut r = Report::new(ReportConfig::default(), RunInfo::default());
    let rows = [
        drift_row("x", "ks", 0.3, Some(0.01), true),
        drift_row("x", "wasserstein", 0.2, None, true),
    ];
    for (minute, b) in rows.into_iter().enumerate() {
        r.window(
            &window(minute as i64 + 1),
            &[("feature_drift".into(), vec![b])],
            Vec::new(),
            |_, test| if test == "ks" { 0.05 } else { 0.1 },
            0.0,
        );
    }
    let tests: Vec<&str> = r.drift.keys().map(|k| k.4.as_str()).collect();
    assert_eq!(tests, ["ks", "wasserstein"]);
    let page = r.render(&Totals::default());
    assert!(page.contains("x (ks)") && page.contains("x (wasserstein)"));
}
