//! The `inferwatch` binary end to end: generate traffic, replay it, read the alerts and
//! dead letters it wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The checkout the tests run in: `cargo test` says it at run time. (The compile-time
/// value can name another checkout when two share a target directory and cargo finds
/// the test binary fresh.)
pub(crate) fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub(crate) fn inferwatch(args: &[&str], out_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(args)
        .current_dir(root())
        .env("INFERWATCH_OUT", out_dir)
        .output()
        .expect("the binary runs")
}

/// The features of the generator's records, as a config's `decode:` section.
pub(crate) const FEATURES: &str = "decode:\n  features:\n    - {name: amount, type: numerical}\n    - {name: age, type: numerical}\n    - {name: country, type: categorical}\n    - {name: merchant_risk, type: numerical}\n    - {name: hour, type: numerical}\n";

/// A port for a server that a test starts in another process (or later, or never, to
/// be refused), free now. It is drawn at random below the kernel's ephemeral range, so
/// that no port-0 bind and no outgoing connection is given it in the meantime (a port
/// from binding port 0 and letting go is, and on a busy machine soon). A server the test
/// runs in its own process binds port 0 and keeps its listener instead.
/// Makes `state` a state directory whose reference samples hash request ids with the
/// key 0, as a run without a state directory does: runs with and without one then sample
/// the same records (a real state directory makes a secret key of its own).
pub(crate) fn plain_sampling(state: &Path) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(state.join("sample.key"), [0u8; 8]).unwrap();
}

pub(crate) fn free_port() -> u16 {
    use std::hash::BuildHasher;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral.max(10_001));
    for _ in 0..1000 {
        // Each RandomState has keys of its own: a fresh draw every time.
        let r = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let port = lo + (r % u64::from(hi - lo)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {lo}..{hi}");
}

/// Polls `holds` until it is true, `child` (when given) has exited, or `patience` has
/// passed — a guard against a hang, not a speed limit — and says whether it holds, for
/// the caller to assert the behaviour.
pub(crate) fn eventually(
    patience: Duration,
    mut child: Option<&mut Child>,
    mut holds: impl FnMut() -> bool,
) -> bool {
    let started = Instant::now();
    loop {
        if holds() {
            return true;
        }
        let exited = child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if exited || started.elapsed() >= patience {
            return holds();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `child`'s stderr as it is written. The receiver hears once the first line
/// holding `needle` is read (and is closed at the end of the output, so a wait on it
/// never outlasts the child); the thread returns all of it.
pub(crate) fn watch_stderr(
    child: &mut Child,
    needle: &'static str,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains(needle) {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    (rx, reader)
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The dead letters in `path`: `n` of them, from `source`, with positions, among them
/// an oversized record and one of the wrong type.
pub(crate) fn dead_letters(path: &Path, n: usize, source: &str) -> Vec<Value> {
    check_dead_letters(jsonl(path), n, source)
}

/// [`dead_letters`] for entries from anywhere (a file, a topic's headers).
pub(crate) fn check_dead_letters(dead: Vec<Value>, n: usize, source: &str) -> Vec<Value> {
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(dead.len(), n, "{reasons:?}");
    for want in ["over max_record_bytes", "wrong type"] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no {want:?} in {reasons:?}"
        );
    }
    for d in &dead {
        assert_eq!(d["source"], source, "{d}");
        assert!(d["position"].is_u64(), "{d}");
    }
    dead
}

/// `inferwatch run` (no HTTP server) on `cfg` until `idle` (a duration) passes without new
/// records, alerts to `alerts`.
pub(crate) fn run_until_idle(cfg: &Path, idle: &str, alerts: &Path, dir: &Path) -> Output {
    inferwatch(
        &[
            "run",
            "--http",
            "off",
            "--config",
            cfg.to_str().unwrap(),
            "--until-idle",
            idle,
            "--alerts-out",
            alerts.to_str().unwrap(),
        ],
        dir,
    )
}

pub(crate) fn generate(
    dir: &Path,
    scenario: &str,
    seed: u64,
    events: u64,
    rate: &str,
) -> (PathBuf, Vec<Value>) {
    let input = dir.join(format!("{scenario}-{seed}.jsonl"));
    let truth = dir.join(format!("{scenario}-{seed}.truth.jsonl"));
    let o = inferwatch(
        &[
            "gen",
            "--scenario",
            scenario,
            "--seed",
            &seed.to_string(),
            "--events",
            &events.to_string(),
            "--rate",
            rate,
            "--out",
            input.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    (input, jsonl(&truth))
}

fn replay(dir: &Path, inputs: &[&Path], alerts: &Path) -> Output {
    let mut args = vec![
        "replay",
        "--config",
        "examples/replay.yaml",
        "--no-progress",
        "--alerts-out",
    ];
    args.push(alerts.to_str().unwrap());
    args.push("--input");
    for i in inputs {
        args.push(i.to_str().unwrap());
    }
    inferwatch(&args, dir)
}

/// `records read`, `good`, ... from the summary table.
pub(crate) fn summary(stdout: &[u8]) -> BTreeMap<String, u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().rsplit_once(char::is_whitespace)?;
            Some((k.trim().to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn assert_counts_add_up(s: &BTreeMap<String, u64>, lines: u64) {
    assert_eq!(s["records read"], lines, "{s:?}");
    assert_eq!(
        s["good"] + s["bad (dead letter)"] + s["late (dead letter)"],
        lines,
        "{s:?}"
    );
}

#[test]
fn mixed_scenario_flags_every_planted_episode_and_no_honest_client() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "mixed", 7, 160_000, "50");
    let alerts_path = dir.path().join("alerts.jsonl");
    let o = replay(dir.path(), &[&input], &alerts_path);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_add_up(&summary(&o.stderr), 160_000);
    let alerts = jsonl(&alerts_path);
    let firing: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "firing").collect();
    assert_eq!(truth.len(), 4, "{truth:?}");
    for episode in &truth {
        let hit = firing.iter().find(|a| {
            a["rule_id"] == episode["rule"]
                && (episode["client_id"].is_null()
                    || a["labels"]["client_id"] == episode["client_id"])
                && a["window_end"].as_str() > episode["start"].as_str()
        });
        assert!(
            hit.is_some(),
            "episode {episode} was not flagged; firing: {firing:#?}"
        );
    }
    let attackers: BTreeSet<&str> = truth
        .iter()
        .filter_map(|e| e["client_id"].as_str())
        .collect();
    for a in &firing {
        if let Some(c) = a["labels"]["client_id"].as_str() {
            assert!(attackers.contains(c), "honest client {c} flagged: {a}");
        }
    }
    for a in &alerts {
        for key in [
            "id",
            "rule_id",
            "state",
            "severity",
            "labels",
            "annotations",
            "window_start",
            "window_end",
            "starts_at",
            "evidence",
        ] {
            assert!(!a[key].is_null(), "alert lacks {key}: {a}");
        }
    }
    let dead = jsonl(&dir.path().join("dead-letters.jsonl"));
    let s = summary(&o.stderr);
    assert_eq!(
        dead.len() as u64,
        s["bad (dead letter)"] + s["late (dead letter)"]
    );
}

#[test]
fn benign_traffic_raises_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = generate(dir.path(), "benign", 3, 1_000_000, "200");
    assert!(truth.is_empty());
    let alerts_path = dir.path().join("alerts.jsonl");
    let o = replay(dir.path(), &[&input], &alerts_path);
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&o.stderr);
    assert_counts_add_up(&s, 1_000_000);
    // The rules ran: no alert because none held, not because nothing was evaluated.
    assert!(
        s["windows closed"] > 0 && s["rule runs"] > 0,
        "{}",
        text(&o)
    );
    assert_eq!(s["rule errors"], 0, "{}", text(&o));
    // The alerts file exists (an empty one): a missing file is not "no alerts".
    let written = std::fs::read_to_string(&alerts_path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", alerts_path.display(), text(&o)));
    // A drift test on seven columns is true by chance now and then for one window: such
    // an alert may go pending (and resolve); nothing fires, and no other rule says a word.
    let alerts: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| {
            let drift = a["rule_id"].as_str().unwrap_or("").starts_with("drift.");
            !drift || a["state"] == "firing"
        })
        .collect();
    assert!(
        alerts.is_empty(),
        "{} alerts on benign traffic: {:#?}",
        alerts.len(),
        &alerts[..alerts.len().min(5)]
    );
}

#[test]
fn files_replayed_side_by_side_give_the_same_alert_ids_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "mixed", 11, 160_000, "50");
    let bytes = std::fs::read(&input).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, line) in bytes
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let out = if i % 3 == 0 { &mut a } else { &mut b };
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    let (pa, pb) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let ids = |inputs: &[&Path], name: &str| {
        let alerts = dir.path().join(name);
        let o = replay(dir.path(), inputs, &alerts);
        assert!(o.status.success(), "{}", text(&o));
        jsonl(&alerts)
            .iter()
            .map(|a| format!("{} {}", a["id"], a["state"]))
            .collect::<BTreeSet<_>>()
    };
    let one = ids(&[&input], "one.jsonl");
    let two = ids(&[&pa, &pb], "two.jsonl");
    assert!(!one.is_empty());
    assert_eq!(one, two);
}

#[test]
fn any_number_of_decoding_and_table_threads_gives_the_same_alerts_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "mixed", 12, 160_000, "50");
    // Every 500th record cut short: dead letters come from every decoding thread.
    let records = std::fs::read(&input).unwrap();
    let mut damaged = Vec::new();
    for (i, line) in records
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        damaged.extend_from_slice(if i % 500 == 499 {
            &line[..line.len() / 2]
        } else {
            line
        });
        damaged.push(b'\n');
    }
    std::fs::write(&input, damaged).unwrap();
    let example = std::fs::read_to_string(root().join("examples/replay.yaml")).unwrap();
    let run = |threads: usize| {
        let out = dir.path().join(format!("threads-{threads}"));
        std::fs::create_dir_all(&out).unwrap();
        let config = out.join("config.yaml");
        let yaml = example
            .replace("decode:\n", &format!("decode:\n  threads: {threads}\n"))
            .replace(
                "time:\n",
                &format!("engine:\n  table_threads: {threads}\ntime:\n"),
            )
            .replace(
                "queries: ../queries",
                &format!("queries: {}", root().join("queries").display()),
            );
        assert!(yaml.contains(&format!("  threads: {threads}")));
        assert!(yaml.contains(&format!("table_threads: {threads}")));
        std::fs::write(&config, yaml).unwrap();
        let alerts = out.join("alerts.jsonl");
        let o = inferwatch(
            &[
                "replay",
                "--config",
                config.to_str().unwrap(),
                "--no-progress",
                "--alerts-out",
                alerts.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ],
            &out,
        );
        assert!(o.status.success(), "{}", text(&o));
        // Whole alerts: the evidence's values come from the tables computed in parallel.
        let ids: Vec<String> = jsonl(&alerts).iter().map(|a| a.to_string()).collect();
        let dead: Vec<String> = jsonl(&out.join("dead-letters.jsonl"))
            .iter()
            .map(|d| format!("{} {}", d["position"], d["reason"]))
            .collect();
        (ids, dead, summary(&o.stderr)["bad (dead letter)"])
    };
    let one = run(1);
    assert!(!one.0.is_empty(), "the mixed scenario raises alerts");
    assert!(one.2 >= 320, "every cut record is a dead letter: {}", one.2);
    assert_eq!(one.1.len() as u64, one.2);
    for threads in [2, 4] {
        let many = run(threads);
        assert_eq!(
            many.0, one.0,
            "alerts with {threads} decoding and table threads"
        );
        assert_eq!(
            many.1, one.1,
            "dead letters with {threads} decoding threads"
        );
        assert_eq!(many.2, one.2);
    }
}

#[test]
fn malformed_input_is_dead_lettered_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","model":"fraud","features":{"amount":1.5}}"#;
    let huge = format!(
        r#"{{"ts":"2026-11-21T10:00:01Z","client_id":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    let mut bytes = Vec::new();
    for line in [
        good,
        r#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","feat"#,
        r#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","features":{"amount":"lots"}}"#,
        r#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","latency_ms":NaN}"#,
        &huge,
        good,
    ] {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(&[0xff, 0x00, 0xfe, b'{', 0x80, b'\n']);
    bytes.extend_from_slice(good.as_bytes());
    let input = dir.path().join("bad.jsonl");
    let source = input.display().to_string();
    std::fs::write(&input, bytes).unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let o = replay(dir.path(), &[&input, &empty], &alerts);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    let s = summary(&o.stderr);
    assert_eq!(
        (s["records read"], s["good"], s["bad (dead letter)"]),
        (8, 3, 5),
        "{}",
        text(&o)
    );
    let dead = dead_letters(&dir.path().join("dead-letters.jsonl"), 5, &source);
    assert!(
        dead.iter().any(|d| d["raw_base64"].is_string()),
        "binary garbage keeps its bytes"
    );

    let missing = dir.path().join("missing.jsonl");
    let o = replay(dir.path(), &[&missing], &alerts);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("missing.jsonl") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn bad_config_and_bad_rules_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let run = |cfg_text: &str, extra: &[&str]| {
        std::fs::write(&cfg, cfg_text).unwrap();
        let mut args = vec![
            "replay",
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            "README.md",
        ];
        args.extend_from_slice(extra);
        inferwatch(&args, dir.path())
    };
    let queries = root().join("queries");
    let base = format!(
        "source: {{type: file, paths: []}}\nqueries: {}\n",
        queries.display()
    );

    let o = run(&format!("{base}alerts: {{stdot: true}}\n"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stdot"),
        "{}",
        text(&o)
    );

    let o = run(
        &format!("{base}dead_letter: {{path: ${{NO_SUCH_VAR}}}}\n"),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("NO_SUCH_VAR"),
        "{}",
        text(&o)
    );

    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("evil.yaml"),
        "- id: evil.copy\n  severity: low\n  window: {size: 1m}\n  sql: COPY events TO '/tmp/stolen.csv'\n",
    )
    .unwrap();
    let o = run(&base, &["--queries", rules.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("evil.yaml:4") && err.contains("evil.copy") && err.contains("read-only"),
        "{err}"
    );
}

#[test]
fn rules_check_and_rules_test_commands() {
    let dir = tempfile::tempdir().unwrap();
    let o = inferwatch(
        &[
            "rules",
            "check",
            "--config",
            "examples/replay.yaml",
            "queries",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = inferwatch(&["rules", "test", "tests/rules"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" passed, 0 failed"),
        "{}",
        text(&o)
    );

    let failing = dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        format!(
            "rule_files: [{}]\ntests:\n  - name: expects an alert that cannot come\n    input:\n      - records: [{{ts: \"2026-11-21T10:00:00Z\", client_id: a}}]\n    expect:\n      - at: 2026-11-21T10:05:00Z\n        rule: flood.client_rate\n        alerts:\n          - labels: {{model: fraud, client_id: a}}\n",
            root().join("queries/flood.yaml").display()
        ),
    )
    .unwrap();
    let o = inferwatch(&["rules", "test", failing.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FAIL"),
        "{}",
        text(&o)
    );

    // JUnit XML for CI: one suite per file, the failure with its reason, well-formed
    // (read back by Python's XML parser).
    let junit = dir.path().join("rules.xml");
    let promtool = root().join("tests/rules/promtool_style.yaml");
    let o = inferwatch(
        &[
            "rules",
            "test",
            "--junit",
            junit.to_str().unwrap(),
            promtool.to_str().unwrap(),
            failing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let read = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             r = E.parse(sys.argv[1]).getroot()\n\
             for s in r.iter('testsuite'):\n\
             \x20   for c in s.iter('testcase'):\n\
             \x20       f = c.find('failure')\n\
             \x20       print(s.get('name').rsplit('/', 1)[-1], '|', c.get('name'), '|', 'FAIL ' + f.get('message') if f is not None else 'PASS')\n\
             print(r.get('tests'), r.get('failures'))",
        ])
        .arg(&junit)
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{got}{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "promtool_style.yaml | a busy client fires with the rule's fixed labels, promtool's way | PASS",
            "failing.yaml | expects an alert that cannot come | FAIL at 2026-11-21T10:05:00.000Z: rule flood.client_rate: expected firing {\"client_id\": \"a\", \"model\": \"fraud\"}; active: []",
            "2 1",
        ],
        "{got}"
    );
}

/// A flood scenario and a config that follows its file with the default rules.
pub(crate) fn follow_flood(dir: &Path) -> PathBuf {
    let (input, _) = generate(dir, "flood", 5, 40_000, "20");
    let cfg = dir.join("follow.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: file, paths: [{}], follow: true}}\nqueries: {}\n\
             time: {{idle_timeout: 1s}}\nalerts: {{stdout: false}}\ncheckpoint_interval: 500ms\n",
            input.display(),
            root().join("queries").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn run_follows_a_file_and_stops_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = follow_flood(dir.path());
    let alerts = dir.path().join("alerts.jsonl");
    let o = run_until_idle(&cfg, "2s", &alerts, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let firing: Vec<Value> = jsonl(&alerts)
        .into_iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(
        firing.iter().any(|a| a["rule_id"] == "flood.client_rate"),
        "{}",
        text(&o)
    );
}

/// Model names come from traffic: 10,064 distinct ones in one minute, against the default
/// `reference.max_models` of 64. The 64 get a drift reference, the other 10,000 are refused
/// (their records still count as good and are windowed), and the summary says how many.
#[test]
fn models_beyond_drift_max_models_are_refused_and_counted_in_the_summary() {
    const DISTINCT: usize = 10_064;
    const MAX_MODELS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("models.jsonl");
    let mut lines = String::new();
    for i in 0..DISTINCT {
        lines.push_str(&format!(
            "{{\"ts\":\"2026-11-21T10:00:{:02}.{:03}Z\",\"request_id\":\"r{i}\",\
             \"client_id\":\"c{}\",\"model\":\"m{i:05}\",\"features\":{{\"amount\":{},\
             \"age\":40,\"country\":\"DE\",\"merchant_risk\":0.2,\"hour\":10}},\
             \"prediction\":{{\"label\":\"ok\",\"score\":0.1}}}}\n",
            i * 5 / 1000,
            i * 5 % 1000,
            i % 50,
            i % 100
        ));
    }
    std::fs::write(&input, lines).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let o = replay(dir.path(), &[&input], &alerts);
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&o.stderr);
    assert_eq!(s["good"], DISTINCT as u64, "{}", text(&o));
    assert_eq!(
        s.get("models refused").copied(),
        Some((DISTINCT - MAX_MODELS) as u64),
        "{}",
        text(&o)
    );
}

/// `check` loads and checks a whole config without running it: the example with an
/// embedded model passes and names what it checked; a wrong pinned hash, a receiver
/// whose password variable is unset, and a rule that does not plan are errors (exit 2)
/// that name the problem, and nothing is written.
#[test]
fn check_validates_a_whole_config_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = root().join("examples/rescore.yaml");
    let o = inferwatch(
        &["check", "--config", example.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(": OK"), "{out}");
    assert!(out.contains("breast_cancer_lr (sha256 checked)"), "{out}");
    assert!(out.contains("baselines   1"), "{out}");

    // The example with its relative paths made absolute, to be changed in a copy.
    let text_of = std::fs::read_to_string(&example)
        .unwrap()
        .replace("../", &format!("{}/", root().display()));
    let write = |name: &str, t: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, t).unwrap();
        p
    };
    let cases = [
        (
            "check-hash.yaml",
            text_of.replace(
                "sha256: 36e1050792dd3afb87345154919876eaf1f4f2844a91bd2e3cd011755114ae7f",
                "sha256: 0000000000000000000000000000000000000000000000000000000000000000",
            ),
            "refusing to load it",
        ),
        (
            "check-receiver.yaml",
            format!(
                "{text_of}notify:\n  outbox: {}\n  receivers:\n    - name: ops\n      email: {{to: ops@example.com, from: iw@example.com, smarthost: 'mail:587', username: u, password_env: IW_CHECK_UNSET_PASSWORD}}\n  route: {{receiver: ops}}\n",
                dir.path().join("outbox").display()
            ),
            "IW_CHECK_UNSET_PASSWORD",
        ),
    ];
    for (name, t, says) in cases {
        let p = write(name, &t);
        let o = inferwatch(&["check", "--config", p.to_str().unwrap()], dir.path());
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{name}: {}",
            text(&o)
        );
    }
    assert!(
        !dir.path().join("outbox").exists(),
        "check wrote the outbox"
    );

    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("bad.yaml"),
        "- id: x.bad\n  severity: low\n  window: {size: 1m}\n  sql: SELECT no_such_column FROM events\n",
    )
    .unwrap();
    let o = inferwatch(
        &[
            "check",
            "--config",
            example.to_str().unwrap(),
            "--queries",
            rules.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no_such_column"), "{}", text(&o));
}

/// `--log-format json` writes every log line on standard error as a JSON object (the
/// final error too), and `completions` prints a shell's completion script.
#[test]
fn json_logs_and_shell_completions() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "flood", 2, 40_000, "20");
    let cfg = root().join("examples/replay.yaml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args([
            "--log-format",
            "json",
            "replay",
            "--no-progress",
            "--config",
        ])
        .arg(&cfg)
        .arg("--input")
        .arg(&input)
        .env("INFERWATCH_LOG", "info")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Log lines, then the end-of-run summary (a table for people).
    let err = String::from_utf8_lossy(&o.stderr);
    let (logs, summary) = err.split_once("inferwatch summary").unwrap_or((&err, ""));
    assert!(summary.contains("records read"), "{err}");
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines at info");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args([
            "--log-format",
            "json",
            "replay",
            "--config",
            "/nonexistent.yaml",
        ])
        .args(["--input", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&o.stderr).trim()).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert!(
        v["message"].as_str().unwrap().contains("/nonexistent.yaml"),
        "{v}"
    );

    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef inferwatch"),
        ("fish", "complete -c inferwatch"),
    ] {
        let o = inferwatch(&["completions", shell], dir.path());
        assert!(o.status.success(), "{}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("replay") && script.contains("until-idle"),
            "{shell}"
        );
    }
}
