//! Restarts: SIGKILL at random points, SIGTERM, damaged or foreign checkpoints. The
//! binary is killed for real and started again on the same state directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{follow_flood, generate, inferwatch, jsonl, root, summary, text};

/// A replay config with frequent checkpoints, so kills land between them.
fn config(dir: &Path, queries: &Path) -> PathBuf {
    config_every(dir, queries, "50ms")
}

/// A replay config with checkpoints every `interval`.
fn config_every(dir: &Path, queries: &Path, interval: &str) -> PathBuf {
    let path = dir.join(format!("checkpointed-{interval}.yaml"));
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             decode:\n  features:\n    - {{name: amount, type: numerical}}\n    - {{name: age, type: numerical}}\n    - {{name: country, type: categorical}}\n    - {{name: merchant_risk, type: numerical}}\n    - {{name: hour, type: numerical}}\n\
             queries: {}\n\
             dead_letter: {{path: {}}}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: {interval}\n",
            queries.display(),
            dir.join("dead.jsonl").display()
        ),
    )
    .unwrap();
    path
}

pub(crate) fn replay_args<'a>(
    cfg: &'a Path,
    input: &'a Path,
    alerts: &'a Path,
    state: Option<&'a Path>,
) -> Vec<&'a str> {
    let mut args = vec![
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--alerts-out",
        alerts.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    if let Some(s) = state {
        args.extend(["--state-dir", s.to_str().unwrap()]);
    }
    args
}

fn notifications(path: &Path) -> Vec<String> {
    jsonl(path)
        .iter()
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect()
}

/// Waits (at most 60 s) until `state` holds a checkpoint or the child has exited.
pub(crate) fn wait_for_checkpoint(state: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !state.join("checkpoint.bin").exists()
        && child.try_wait().unwrap().is_none()
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

const COUNTS: [&str; 6] = [
    "records read",
    "good",
    "bad (dead letter)",
    "late (dead letter)",
    "windows closed",
    "rule runs",
];

/// Replays `input` with `state`, killing it (SIGKILL) up to `max_kills` times at random
/// moments `delays` ms after a checkpoint exists (with `after_checkpoint` false: after
/// the start of the process, whether or not a checkpoint exists yet), then lets it
/// finish; checks that the alerts and counts are those of an uninterrupted run. Returns
/// the alerts.
pub(crate) fn killed_replay(
    dir: &Path,
    cfg: &Path,
    input: &Path,
    seed: u64,
    max_kills: u32,
    delays: (u64, u64),
    after_checkpoint: bool,
) -> BTreeSet<String> {
    let reference_alerts = dir.join(format!("reference-{seed}.jsonl"));
    let o = inferwatch(&replay_args(cfg, input, &reference_alerts, None), dir);
    assert!(o.status.success(), "{}", text(&o));
    let reference: BTreeSet<String> = notifications(&reference_alerts).into_iter().collect();
    let reference_counts = summary(&o.stderr);

    let state = dir.join(format!("state-{seed}"));
    crate::cli::plain_sampling(&state);
    let alerts = dir.join(format!("killed-{seed}.jsonl"));
    let mut rng = seed;
    let (mut kills, mut last) = (0, None);
    while last.is_none() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_inferwatch"))
            .args(replay_args(cfg, input, &alerts, Some(&state)))
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Kill only once some checkpoint exists (a slow start under load must not
        // make every kill land before the first one), then after a random delay.
        if after_checkpoint {
            wait_for_checkpoint(&state, &mut child);
        }
        let delay = Duration::from_millis(delays.0 + (rng >> 33) % (delays.1 - delays.0));
        let started = Instant::now();
        while started.elapsed() < delay && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if kills < max_kills && child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        last = Some(o);
    }
    assert!(kills >= 1, "seed {seed}: the run ended before any kill");
    let got = notifications(&alerts);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "seed {seed}: an (id, state) was written twice after {kills} kills"
    );
    assert_eq!(
        unique, reference,
        "seed {seed}: alerts differ after {kills} kills"
    );
    let last = last.unwrap();
    assert!(
        !after_checkpoint || String::from_utf8_lossy(&last.stderr).contains("restored from"),
        "{}",
        text(&last)
    );
    let counts = summary(&last.stderr);
    // Re-scoring totals (when a model is configured) are in the checkpoints too.
    // So are the delayed labels' (a label joined twice or lost changes them).
    let rescoring = [
        "mismatches",
        "adversarial",
        "over budget",
        "labels read",
        "labels joined",
        "labels refused",
        "predictions to label",
    ]
    .into_iter()
    .filter(|k| reference_counts.contains_key(*k));
    for k in COUNTS.into_iter().chain(rescoring) {
        assert_eq!(
            counts[k], reference_counts[k],
            "seed {seed}: {k} after {kills} kills"
        );
    }
    reference
}

#[test]
fn sigkill_at_random_points_repeats_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &root().join("queries"));
    for seed in [21u64, 22] {
        let (input, _) = generate(dir.path(), "mixed", seed, 160_000, "50");
        let reference = killed_replay(dir.path(), &cfg, &input, seed, 6, (20, 620), true);
        assert!(reference.len() >= 8, "{reference:?}");
    }
}

/// Kills 0.2–1.5 s after the start, with the first regular checkpoint an hour away:
/// what was written before any regular checkpoint is not written twice either.
#[test]
fn sigkill_before_the_first_checkpoint_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_every(dir.path(), &root().join("queries"), "1h");
    let (input, _) = generate(dir.path(), "mixed", 23, 160_000, "50");
    let reference = killed_replay(dir.path(), &cfg, &input, 23, 5, (200, 1500), false);
    assert!(reference.len() >= 8, "{reference:?}");
}

#[test]
fn tampering_and_evasion_are_caught_the_same_across_kills() {
    // Suspects, re-scored results and budgets live in the checkpoints: a run killed at
    // random points re-scores the same records and raises the same alerts.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rescore.yaml");
    let example = std::fs::read_to_string(root().join("examples/rescore.yaml"))
        .unwrap()
        .replace("../", &format!("{}/", root().display()));
    std::fs::write(&cfg, format!("{example}checkpoint_interval: 50ms\n")).unwrap();
    for (scenario, seed, rule) in [
        ("tampering", 41u64, "tampering.prediction_mismatch"),
        ("evasion", 42, "evasion.feature_squeezing"),
    ] {
        let (input, truth) = generate(dir.path(), scenario, seed, 90_000, "50");
        let reference = killed_replay(dir.path(), &cfg, &input, seed, 3, (300, 1500), true);
        let attacker = truth[0]["client_id"].as_str().unwrap();
        let caught = jsonl(&dir.path().join(format!("reference-{seed}.jsonl")))
            .iter()
            .any(|a| {
                a["rule_id"] == rule
                    && a["labels"]["client_id"] == attacker
                    && a["state"] == "firing"
            });
        assert!(caught, "{scenario}: {attacker} not caught: {reference:?}");
    }
}

#[test]
fn jacobian_extraction_is_caught_across_kills() {
    // The extractor's inputs are judged over its long-horizon profile (which the
    // checkpoints carry, with the reference it is measured against). Kills land while
    // the profile builds.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &root().join("queries"));
    let (input, truth) = generate(dir.path(), "extraction-jacobian", 31, 60_000, "20");
    let attacker = truth[0]["client_id"].as_str().unwrap().to_owned();
    let reference = killed_replay(dir.path(), &cfg, &input, 31, 5, (300, 1500), true);
    let raised = jsonl(&dir.path().join("reference-31.jsonl"))
        .iter()
        .any(|a| {
            a["rule_id"] == "extraction.synthetic_inputs"
                && a["labels"]["client_id"] == attacker.as_str()
                && a["state"] == "firing"
        });
    assert!(
        raised,
        "the extractor {attacker} was not caught: {reference:?}"
    );
}

#[test]
fn sigterm_writes_a_final_checkpoint_and_the_restart_rereads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = follow_flood(dir.path());
    let state = dir.path().join("state");
    let alerts = dir.path().join("alerts.jsonl");
    let args = [
        "run",
        "--http",
        "off",
        "--config",
        cfg.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--alerts-out",
        alerts.to_str().unwrap(),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&state, &mut child);
    std::thread::sleep(Duration::from_secs(2));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = summary(&o.stderr);
    assert!(first["records read"] > 0, "{}", text(&o));
    assert!(state.join("checkpoint.bin").exists());
    let before = notifications(&alerts);

    let mut again: Vec<&str> = args.to_vec();
    again.extend(["--until-idle", "1s"]);
    let o = inferwatch(&again, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let second = summary(&o.stderr);
    // `records read` carries on from the checkpoint: a record read again by the
    // restart would count twice and take the total past the file's 40,000.
    assert_eq!(
        second["records read"],
        40_000,
        "nothing re-read: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restored from"),
        "{}",
        text(&o)
    );
    // The state directory's key made the restored input identities: none forgotten.
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("input identities"),
        "{}",
        text(&o)
    );
    let after = notifications(&alerts);
    assert_eq!(after[..before.len()], before[..]);
    let unique: BTreeSet<&String> = after.iter().collect();
    assert_eq!(unique.len(), after.len());
}

#[test]
fn foreign_or_damaged_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "benign", 9, 20_000, "50");
    let cfg = config(dir.path(), &root().join("queries"));
    let state = dir.path().join("no/such/dir/yet");
    let alerts = dir.path().join("alerts.jsonl");
    let o = inferwatch(
        &replay_args(&cfg, &input, &alerts, Some(&state)),
        dir.path(),
    );
    assert!(
        o.status.success(),
        "a missing state directory is created: {}",
        text(&o)
    );
    assert!(state.join("checkpoint.bin").exists());

    // Other windows: the open windows cannot be reused.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("r.yaml"),
        "- id: five.minutes\n  severity: low\n  window: {size: 5m}\n  sql: SELECT count(*) AS n FROM events\n",
    )
    .unwrap();
    let other = config(dir.path(), &rules);
    let o = inferwatch(
        &replay_args(&other, &input, &alerts, Some(&state)),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--reset-state") && err.contains("checkpoint.bin"),
        "{err}"
    );
    let mut reset = replay_args(&other, &input, &alerts, Some(&state));
    reset.push("--reset-state");
    let o = inferwatch(&reset, dir.path());
    assert!(o.status.success(), "{}", text(&o));

    // Both checkpoint files damaged: an error, never a silent fresh start.
    for name in ["checkpoint.bin", "checkpoint.prev.bin"] {
        let p = state.join(name);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    }
    let o = inferwatch(
        &replay_args(&other, &input, &alerts, Some(&state)),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

/// `inferwatch replay` in `dir` over `inputs`, writing alerts to `alerts`, with a state
/// directory when given.
fn replay_in(
    dir: &Path,
    config: &str,
    inputs: &[&str],
    state: Option<&str>,
    alerts: &str,
) -> std::process::Output {
    let mut args = vec![
        "replay",
        "--config",
        config,
        "--no-progress",
        "--alerts-out",
        alerts,
    ];
    for i in inputs {
        args.extend(["--input", i]);
    }
    if let Some(s) = state {
        args.extend(["--state-dir", s]);
    }
    Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A format-3 checkpoint written by the release before the modules were rearranged
/// (`tests/fixtures/checkpoint-v3`: `gen --scenario drift --seed 3 --events 15000
/// --rate 5` and `gen --scenario mixed --seed 4 --events 19700 --rate 5` replayed side
/// by side (`v3.yaml`: batches of 1,000) with the rules in the fixture and a zero
/// `sample.key`, killed with SIGKILL 1.5 s in, after 28,000 records with 3 alerts
/// active and 206 client profiles; `alerts.jsonl` is what it had written by then). Its
/// reference samples, rule fingerprints and alert ids must mean the same today: every
/// rule keeps its alert state, the restored run ends with exactly the alerts of a run
/// that never stopped, none twice, and every alert the old release wrote is one
/// today's release writes too.
///
/// The checkpoint names its alerts file by absolute path, so the fixture is unpacked
/// where it was made: `/tmp/inferwatch-v3-fixture`.
#[test]
fn a_checkpoint_of_the_previous_release_restores_with_the_same_identities() {
    restores_like_a_run_that_never_stopped(
        "v3",
        3,
        "alert state of 12 of 12 rules (3 alerts), 206 client profiles",
    );
}

/// A format-5 checkpoint, written by the release whose client profiles did not yet
/// count low-margin answers (`tests/fixtures/checkpoint-v5`: the same two inputs as the
/// format-3 fixture, replayed the same way with the rules of that release, killed with
/// SIGKILL 0.9 s in, after 34,000 records with 3 alerts active). The profiles come back
/// with their counts, low margins are counted from the next answer on, and the run ends
/// with the alerts of a run that never stopped.
#[test]
fn a_format_5_checkpoint_restores_with_the_same_identities() {
    restores_like_a_run_that_never_stopped(
        "v5",
        5,
        "alert state of 11 of 11 rules (3 alerts), 206 client profiles",
    );
}

/// Unpacks `tests/fixtures/checkpoint-{name}` in `/tmp/inferwatch-{name}-fixture`
/// (inputs from the format-3 fixture), checks the checkpoint's format, and replays
/// with and without it.
fn restores_like_a_run_that_never_stopped(name: &str, format: u32, restored: &str) {
    let fixture = root().join(format!("tests/fixtures/checkpoint-{name}"));
    let inputs = root().join("tests/fixtures/checkpoint-v3");
    let dir_name = format!("/tmp/inferwatch-{name}-fixture");
    let dir = Path::new(&dir_name);
    let config = format!("{name}.yaml");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("queries")).unwrap();
    for f in [
        "state/checkpoint.bin",
        "state/sample.key",
        "alerts.jsonl",
        config.as_str(),
    ] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    for f in ["drift.jsonl.gz", "mixed.jsonl.gz"] {
        std::fs::copy(inputs.join(f), dir.join(f)).unwrap();
    }
    for e in std::fs::read_dir(fixture.join("queries")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("queries").join(e.file_name())).unwrap();
    }
    let bytes = std::fs::read(dir.join("state/checkpoint.bin")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), format);
    let written_before: BTreeSet<String> = notifications(&dir.join("alerts.jsonl"))
        .into_iter()
        .collect();
    assert!(!written_before.is_empty());
    let replay = |state: Option<&str>, alerts: &str| {
        replay_in(
            dir,
            &config,
            &["drift.jsonl.gz", "mixed.jsonl.gz"],
            state,
            alerts,
        )
    };
    let o = replay(None, "fresh.jsonl");
    assert!(o.status.success(), "{}", text(&o));
    let fresh: BTreeSet<String> = notifications(&dir.join("fresh.jsonl"))
        .into_iter()
        .collect();
    let o = replay(Some("state"), "alerts.jsonl");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(restored),
        "{}",
        text(&o)
    );
    let got = notifications(&dir.join("alerts.jsonl"));
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an (id, state) twice");
    assert_eq!(unique, fresh);
    let lost: Vec<_> = written_before.difference(&fresh).collect();
    assert!(
        lost.is_empty(),
        "ids the old release wrote and today's does not: {lost:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A checkpoint of format 2, kept as a fixture: written by the release before format 3
/// (`replay --input flood.jsonl --state-dir state --alerts-out alerts.jsonl` of
/// `gen --scenario flood --seed 5 --events 40000 --rate 20`, killed with SIGKILL after
/// its first checkpoints; `alerts.jsonl` is what it had written by then). Today's
/// release restores it, rewinds the alerts file to its cursor and finishes with the
/// alerts of a run that never stopped.
#[test]
fn a_format_2_checkpoint_is_restored_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = root().join("tests/fixtures/checkpoint-v2");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let bytes = std::fs::read(fixture.join("checkpoint.bin")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    std::fs::write(state.join("checkpoint.bin"), bytes).unwrap();
    std::fs::copy(
        fixture.join("alerts.jsonl"),
        dir.path().join("alerts.jsonl"),
    )
    .unwrap();
    let (input, _) = generate(dir.path(), "flood", 5, 40_000, "20");
    std::fs::rename(&input, dir.path().join("flood.jsonl")).unwrap();
    let cfg = dir.path().join("v2.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: file, paths: []}}\nqueries: {}\nalerts: {{stdout: false}}\ncheckpoint_interval: 50ms\n",
            root().join("queries").display()
        ),
    )
    .unwrap();
    let replay = |state: Option<&str>, alerts: &str| {
        replay_in(dir.path(), "v2.yaml", &["flood.jsonl"], state, alerts)
    };
    let o = replay(None, "reference.jsonl");
    assert!(o.status.success(), "{}", text(&o));
    let reference: BTreeSet<String> = notifications(&dir.path().join("reference.jsonl"))
        .into_iter()
        .collect();
    assert!(!reference.is_empty());
    let o = replay(Some("state"), "alerts.jsonl");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restored from"),
        "{}",
        text(&o)
    );
    let got = notifications(&dir.path().join("alerts.jsonl"));
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an (id, state) twice");
    assert_eq!(unique, reference);
}
