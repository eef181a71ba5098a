//! Hostile records and restarts: event times chosen to crash or blind the monitor, and
//! output files that a restart must never cut.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::cli::{generate, inferwatch, jsonl, root, summary, text};

fn config(dir: &Path, dead: &Path) -> PathBuf {
    let stem = dead.file_stem().unwrap().to_string_lossy();
    let path = dir.join(format!("hostile-{stem}.yaml"));
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             decode:\n  features:\n    - {{name: amount, type: numerical}}\n    - {{name: age, type: numerical}}\n    - {{name: country, type: categorical}}\n    - {{name: merchant_risk, type: numerical}}\n    - {{name: hour, type: numerical}}\n\
             queries: {}\n\
             dead_letter: {{path: {}}}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: 200ms\n",
            root().join("queries").display(),
            dead.display()
        ),
    )
    .unwrap();
    path
}

fn replay(cfg: &Path, input: &Path, alerts: &Path, state: Option<&Path>) -> std::process::Output {
    let args = crate::checkpoint::replay_args(cfg, input, alerts, state);
    inferwatch(&args, input.parent().unwrap())
}

fn firing(alerts: &Path) -> BTreeSet<String> {
    jsonl(alerts)
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| format!("{} {}", a["rule_id"], a["labels"]))
        .collect()
}

/// `record` with its `ts` replaced by the JSON value `ts`.
fn with_ts(record: &str, ts: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(record).unwrap();
    v["ts"] = serde_json::from_str(ts).unwrap();
    v["request_id"] = serde_json::Value::from(format!("poison-{ts}"));
    v.to_string()
}

/// Records whose event times once crashed the monitor (i64::MAX) or moved its watermark
/// to the year 9999, and a handful from a day ahead, put in the middle of a stream with
/// attacks: the run ends normally, the same alerts fire as without them, and each of
/// them is a dead letter with its own reason.
#[test]
fn absurd_event_times_neither_crash_nor_blind_the_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "mixed", 31, 160_000, "50");
    let clean_dead = dir.path().join("clean-dead.jsonl");
    let cfg = config(dir.path(), &clean_dead);
    let clean_alerts = dir.path().join("clean.jsonl");
    let o = replay(&cfg, &input, &clean_alerts, None);
    assert!(o.status.success(), "{}", text(&o));
    let reference = firing(&clean_alerts);
    let clean = summary(&o.stderr);
    assert!(reference.len() >= 3, "{reference:?}");

    // The generated traffic holds malformed records too (not all of them UTF-8).
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let sample: &str = lines[lines.len() / 3..]
        .iter()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["ts"].is_string()))
        .unwrap();
    let t: serde_json::Value = serde_json::from_str(sample).unwrap();
    let ts = t["ts"].as_str().unwrap();
    let day_ahead = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .timestamp_millis()
        + 86_400_000;
    let poison = [
        "9223372036854775807".to_owned(),
        "-9223372036854775808".to_owned(),
        "0".to_owned(),
        "\"9999-12-31T23:59:59Z\"".to_owned(),
        "\"0000-01-01T00:00:00Z\"".to_owned(),
    ];
    let ahead: Vec<String> = (0..3).map(|i| (day_ahead + i).to_string()).collect();
    let mut hostile = lines.clone();
    let at = lines.len() / 3;
    for (i, ts) in poison.iter().chain(&ahead).enumerate() {
        hostile.insert(at + i * 7, with_ts(sample, ts).into_bytes());
    }
    let hostile_input = dir.path().join("hostile.jsonl");
    let mut body = hostile.join(&b'\n');
    body.push(b'\n');
    std::fs::write(&hostile_input, body).unwrap();

    for state in [None, Some(dir.path().join("state"))] {
        if let Some(s) = &state {
            crate::cli::plain_sampling(s);
        }
        let dead = dir.path().join("dead.jsonl");
        let _ = std::fs::remove_file(&dead);
        let cfg = config(dir.path(), &dead);
        let alerts = dir.path().join("hostile-alerts.jsonl");
        let _ = std::fs::remove_file(&alerts);
        let o = replay(&cfg, &hostile_input, &alerts, state.as_deref());
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(firing(&alerts), reference, "state dir {state:?}");
        let s = summary(&o.stderr);
        assert_eq!(
            s["late (dead letter)"], clean["late (dead letter)"],
            "{s:?}"
        );
        // Each poison record is a dead letter with the guard's reason.
        let refused: Vec<(String, String)> = jsonl(&dead)
            .iter()
            .filter(|d| d["reason"].as_str().unwrap().starts_with("time_"))
            .map(|d| {
                let v: serde_json::Value =
                    serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
                let code = d["reason"].as_str().unwrap().split(':').next().unwrap();
                (
                    v["request_id"].as_str().unwrap().to_owned(),
                    code.to_owned(),
                )
            })
            .collect();
        let mut want: Vec<(String, String)> = poison
            .iter()
            .filter(|p| !p.contains("0000-01-01"))
            .map(|p| (format!("poison-{p}"), "time_out_of_range".to_owned()))
            .chain(
                ahead
                    .iter()
                    .map(|p| (format!("poison-{p}"), "time_ahead".to_owned())),
            )
            .collect();
        let mut got = refused.clone();
        got.sort();
        want.sort();
        // Year 0 may not even parse as a time (then it is a bad record of its own kind).
        got.retain(|(id, _)| !id.contains("0000-01-01"));
        assert_eq!(got, want, "state dir {state:?}");
        // Restarting on the same state reads nothing again and does not crash.
        if let Some(state) = &state {
            let o = replay(&cfg, &hostile_input, &alerts, Some(state));
            assert!(o.status.success(), "{}", text(&o));
            assert_eq!(firing(&alerts), reference);
        }
    }
}

/// A restart with the same state directory but another alerts or dead-letter file is
/// refused with a reason, and neither file is touched.
#[test]
fn a_restart_never_truncates_a_file_the_checkpoint_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "mixed", 32, 160_000, "50");
    let state = dir.path().join("state");
    let dead = dir.path().join("dead.jsonl");
    let cfg = config(dir.path(), &dead);
    let alerts = dir.path().join("alerts.jsonl");
    let o = replay(&cfg, &input, &alerts, Some(&state));
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::metadata(&alerts).unwrap().len() > 0);

    // Somebody's unrelated file, shorter than the checkpoint's cursor.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "keep me\n").unwrap();
    let o = replay(&cfg, &input, &other, Some(&state));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("notes.txt"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me\n");

    // An unrelated file longer than the cursor is not cut either.
    let long = "x".repeat(std::fs::metadata(&alerts).unwrap().len() as usize + 1000);
    std::fs::write(&other, &long).unwrap();
    let o = replay(&cfg, &input, &other, Some(&state));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&other).unwrap(), long);

    // The alerts file replaced by other bytes of the same length: refused too.
    let before = std::fs::read(&alerts).unwrap();
    let swapped = vec![b'y'; before.len()];
    std::fs::write(&alerts, &swapped).unwrap();
    let o = replay(&cfg, &input, &alerts, Some(&state));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(&alerts).unwrap(), swapped);
    std::fs::write(&alerts, &before).unwrap();

    // Another dead-letter file with the same state: refused.
    let other_dead = dir.path().join("other-dead.jsonl");
    std::fs::write(&other_dead, "").unwrap();
    let cfg2 = config(dir.path(), &other_dead);
    let o = replay(&cfg2, &input, &alerts, Some(&state));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // The right files: the restart goes on.
    let o = replay(&cfg, &input, &alerts, Some(&state));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&alerts).unwrap(), before);
}

/// A client that chooses its request ids can choose ids whose unkeyed hash is low, so
/// that every window's reference sample (bottom-k by that hash) takes its records:
/// 1% of the traffic would then be an eighth of the reference and make honest traffic
/// look drifted (today's release without the key: `drift.feature` fires on four
/// features). With a state directory the hash
/// is keyed with its secret: the same ids are sampled like any others, and nothing
/// fires.
#[test]
fn request_ids_chosen_for_a_low_hash_do_not_steer_the_reference() {
    use inferwatch::stable_hash::hash_of;
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "benign", 41, 90_000, "50");
    assert!(truth.is_empty());
    let mut lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // 30 records a minute (1% of 3,000) for the 30 minutes, each with an id whose
    // unkeyed hash is below what the 20th smallest of a window's 3,000 would be.
    let limit = u64::MAX / 3000 * 20;
    let mut ids = (0u64..)
        .map(|i| format!("p-{i}"))
        .filter(|id| hash_of(id.as_str()) < limit);
    let template: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(template["ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    for i in 0..900i64 {
        let mut r = template.clone();
        let t = chrono::DateTime::from_timestamp_millis(start + i * 2000 + 1).unwrap();
        r["ts"] = t
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
        r["request_id"] = ids.next().unwrap().into();
        r["client_id"] = "poisoner".into();
        // A plausible amount (about the 99th percentile of the honest ones).
        r["features"]["amount"] = 400.0.into();
        lines.push(r.to_string());
    }
    lines.sort();
    let poisoned = dir.path().join("poisoned.jsonl");
    std::fs::write(&poisoned, lines.join("\n") + "\n").unwrap();
    let dead = dir.path().join("dead.jsonl");
    let cfg = config(dir.path(), &dead);
    let alerts = dir.path().join("alerts.jsonl");
    let o = replay(&cfg, &poisoned, &alerts, Some(&dir.path().join("state")));
    assert!(o.status.success(), "{}", text(&o));
    let drift: Vec<String> = firing(&alerts)
        .into_iter()
        .filter(|a| a.starts_with("\"drift."))
        .collect();
    assert!(drift.is_empty(), "{drift:?}");
}

/// Model and version are the sender's to leave out: a quarter of the records without
/// them (the first record of the stream among them, so a batch begins with one) once
/// stopped the monitor. The run ends normally, counts every record as before, and the
/// same rules fire.
#[test]
fn records_without_model_or_version_neither_crash_nor_blind_the_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "mixed", 33, 60_000, "20");
    let cfg = config(dir.path(), &dir.path().join("dead.jsonl"));
    let rules = |alerts: &Path| -> BTreeSet<String> {
        jsonl(alerts)
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let clean_alerts = dir.path().join("clean.jsonl");
    let o = replay(&cfg, &input, &clean_alerts, None);
    assert!(o.status.success(), "{}", text(&o));
    let clean = summary(&o.stderr);
    let stripped: Vec<u8> = std::fs::read(&input)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .flat_map(|(i, l)| {
            let mut line = l.to_vec();
            if i % 4 == 0
                && let Ok(serde_json::Value::Object(mut v)) = serde_json::from_slice(l)
            {
                v.remove("model");
                v.remove("model_version");
                line = serde_json::to_vec(&v).unwrap();
            }
            line.push(b'\n');
            line
        })
        .collect();
    let first: serde_json::Value =
        serde_json::from_slice(stripped.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert!(first.get("model").is_none(), "{first}");
    let hostile = dir.path().join("no-model.jsonl");
    std::fs::write(&hostile, stripped).unwrap();
    let alerts = dir.path().join("no-model-alerts.jsonl");
    let o = replay(&cfg, &hostile, &alerts, None);
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&o.stderr);
    for k in [
        "records read",
        "good",
        "bad (dead letter)",
        "late (dead letter)",
    ] {
        assert_eq!(s[k], clean[k], "{k}: {s:?}");
    }
    let fired = rules(&clean_alerts);
    assert!(fired.len() >= 5, "{fired:?}");
    assert_eq!(rules(&alerts), fired);
}
