//! Delayed labels end to end: a model whose new version loses most of one class, the
//! true labels arriving minutes later in their own file; replayed, killed, and fed bad
//! labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::{inferwatch, jsonl, root, summary, text};

/// 10:00 on 2026-11-21.
const T0: i64 = 1_795_255_200_000;
const MINUTE: i64 = 60_000;
/// Version 2 serves from this minute on.
const SWITCH: i64 = 25;
const CLASSES: [&str; 3] = ["a", "b", "c"];

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (d, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // 2026-11-21 is day 20,778 after the epoch; every test time falls on it.
    assert_eq!(d, 20_778);
    format!(
        "2026-11-21T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

/// A small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Forty minutes of a three-class model at 20 records a second from 50 clients, and
/// their true labels. Version 1 is right 90% of the time; version 2 (from minute 25)
/// answers 60% of class `c` as `b`. Each answer is logged with probability 0.85 (0.075
/// for the others). 90% of the records get a label 30-300 s later; the label file is in
/// label-time order. Then bad labels: an unknown class, a second label, an unknown
/// request id, an unknown model, a cut line. Returns (records, labels).
fn traffic(dir: &Path) -> (PathBuf, PathBuf) {
    let mut rng = Lcg(7);
    let mut records = String::new();
    let mut labels: Vec<(i64, String)> = Vec::new();
    for i in 0..40 * 60 * 20 {
        let ts = T0 + 50 * i;
        let truth = rng.next(3) as usize;
        let v2 = ts >= T0 + SWITCH * MINUTE;
        let mut answer = if rng.next(10) < 9 {
            truth
        } else {
            (truth + 1 + rng.next(2) as usize) % 3
        };
        if v2 && truth == 2 && rng.next(10) < 6 {
            answer = 1;
        }
        let mut probs = [0.075; 3];
        probs[answer] = 0.85;
        let r = json!({
            "ts": rfc3339(ts), "request_id": format!("r-{i}"),
            "client_id": format!("key-{}", i % 50), "model": "clf",
            "model_version": if v2 { "2" } else { "1" },
            "features": {"x": (i % 97) as f64 / 10.0},
            "prediction": {"label": CLASSES[answer], "score": 0.85, "probs": probs},
        });
        records.push_str(&r.to_string());
        records.push('\n');
        if rng.next(10) < 9 {
            let at = ts + 30_000 + rng.next(270_000) as i64;
            let l = json!({"request_id": format!("r-{i}"), "ts": rfc3339(at), "model": "clf",
                           "label": CLASSES[truth]});
            labels.push((at, l.to_string()));
        }
    }
    labels.sort_by_key(|(at, _)| *at);
    let at = T0 + 10 * MINUTE;
    let bad = [
        json!({"request_id": "r-100", "ts": rfc3339(at), "model": "clf", "label": "zebra"})
            .to_string(),
        json!({"request_id": "r-nobody", "ts": rfc3339(at), "model": "clf", "label": "a"})
            .to_string(),
        json!({"request_id": "r-101", "ts": rfc3339(at), "model": "other", "label": "a"})
            .to_string(),
        r#"{"request_id": "r-102", "ts": "#.to_owned(),
    ];
    let mut lines: Vec<String> = labels.into_iter().map(|(_, l)| l).collect();
    // A second label for a record labelled before (r-0's, if it got one, comes early).
    let first = lines[0].clone();
    lines.insert(lines.len() / 3, first);
    let k = lines.len() / 4;
    for (j, b) in bad.into_iter().enumerate() {
        lines.insert(k + j, b);
    }
    let input = dir.join("clf.jsonl");
    std::fs::write(&input, records).unwrap();
    let label_file = dir.join("clf.labels.jsonl");
    std::fs::write(&label_file, lines.join("\n") + "\n").unwrap();
    (input, label_file)
}

fn config(dir: &Path, labels: &Path) -> PathBuf {
    let path = dir.join("labels.yaml");
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             decode:\n  features:\n    - {{name: x, type: numerical}}\n\
             queries: {}\n\
             dead_letter: {{path: {}}}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: 50ms\n\
             labels:\n  source: {{type: file, paths: [{}], batch_records: 500}}\n  classes: {{clf: [a, b, c]}}\n",
            root().join("queries").display(),
            dir.join("dead.jsonl").display(),
            labels.display(),
        ),
    )
    .unwrap();
    path
}

fn minutes(a: &Value) -> i64 {
    let end = a["window_end"].as_str().unwrap();
    let m: i64 = end[14..16].parse().unwrap();
    let h: i64 = end[11..13].parse().unwrap();
    (h - 10) * 60 + m
}

#[test]
fn a_class_lost_by_a_new_version_is_found_from_late_labels_and_bad_labels_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (input, labels) = traffic(dir.path());
    let cfg = config(dir.path(), &labels);
    let alerts = dir.path().join("alerts.jsonl");
    let o = inferwatch(
        &crate::checkpoint::replay_args(&cfg, &input, &alerts, None),
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let perf: Vec<Value> = jsonl(&alerts)
        .into_iter()
        .filter(|a| a["rule_id"].as_str().unwrap().starts_with("performance."))
        .collect();
    // Nothing about performance before the switch (a row at 25:00 covers version 1 only).
    let early: Vec<&Value> = perf.iter().filter(|a| minutes(a) <= SWITCH).collect();
    assert!(early.is_empty(), "{early:?}");
    // The recall rule names class c of version 2, and only that, within ten minutes.
    let recall: Vec<&Value> = perf
        .iter()
        .filter(|a| a["rule_id"] == "performance.class_recall_drop" && a["state"] == "firing")
        .collect();
    let named: std::collections::BTreeSet<(String, String)> = recall
        .iter()
        .map(|a| {
            (
                a["labels"]["class"].as_str().unwrap().to_owned(),
                a["labels"]["model_version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [("c".to_owned(), "2".to_owned())].into_iter().collect(),
        "{recall:?}"
    );
    let first = recall.iter().map(|a| minutes(a)).min().unwrap();
    assert!(first <= SWITCH + 10, "first firing at minute {first}");
    let values = &recall[0]["evidence"]["values"];
    assert!(values["recall"].as_f64().unwrap() < 0.6, "{values}");
    assert!(
        values["reference_recall"].as_f64().unwrap() > 0.85,
        "{values}"
    );
    assert_eq!(values["reference_source"], "realised");

    // Every label is accounted for: joined, or a dead letter with its reason.
    let s: BTreeMap<String, u64> = summary(&o.stderr);
    let lines = std::fs::read_to_string(&labels).unwrap().lines().count() as u64;
    assert_eq!(s["labels read"], lines, "{}", text(&o));
    assert_eq!(
        s["labels joined"] + s["labels refused"] + s["labels waiting"],
        lines,
        "{}",
        text(&o)
    );
    let dead: Vec<Value> = jsonl(&dir.path().join("dead.jsonl"))
        .into_iter()
        .filter(|d| d["kind"] == "label")
        .collect();
    assert_eq!(dead.len() as u64, s["labels refused"]);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    for want in [
        "not one of the model's classes",
        "no prediction",
        "model without known classes",
        "malformed label",
        "duplicate label",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want}: {reasons:?}"
        );
    }
}

#[test]
fn labels_across_kills_are_joined_once_and_give_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (input, labels) = traffic(dir.path());
    let cfg = config(dir.path(), &labels);
    crate::checkpoint::killed_replay(dir.path(), &cfg, &input, 31, 4, (20, 400), true);
    // The uninterrupted run it was compared with found the lost class.
    let found = jsonl(&dir.path().join("reference-31.jsonl"))
        .iter()
        .any(|a| a["rule_id"] == "performance.class_recall_drop" && a["labels"]["class"] == "c");
    assert!(found);
}

#[test]
fn a_kafka_run_with_a_label_topic_gives_the_performance_alerts_of_a_replay() {
    let brokers = crate::kafka::brokers();
    let dir = tempfile::tempdir().unwrap();
    let (input, labels) = traffic(dir.path());
    let replayed = dir.path().join("replayed.jsonl");
    let o = inferwatch(
        &crate::checkpoint::replay_args(&config(dir.path(), &labels), &input, &replayed, None),
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));

    let id = std::process::id();
    let (topic, label_topic) = (format!("clf-{id}"), format!("clf-labels-{id}"));
    crate::kafka::create_topic(&brokers, &topic, 3);
    crate::kafka::create_topic(&brokers, &label_topic, 1);
    for (t, file) in [(&topic, &input), (&label_topic, &labels)] {
        let text = std::fs::read(file).unwrap();
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        crate::kafka_ops::produce_lines(&brokers, t, &lines);
    }
    let cfg = dir.path().join("kafka-labels.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: kafka, bootstrap_servers: {brokers}, topics: [{topic}], group_id: g-{topic}}}\n\
             decode:\n  features:\n    - {{name: x, type: numerical}}\n\
             time: {{idle_timeout: 10s}}\n\
             queries: {}\n\
             alerts: {{stdout: false}}\n\
             labels:\n  source: {{type: kafka, bootstrap_servers: {brokers}, topics: [{label_topic}], group_id: g-{label_topic}}}\n  classes: {{clf: [a, b, c]}}\n",
            root().join("queries").display(),
        ),
    )
    .unwrap();
    let consumed = dir.path().join("consumed.jsonl");
    let o = crate::cli::run_until_idle(&cfg, "5s", &consumed, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let performance = |path: &Path| -> std::collections::BTreeSet<String> {
        jsonl(path)
            .iter()
            .filter(|a| a["rule_id"].as_str().unwrap().starts_with("performance."))
            .map(|a| format!("{} {} {}", a["rule_id"], a["id"], a["state"]))
            .collect()
    };
    let want = performance(&replayed);
    assert!(
        want.iter().any(|a| a.contains("class_recall_drop")),
        "{want:?}"
    );
    crate::kafka::assert_same_alerts(&performance(&consumed), &want, &text(&o));
}
