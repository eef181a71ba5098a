//! The HTTP API of a running `run`: auth for changes, silences that match alerts and
//! expire, malformed requests, metrics and readiness, a bounded load of 10,000
//! requests on loopback, tokens too short to start with, and slow or silent clients that
//! must not starve the probes.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{eventually, free_port, generate, root};

const TOKEN: &str = "api-token-for-tests-0123456789";

/// One request with `Connection: close`; returns the status code and the body.
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    try_request(port, method, path, token, body, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// [`request`], `None` when the server does not answer (or not within `patience`).
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    patience: Duration,
) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, patience).ok()?;
    s.set_read_timeout(Some(patience)).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    Some((code, body))
}

fn get_json(port: u16, path: &str) -> Value {
    let (code, body) = request(port, "GET", path, None, "");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// `n` GET requests, at most `in_flight` at once; returns how many were not 200.
fn load(port: u16, n: usize, in_flight: usize) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let gate = gate.clone();
            let path = ["/healthz", "/metrics", "/api/v1/alerts", "/api/v1/rules"][i % 4];
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire().await.unwrap();
                let go = async {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    s.write_all(
                        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .await?;
                    let mut out = Vec::new();
                    s.read_to_end(&mut out).await?;
                    std::io::Result::Ok(out.starts_with(b"HTTP/1.1 200"))
                };
                matches!(
                    tokio::time::timeout(Duration::from_secs(60), go).await,
                    Ok(Ok(true))
                )
            }));
        }
        let mut failed = 0;
        for t in tasks {
            failed += usize::from(!t.await.unwrap());
        }
        failed
    })
}

/// Starts `run` on `cfg` with the API on a free port (token in `DW_API_TOKEN`) and
/// `args`, and waits for a firing alert of `rule`; returns the process, its port and
/// the alert.
fn run_until_firing(cfg: &Path, args: &[&OsStr], rule: &str) -> (Running, u16, Value) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(["run", "--config"])
        .arg(cfg)
        .args([
            "--http",
            &format!("127.0.0.1:{port}"),
            "--until-idle",
            "600s",
        ])
        .args(args)
        .env("DW_API_TOKEN", TOKEN)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = Running(child);
    let mut alert = None;
    let fired = eventually(Duration::from_secs(120), Some(&mut run.0), || {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return false;
        }
        alert = get_json(port, "/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["state"] == "firing" && a["rule_id"] == rule)
            .cloned();
        alert.is_some()
    });
    assert!(fired, "the run raised no firing {rule} alert");
    (run, port, alert.unwrap())
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn api_needs_a_token_for_changes_silences_match_and_expire_and_it_takes_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = cut_flood(d, 0);
    let cfg = d.join("api.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: file, paths: [{}], follow: true}}\nqueries: {}\n\
             time: {{idle_timeout: 1s}}\nalerts: {{stdout: false}}\n\
             http: {{token_env: DW_API_TOKEN}}\n",
            input.display(),
            root().join("queries").display()
        ),
    )
    .unwrap();
    let state = d.join("state");
    let (mut run, port, alert) = run_until_firing(
        &cfg,
        &[OsStr::new("--state-dir"), state.as_os_str()],
        "flood.client_rate",
    );
    let rule = alert["rule_id"].as_str().unwrap().to_owned();
    let (code, body) = request(port, "GET", "/readyz", None, "");
    assert_eq!(code, 200, "{body}");

    // The live report shows the firing alert and the client it names.
    let (code, page) = request(port, "GET", "/report", None, "");
    assert_eq!(code, 200, "{page}");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page:.200}");
    let id = alert["id"].as_str().unwrap();
    assert!(
        page.contains(&format!(r#"data-alert-id="{id}""#)),
        "no alert {id} in the live report"
    );
    let client = alert["labels"]["client_id"].as_str().unwrap();
    assert!(
        page.contains(&format!(r#"data-client="{client}""#)),
        "client {client} is not among the flagged clients of the live report"
    );

    // Changes need the token.
    let silence = json!({
        "matchers": [format!("alertname=\"{rule}\"")],
        "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "comment": "test", "created_by": "it"
    })
    .to_string();
    let (code, body) = request(port, "POST", "/api/v1/silences", None, &silence);
    assert_eq!(code, 401, "{body}");
    let (code, _) = request(
        port,
        "POST",
        "/api/v1/silences",
        Some("wrong-token"),
        &silence,
    );
    assert_eq!(code, 401);
    // Malformed requests: 400 with a reason.
    let (code, body) = request(port, "POST", "/api/v1/silences", Some(TOKEN), "{not json");
    assert_eq!(code, 400);
    assert!(body.contains("bad silence"), "{body}");
    let (code, body) = request(
        port,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"matchers": ["a=\"b\""], "ends_at": "2100-01-01T00:00:00Z", "colour": "red"}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("colour"), "{body}");
    let (code, body) = request(
        port,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"matchers": ["a=~\"(\""], "ends_at": "2100-01-01T00:00:00Z"}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("regular expression"), "{body}");

    // A silence matches the alert, then expires.
    let (code, body) = request(port, "POST", "/api/v1/silences", Some(TOKEN), &silence);
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let silenced = |port| -> Vec<Value> {
        get_json(port, "/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule_id"] == rule.as_str())
            .map(|a| a["silenced_by"].clone())
            .collect()
    };
    let by = silenced(port);
    assert!(!by.is_empty());
    assert!(by.iter().all(|s| s == &json!([id])), "{by:?}");
    let listed = get_json(port, "/api/v1/silences");
    assert_eq!(listed["silences"][0]["status"], "active");
    let (code, _) = request(port, "DELETE", "/api/v1/silences/nope", Some(TOKEN), "");
    assert_eq!(code, 404);
    let (code, _) = request(port, "DELETE", &format!("/api/v1/silences/{id}"), None, "");
    assert_eq!(code, 401);
    let (code, body) = request(
        port,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(silenced(port).iter().all(|s| s == &json!([])));
    assert_eq!(
        get_json(port, "/api/v1/silences")["silences"][0]["status"],
        "expired"
    );
    // Kept in the state directory.
    let saved = std::fs::read_to_string(d.join("state").join("silences.json")).unwrap();
    assert!(saved.contains(&id));

    // Rules and metrics.
    let rules = get_json(port, "/api/v1/rules");
    let r = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == rule.as_str())
        .unwrap();
    assert!(r["evaluations"].as_u64().unwrap() > 0, "{r}");
    assert!(r["last_window_end"].is_string() && r["last_duration_ms"].is_number());
    let (code, metrics) = request(port, "GET", "/metrics", None, "");
    assert_eq!(code, 200);
    for family in [
        "inferwatch_records_total{outcome=\"good\"}",
        "inferwatch_windows_closed_total",
        &format!("inferwatch_rule_evaluations_total{{rule=\"{rule}\"}}"),
        &format!("inferwatch_alerts{{rule=\"{rule}\",state=\"firing\"}} 1"),
        "inferwatch_silences{status=\"expired\"} 1",
        "inferwatch_client_profiles",
        &format!(
            "inferwatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        &format!("inferwatch_rule_healthy{{rule=\"{rule}\"}} 1"),
        "inferwatch_watermark_lag_seconds ",
        "process_open_fds ",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    // The process's resident memory as the kernel reports it to `ps` (VmRSS, KiB).
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.0.id())).unwrap();
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    let rss = value("process_resident_memory_bytes");
    assert!(
        (rss / (vm_rss_kib * 1024.0) - 1.0).abs() < 0.25,
        "process_resident_memory_bytes {rss} vs VmRSS {vm_rss_kib} KiB"
    );
    let (code, _) = request(port, "GET", "/nope", None, "");
    assert_eq!(code, 404);

    // Load: 10,000 requests, 500 at a time; no failure, no memory growth.
    let pid = run.0.id();
    assert_eq!(load(port, 2_000, 500), 0, "failures in the warm-up");
    let before = rss_kib(pid);
    assert_eq!(load(port, 10_000, 500), 0, "failed requests under load");
    let after = rss_kib(pid);
    eprintln!("inferwatch RSS before {before} KiB, after 10,000 requests {after} KiB");
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );

    // SIGTERM: a clean stop.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = std::mem::replace(&mut run.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The flood input cut in the middle of its episode (so the flood alert stays firing),
/// and the lines after the cut up to `more_ms` later.
fn cut_flood(d: &Path, more_ms: i64) -> (PathBuf, String) {
    let (full, truth) = generate(d, "flood", 5, 40_000, "20");
    let start = truth[0]["start_ms"].as_i64().unwrap();
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let (cut, more) = (at(start + 140_000), at(start + 140_000 + more_ms));
    let text = std::fs::read_to_string(&full).unwrap();
    let (mut head, mut tail) = (String::new(), String::new());
    for l in text.lines() {
        let ts = &l[7..31];
        if ts < cut.as_str() {
            head += l;
            head.push('\n');
        } else if ts < more.as_str() {
            tail += l;
            tail.push('\n');
        }
    }
    let input = d.join("cut.jsonl");
    std::fs::write(&input, head).unwrap();
    (input, tail)
}

fn rule_ids(port: u16) -> Vec<String> {
    get_json(port, "/api/v1/rules")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hot_reload_applies_a_valid_set_rejects_a_broken_one_and_keeps_firing_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, tail) = cut_flood(d, 100_000);
    let queries = d.join("queries");
    std::fs::create_dir(&queries).unwrap();
    for f in std::fs::read_dir(root().join("queries")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, queries.join(f.file_name().unwrap())).unwrap();
    }
    let cfg = d.join("reload.yaml");
    // An email receiver whose server is not there: routing reloads are checked, mail
    // waits in the outbox.
    let write_cfg = |to: &str, receiver: &str, group_wait: &str| {
        std::fs::write(
            &cfg,
            format!(
                "source: {{type: file, paths: [{}], follow: true}}\nqueries: {}\n\
                 time: {{idle_timeout: 1s}}\nalerts: {{stdout: false}}\n\
                 http: {{token_env: DW_API_TOKEN}}\n\
                 state_dir: {}\n\
                 notify:\n  receivers:\n    - {{name: team, email: {{to: {to}, from: d@example.com, smarthost: '127.0.0.1:9', tls: none}}}}\n\
                 \x20 route: {{receiver: {receiver}, group_wait: {group_wait}}}\n\
                 \x20 drain_timeout: 1s\n",
                input.display(),
                queries.display(),
                d.join("state").display(),
            ),
        )
        .unwrap();
    };
    write_cfg("a@example.com", "team", "30s");
    let alerts_file = d.join("alerts.jsonl");
    let (mut run, port, alert) = run_until_firing(
        &cfg,
        &[OsStr::new("--alerts-out"), alerts_file.as_os_str()],
        "flood.client_rate",
    );
    let firing = alert["id"].as_str().unwrap().to_owned();
    let before = rule_ids(port);

    // A valid change by SIGHUP: one more rule, on a window the running rules use.
    std::fs::write(
        queries.join("extra.yaml"),
        "- id: extra.busy_window\n  severity: info\n  window: {size: 1m}\n  \
         sql: SELECT count(*) AS n FROM events HAVING count(*) > 1000000000\n",
    )
    .unwrap();
    let pid = run.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let reloaded = eventually(Duration::from_secs(30), Some(&mut run.0), || {
        rule_ids(port).contains(&"extra.busy_window".to_owned())
    });
    assert!(reloaded, "SIGHUP did not reload the rules");
    assert_eq!(rule_ids(port).len(), before.len() + 1);

    // A broken set is rejected with the reason; the running set stays.
    std::fs::write(
        queries.join("broken.yaml"),
        "- id: broken.sql\n  severity: low\n  window: {size: 1m}\n  sql: SELECT nope FROM nowhere\n",
    )
    .unwrap();
    let (code, _) = request(port, "POST", "/-/reload", None, "");
    assert_eq!(code, 401, "reload needs the token");
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("broken.sql"), "{body}");
    assert_eq!(rule_ids(port).len(), before.len() + 1);
    std::fs::remove_file(queries.join("broken.yaml")).unwrap();
    // A new window size needs a restart: rejected, with the reason.
    std::fs::write(
        queries.join("wide.yaml"),
        "- id: wide.window\n  severity: low\n  window: {size: 7m}\n  sql: SELECT 1 AS x WHERE false\n",
    )
    .unwrap();
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("restart"), "{body}");
    std::fs::remove_file(queries.join("wide.yaml")).unwrap();
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 200, "{body}");
    // Routing: a route to an unknown receiver and a changed receiver are rejected; a
    // new route setting is taken.
    write_cfg("a@example.com", "nobody", "30s");
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("nobody"), "{body}");
    write_cfg("b@example.com", "team", "30s");
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("restart"), "{body}");
    write_cfg("a@example.com", "team", "5s");
    let (code, body) = request(port, "POST", "/-/reload", Some(TOKEN), "");
    assert_eq!(code, 200, "{body}");

    // More of the flood: the old rules still run, and the firing alert of the untouched
    // flood rule stays the same alert (no new pending).
    let evaluated = |port| -> u64 {
        get_json(port, "/api/v1/rules")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "flood.client_rate")
            .unwrap()["evaluations"]
            .as_u64()
            .unwrap()
    };
    let evaluations = evaluated(port);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap()
        .write_all(tail.as_bytes())
        .unwrap();
    let ran = eventually(Duration::from_secs(60), Some(&mut run.0), || {
        evaluated(port) > evaluations
    });
    assert!(ran, "the flood rule stopped running after the reloads");
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = run.0.wait();
    let changes: Vec<Value> = std::fs::read_to_string(&alerts_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &Value| a["rule_id"] == "flood.client_rate")
        .collect();
    // One alert throughout: had the reload dropped its state, the next evaluation would
    // have started a new one (a new pending with another id).
    let states: Vec<&str> = changes
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert!(
        states == ["pending", "firing"] || states == ["pending", "firing", "resolved"],
        "{states:?}"
    );
    assert!(
        changes.iter().all(|a| a["id"] == firing.as_str()),
        "{changes:#?}"
    );
}

/// `GET /api/v1/rescore` on a run of the tampering scenario: the embedded model, the
/// re-scoring totals, and the tampering client among the suspects (the tampering rule
/// has `rescore: true`).
#[test]
fn the_rescore_endpoint_shows_the_model_the_totals_and_the_suspects() {
    let dir = tempfile::tempdir().unwrap();
    let (input, truth) = crate::cli::generate(dir.path(), "tampering", 11, 120_000, "50");
    let client = truth[0]["client_id"].as_str().unwrap();
    let cfg = dir.path().join("rescore.yaml");
    let config = std::fs::read_to_string(root().join("examples/rescore.yaml"))
        .unwrap()
        .replace("../", &format!("{}/", root().display()))
        .replace(
            "  paths: []",
            &format!("  paths: [{}]\n  follow: true", input.display()),
        )
        .replace(
            "${INFERWATCH_OUT:-",
            &format!("{}/dead.jsonl # ", dir.path().display()),
        );
    std::fs::write(&cfg, config).unwrap();
    let (_run, port, alert) = run_until_firing(&cfg, &[], "tampering.prediction_mismatch");
    assert_eq!(alert["labels"]["client_id"], client);
    let r = get_json(port, "/api/v1/rescore");
    assert_eq!(r["models"][0]["name"], "breast_cancer_lr", "{r}");
    assert_eq!(r["models"][0]["features"], 30, "{r}");
    assert_eq!(r["models"][0]["squeeze"]["levels"], 16, "{r}");
    assert_eq!(r["budget_per_second"], 50, "{r}");
    assert!(r["totals"]["mismatches"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["totals"]["rescored"].as_u64().unwrap() >= 1, "{r}");
    let suspects = r["suspects"].as_array().unwrap();
    assert!(
        suspects
            .iter()
            .any(|s| s["client_id"] == client && s["model"] == "breast_cancer_lr"),
        "{r}"
    );
}

/// A config whose input is an empty file that `run` follows (the API stays up and
/// nothing happens), with `http` as the `http:` section.
fn quiet_config(d: &Path, http: &str) -> PathBuf {
    let input = d.join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    let cfg = d.join("quiet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: file, paths: [{}], follow: true}}\nqueries: {}\n\
             time: {{idle_timeout: 1s}}\nalerts: {{stdout: false}}\nhttp: {http}\n",
            input.display(),
            root().join("queries").display()
        ),
    )
    .unwrap();
    cfg
}

/// Starts `run` on `cfg` with the API on `port` and `token` in `DW_API_TOKEN`.
fn start(cfg: &Path, port: u16, token: &str, stderr: Stdio) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(["run", "--config"])
        .arg(cfg)
        .args([
            "--http",
            &format!("127.0.0.1:{port}"),
            "--until-idle",
            "600s",
        ])
        .env("DW_API_TOKEN", token)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Running(child)
}

/// Starts `run` on `cfg` and waits until `/healthz` answers; returns it and its port.
fn start_up(cfg: &Path) -> (Running, u16) {
    let port = free_port();
    let mut run = start(cfg, port, TOKEN, Stdio::null());
    let up = eventually(Duration::from_secs(120), Some(&mut run.0), || {
        try_request(port, "GET", "/healthz", None, "", Duration::from_secs(5))
            .is_some_and(|(code, _)| code == 200)
    });
    assert!(up, "the API did not come up");
    (run, port)
}

/// The status code of the answer on `s`, `None` if none came within `patience`.
fn status_on(s: &mut TcpStream, patience: Duration) -> Option<u16> {
    s.set_read_timeout(Some(patience)).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A connection that has sent `head` (and nothing more).
fn sent(port: u16, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// The head of a POST to the silences that announces a body of `length` bytes.
fn post_head(token: Option<&str>, length: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /api/v1/silences HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// True when the server has closed `s` (end of stream or reset) within `patience`.
fn closed_by_server(s: &mut TcpStream, patience: Duration) -> bool {
    s.set_read_timeout(Some(patience)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Open files this process may have (the soft limit).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn an_empty_or_short_api_token_stops_the_start_and_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quiet_config(dir.path(), "{token_env: DW_API_TOKEN}");
    let silence = json!({
        "matchers": ["alertname=~\".*\""],
        "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    })
    .to_string();
    for token in ["", "k3Yq9"] {
        let port = free_port();
        let mut run = start(&cfg, port, token, Stdio::piped());
        // Until it exits: any change the API takes without a token is a failure.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut opened = Vec::new();
        let status = loop {
            for (path, body) in [("/api/v1/silences", silence.as_str()), ("/-/reload", "")] {
                let patience = Duration::from_secs(5);
                if opened.contains(&path) {
                    continue;
                }
                if let Some((200, _)) = try_request(port, "POST", path, None, body, patience) {
                    opened.push(path);
                }
            }
            if let Some(s) = run.0.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            opened.is_empty(),
            "token {token:?}: the API took changes without a token: {opened:?}"
        );
        let status = status.unwrap_or_else(|| panic!("token {token:?}: the run did not stop"));
        let mut stderr = String::new();
        run.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "token {token:?}: {stderr}");
        assert!(stderr.contains("DW_API_TOKEN"), "{stderr}");
        assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
        if !token.is_empty() {
            assert!(!stderr.contains(token), "the token was printed: {stderr}");
        }
    }
}

#[test]
fn slow_clients_leave_the_probes_answering_and_posts_without_token_get_401_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quiet_config(dir.path(), "{token_env: DW_API_TOKEN, max_in_flight: 16}");
    let (mut run, port) = start_up(&cfg);
    // 300 slow POSTs that send one byte of their body, far more than the 16 in-flight
    // slots: a third without the token, a third with it and a body over the limit, a
    // third with it and a body under the limit. This process and the server hold a
    // descriptor each, under their limit of open files.
    let n = 300.min(open_files_limit().saturating_sub(200) / 2);
    assert!(n > 100, "too few open files allowed for the test: {n}");
    let kinds = [
        (None, 1_000_000, 401),
        (Some(TOKEN), 1_000_000, 413),
        (Some(TOKEN), 60_000, 408),
    ];
    let mut slow: Vec<(u16, TcpStream)> = (0..n)
        .map(|i| {
            let (token, length, answer) = kinds[i % 3];
            (answer, sent(port, &(post_head(token, length) + "{")))
        })
        .collect();

    let asked = Instant::now();
    let probes = eventually(Duration::from_secs(20), Some(&mut run.0), || {
        let answered = |path| {
            try_request(port, "GET", path, None, "", Duration::from_secs(5))
                .is_some_and(|(code, body)| code == 200 && !body.is_empty())
        };
        answered("/healthz") && answered("/metrics")
    });
    assert!(
        probes,
        "/healthz and /metrics did not answer with {n} slow clients"
    );
    eprintln!(
        "with {n} slow clients, /healthz and /metrics answered in {:.0} ms",
        asked.elapsed().as_secs_f64() * 1e3
    );

    // Without the token: refused from the head; the body is never sent.
    let mut s = sent(port, &post_head(None, 1_000_000));
    assert_eq!(status_on(&mut s, Duration::from_secs(20)), Some(401));
    // The slow ones: 401 without the token, 413 over the limit, 408 once the body's
    // time is up.
    for (want, s) in &mut slow {
        assert_eq!(status_on(s, Duration::from_secs(30)), Some(*want));
    }
    eprintln!(
        "the last slow client was answered {:.1} s after the probes were asked",
        asked.elapsed().as_secs_f64()
    );
}

#[test]
fn connections_over_max_connections_wait_and_silent_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quiet_config(
        dir.path(),
        "{token_env: DW_API_TOKEN, max_connections: 2, idle_timeout: 3s}",
    );
    let (_run, port) = start_up(&cfg);
    // Let the probe connections of the start-up close.
    std::thread::sleep(Duration::from_millis(500));
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Accepted in order: this one gets a slot only when a silent one is closed.
    let answered = try_request(port, "GET", "/healthz", None, "", Duration::from_secs(20));
    assert_eq!(answered.map(|(code, _)| code), Some(200));
    // Checked well inside the idle timeout of the silent ones: had /healthz not waited,
    // they would both still be open.
    let closed = closed_by_server(&mut silent[0], Duration::from_secs(1))
        || closed_by_server(&mut silent[1], Duration::from_secs(1));
    assert!(
        closed,
        "/healthz was answered while both silent connections held the slots"
    );
    for s in &mut silent {
        assert!(
            closed_by_server(s, Duration::from_secs(20)),
            "a silent connection stayed open"
        );
    }
}
