//! Email delivery against a real SMTP server (aiosmtpd, `scripts/smtp_server.py`, with
//! STARTTLS and AUTH): grouping and routing of the `mixed` scenario's alerts, an outage
//! of the server during a run, and `kill -9` with messages still queued.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{FEATURES, eventually, free_port, generate, jsonl, root, text, watch_stderr};

const USER: &str = "alerts";
const PASSWORD: &str = "pw-for-tests-only";

/// The Debian interpreter, which has `python3-aiosmtpd` (SMTP_PYTHON overrides).
fn python() -> String {
    std::env::var("SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// A running `scripts/smtp_server.py`, stopped on drop.
struct Smtp {
    child: Child,
    dir: PathBuf,
}

impl Smtp {
    /// Writes the server's self-signed certificate (the client trusts it by `ca_file`).
    fn certificate(dir: &Path) -> PathBuf {
        let o = Command::new(python())
            .args([
                "scripts/smtp_server.py",
                "--port",
                "0",
                "--cert-only",
                "--dir",
            ])
            .arg(dir)
            .current_dir(root())
            .output()
            .expect("python3 runs");
        assert!(o.status.success(), "{}", text(&o));
        dir.join("cert.pem")
    }

    fn start(dir: &Path, port: u16) -> Smtp {
        let mut child = Command::new(python())
            .args([
                "scripts/smtp_server.py",
                "--tls",
                "starttls",
                "--user",
                USER,
            ])
            .args(["--password", PASSWORD, "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP server starts (python3-aiosmtpd installed?)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Smtp {
            child,
            dir: dir.to_owned(),
        }
    }

    /// The messages received so far, as the server parsed them.
    fn mails(&self) -> Vec<Value> {
        mails(&self.dir)
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test's SMTP server will listen and keep its mail, with its certificate made.
fn smtp_site(d: &Path) -> (u16, PathBuf, PathBuf) {
    let dir = d.join("smtp");
    let cert = Smtp::certificate(&dir);
    (free_port(), dir, cert)
}

fn mails(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("mail"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn header<'a>(mail: &'a Value, name: &str) -> Option<&'a str> {
    mail["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

/// Notification ids a message carries (its `notification:` lines).
fn carried(mail: &Value) -> Vec<String> {
    mail["text"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("notification:"))
        .flat_map(|ids| ids.split_whitespace().map(str::to_owned))
        .collect()
}

/// A replay config with two email receivers on one server: `secops` takes every alert
/// (grouped by rule), `audit` also gets the extraction rules (`continue`).
fn config(dir: &Path, port: u16, cert: &Path, group_wait: &str, extra: &str) -> PathBuf {
    let path = dir.join("email.yaml");
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             {FEATURES}\
             queries: {}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: 50ms\n{}",
            root().join("queries").display(),
            notify_yaml(port, cert, group_wait, extra),
        ),
    )
    .unwrap();
    path
}

/// The `notify:` section: two email receivers on one server, `secops` for every alert
/// (grouped by rule), `audit` also for the extraction rules (`continue`).
fn notify_yaml(port: u16, cert: &Path, group_wait: &str, extra: &str) -> String {
    let email = |to: &str| {
        format!(
            "{{to: {to}, from: inferwatch@example.com, smarthost: '127.0.0.1:{port}', \
             tls: starttls, ca_file: {}, username: {USER}, password_env: DW_SMTP_PASSWORD, \
             send_resolved: true}}",
            cert.display()
        )
    };
    format!(
        "notify:\n\
         \x20 receivers:\n\
         \x20   - {{name: secops, email: {}}}\n\
         \x20   - {{name: audit, email: {}}}\n\
         \x20 route:\n\
         \x20   receiver: secops\n\
         \x20   group_by: [alertname]\n\
         \x20   group_wait: {group_wait}\n\
         \x20   group_interval: {group_wait}\n\
         \x20   routes:\n\
         \x20     - {{matchers: ['alertname=~\"extraction\\\\..*\"'], receiver: audit, continue: true}}\n\
         \x20     - {{matchers: ['alertname=~\".*\"'], receiver: secops}}\n\
         {extra}",
        email("secops@example.com"),
        email("audit@example.com"),
    )
}

fn replay(cfg: &Path, input: &Path, alerts: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_inferwatch"));
    c.args(["replay", "--no-progress", "--config"])
        .arg(cfg)
        .arg("--input")
        .arg(input)
        .arg("--alerts-out")
        .arg(alerts)
        .arg("--state-dir")
        .arg(state)
        .env("DW_SMTP_PASSWORD", PASSWORD)
        .current_dir(root());
    c
}

/// What each receiver must be told, from the JSONL record of every state change:
/// every firing, and the resolution of every alert that fired.
fn expected(alerts: &Path) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for a in jsonl(alerts) {
        let said =
            a["state"] == "firing" || (a["state"] == "resolved" && a["evidence"]["fired"] == true);
        if !said {
            continue;
        }
        let id = a["notification_id"].as_str().unwrap().to_owned();
        let rule = a["rule_id"].as_str().unwrap();
        if rule.starts_with("extraction.") {
            out.entry("audit").or_default().insert(id.clone());
        }
        out.entry("secops").or_default().insert(id);
    }
    out
}

/// Each expected change reached its receiver exactly once; a message seen twice (a
/// resend after a crash) must be the same message, with the same Message-ID.
fn assert_delivered_once(mails: &[Value], want: &BTreeMap<&'static str, BTreeSet<String>>) {
    let mut by_id: BTreeMap<String, &Value> = BTreeMap::new();
    let mut got: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for m in mails {
        let mid = header(m, "Message-ID").unwrap().to_owned();
        if let Some(prev) = by_id.insert(mid.clone(), m) {
            assert_eq!(
                prev["text"], m["text"],
                "two different messages with id {mid}"
            );
            continue;
        }
        let to = m["to"][0].as_str().unwrap();
        let receiver = if to.starts_with("audit") {
            "audit"
        } else {
            "secops"
        };
        got.entry(receiver).or_default().extend(carried(m));
    }
    for (receiver, ids) in want {
        let list = got.remove(receiver).unwrap_or_default();
        let set: BTreeSet<String> = list.iter().cloned().collect();
        assert_eq!(
            set.len(),
            list.len(),
            "{receiver}: a change was mailed twice"
        );
        assert_eq!(
            &set, ids,
            "{receiver}: mailed changes differ from the alerts"
        );
    }
    assert!(got.is_empty(), "mail for an unexpected receiver: {got:?}");
}

#[test]
fn mixed_scenario_mails_one_thread_per_group_over_starttls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 7, 160_000, "50");
    let (port, smtp_dir, cert) = smtp_site(d);
    let server = Smtp::start(&smtp_dir, port);
    let cfg = config(d, port, &cert, "1h", "");
    let alerts = d.join("alerts.jsonl");
    let o = replay(&cfg, &input, &alerts, &d.join("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("delivery          email secops:"), "{out}");
    assert!(!out.contains(PASSWORD) && !text(&o).contains(PASSWORD));
    let mails = server.mails();
    let want = expected(&alerts);
    assert!(want["secops"].len() >= 4, "{want:?}");
    assert!(
        !want["audit"].is_empty(),
        "the scenario fires no extraction rule"
    );
    assert_delivered_once(&mails, &want);
    // group_wait is 1 h, so each group is mailed once, when the run drains: one message
    // per rule that fired for secops, per extraction rule for audit.
    let rules_fired: BTreeSet<String> = jsonl(&alerts)
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| a["rule_id"].as_str().unwrap().to_owned())
        .collect();
    let audit_rules = rules_fired
        .iter()
        .filter(|r| r.starts_with("extraction."))
        .count();
    assert_eq!(mails.len(), rules_fired.len() + audit_rules, "{mails:#?}");
    for m in &mails {
        let subject = header(m, "Subject").unwrap();
        assert!(subject.starts_with("[inferwatch] "), "{subject}");
        let rule = rules_fired
            .iter()
            .find(|r| subject.contains(&format!(": {r} (alertname={r})")))
            .unwrap_or_else(|| panic!("subject names no rule and group: {subject}"));
        assert!(
            ["FIRING:", "RESOLVED"].iter().any(|s| subject.contains(s)),
            "{subject}"
        );
        assert!(m["html"].as_str().unwrap().contains(rule.as_str()));
        assert_eq!(header(m, "From"), Some("inferwatch@example.com"));
        assert!(
            header(m, "In-Reply-To").is_none(),
            "first message of its group"
        );
    }
}

#[test]
fn smtp_outage_delays_mail_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 8, 160_000, "50");
    let (port, smtp_dir, cert) = smtp_site(d);
    let cfg = config(
        d,
        port,
        &cert,
        "1h",
        "  retry_initial: 200ms\n  retry_max: 2s\n  drain_timeout: 120s\n",
    );
    let alerts = d.join("alerts.jsonl");
    let mut child = replay(&cfg, &input, &alerts, &d.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server is down until a delivery has failed (mail is sent at the drain, with
    // group_wait 1h), however long the run takes to get there.
    let (failed, log) = watch_stderr(&mut child, "email delivery failed");
    let failed = failed.recv_timeout(Duration::from_secs(300)).is_ok();
    let server = Smtp::start(&smtp_dir, port);
    let o = child.wait_with_output().unwrap();
    let log = format!("{}\n{}", text(&o), log.join().unwrap());
    assert!(o.status.success(), "{log}");
    assert!(
        failed,
        "no delivery failed while the server was down: {log}"
    );
    assert!(!log.contains(PASSWORD));
    assert_delivered_once(&server.mails(), &expected(&alerts));
}

#[test]
fn kill_9_with_mail_queued_delivers_it_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 9, 160_000, "50");
    let (port, smtp_dir, cert) = smtp_site(d);
    let cfg = config(
        d,
        port,
        &cert,
        "1h",
        "  retry_initial: 200ms\n  retry_max: 1s\n  drain_timeout: 120s\n",
    );
    let alerts = d.join("alerts.jsonl");
    let state = d.join("state");
    // No server: the run drains into a queue that cannot be delivered; kill it there.
    let mut child = replay(&cfg, &input, &alerts, &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let secops = state.join("outbox").join("secops.state.json");
    let queued = eventually(Duration::from_secs(120), Some(&mut child), || {
        std::fs::read_to_string(&secops).is_ok_and(|s| s.contains("\"queue\":[{"))
    });
    assert!(queued, "the run queued no mail while the server was down");
    child.kill().unwrap();
    child.wait().unwrap();
    let server = Smtp::start(&smtp_dir, port);
    let o = replay(&cfg, &input, &alerts, &state).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mails = server.mails();
    assert!(!mails.is_empty());
    assert_delivered_once(&mails, &expected(&alerts));
}

/// Killed right after its first mail, with the first regular checkpoint an hour away:
/// the restart neither mails a change twice nor loses one.
#[test]
fn kill_9_before_the_first_checkpoint_mails_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 10, 160_000, "50");
    let (port, smtp_dir, cert) = smtp_site(d);
    let cfg = config(d, port, &cert, "0s", "");
    let text_of = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text_of.replace("checkpoint_interval: 50ms", "checkpoint_interval: 1h"),
    )
    .unwrap();
    let alerts = d.join("alerts.jsonl");
    let state = d.join("state");
    let server = Smtp::start(&smtp_dir, port);
    let mut child = replay(&cfg, &input, &alerts, &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mailed = eventually(Duration::from_secs(120), Some(&mut child), || {
        !server.mails().is_empty()
    });
    assert!(mailed, "nothing was mailed before the run ended");
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed, "the run ended before the kill");
    let o = replay(&cfg, &input, &alerts, &state).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let alert_lines: Vec<String> = jsonl(&alerts)
        .iter()
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect();
    let unique: BTreeSet<&String> = alert_lines.iter().collect();
    assert_eq!(unique.len(), alert_lines.len(), "an alert line twice");
    assert_delivered_once(&server.mails(), &expected(&alerts));
}

#[test]
fn groups_mailed_as_they_change_thread_their_follow_ups_and_say_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 7, 160_000, "50");
    let (port, smtp_dir, cert) = smtp_site(d);
    let server = Smtp::start(&smtp_dir, port);
    // No waiting: each group is mailed as soon as it changes (a replay streams its
    // windows over seconds, so firing and resolution land in different messages).
    let cfg = config(d, port, &cert, "0s", "");
    let alerts = d.join("alerts.jsonl");
    let o = replay(&cfg, &input, &alerts, &d.join("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mails = server.mails();
    assert_delivered_once(&mails, &expected(&alerts));
    let first: BTreeMap<&str, &str> = mails
        .iter()
        .filter(|m| header(m, "In-Reply-To").is_none())
        .map(|m| {
            (
                header(m, "Message-ID").unwrap(),
                header(m, "Subject").unwrap(),
            )
        })
        .collect();
    let follow_ups: Vec<&Value> = mails
        .iter()
        .filter(|m| header(m, "In-Reply-To").is_some())
        .collect();
    assert!(!follow_ups.is_empty(), "no group was mailed twice");
    for m in &follow_ups {
        let parent = header(m, "In-Reply-To").unwrap();
        assert_eq!(header(m, "References"), Some(parent));
        let first_subject = first
            .get(parent)
            .unwrap_or_else(|| panic!("follow-up of an unknown message {parent}"));
        // Same group: same rule in the subject.
        let rule = |s: &str| s.rsplit_once(": ").unwrap().1.to_owned();
        assert_eq!(rule(header(m, "Subject").unwrap()), rule(first_subject));
    }
    assert!(
        mails
            .iter()
            .any(|m| m["text"].as_str().unwrap().contains("[resolved]")),
        "no resolved notice"
    );
}

#[test]
fn sigterm_during_a_kafka_run_exits_0_commits_and_the_restart_mails_nothing_twice() {
    use crate::kafka::{Extra, brokers, kafka_config, keyed, mixed_topic};
    let b = brokers();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (topic, replayed) = mixed_topic(&b, d, "sigterm", 12);
    let (port, smtp_dir, cert) = smtp_site(d);
    let server = Smtp::start(&smtp_dir, port);
    let top = format!(
        "checkpoint_interval: 50ms\n{}",
        notify_yaml(port, &cert, "0s", "")
    );
    let group = format!("g-{topic}");
    let extra = Extra {
        source: "  librdkafka_options: {group.instance.id: sigterm-test, session.timeout.ms: \"6000\"}\n",
        top: &top,
        ..Extra::default()
    };
    let cfg = kafka_config(d, &b, &topic, &group, extra);
    let state = d.join("sigterm-state");
    crate::cli::plain_sampling(&state);
    let alerts = d.join("sigterm-alerts.jsonl");
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_inferwatch"));
        c.args(["run", "--http", "off", "--until-idle", "4s", "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(&state)
            .arg("--alerts-out")
            .arg(&alerts)
            .env("DW_SMTP_PASSWORD", PASSWORD)
            .current_dir(root());
        c
    };
    let mut child = run()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once it has raised its first alert (joining the group takes seconds).
    let alerted = eventually(Duration::from_secs(120), Some(&mut child), || {
        std::fs::metadata(&alerts).is_ok_and(|m| m.len() > 0)
    });
    assert!(alerted, "the Kafka run raised no alert");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before SIGTERM"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "SIGTERM: {log}");
    // What the stop read is committed to the group.
    let read: i64 = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("records read"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no record count in: {log}"));
    assert!(
        read > 0,
        "read {read}: {log}\nalerts file: {:?}",
        std::fs::read_to_string(&alerts)
    );
    eprintln!("SIGTERM after {read} of 160000 records");
    let log_path = d.join("stop.log");
    std::fs::write(&log_path, &log).unwrap();
    crate::kafka_ops::wait_committed(&b, &group, &topic, 6, read, &log_path);
    // The restart goes on from there: every alert once, every change mailed once.
    let o = run().output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = jsonl(&alerts)
        .iter()
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect();
    let unique: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(
        unique.len(),
        lines.len(),
        "an (id, state) was written twice"
    );
    assert_eq!(keyed(&alerts), keyed(&replayed), "{}", text(&o));
    assert_delivered_once(&server.mails(), &expected(&alerts));
}
