//! Re-scoring with the embedded test model end to end: `gen` writes the evasion,
//! tampering and honest traffic of `breast_cancer_lr`, `replay` with
//! `examples/rescore.yaml` re-scores it, and the rules of `queries/rescore.yaml` fire
//! for the planted client and nobody else.

use std::path::Path;

use serde_json::Value;

use crate::cli::{generate, inferwatch, summary, text};

fn replay(dir: &Path, input: &Path) -> (std::process::Output, Vec<Value>) {
    let alerts = dir.join("alerts.jsonl");
    let o = inferwatch(
        &[
            "replay",
            "--config",
            "examples/rescore.yaml",
            "--no-progress",
            "--alerts-out",
            alerts.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    // Read strictly: a missing alerts file is a broken run, not "no alerts".
    let written = std::fs::read_to_string(&alerts)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", alerts.display(), text(&o)));
    let alerts = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (o, alerts)
}

/// The summary's `re-scored N (F flagged, S sampled)` and the counts after it.
fn rescored(o: &std::process::Output) -> (u64, u64) {
    let out = String::from_utf8_lossy(&o.stderr);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("re-scored"))
        .unwrap_or_else(|| panic!("no re-scoring in the summary:\n{out}"));
    let n: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (n, summary(&o.stderr)["mismatches"])
}

/// Firing alerts of `rule`, by client.
fn firing<'a>(alerts: &'a [Value], rule: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["rule_id"] == rule && a["state"] == "firing")
        .collect()
}

fn episode(truth: &[Value]) -> (String, i64, i64) {
    assert_eq!(truth.len(), 1, "{truth:?}");
    let e = &truth[0];
    (
        e["client_id"].as_str().unwrap().to_owned(),
        e["start_ms"].as_i64().unwrap(),
        e["end_ms"].as_i64().unwrap(),
    )
}

fn ms(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[test]
fn the_tampering_scenario_fires_the_tampering_rule_for_its_client_and_time_only() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "tampering", 11, 120_000, "50");
    let (client, start, end) = episode(&truth);
    assert_eq!(truth[0]["rule"], "tampering.prediction_mismatch");
    let (o, alerts) = replay(dir.path(), &input);
    let fired = firing(&alerts, "tampering.prediction_mismatch");
    assert!(!fired.is_empty(), "tampering not caught: {}", text(&o));
    for a in &fired {
        assert_eq!(a["labels"]["client_id"], client.as_str(), "{a}");
        assert_eq!(a["labels"]["model"], "breast_cancer_lr", "{a}");
        // Windows that hold the episode's records: from its start to its end.
        let (ws, we) = (ms(&a["window_start"]), ms(&a["window_end"]));
        assert!(we > start && ws < end, "fired outside the episode: {a}");
    }
    // The evidence names forged records (the rule's `request_ids`), not just any of the
    // client's.
    let needle = format!("\"client_id\":\"{client}\"");
    let theirs: std::collections::BTreeSet<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for a in &fired {
        let ids = a["evidence"]["sample_request_ids"].as_array().unwrap();
        assert!(!ids.is_empty(), "{a}");
        for id in ids {
            assert!(
                theirs.contains(id.as_str().unwrap()),
                "{id} is not {client}'s: {a}"
            );
        }
        assert!(a["evidence"]["values"].get("request_ids").is_none(), "{a}");
        // One id per mismatch, up to alerts.sample_request_ids (5).
        let mismatches = a["evidence"]["values"]["mismatches"].as_u64().unwrap();
        assert_eq!(ids.len() as u64, mismatches.min(5), "{a}");
    }
    // Found early: the 1 % sample finds a forged answer, then the client is re-scored
    // in full (rescore: true) until the episode ends. The wait is geometric, ~100
    // forged answers (one a second) on average: docs/rescoring.md measured 1.1 to 10.1
    // minutes over seeds 1-5. Missing the first 900 has a probability of
    // 0.99^900 ≈ 1e-4, so 15 minutes holds for any seed; this one (11) is no pick.
    let first = fired.iter().map(|a| ms(&a["window_end"])).min().unwrap();
    assert!(
        first - start <= 15 * 60_000,
        "first caught {} s in",
        (first - start) / 1000
    );
    let (n, mismatches) = rescored(&o);
    assert!(n > 1_000 && mismatches > 100, "{}", text(&o));
}

#[test]
fn the_evasion_scenario_fires_the_squeezing_rule_for_its_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "evasion", 5, 80_000, "50");
    let (client, start, end) = episode(&truth);
    assert_eq!(truth[0]["rule"], "evasion.feature_squeezing");
    let (o, alerts) = replay(dir.path(), &input);
    let fired = firing(&alerts, "evasion.feature_squeezing");
    assert!(!fired.is_empty(), "evasion not caught: {}", text(&o));
    for a in &fired {
        assert_eq!(a["labels"]["client_id"], client.as_str(), "{a}");
        let (ws, we) = (ms(&a["window_start"]), ms(&a["window_end"]));
        assert!(we > start && ws < end, "fired outside the episode: {a}");
    }
    // The honest model served the evader: no answer is a mismatch.
    assert!(firing(&alerts, "tampering.prediction_mismatch").is_empty());
    assert_eq!(rescored(&o).1, 0);
}

/// 1M honest records of the embedded model: the sample re-scores about 1 % of them,
/// not one answer is a mismatch, and no rule fires (docs/rescoring.md's claim).
#[test]
fn a_million_honest_records_fire_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "benign-model", 2, 1_000_000, "200");
    assert!(truth.is_empty());
    let (o, alerts) = replay(dir.path(), &input);
    let s = summary(&o.stderr);
    assert_eq!(s["good"], 1_000_000, "{}", text(&o));
    let (n, mismatches) = rescored(&o);
    assert!(
        (8_000..=12_000).contains(&n),
        "{n} re-scored of 1M at a 1 % sample"
    );
    assert_eq!(mismatches, 0, "{}", text(&o));
    assert!(s["rule runs"] > 0, "{}", text(&o));
    assert_eq!(s["rule errors"], 0, "{}", text(&o));
    // No rule says a word, except that a drift test on many columns is true by chance
    // now and then for one window: such an alert may go pending, never firing.
    let raised: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            let drift = a["rule_id"].as_str().unwrap_or("").starts_with("drift.");
            !drift || a["state"] == "firing"
        })
        .collect();
    assert!(raised.is_empty(), "{raised:#?}");
}

/// A model file that is not the pinned one, a feature the traffic does not declare, or
/// squeezing without ranges: exit 2 before anything is read, with what to fix.
#[test]
fn a_model_that_does_not_fit_its_config_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(crate::cli::root().join("examples/rescore.yaml"))
        .unwrap()
        .replace("../", &format!("{}/", crate::cli::root().display()));
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::cli::root().join("models/breast_cancer_lr.json")).unwrap(),
    )
    .unwrap();
    let declared: String = meta["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("    - {{name: {}, type: numerical}}\n", f.as_str().unwrap()))
        .collect();
    let input = dir.path().join("none.jsonl");
    std::fs::write(&input, "").unwrap();
    let cases = [
        (
            example.replace("sha256: 36e1", "sha256: 06e1"),
            "refusing to load it",
        ),
        (
            example.replace(
                "      - worst_symmetry\n",
                "      - worst_symmetry\n      - tumour_colour\n",
            ),
            "31 features declared",
        ),
        (
            example.replace("      - mean_radius\n", "      - mean_radius_typo\n"),
            "mean_radius_typo is not a declared feature",
        ),
        (
            // Features declared, no baseline: squeezing has no ranges.
            example.replace("baselines: [", "# baselines: [").replace(
                "\nmodels:\n",
                &format!("\ndecode:\n  features:\n{declared}models:\n"),
            ),
            "no range for feature mean_radius",
        ),
    ];
    for (i, (config, says)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&path, config).unwrap();
        let o = inferwatch(
            &[
                "replay",
                "--config",
                path.to_str().unwrap(),
                "--no-progress",
                "--input",
                input.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "case {i}: {}", text(&o));
        assert!(
            text(&o).contains(says),
            "case {i} should say {says:?}: {}",
            text(&o)
        );
    }
}
