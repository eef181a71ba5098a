use std::io::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use serde_json::json;

use super::*;
use crate::decode::{BatchDecoder, DecodeConfig, RawBatch};
use crate::tables::test_support::{MINUTE, minute_window};

/// 10:00 on 2026-11-21, the start of every test's traffic.
const T0: i64 = 1_795_255_200_000;

fn config(path: &std::path::Path) -> LabelsConfig {
    let mut c = LabelsConfig::new(SourceConfig::File(
        crate::source::file::FileSourceConfig::replay(vec![path.to_owned()]),
    ));
    c.classes
        .insert("m".into(), vec!["cat".into(), "dog".into()]);
    c
}

/// Predictions `r-{from}..r-{to}` of model `m`, one every 100 ms from `t`: even ones
/// answered "cat" at 0.8, odd ones "dog" at 0.7.
fn predictions(from: usize, to: usize, t: i64, version: &str) -> RecordBatch {
    decoded((from..to).map(|i| {
        let (label, probs) = if i % 2 == 0 {
            ("cat", [0.8f64, 0.2])
        } else {
            ("dog", [0.3, 0.7])
        };
        json!({
            "ts": crate::time::rfc3339(t + 100 * (i - from) as i64),
            "request_id": format!("r-{i}"), "client_id": "c", "model": "m",
            "model_version": version,
            "prediction": {"label": label, "score": probs[0].max(probs[1]), "probs": probs},
        })
    }))
}

/// An answer of model `m` version 1: request `id` of `client`, `ms` after `T0`.
fn answer(ms: i64, id: &str, client: &str, prediction: serde_json::Value) -> serde_json::Value {
    json!({
        "ts": crate::time::rfc3339(T0 + ms),
        "request_id": id, "client_id": client, "model": "m", "model_version": "1",
        "prediction": prediction,
    })
}

/// Records decoded into one batch, none of them dead.
fn decoded(records: impl IntoIterator<Item = serde_json::Value>) -> RecordBatch {
    let decoder = BatchDecoder::new(&DecodeConfig::default()).unwrap();
    let mut raw = RawBatch::new(0);
    for (i, r) in records.into_iter().enumerate() {
        raw.push(&serde_json::to_vec(&r).unwrap(), i as u64);
    }
    let d = decoder.decode(&raw);
    assert!(d.dead.is_empty(), "{:?}", d.dead.first());
    d.events.unwrap()
}

fn label_line(id: &str, ts: i64, model: &str, class: &str) -> String {
    json!({"request_id": id, "ts": crate::time::rfc3339(ts), "model": model, "label": class})
        .to_string()
}

fn write(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn f64_at(b: &RecordBatch, col: &str, row: usize) -> Option<f64> {
    let c = b.column_by_name(col).unwrap().as_primitive::<Float64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn u64_at(b: &RecordBatch, col: &str, row: usize) -> u64 {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<UInt64Type>()
        .value(row)
}

fn str_at(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let c = b.column_by_name(col).unwrap().as_string::<i32>();
    c.is_valid(row).then(|| c.value(row).to_owned())
}

/// The tables of the window ending at `end_ms`.
fn tables_at(labels: &Arc<Labels>, end_ms: i64) -> (RecordBatch, RecordBatch) {
    let w = minute_window(end_ms.div_euclid(MINUTE) - 1, Vec::new(), &[]);
    assert_eq!(w.end_ms, end_ms);
    let t = tables(labels);
    (
        t[0].compute(&w).unwrap().remove(0),
        t[1].compute(&w).unwrap().remove(0),
    )
}

#[test]
fn labels_join_their_predictions_and_the_others_are_dead_letters_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    // r-0..r-79 labelled 30 s after their prediction: r-0..r-39 with the answer given,
    // r-40..r-79 with the other class. Then one label of each kind that cannot join.
    let mut lines = Vec::new();
    for i in 0..80usize {
        let given = if i % 2 == 0 { "cat" } else { "dog" };
        let other = if i % 2 == 0 { "dog" } else { "cat" };
        let class = if i < 40 { given } else { other };
        lines.push(label_line(
            &format!("r-{i}"),
            T0 + 100 * i as i64 + 30_000,
            "m",
            class,
        ));
    }
    lines.push(label_line("r-0", T0 + 40_000, "m", "cat")); // a second label
    lines.push(label_line("r-999", T0 + 40_000, "m", "cat")); // no such prediction
    lines.push(label_line("r-81", T0 + 40_000, "m", "fish")); // no such class
    lines.push(label_line("r-82", T0 + 40_000, "x", "cat")); // no such model
    lines.push(r#"{"request_id": "r-83", "ts": "#.into()); // cut short
    lines.push(label_line("r-84", T0 + 25 * 3600 * 1000, "m", "cat")); // past the horizon
    write(&path, &lines);

    let labels = Labels::new(&config(&path), &[], &[]).unwrap();
    labels.start(1 << 20, Duration::from_secs(30)).unwrap();
    // r-5 comes twice: the second is counted, the first kept.
    labels.register(&predictions(0, 100, T0, "1"), &[]);
    labels.register(&predictions(5, 6, T0 + 1_000, "1"), &[]);
    let mut dead = labels.advance_to(T0 + 2 * MINUTE).unwrap();
    let t = labels.totals();
    assert_eq!(t.predictions, 100);
    assert_eq!(t.duplicate_predictions, 1);
    assert_eq!(t.joined, 80);
    assert_eq!(
        (
            t.duplicate,
            t.no_prediction,
            t.unknown_class,
            t.unknown_model,
            t.malformed
        ),
        (1, 1, 1, 1, 1)
    );
    // The label a day later is still waiting: its time has not come.
    assert_eq!((t.too_late, t.waiting), (0, 1));

    let (perf, class) = tables_at(&labels, T0 + 2 * MINUTE);
    assert_eq!(perf.num_rows(), 1);
    assert_eq!(str_at(&perf, "model_version", 0).as_deref(), Some("1"));
    assert_eq!(u64_at(&perf, "predictions", 0), 100);
    assert_eq!(u64_at(&perf, "labelled", 0), 80);
    assert_eq!(f64_at(&perf, "share_labelled", 0), Some(0.8));
    assert_eq!(f64_at(&perf, "accuracy", 0), Some(0.5));
    // Mean confidence: half at 0.8, half at 0.7, labelled or not. With no reference
    // and no baseline, the span's own labels calibrate: at 0.8, 20 cats right and 20
    // dogs wrong; at 0.7, 20 dogs right and 20 cats wrong: one half in both bins.
    let est = f64_at(&perf, "mean_confidence", 0).unwrap();
    assert!((est - 0.75).abs() < 1e-6, "{est}");
    let est = f64_at(&perf, "estimated_accuracy", 0).unwrap();
    assert!((est - 0.5).abs() < 1e-6, "{est}");
    // Log loss: 20 cats right at 0.8, 20 dogs right at 0.7, 20 cats answered dog (p 0.3),
    // 20 dogs answered cat (p 0.2).
    let want =
        -(20.0 * 0.8f64.ln() + 20.0 * 0.7f64.ln() + 20.0 * 0.3f64.ln() + 20.0 * 0.2f64.ln()) / 80.0;
    let got = f64_at(&perf, "log_loss", 0).unwrap();
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    // No reference yet: nothing to compare with.
    assert_eq!(f64_at(&perf, "reference_accuracy", 0), None);
    assert_eq!(class.num_rows(), 2);
    assert_eq!(str_at(&class, "class", 0).as_deref(), Some("cat"));
    // Cats: 20 answered cat (r-0, 2, .., 38) and 20 answered dog (r-41, 43, .., 79).
    assert_eq!(u64_at(&class, "support", 0), 40);
    assert_eq!(f64_at(&class, "recall", 0), Some(0.5));
    assert_eq!(str_at(&class, "reference_source", 0), None);

    // A day later the late label is refused for its delay, the rest expired unlabelled.
    dead.extend(labels.advance_to(T0 + 25 * 3600 * 1000 + MINUTE).unwrap());
    let t = labels.totals();
    assert_eq!(t.too_late, 1);
    assert_eq!((t.expired, t.pending), (20, 0));
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    for want in [
        "duplicate label",
        "no prediction",
        "not one of the model's classes",
        "model without known classes",
        "malformed label",
        "after labels.horizon",
    ] {
        assert_eq!(
            reasons.iter().filter(|r| r.contains(want)).count(),
            1,
            "{want}: {reasons:?}"
        );
    }
    assert!(dead.iter().all(|d| d.source.starts_with("labels:")));
}

#[test]
fn each_model_version_is_judged_on_its_own_against_the_versions_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    // Version 1 serves minutes 0-19 and is always right; version 2 serves minutes
    // 20-29 and gets every dog wrong. One prediction a second, labelled 5 s later.
    let mut lines = Vec::new();
    for i in 0..1800usize {
        let t = T0 + 1000 * i as i64;
        let class = if i % 2 == 0 { "cat" } else { "dog" };
        lines.push(label_line(&format!("r-{i}"), t + 5_000, "m", class));
    }
    write(&path, &lines);
    let mut c = config(&path);
    c.window = Duration::from_secs(600);
    let labels = Labels::new(&c, &[], &[]).unwrap();
    labels.start(1 << 20, Duration::from_secs(30)).unwrap();
    let decoder = BatchDecoder::new(&DecodeConfig::default()).unwrap();
    let mut raw = RawBatch::new(0);
    for i in 0..1800usize {
        let v2 = i >= 1200;
        let truth_cat = i % 2 == 0;
        let answer_cat = truth_cat || v2;
        let probs = if answer_cat { [0.9, 0.1] } else { [0.1, 0.9] };
        let r = json!({
            "ts": crate::time::rfc3339(T0 + 1000 * i as i64),
            "request_id": format!("r-{i}"), "client_id": "c", "model": "m",
            "model_version": if v2 { "2" } else { "1" },
            "prediction": {"label": if answer_cat { "cat" } else { "dog" }, "probs": probs},
        });
        raw.push(&serde_json::to_vec(&r).unwrap(), i as u64);
    }
    labels.register(&decoder.decode(&raw).events.unwrap(), &[]);
    let end = T0 + 30 * MINUTE;
    labels.advance_to(end).unwrap();
    let (perf, class) = tables_at(&labels, end);
    // Minutes 20-29: only version 2 predicted; the reference (minutes 0-19) is version 1.
    assert_eq!(perf.num_rows(), 1);
    assert_eq!(str_at(&perf, "model_version", 0).as_deref(), Some("2"));
    assert_eq!(str_at(&perf, "reference_version", 0).as_deref(), Some("1"));
    assert_eq!(f64_at(&perf, "reference_accuracy", 0), Some(1.0));
    // Labels up to the window's end only: the last 5 s of predictions are unlabelled.
    assert_eq!(u64_at(&perf, "predictions", 0), 600);
    assert_eq!(u64_at(&perf, "labelled", 0), 595);
    let acc = f64_at(&perf, "accuracy", 0).unwrap();
    assert!((acc - 298.0 / 595.0).abs() < 1e-12, "{acc}");
    // The dogs' recall fell from 1 to 0: significant after correcting for two classes.
    assert_eq!(str_at(&class, "class", 1).as_deref(), Some("dog"));
    assert_eq!(f64_at(&class, "recall", 1), Some(0.0));
    assert_eq!(f64_at(&class, "reference_recall", 1), Some(1.0));
    assert_eq!(
        str_at(&class, "reference_source", 1).as_deref(),
        Some("realised")
    );
    assert!(f64_at(&class, "recall_p_adjusted", 1).unwrap() < 1e-12);
    // The cats' recall did not move, their precision halved.
    assert_eq!(f64_at(&class, "recall_drop", 0), Some(0.0));
    let p = f64_at(&class, "precision", 0).unwrap();
    assert!((p - 298.0 / 595.0).abs() < 1e-12, "{p}");
    // A model confident at 0.9 and right half the time.
    let gap = f64_at(&perf, "confidence_gap", 0).unwrap();
    assert!((gap - (0.9 - 298.0 / 595.0)).abs() < 1e-6, "{gap}");
}

#[test]
fn a_checkpoint_taken_between_labels_loses_and_repeats_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let lines: Vec<String> = (0..600usize)
        .map(|i| label_line(&format!("r-{i}"), T0 + 100 * i as i64 + 2_000, "m", "cat"))
        .collect();
    write(&path, &lines);
    let mut c = config(&path);
    c.max_waiting = 200;
    if let SourceConfig::File(f) = &mut c.source {
        f.batch_records = 64;
    }
    let events = predictions(0, 600, T0, "1");
    let whole = Labels::new(&c, &[], &[]).unwrap();
    whole.start(1 << 20, Duration::from_secs(30)).unwrap();
    whole.register(&events, &[]);
    whole.advance_to(T0 + 2 * MINUTE).unwrap();

    let first = Labels::new(&c, &[], &[]).unwrap();
    first.start(1 << 20, Duration::from_secs(30)).unwrap();
    first.register(&events, &[]);
    first.advance_to(T0 + 30_000).unwrap();
    let state = first.snapshot();
    assert_eq!(first.totals().joined, 280);
    // Reading stopped at the first batch holding a label past the window's end: the
    // file is not read to its end, and what was read ahead waits in the checkpoint.
    let waiting = first.totals().waiting;
    assert!((1..64).contains(&waiting), "{:?}", first.totals());
    // Encoded and decoded, as a checkpoint carries it.
    let state = Labels::decode(&state.unwrap()).unwrap();
    let second = Labels::new(&c, &[], &[]).unwrap();
    second.restore(state);
    second.start(1 << 20, Duration::from_secs(30)).unwrap();
    let dead = second.advance_to(T0 + 2 * MINUTE).unwrap();
    assert!(dead.is_empty(), "{:?}", dead.first());
    assert_eq!(second.totals(), whole.totals());
    assert_eq!(second.totals().joined, 600);
    assert_eq!(
        tables_at(&second, T0 + 2 * MINUTE),
        tables_at(&whole, T0 + 2 * MINUTE)
    );
}

#[test]
fn memory_stays_bounded_by_config_and_what_is_dropped_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    // Ten labels for the predictions, then 50 labels from a year ahead.
    let mut lines: Vec<String> = (90..100usize)
        .map(|i| label_line(&format!("r-{i}"), T0 + 20_000, "m", "cat"))
        .collect();
    for i in 0..50usize {
        lines.push(label_line(
            &format!("f-{i}"),
            T0 + 365 * 24 * 3600 * 1000 + i as i64,
            "m",
            "cat",
        ));
    }
    write(&path, &lines);
    let mut c = config(&path);
    c.max_pending = 10;
    c.max_waiting = 5;
    c.max_versions = 2;
    let labels = Labels::new(&c, &[], &[]).unwrap();
    labels.start(1 << 20, Duration::from_secs(30)).unwrap();
    // 100 predictions over three versions: the third is counted as "other".
    labels.register(&predictions(0, 40, T0, "1"), &[]);
    labels.register(&predictions(40, 70, T0 + 4_000, "2"), &[]);
    labels.register(&predictions(70, 100, T0 + 7_000, "3"), &[]);
    let dead = labels.advance_to(T0 + MINUTE).unwrap();
    let t = labels.totals();
    assert_eq!((t.predictions, t.pending, t.evicted), (100, 10, 90));
    assert_eq!(t.joined, 10);
    // A buffer full of labels a year ahead is emptied: they cannot stop the reading.
    assert_eq!((t.waiting, t.ahead), (0, 50));
    assert_eq!(dead.len(), 50);
    let (perf, _) = tables_at(&labels, T0 + MINUTE);
    let versions: Vec<Option<String>> = (0..perf.num_rows())
        .map(|r| str_at(&perf, "model_version", r))
        .collect();
    assert_eq!(
        versions,
        vec![Some("1".into()), Some("2".into()), Some("other".into())]
    );
}

#[test]
fn label_records_take_their_fields_from_configured_paths() {
    let f = LabelFields {
        request_id: "meta.id".into(),
        ts: "meta.at".into(),
        model: "model".into(),
        label: "truth.class".into(),
    };
    let rec = br#"{"meta": {"id": 17, "at": 1795255200000}, "model": "m", "truth": {"class": 3}}"#;
    assert_eq!(
        decode_label(rec, &f),
        Ok((T0, "m".into(), "17".into(), "3".into()))
    );
    let e = decode_label(br#"{"meta": {"id": "a"}, "model": "m"}"#, &f).unwrap_err();
    assert!(e.contains("meta.at"), "{e}");
    let long = format!(
        r#"{{"meta": {{"id": "{}", "at": 1}}, "model": "m", "truth": {{"class": "a"}}}}"#,
        "x".repeat(2000)
    );
    assert!(
        decode_label(long.as_bytes(), &f)
            .unwrap_err()
            .contains("longer")
    );
}

#[test]
fn long_request_ids_join_and_are_kept_as_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let long = "x".repeat(500);
    write(&path, &[label_line(&long, T0 + 5_000, "m", "cat")]);
    let labels = Labels::new(&config(&path), &[], &[]).unwrap();
    labels.start(1 << 20, Duration::from_secs(30)).unwrap();
    let decoder = BatchDecoder::new(&DecodeConfig::default()).unwrap();
    let mut raw = RawBatch::new(0);
    let r = json!({"ts": crate::time::rfc3339(T0), "request_id": long, "client_id": "c",
                   "model": "m", "prediction": {"label": "cat"}});
    raw.push(&serde_json::to_vec(&r).unwrap(), 0);
    labels.register(&decoder.decode(&raw).events.unwrap(), &[]);
    labels.advance_to(T0 + MINUTE).unwrap();
    assert_eq!(labels.totals().joined, 1);
    let inner = labels.lock();
    assert!(inner.pending.keys().all(|k| k.len() <= 2 + 1 + 32));
}

#[test]
fn a_restore_after_a_config_change_keeps_each_models_predictions_and_drops_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    write(&path, &[label_line("r-0", T0 + 20_000, "m", "dog")]);
    let before = Labels::new(&config(&path), &[], &[]).unwrap();
    before.register(&predictions(0, 10, T0, "1"), &[]);
    let state = before.snapshot().unwrap();
    // A model that sorts first is added: `m` is now the second model.
    let mut c = config(&path);
    c.classes
        .insert("a".into(), vec!["x".into(), "y".into(), "z".into()]);
    let after = Labels::new(&c, &[], &[]).unwrap();
    after.restore(Labels::decode(&state).unwrap());
    after.start(1 << 20, Duration::from_secs(30)).unwrap();
    after.advance_to(T0 + MINUTE).unwrap();
    assert_eq!((after.totals().joined, after.totals().pending), (1, 10));
    // `m`'s classes changed: its saved predictions cannot be read with them.
    let mut c = config(&path);
    c.classes
        .insert("m".into(), vec!["dog".into(), "cat".into(), "cow".into()]);
    let changed = Labels::new(&c, &[], &[]).unwrap();
    changed.restore(Labels::decode(&state).unwrap());
    changed.start(1 << 20, Duration::from_secs(30)).unwrap();
    changed.advance_to(T0 + MINUTE).unwrap();
    assert_eq!(
        (changed.totals().joined, changed.totals().no_prediction),
        (0, 1)
    );
    let (perf, _) = tables_at(&changed, T0 + MINUTE);
    assert_eq!(perf.num_rows(), 0);
}

/// Labels joined from an empty label file in `dir`, started.
fn started_without_labels(dir: &tempfile::TempDir) -> Arc<Labels> {
    let path = dir.path().join("labels.jsonl");
    write(&path, &[]);
    let labels = Labels::new(&config(&path), &[], &[]).unwrap();
    labels.start(1 << 20, Duration::from_secs(30)).unwrap();
    labels
}

#[test]
fn probabilities_out_of_range_are_counted_and_kept_out_of_the_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let labels = started_without_labels(&dir);
    labels.register(&predictions(0, 100, T0, "1"), &[]);
    // A sender's answers with "probabilities" of 1e300 (finite as f64, infinite as the
    // f32 they wait as) and -3.
    // And two without a label whose scores are logits: their largest names the answer.
    let records = (0..22usize).map(|i| {
        let prediction = match i {
            20.. => json!({"probs": [-2.0, 3.5]}),
            _ if i % 2 == 0 => json!({"label": "cat", "probs": [1e300, 0.0]}),
            _ => json!({"label": "cat", "probs": [-3.0, 4.0]}),
        };
        answer(50 * i as i64, &format!("h-{i}"), "h", prediction)
    });
    labels.register(&decoded(records), &[]);
    labels.advance_to(T0 + 2 * MINUTE).unwrap();
    let t = labels.totals();
    assert_eq!((t.predictions, t.probs_out_of_range), (122, 22));
    let (perf, _) = tables_at(&labels, T0 + 2 * MINUTE);
    assert_eq!(u64_at(&perf, "predictions", 0), 122);
    // The mean confidence of the hundred answers with probabilities: half at 0.8, half
    // at 0.7.
    let est = f64_at(&perf, "mean_confidence", 0).unwrap();
    assert!((est - 0.75).abs() < 1e-6, "{est}");
}

#[test]
fn each_row_of_a_sliced_batch_joins_with_its_own_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let labels = started_without_labels(&dir);
    // A hundred answers "cat": the first fifty at 0.6, the last fifty at 0.9; then ten
    // with a missing probability and ten with three probabilities for two classes.
    let batch = decoded((0..120usize).map(|i| {
        let probs = match i {
            0..50 => json!([0.6, 0.4]),
            50..100 => json!([0.9, 0.1]),
            100..110 => json!([0.9, null]),
            _ => json!([0.5, 0.3, 0.2]),
        };
        let prediction = json!({"label": "cat", "probs": probs});
        answer(100 * i as i64, &format!("r-{i}"), "c", prediction)
    }));
    // Only the last seventy rows: their lists start 100 values into the child array.
    labels.register(&batch.slice(50, 70), &[]);
    labels.advance_to(T0 + 2 * MINUTE).unwrap();
    assert_eq!(labels.totals().predictions, 70);
    let (perf, _) = tables_at(&labels, T0 + 2 * MINUTE);
    assert_eq!(u64_at(&perf, "predictions", 0), 70);
    // Fifty answers with probabilities, all at 0.9; the twenty others have none.
    let est = f64_at(&perf, "mean_confidence", 0).unwrap();
    assert!((est - 0.9).abs() < 1e-6, "{est}");
}

#[test]
fn registrations_sent_in_a_burst_are_all_joined_in_order_before_any_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    write(&path, &[]);
    let batches: Vec<RecordBatch> = (0..50)
        .map(|b| predictions(b * 20, b * 20 + 20, T0 + b as i64 * 2_000, "1"))
        .collect();
    // All sent at once, then read.
    let burst = Labels::new(&config(&path), &[], &[]).unwrap();
    for b in &batches {
        burst.register(b, &[]);
    }
    assert_eq!(burst.totals().predictions, 1000);
    // Each read right after it was sent: one registration at a time.
    let stepwise = Labels::new(&config(&path), &[], &[]).unwrap();
    for (i, b) in batches.iter().enumerate() {
        stepwise.register(b, &[]);
        assert_eq!(stepwise.totals().predictions, (i as u64 + 1) * 20);
    }
    assert_eq!(burst.snapshot().unwrap(), stepwise.snapshot().unwrap());
}

/// The one-pass reading of label records gives what the `Value` reading gives, label
/// or reason, on records as logs write them and as an attacker might; and it is the
/// one that reads the usual record.
#[test]
fn label_records_read_in_one_pass_as_through_a_value() {
    let f = LabelFields::default();
    let usual = br#"{"request_id": "r-28", "ts": "2026-11-21T10:01:01.306Z", "model": "digits", "label": "0"}"#;
    assert!(flat::decode(usual, &f).is_some());
    let records = [
        &usual[..],
        br#"{"ts":"2026-11-21T10:01:01Z","model":"m","request_id":"r","label":"a","extra":{"x":[1,2,{"y":null}]}}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":17,"label":3}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":1.5e3,"label":true}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":-0,"label":18446744073709551615}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r","label":null}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r"}"#,
        br#"{"ts":1795255200000.5,"model":"m","request_id":"r","label":"a"}"#,
        br#"{"ts":"yesterday","model":"m","request_id":"r","label":"a"}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r","label":"a","label":"b"}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r","label":"a","label":null}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r\"q\u00e9","label":"\u0041"}"#,
        br#"{"ts":1795255200000,"mod\u0065l":"m","request_id":"r","label":"a"}"#,
        br#"{"ts":1795255200000,"model":["m"],"request_id":"r","label":"a"}"#,
        br#"{"ts":1795255200000,"model":{"m":1},"request_id":"r","label":"a"}"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r","label":"a"} x"#,
        br#"{"ts":1795255200000,"model":"m","request_id":"r","label":"a""#,
        br#"[1795255200000,"m","r","a"]"#,
        br#""just a string""#,
        br#"{"ts":9223372036854775808,"model":"m","request_id":"r","label":"a"}"#,
        r#"{"ts":-5,"model":"é","request_id":"r","label":"ünïcode"}"#.as_bytes(),
        b"{\"ts\":1,\"model\":\"m\",\"request_id\":\"r\",\"label\":\"\xff\"}",
    ];
    let long = format!(
        r#"{{"ts":1,"model":"m","request_id":"{}","label":"a"}}"#,
        "x".repeat(1025)
    );
    let edge = format!(
        r#"{{"ts":1,"model":"m","request_id":"{}","label":"a"}}"#,
        "x".repeat(1024)
    );
    for rec in records
        .iter()
        .copied()
        .chain([long.as_bytes(), edge.as_bytes()])
    {
        assert_eq!(
            decode_label(rec, &f),
            decode_label_value(rec, &f),
            "{}",
            String::from_utf8_lossy(rec)
        );
    }
    // Keys that are the same field twice, and a dotted path, still agree.
    let same = LabelFields {
        request_id: "id".into(),
        label: "id".into(),
        ..LabelFields::default()
    };
    let rec = br#"{"ts":1,"model":"m","id":"x"}"#;
    assert_eq!(
        decode_label(rec, &same),
        Ok((1, "m".into(), "x".into(), "x".into()))
    );
    let dotted = LabelFields {
        label: "truth.class".into(),
        ..LabelFields::default()
    };
    assert!(
        flat::decode(
            br#"{"ts":1,"model":"m","request_id":"r","truth":{"class":"a"}}"#,
            &dotted
        )
        .is_none()
    );
}
