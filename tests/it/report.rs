//! The HTML report of a replay, opened in a real browser (Debian's headless Chromium,
//! installed by `scripts/setup.sh`): it loads without a console message, draws every
//! alert that fired, the drift of the feature the test shifted and the clients the
//! truth file names, and a client id made to run script shows as text.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::cli::{generate, inferwatch, jsonl, text};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Runs headless Chromium on `page` with `mode` (`--dump-dom`, `--screenshot=…`);
/// returns its output, the browser's console messages logged on standard error.
fn chromium(page: &Path, mode: &str) -> Output {
    let profile = tempfile::tempdir().unwrap();
    // Bounded: a browser that hangs fails the test instead of the whole run.
    let o = Command::new("timeout")
        .args(["120", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1280,2400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/setup.sh installs it)");
    assert!(o.status.success(), "chromium failed: {}", text(&o));
    o
}

/// The console messages of a page load, as Chromium logs them.
fn console(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_console_check_sees_a_page_that_logs() {
    // The harness of the test below can fail: a page whose script logs is caught.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("logs.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>console.error('caught')</script></body></html>",
    )
    .unwrap();
    let o = chromium(&page, "--dump-dom");
    assert!(
        console(&o).iter().any(|l| l.contains("caught")),
        "{}",
        text(&o)
    );
}

#[test]
fn a_replay_report_opens_in_a_browser_and_shows_alerts_drift_and_flagged_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, truth) = generate(d, "mixed", 7, 160_000, "50");
    // The flood's client gets a name made to run script; `amount` is shifted (×6) in
    // the records after the last episode.
    let flood = truth
        .iter()
        .find(|e| e["episode"] == "flood")
        .and_then(|e| e["client_id"].as_str())
        .expect("a flood episode")
        .to_owned();
    let last_episode = truth
        .iter()
        .filter_map(|e| e["end"].as_str())
        .max()
        .unwrap()
        .to_owned();
    // Malformed records (the scenario's bad ones) are kept as they are.
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut edited: Vec<u8> = Vec::new();
    let mut shifted = 0;
    for line in &lines {
        let Ok(mut r) = serde_json::from_slice::<Value>(line) else {
            edited.extend_from_slice(line);
            edited.push(b'\n');
            continue;
        };
        if r["client_id"] == flood.as_str() {
            r["client_id"] = HOSTILE.into();
        }
        if r["ts"].as_str() > Some(last_episode.as_str())
            && let Some(a) = r["features"]["amount"].as_f64()
        {
            r["features"]["amount"] = (a * 6.0).into();
            shifted += 1;
        }
        edited.extend_from_slice(r.to_string().as_bytes());
        edited.push(b'\n');
    }
    // Several minutes of records at 50 a second.
    assert!(shifted > 15_000, "{shifted} records shifted");
    let input = d.join("edited.jsonl");
    std::fs::write(&input, edited).unwrap();

    let (report, alerts_path) = (d.join("report.html"), d.join("alerts.jsonl"));
    let o = inferwatch(
        &[
            "replay",
            "--config",
            "examples/replay.yaml",
            "--no-progress",
            "--alerts-out",
            alerts_path.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let size = std::fs::metadata(&report).unwrap().len();
    assert!(size < 5 << 20, "report of {size} bytes");

    let o = chromium(&report, "--dump-dom");
    assert_eq!(console(&o), Vec::<String>::new(), "console messages");
    let dom = String::from_utf8(o.stdout).unwrap();
    assert!(dom.contains("<h1>inferwatch report</h1>"), "{dom:.500}");

    // The hostile client id is text: no element came of it (an element would be
    // serialized with its attributes quoted), and it is shown escaped.
    assert!(
        !dom.contains(r#"<img src="x""#),
        "an <img> element in the page"
    );
    let shown = "&lt;img src=x onerror=alert(1)&gt;";
    assert!(dom.contains(shown), "the hostile client id is not shown");

    // Every alert that fired has a lane in the timeline and its details.
    let alerts = jsonl(&alerts_path);
    let fired: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "firing").collect();
    assert!(!fired.is_empty());
    let timeline = section(&dom, "alerts");
    for a in &fired {
        let id = a["id"].as_str().unwrap();
        assert!(
            timeline.contains(&format!(r##"href="#alert-{id}""##)),
            "no lane for fired alert {id} ({})",
            a["rule_id"]
        );
        assert!(
            timeline.contains(&format!(r#"data-alert-id="{id}" data-fired="true""#)),
            "no details of fired alert {id}"
        );
    }

    // The shifted feature has its drift chart, with drifted windows shaded and the
    // reference and window distributions.
    let drift = section(&dom, "drift");
    // (One chart per test that judged it: a p-value test while the reference was small.)
    let charts: Vec<&str> = drift
        .split(r#"data-feature="amount""#)
        .skip(1)
        .map(|c| &c[..c.find("</div>").unwrap()])
        .collect();
    assert!(!charts.is_empty(), "no drift chart of amount");
    assert!(
        charts.iter().any(|c| c.contains("<svg")
            && c.contains(r#"class="shade""#)
            && c.contains("reference vs window")),
        "no chart of amount with drifted windows and distributions: {charts:?}"
    );

    // The flagged clients' section names every client of the truth file.
    let clients = section(&dom, "clients");
    for e in &truth {
        let Some(c) = e["client_id"].as_str() else {
            continue;
        };
        // Serialized attributes escape `<` and `>` in newer browsers, not in older ones.
        let shown: Vec<String> = if c == flood {
            vec![
                "&lt;img src=x onerror=alert(1)&gt;".into(),
                "<img src=x onerror=alert(1)>".into(),
            ]
        } else {
            vec![c.to_owned()]
        };
        assert!(
            shown
                .iter()
                .any(|s| clients.contains(&format!(r#"data-client="{s}""#))),
            "client {c} ({}) is not among the flagged clients: {:?}",
            e["episode"],
            clients
                .match_indices("data-client")
                .map(|(i, _)| &clients[i..(i + 80).min(clients.len())])
                .collect::<Vec<_>>()
        );
    }

    // A screenshot, as a person would see it.
    let shot = d.join("report.png");
    chromium(&report, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );
}

/// The text of `<section id="NAME">` of the page.
fn section<'a>(dom: &'a str, name: &str) -> &'a str {
    let from = dom
        .find(&format!(r#"<section id="{name}">"#))
        .unwrap_or_else(|| panic!("no section {name}"));
    let rest = &dom[from..];
    &rest[..rest.find("</section>").unwrap()]
}
