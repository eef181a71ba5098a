//! HTTP receivers against real servers: a webhook receiver posting Alertmanager's
//! webhook JSON to a recording HTTP server, and an Alertmanager receiver pushing to a
//! real Alertmanager (Debian's `prometheus-alertmanager`), which groups and routes the
//! alerts to that same recording server — with both servers out for 30 s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{FEATURES, eventually, free_port, generate, jsonl, root, text, watch_stderr};

/// An HTTP/1.1 server that answers 200 to every POST and keeps (path, JSON body).
struct Recorder {
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    fn start(port: u16) -> Recorder {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let keep = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        keep.lock().unwrap().push((path, v));
                        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                    }
                });
            }
        });
        Recorder { got }
    }

    fn bodies(&self, path: &str) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A real Alertmanager: groups by alertname, posts to the recorder's `/am`.
struct Alertmanager {
    child: Child,
    port: u16,
}

impl Alertmanager {
    fn start(dir: &Path, hook_port: u16) -> Alertmanager {
        let port = free_port();
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(
            &cfg,
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      \
                 - url: http://127.0.0.1:{hook_port}/am\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let bin = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("Alertmanager is installed (scripts/setup.sh)");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let am = Alertmanager { child, port };
        assert!(
            eventually(Duration::from_secs(30), None, || am.ready()),
            "Alertmanager did not start"
        );
        am
    }

    fn ready(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && get(self.port, "/-/ready").is_some_and(|b| b.contains("OK"))
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: a server that takes
    /// connections and never answers.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// The alerts it holds (active, silenced and inhibited), as JSON.
    fn alerts(&self) -> Vec<Value> {
        get(self.port, "/api/v2/alerts")
            .and_then(|b| serde_json::from_str::<Vec<Value>>(&b).ok())
            .unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET's body.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn config(dir: &Path, hook_port: u16, am_port: u16) -> PathBuf {
    let path = dir.join("receivers.yaml");
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             {FEATURES}\
             queries: {}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: 50ms\n\
             notify:\n\
             \x20 retry_initial: 200ms\n\
             \x20 retry_max: 2s\n\
             \x20 drain_timeout: 180s\n\
             \x20 receivers:\n\
             \x20   - name: hook\n\
             \x20     webhook_configs:\n\
             \x20       - {{url: 'http://127.0.0.1:{hook_port}/hook', timeout: 2s}}\n\
             \x20   - name: am\n\
             \x20     alertmanager: {{url: 'http://127.0.0.1:{am_port}', timeout: 2s}}\n\
             \x20 route:\n\
             \x20   receiver: hook\n\
             \x20   group_by: [alertname]\n\
             \x20   group_wait: 1h\n\
             \x20   group_interval: 1h\n\
             \x20   routes:\n\
             \x20     - {{matchers: ['alertname=~\".+\"'], receiver: am, continue: true}}\n\
             \x20     - {{matchers: ['alertname=~\".+\"'], receiver: hook}}\n",
            root().join("queries").display(),
        ),
    )
    .unwrap();
    path
}

/// Every firing, and every resolution of an alert that fired, by notification id.
fn expected(alerts: &Path) -> BTreeSet<String> {
    jsonl(alerts)
        .into_iter()
        .filter(|a| {
            a["state"] == "firing" || (a["state"] == "resolved" && a["evidence"]["fired"] == true)
        })
        .map(|a| a["notification_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn webhook_and_alertmanager_receivers_lose_nothing_through_a_30_s_outage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 9, 160_000, "50");
    let hook_port = free_port();
    let am = Alertmanager::start(d, hook_port);
    // Both out: the webhook's port has no server yet, the Alertmanager is frozen.
    am.signal("-STOP");
    let alerts = d.join("alerts.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(["replay", "--no-progress", "--config"])
        .arg(config(d, hook_port, am.port))
        .arg("--input")
        .arg(&input)
        .arg("--alerts-out")
        .arg(&alerts)
        .arg("--state-dir")
        .arg(d.join("state"))
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (failed, log) = watch_stderr(&mut child, "alertmanager delivery failed");
    let out = Instant::now();
    let failed = failed.recv_timeout(Duration::from_secs(300)).is_ok();
    std::thread::sleep(Duration::from_secs(30).saturating_sub(out.elapsed()));
    let recorder = Recorder::start(hook_port);
    am.signal("-CONT");
    let o = child.wait_with_output().unwrap();
    let log = format!("{}\n{}", text(&o), log.join().unwrap());
    assert!(o.status.success(), "{log}");
    assert!(
        failed,
        "no delivery failed while the servers were out: {log}"
    );
    assert!(log.contains("webhook delivery failed"), "{log}");
    // The summary (standard error, read by watch_stderr into the log).
    assert!(log.contains("webhook hook:"), "{log}");
    assert!(log.contains("alertmanager am:"), "{log}");

    let want = expected(&alerts);
    assert!(want.len() >= 4, "{want:?}");
    // The webhook: Alertmanager's JSON, every change exactly once, one group per rule.
    let mut said: Vec<String> = Vec::new();
    for b in recorder.bodies("/hook") {
        assert_eq!(b["version"], "4");
        assert_eq!(b["receiver"], "hook");
        let rule = b["groupLabels"]["alertname"].as_str().unwrap().to_owned();
        for a in b["alerts"].as_array().unwrap() {
            assert_eq!(a["labels"]["alertname"], rule.as_str(), "{b}");
            let status = a["status"].as_str().unwrap();
            let id = a["fingerprint"].as_str().unwrap();
            // A fired-and-resolved alert carries both changes.
            if status == "resolved" && want.contains(&format!("{id}:firing")) {
                said.push(format!("{id}:firing"));
            }
            said.push(format!("{id}:{status}"));
        }
    }
    let set: BTreeSet<String> = said.iter().cloned().collect();
    assert_eq!(set.len(), said.len(), "a change was posted twice: {said:?}");
    let firing_or_resolved: BTreeSet<String> = set.iter().cloned().collect();
    assert_eq!(
        firing_or_resolved, want,
        "posted changes differ from the alerts"
    );

    // The Alertmanager: it received every alert that fired and every resolution
    // (its own counters), holds the alerts still firing at the end, and notifies those
    // grouped by alertname as its own route says. (An alert that resolves before the
    // Alertmanager's group_wait is never notified by it: its semantics, not ours.)
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for a in jsonl(&alerts) {
        let id = a["id"].as_str().unwrap().to_owned();
        if a["state"] == "firing" || (a["state"] == "resolved" && last.contains_key(&id)) {
            last.insert(id, a);
        }
    }
    let fired = last.len() as f64;
    let resolved = last.values().filter(|a| a["state"] == "resolved").count() as f64;
    let received = |status: &str| -> f64 {
        get(am.port, "/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.starts_with("alertmanager_alerts_received_total")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(30), None, || received("firing")
            + received("resolved")
            >= fired
            && received("resolved") >= resolved),
        "the Alertmanager received {} firing and {} resolved alerts; {fired} fired, {resolved} resolved",
        received("firing"),
        received("resolved")
    );
    let still: Vec<BTreeMap<String, String>> = last
        .values()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let mut labels: BTreeMap<String, String> =
                serde_json::from_value(a["labels"].clone()).unwrap();
            labels.insert("alertname".into(), a["rule_id"].as_str().unwrap().into());
            labels
        })
        .collect();
    let holds = |labels: &BTreeMap<String, String>, alerts: &[Value]| {
        alerts.iter().any(|a| {
            labels
                .iter()
                .all(|(k, v)| a["labels"][k.as_str()] == v.as_str())
        })
    };
    let held = am.alerts();
    assert!(
        !still.is_empty(),
        "the scenario leaves no alert firing: the Alertmanager's notifications go unchecked"
    );
    for l in &still {
        assert!(
            holds(l, &held),
            "the Alertmanager does not hold {l:?}: {held:#?}"
        );
    }
    assert!(
        eventually(Duration::from_secs(30), None, || {
            let notified: Vec<Value> = recorder
                .bodies("/am")
                .iter()
                .flat_map(|b| b["alerts"].as_array().unwrap().clone())
                .collect();
            still.iter().all(|l| holds(l, &notified))
        }),
        "the Alertmanager did not notify the alerts still firing: {still:#?}"
    );
    for b in recorder.bodies("/am") {
        let rule = b["groupLabels"]["alertname"].as_str().unwrap();
        for a in b["alerts"].as_array().unwrap() {
            assert_eq!(
                a["labels"]["alertname"], rule,
                "not grouped by alertname: {b}"
            );
            assert!(a["labels"]["severity"].is_string(), "{a}");
        }
    }
}
