//! Tests of the alert state machine and its receivers.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::rules::parse_rules;
use crate::window::{ClosedWindow, WindowStats};

fn rule(extra: &str) -> Rule {
    let text = format!(
        "- id: t.rule\n  severity: high\n  window: {{size: 1m}}\n  sql: SELECT 1\n  labels_from: [client_id]\n  annotations: {{summary: '{{{{ client_id }}}} sent {{{{ n }}}}'}}\n{extra}"
    );
    parse_rules(&text, Path::new("t.yaml")).unwrap().remove(0)
}

fn window(end_min: i64) -> ClosedWindow {
    ClosedWindow {
        spec: crate::window::WindowSpec {
            size_ms: 60_000,
            slide_ms: 60_000,
            grace_ms: 0,
        },
        start_ms: (end_min - 1) * 60_000,
        end_ms: end_min * 60_000,
        batches: Vec::new(),
        stats: WindowStats::default(),
        ranges: Default::default(),
    }
}

fn result(clients: &[&str]) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("client_id", DataType::Utf8, false),
        Field::new("n", DataType::Float64, false),
    ]));
    let n: Vec<f64> = clients.iter().map(|_| 1500.0).collect();
    vec![
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(clients.to_vec())),
                Arc::new(Float64Array::from(n)),
            ],
        )
        .unwrap(),
    ]
}

/// Runs evaluations at minutes 1, 2, ... with the given clients true at each.
fn run(r: &Rule, steps: &[&[&str]]) -> Vec<(i64, String, State)> {
    let mut book = AlertBook::new(1, &AlertsConfig::default());
    let mut out = Vec::new();
    for (i, clients) in steps.iter().enumerate() {
        let w = window(i as i64 + 1);
        let batches = result(clients);
        for n in book.evaluate(0, r, &w, &[], Ok(&batches)) {
            out.push((i as i64 + 1, n.labels["client_id"].clone(), n.state));
        }
    }
    out
}

#[test]
fn without_for_an_alert_fires_at_once_and_resolves_when_gone() {
    let r = rule("");
    let got = run(&r, &[&["a"], &["a"], &[]]);
    assert_eq!(
        got,
        vec![
            (1, "a".into(), State::Firing),
            (3, "a".into(), State::Resolved)
        ]
    );
}

#[test]
fn for_keeps_an_alert_pending_until_it_held_long_enough() {
    let r = rule("  for: 2m\n");
    let got = run(&r, &[&["a", "b"], &["a"], &["a"], &["a"]]);
    assert_eq!(
        got,
        vec![
            (1, "a".into(), State::Pending),
            (1, "b".into(), State::Pending),
            (2, "b".into(), State::Resolved),
            (3, "a".into(), State::Firing),
        ]
    );
}

#[test]
fn keep_firing_for_holds_a_cleared_alert() {
    let r = rule("  keep_firing_for: 2m\n");
    let got = run(&r, &[&["a"], &[], &["a"], &[], &[], &[]]);
    assert_eq!(
        got,
        vec![
            (1, "a".into(), State::Firing),
            (6, "a".into(), State::Resolved)
        ]
    );
}

#[test]
fn ids_are_deterministic_and_change_per_episode() {
    let r = rule("");
    let mut book = AlertBook::new(1, &AlertsConfig::default());
    let mut ids = Vec::new();
    for (i, c) in [&["a"][..], &[], &["a"]].iter().enumerate() {
        let b = result(c);
        for n in book.evaluate(0, &r, &window(i as i64 + 1), &[], Ok(&b)) {
            ids.push((n.id.clone(), n.notification_id.clone()));
        }
    }
    assert_eq!(
        ids[0].0, ids[1].0,
        "firing and resolved of one episode share the id"
    );
    assert_ne!(ids[0].0, ids[2].0, "a new episode gets a new id");
    assert_eq!(
        ids[0].0,
        alert_id(
            "t.rule",
            &BTreeMap::from([("client_id".into(), "a".into())]),
            60_000
        )
    );
    assert!(ids[0].1.ends_with(":firing"));
}

#[test]
fn annotations_are_rendered_once_without_expanding_traffic_text() {
    let r = rule("");
    let mut book = AlertBook::new(1, &AlertsConfig::default());
    let b = result(&["{{ n }}\r\nBcc: x@y"]);
    let n = book.evaluate(0, &r, &window(1), &[], Ok(&b)).remove(0);
    assert_eq!(n.annotations["summary"], "{{ n }}\r\nBcc: x@y sent 1500");
    let line = stdout::format_line(&n);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
}

#[test]
fn a_failing_rule_raises_and_resolves_an_error_alert() {
    let r = rule("");
    let mut book = AlertBook::new(1, &AlertsConfig::default());
    let n = book.evaluate(0, &r, &window(1), &[], Err("boom"));
    assert_eq!(
        (n[0].rule_id.as_str(), n[0].state),
        (RULE_ERROR_ID, State::Firing)
    );
    assert!(
        book.evaluate(0, &r, &window(2), &[], Err("boom"))
            .is_empty()
    );
    let ok = result(&[]);
    let n = book.evaluate(0, &r, &window(3), &[], Ok(&ok));
    assert_eq!(
        (n[0].rule_id.as_str(), n[0].state),
        (RULE_ERROR_ID, State::Resolved)
    );
}

#[test]
fn display_formats_numbers_for_people() {
    assert_eq!(display(&serde_json::json!(1500.0)), "1500");
    assert_eq!(display(&serde_json::json!(0.123456)), "0.1235");
    assert_eq!(display(&serde_json::json!(0.5)), "0.5");
    assert_eq!(display(&serde_json::json!("x")), "x");
}

#[test]
fn restored_state_is_kept_for_unchanged_rules_only() {
    let r = rule("  for: 5m\n");
    let mut book = AlertBook::new(1, &AlertsConfig::default());
    let b = result(&["a"]);
    book.evaluate(0, &r, &window(1), &[], Ok(&b));
    let saved = book.snapshot(&[&r]);

    // Same rule text: the pending alert goes on and fires on time, with its first id.
    let mut same = AlertBook::new(1, &AlertsConfig::default());
    assert_eq!(same.restore(saved.clone(), &[&r]), (1, 1));
    let n = same.evaluate(0, &r, &window(6), &[], Ok(&b));
    assert_eq!(n[0].state, State::Firing);
    assert_eq!(n[0].starts_at, rfc3339(60_000));

    // Changed text: the rule starts fresh.
    let changed = rule("  for: 4m\n");
    let mut fresh = AlertBook::new(1, &AlertsConfig::default());
    assert_eq!(fresh.restore(saved, &[&changed]), (0, 0));
    let n = fresh.evaluate(0, &changed, &window(6), &[], Ok(&b));
    assert_eq!(n[0].state, State::Pending);
}

/// An alert's sample of request ids is the n smallest distinct ids (byte order) of the
/// window's records that carry its labels, nulls left out, across batches: the plain
/// definition (filter, sort, drop repeats, keep n) on random windows.
#[test]
fn sample_ids_are_the_smallest_distinct_ids_of_the_matching_records() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let schema = Arc::new(Schema::new(vec![
        Field::new("client_id", DataType::Utf8, true),
        Field::new("request_id", DataType::Utf8, true),
    ]));
    for _ in 0..200 {
        let mut w = window(1);
        let mut all: Vec<(Option<String>, Option<String>)> = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let rows: Vec<(Option<String>, Option<String>)> = (0..rng.random_range(0..60))
                .map(|_| {
                    let client = (!rng.random_bool(0.1))
                        .then(|| ["a", "b"][rng.random_range(0..2)].to_owned());
                    let id =
                        (!rng.random_bool(0.1)).then(|| format!("r-{}", rng.random_range(0..40)));
                    (client, id)
                })
                .collect();
            let clients: StringArray = rows.iter().map(|r| r.0.as_deref()).collect();
            let ids: StringArray = rows.iter().map(|r| r.1.as_deref()).collect();
            w.batches.push(
                RecordBatch::try_new(schema.clone(), vec![Arc::new(clients), Arc::new(ids)])
                    .unwrap(),
            );
            all.extend(rows);
        }
        let n = rng.random_range(1..12);
        let mut want: Vec<String> = all
            .iter()
            .filter(|(c, _)| c.as_deref() == Some("a"))
            .filter_map(|(_, id)| id.clone())
            .collect();
        want.sort();
        want.dedup();
        want.truncate(n);
        let labels = BTreeMap::from([("client_id".to_owned(), "a".to_owned())]);
        assert_eq!(super::sample_request_ids(&w, &labels, n), want);
    }
}
