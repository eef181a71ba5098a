//! A real Prometheus (Debian's `prometheus`) scrapes inferwatch during a `mixed` run on
//! Kafka; every PromQL expression of `dashboards/*.json` must return data through the
//! Prometheus HTTP API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{eventually, free_port, root};
use crate::kafka::{Extra, brokers, create_topic, kafka_config, produce_mixed};

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
}

/// The result of an instant query (empty when there is none yet).
fn query(port: u16, expr: &str) -> Vec<Value> {
    get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .filter(|v| v["status"] == "success")
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

fn dashboard_exprs(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let d: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                out.push((
                    format!("{} / {}", d["title"], p["title"]),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_a_mixed_kafka_run_and_every_dashboard_query_has_data() {
    let exprs = dashboard_exprs(&root().join("dashboards"));
    assert!(exprs.len() >= 20, "{exprs:?}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = brokers();
    let topic = "prom-mixed";
    create_topic(&b, topic, 3);
    produce_mixed(&b, d, topic, 21);
    // An email receiver whose server is not there: its queue and failures show.
    let top = format!(
        "state_dir: {}\nnotify:\n  receivers:\n    - {{name: team, email: {{to: a@example.com, from: d@example.com, smarthost: '127.0.0.1:9', tls: none}}}}\n  route: {{receiver: team, group_wait: 0s}}\n  retry_initial: 100ms\n  drain_timeout: 1s\n",
        d.join("state").display()
    );
    let extra = Extra {
        top: &top,
        ..Extra::default()
    };
    let cfg = kafka_config(d, &b, topic, "prom-group", extra);
    let http = free_port();
    let run = Killed(
        Command::new(env!("CARGO_BIN_EXE_inferwatch"))
            .args(["run", "--config"])
            .arg(&cfg)
            .args([
                "--http",
                &format!("127.0.0.1:{http}"),
                "--until-idle",
                "60s",
            ])
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom_port = free_port();
    let prom_cfg = d.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: inferwatch\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (Debian package prometheus)"),
    );
    // Until inferwatch has read the whole topic (as Prometheus saw it), then a few more
    // scrapes so that rates have two samples after the last window.
    let read_all = eventually(Duration::from_secs(120), None, || {
        let total = query(prom_port, "sum(inferwatch_records_total)");
        total
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .is_some_and(|n| n >= 160_000.0)
    });
    assert!(read_all, "Prometheus never saw the whole topic read");
    std::thread::sleep(Duration::from_secs(6));
    let mut empty = Vec::new();
    for (panel, expr) in &exprs {
        if query(prom_port, expr).is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );
    drop(run);
}
