//! The report as one HTML page: inline CSS, inline SVG, `<details>` for what is shown
//! on demand, no script and nothing fetched. Every piece of text from the traffic or
//! the config goes through [`esc`].

use std::collections::BTreeMap;
use std::fmt::Write;

use super::svg::{self, Lane, Line, LineChart};
use super::{AlertTrack, CLIENT_STATS, Report, Totals};
use crate::alert::State;

fn esc(s: &str) -> String {
    crate::html::escape(s)
}

/// Columns charted per model: the most drifted ones, and as many of the others (in a
/// closed `<details>`); the matrix shows every column.
const MAX_COLUMN_CHARTS: usize = 32;
/// Lanes of the alert timeline; every alert is still listed below it.
const MAX_LANES: usize = 300;
/// Flagged clients whose charts are open when the page loads.
const OPEN_CLIENTS: usize = 3;
const PALETTE: usize = 10;

const STYLE: &str = r#"
:root{--fg:#1d2330;--muted:#5d6677;--line:#d8dce3;--bg:#fff;--soft:#f4f6f9;--red:#c62828;--amber:#e39b00;--blue:#1f5fbf}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0}
header{padding:18px 28px;background:#18202e;color:#fff}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;color:#c8cfdb}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:8px 28px;z-index:1}
nav a{margin-right:14px;color:var(--blue);text-decoration:none}
main{padding:8px 28px 40px;max-width:1240px}
section{margin-top:26px}
h2{font-size:18px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.muted{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:var(--soft);border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:18px}
.figs{display:flex;flex-wrap:wrap;gap:8px 18px;align-items:flex-start}
figure{margin:0;max-width:560px}
figcaption{font-size:12px;color:var(--muted)}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
section,details{scroll-margin-top:44px}
details{margin:4px 0;border:1px solid var(--line);border-radius:5px;padding:4px 10px}
details>summary{cursor:pointer}
.sev{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;color:#fff;background:var(--muted)}
.sev.high,.sev.critical{background:var(--red)}.sev.medium{background:var(--amber)}
.chart{max-width:100%;height:auto;background:#fff}
.chart text{font-size:10px;fill:var(--muted)}
.chart .lane{font-size:11px;fill:var(--fg)}.chart .small{font-size:8px}
.axis{stroke:#9aa3b2}.grid{stroke:#edf0f4}
.line{fill:none;stroke-width:1.6}
.threshold{stroke:var(--red);stroke-dasharray:5 3;stroke-width:1.2}
.shade{fill:#fbe3e3}.band{fill:#dfe7f5}.median{stroke:#8aa2cc;fill:none;stroke-dasharray:3 2}
.firing{fill:var(--red)}.pending{fill:var(--amber)}
.tested{fill:#eef1f5}.drifted{fill:var(--red)}
.refbar{fill:#aab2c0}.curbar{fill:var(--blue)}
.ref{stroke:#8a93a3;fill:none;stroke-dasharray:4 3}
.s0{stroke:#1f5fbf;fill:#1f5fbf}.s1{stroke:#d2691e;fill:#d2691e}.s2{stroke:#2e8b57;fill:#2e8b57}.s3{stroke:#8e44ad;fill:#8e44ad}
.s4{stroke:#c62828;fill:#c62828}.s5{stroke:#00838f;fill:#00838f}.s6{stroke:#6d4c41;fill:#6d4c41}.s7{stroke:#7f8c8d;fill:#7f8c8d}
.s8{stroke:#b8860b;fill:#b8860b}.s9{stroke:#e91e63;fill:#e91e63}
.line.s0,.line.s1,.line.s2,.line.s3,.line.s4,.line.s5,.line.s6,.line.s7,.line.s8,.line.s9{fill:none}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}
.note{background:#fff8e1;border-left:3px solid var(--amber);padding:6px 10px}
"#;

/// A drift series as the page lists it: its name there, its column, its points.
type Column<'a> = (String, &'a str, &'a super::DriftSeries);

/// A label's line of the label shares: its name, shares, share in the reference.
type LabelLine<'a> = (&'a str, Vec<(i64, f64)>, f64);

const CLASSES: [&str; PALETTE] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
const COLOURS: [&str; PALETTE] = [
    "#1f5fbf", "#d2691e", "#2e8b57", "#8e44ad", "#c62828", "#00838f", "#6d4c41", "#7f8c8d",
    "#b8860b", "#e91e63",
];

pub(super) fn render(r: &Report, totals: &Totals) -> String {
    let (t0, t1) = span(r);
    let window_ms = r.spec.map_or(60_000, |s| s.1);
    let mut out = String::with_capacity(256 << 10);
    let from = if t0 < t1 {
        crate::time::rfc3339(t0)
    } else {
        "no window closed yet".into()
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"><title>inferwatch report: {from}</title><style>{STYLE}</style></head><body>"#,
    );
    let _ = write!(
        out,
        r#"<header><h1>inferwatch report</h1><p>{} · event time {} to {} · made {}</p></header>"#,
        esc(&r.info.command),
        esc(&from),
        if t0 < t1 {
            crate::time::rfc3339(t1)
        } else {
            "-".into()
        },
        esc(&totals.generated)
    );
    out.push_str(r##"<nav><a href="#summary">Summary</a><a href="#alerts">Alerts</a><a href="#drift">Drift</a><a href="#predictions">Predictions</a><a href="#performance">Performance</a><a href="#clients">Clients</a><a href="#pipeline">Pipeline</a><a href="#run">Run</a></nav><main>"##);
    summary(&mut out, r, totals);
    alerts(&mut out, r, t0, t1);
    drift(&mut out, r, t0, t1, window_ms);
    predictions(&mut out, r, t0, t1, window_ms);
    performance(&mut out, r, t0, t1, window_ms);
    clients(&mut out, r, t0, t1, window_ms);
    pipeline(&mut out, r, totals, t0, t1, window_ms);
    run(&mut out, r);
    out.push_str("</main></body></html>\n");
    out
}

/// The event time the page covers: the windows held (and the alerts' changes).
fn span(r: &Report) -> (i64, i64) {
    let mut t0 = r.windows.front().map_or(i64::MAX, |w| w.start);
    let mut t1 = r.windows.back().map_or(i64::MIN, |w| w.end);
    for a in r.alerts.values() {
        for c in &a.changes {
            t0 = t0.min(c.1.saturating_sub(r.spec.map_or(60_000, |s| s.0)));
            t1 = t1.max(c.1);
        }
    }
    // An alert firing since long before stretches no axis beyond the span held.
    t0 = t0.max(t1.saturating_sub(r.cfg.hours as i64 * 3_600_000));
    if t0 > t1 { (0, 0) } else { (t0, t1) }
}

fn not_read(out: &mut String, r: &Report, table: &str) -> bool {
    if r.seen_tables.contains(table) {
        return false;
    }
    let _ = write!(
        out,
        r#"<p class="note">No rule of this run reads <code>{table}</code>, so the report has none of its rows (the report shows what the rules compute; the default rules read every table).</p>"#
    );
    true
}

fn summary(out: &mut String, r: &Report, t: &Totals) {
    let firing = r.alerts.values().filter(|a| a.fired()).count();
    let drifted = r
        .drift
        .iter()
        .filter(|(k, s)| !k.3 && s.points.iter().any(|p| p.2))
        .count();
    let flagged = r.flagged.len();
    let rate = if t.elapsed_s > 0.0 {
        t.records_read as f64 / t.elapsed_s
    } else {
        0.0
    };
    out.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    for (label, value) in [
        ("records read", t.records_read.to_string()),
        ("decoded", t.good.to_string()),
        ("bad", t.bad.to_string()),
        ("late", t.late.to_string()),
        ("windows closed", t.windows_closed.to_string()),
        ("alerts that fired", firing.to_string()),
        ("drifted columns", drifted.to_string()),
        ("flagged clients", flagged.to_string()),
        ("rule errors", t.rule_errors.to_string()),
        ("records / s (wall)", svg::num(rate)),
    ] {
        let _ = write!(out, r#"<div class="card">{label}<b>{value}</b></div>"#);
    }
    out.push_str("</div>");
    let mut by_rule: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for a in r.alerts.values() {
        let e = by_rule.entry(a.rule_id.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(a.fired());
    }
    if !by_rule.is_empty() {
        out.push_str("<table><tr><th>rule</th><th>alerts</th><th>of them fired</th></tr>");
        for (rule, (n, f)) in by_rule {
            let _ = write!(
                out,
                r#"<tr><td><code>{}</code></td><td class="n">{n}</td><td class="n">{f}</td></tr>"#,
                esc(rule)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The alert's entity: its labels other than the rule's own.
fn entity(a: &AlertTrack) -> String {
    a.labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "rule_id" | "severity"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn anchor(id: &str) -> String {
    format!("alert-{id}")
}

fn alerts(out: &mut String, r: &Report, t0: i64, t1: i64) {
    out.push_str(r#"<section id="alerts"><h2>Alerts</h2>"#);
    if r.alerts.is_empty() {
        out.push_str(r#"<p class="muted">No alert was pending or firing in this span.</p>"#);
    }
    let mut list: Vec<(&String, &AlertTrack)> = r.alerts.iter().collect();
    list.sort_by(|a, b| {
        let first = |t: &AlertTrack| t.changes.first().map_or(0, |c| c.1);
        first(a.1)
            .cmp(&first(b.1))
            .then_with(|| a.1.rule_id.cmp(&b.1.rule_id))
            .then_with(|| a.0.cmp(b.0))
    });
    let lanes: Vec<Lane> = list
        .iter()
        .filter(|(_, a)| a.fired())
        .chain(list.iter().filter(|(_, a)| !a.fired()))
        .take(MAX_LANES)
        .map(|(id, a)| Lane {
            // The values alone: the lane is narrow, the details have the names.
            label: format!(
                "{} {}",
                a.rule_id,
                a.labels.values().cloned().collect::<Vec<_>>().join(" ")
            ),
            anchor: anchor(id),
            spans: spans(a, t1),
        })
        .collect();
    if !lanes.is_empty() {
        out.push_str(r#"<p class="muted">One lane per alert (fired ones first): <span style="color:#e39b00">■</span> pending, <span style="color:#c62828">■</span> firing, by event time. A lane links to its details.</p>"#);
        out.push_str(&svg::timeline(&lanes, t0, t1));
        if r.alerts.len() > MAX_LANES {
            let _ = write!(
                out,
                r#"<p class="muted">The timeline draws {MAX_LANES} of {} alerts; all are listed below.</p>"#,
                r.alerts.len()
            );
        }
    }
    if r.alerts_dropped > 0 {
        let _ = write!(
            out,
            r#"<p class="note">{} further alert changes are not in the report (<code>report.max_alerts</code> = {}).</p>"#,
            r.alerts_dropped, r.cfg.max_alerts
        );
    }
    let (fired, not): (Vec<_>, Vec<_>) = list.into_iter().partition(|(_, a)| a.fired());
    for (id, a) in fired {
        alert_details(out, id, a);
    }
    if !not.is_empty() {
        let _ = write!(
            out,
            "<details><summary>{} alerts pending that did not fire (or not yet)</summary>",
            not.len()
        );
        for (id, a) in not {
            alert_details(out, id, a);
        }
        out.push_str("</details>");
    }
    out.push_str("</section>");
}

/// The spans of an alert: pending until it fires, firing until it resolves (or the
/// end of the axis).
pub(super) fn spans(a: &AlertTrack, end: i64) -> Vec<(i64, i64, bool)> {
    let mut out = Vec::new();
    let mut open: Option<(i64, bool)> = None;
    for &(state, t) in &a.changes {
        match state {
            State::Pending => {
                if open.is_none() {
                    open = Some((t, false));
                }
            }
            State::Firing => {
                if let Some((s, false)) = open {
                    out.push((s, t, false));
                }
                if !matches!(open, Some((_, true))) {
                    open = Some((t, true));
                }
            }
            State::Resolved => {
                if let Some((s, firing)) = open.take() {
                    out.push((s, t, firing));
                }
            }
        }
    }
    if let Some((s, firing)) = open {
        out.push((s, end, firing));
    }
    out
}

fn alert_details(out: &mut String, id: &str, a: &AlertTrack) {
    let state = match a.changes.last().map(|c| c.0) {
        Some(State::Pending) => "pending",
        Some(State::Firing) => "firing",
        Some(State::Resolved) if a.fired() => "resolved",
        Some(State::Resolved) => "cleared before firing",
        None => "",
    };
    let summary = a
        .annotations
        .get("summary")
        .map(String::as_str)
        .unwrap_or("");
    let _ = write!(
        out,
        r#"<details id="{}" data-alert-id="{}" data-fired="{}"><summary><span class="sev {sev}">{sev}</span> <code>{}</code> {} · <b>{state}</b> · {}</summary>"#,
        esc(&anchor(id)),
        esc(id),
        a.fired(),
        esc(&a.rule_id),
        esc(&entity(a)),
        esc(summary),
        sev = esc(&a.severity),
    );
    out.push_str("<table>");
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
    };
    row(
        out,
        "alert id",
        &format!(r#"<span class="id">{}</span>"#, esc(id)),
    );
    if let Some(n) = &a.name {
        row(out, "rule", &esc(n));
    }
    let changes: Vec<String> = a
        .changes
        .iter()
        .map(|(s, t)| {
            let s = match s {
                State::Pending => "pending",
                State::Firing => "firing",
                State::Resolved => "resolved",
            };
            format!("{s} at {}", crate::time::rfc3339(*t))
        })
        .collect();
    row(out, "changes", &esc(&changes.join(", ")));
    row(
        out,
        "last window",
        &esc(&format!("{} to {}", a.window.0, a.window.1)),
    );
    for (k, v) in &a.labels {
        row(
            out,
            &format!("label {k}"),
            &format!("<code>{}</code>", esc(v)),
        );
    }
    for (k, v) in &a.annotations {
        row(out, k, &esc(v));
    }
    let e = &a.evidence;
    let values: Vec<String> = e
        .values
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), svg::num),
                v => v.to_string(),
            };
            format!("{k} = {v}")
        })
        .collect();
    row(out, "values", &esc(&values.join("; ")));
    row(
        out,
        "window records",
        &esc(&format!(
            "{} ({} bad, {} late)",
            e.window_records, e.window_bad_records, e.window_late_records
        )),
    );
    if !e.sample_request_ids.is_empty() {
        row(
            out,
            "sample request ids",
            &format!(
                r#"<span class="id">{}</span>"#,
                esc(&e.sample_request_ids.join(" "))
            ),
        );
    }
    let sources: Vec<String> = e
        .sources
        .iter()
        .map(|s| format!("{} {}–{}", s.source, s.first, s.last))
        .collect();
    if !sources.is_empty() {
        row(out, "source positions", &esc(&sources.join("; ")));
    }
    out.push_str("</table></details>");
}

fn model_title(model: &str, version: &str) -> String {
    let m = if model.is_empty() {
        "(no model)"
    } else {
        model
    };
    if version.is_empty() {
        m.to_owned()
    } else {
        format!("{m} version {version}")
    }
}

fn drift_chart(s: &super::DriftSeries, title: &str, t0: i64, t1: i64, window_ms: i64) -> String {
    let p_test = matches!(s.test.as_str(), "ks" | "chi2" | "z");
    let chart = svg::line_chart(&LineChart {
        title,
        t0,
        t1,
        lines: vec![Line {
            name: if p_test {
                "−log₁₀ p".into()
            } else {
                s.test.clone()
            },
            class: "s0",
            points: s
                .points
                .iter()
                .filter_map(|p| p.1.map(|v| (p.0, v)))
                .collect(),
        }],
        threshold: Some(s.threshold),
        band: Vec::new(),
        shaded: s.points.iter().filter(|p| p.2).map(|p| p.0).collect(),
        window_ms,
        y_range: None,
    });
    let drifted = s.points.iter().filter(|p| p.2).count();
    format!(
        "<figure>{chart}<figcaption>{} · {} · drifted in {drifted} of {} windows · threshold {}</figcaption></figure>",
        esc(title),
        if p_test {
            format!("{} test, −log₁₀ p", esc(&s.test))
        } else {
            esc(&s.test)
        },
        s.points.len(),
        svg::num(s.threshold)
    )
}

fn histograms(out: &mut String, s: &super::DriftSeries, feature: &str) {
    for (end, v, h) in &s.histograms {
        let title = format!(
            "{feature}: reference vs window ending {}",
            crate::time::rfc3339(*end)
        );
        let _ = write!(
            out,
            r#"<figure>{}<figcaption>{} · statistic {} · <span style="color:#8a93a3">■</span> reference <span style="color:#1f5fbf">■</span> window</figcaption></figure>"#,
            svg::histogram(&title, &h.bins, &h.reference, &h.current),
            esc(&title),
            svg::num(*v)
        );
    }
}

fn drift(out: &mut String, r: &Report, t0: i64, t1: i64, window_ms: i64) {
    out.push_str(r#"<section id="drift"><h2>Data drift</h2>"#);
    if not_read(out, r, "feature_drift") {
        out.push_str("</section>");
        return;
    }
    // A column judged by two tests in the span has a series for each.
    let mut tests: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for k in r.drift.keys().filter(|k| !k.3) {
        *tests.entry((&k.0, &k.1, &k.2)).or_default() += 1;
    }
    let mut models: BTreeMap<(&str, &str), Vec<Column>> = BTreeMap::new();
    for (k, s) in &r.drift {
        if !k.3 {
            let name = if tests[&(k.0.as_str(), k.1.as_str(), k.2.as_str())] > 1 {
                format!("{} ({})", k.2, k.4)
            } else {
                k.2.clone()
            };
            models
                .entry((k.0.as_str(), k.1.as_str()))
                .or_default()
                .push((name, k.2.as_str(), s));
        }
    }
    if r.models_refused > 0 || r.series_refused > 0 {
        let _ = write!(
            out,
            r#"<p class="note">Rows of models beyond <code>report.max_models</code> ({}) and series beyond <code>report.max_series</code> ({}) are not in the report: {} and {} rows left out.</p>"#,
            r.cfg.max_models, r.cfg.max_series, r.models_refused, r.series_refused
        );
    }
    if models.is_empty() {
        out.push_str(r#"<p class="muted">No drift rows yet: a column is tested once the reference and the window hold enough values (<code>drift.min_reference</code>, <code>drift.min_current</code>).</p>"#);
    }
    for ((model, version), cols) in models {
        let _ = write!(out, "<h3>{}</h3>", esc(&model_title(model, version)));
        let rows: Vec<(String, Vec<(i64, bool)>)> = cols
            .iter()
            .map(|(f, _, s)| (f.to_string(), s.points.iter().map(|p| (p.0, p.2)).collect()))
            .collect();
        out.push_str(&svg::matrix(&rows, t0, t1, window_ms));
        let mut drifted: Vec<&Column> = cols
            .iter()
            .filter(|c| c.2.points.iter().any(|p| p.2))
            .collect();
        drifted.sort_by_key(|c| std::cmp::Reverse(c.2.points.iter().filter(|p| p.2).count()));
        if drifted.is_empty() {
            out.push_str(r#"<p class="muted">No column drifted.</p>"#);
        }
        if drifted.len() > MAX_COLUMN_CHARTS {
            let _ = write!(
                out,
                r#"<p class="muted">Charts of the {MAX_COLUMN_CHARTS} columns drifted in the most windows; the matrix above shows all {}.</p>"#,
                drifted.len()
            );
        }
        for (feature, column, s) in drifted.iter().take(MAX_COLUMN_CHARTS) {
            let _ = write!(
                out,
                r#"<div class="figs drifted-feature" data-feature="{}">"#,
                esc(column)
            );
            out.push_str(&drift_chart(s, feature, t0, t1, window_ms));
            histograms(out, s, feature);
            out.push_str("</div>");
        }
        let rest: Vec<&Column> = cols
            .iter()
            .filter(|c| !c.2.points.iter().any(|p| p.2))
            .take(MAX_COLUMN_CHARTS)
            .collect();
        if !rest.is_empty() {
            let _ = write!(
                out,
                r#"<details><summary>The {} columns that did not drift</summary><div class="figs">"#,
                cols.len() - drifted.len()
            );
            for (feature, _, s) in rest {
                out.push_str(&drift_chart(s, feature, t0, t1, window_ms));
            }
            out.push_str("</div></details>");
        }
    }
    out.push_str("</section>");
}

fn legend(out: &mut String, names: &[String]) {
    out.push_str(r#"<div class="legend">"#);
    for (i, n) in names.iter().enumerate() {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            COLOURS[i % PALETTE],
            esc(n)
        );
    }
    out.push_str("</div>");
}

/// A titled chart of shares (0 to 1) with its legend.
fn shares_chart(
    out: &mut String,
    title: &str,
    names: &[String],
    lines: Vec<Line>,
    span: (i64, i64),
    window_ms: i64,
) {
    let _ = write!(out, "<h3>{}</h3>", esc(title));
    legend(out, names);
    out.push_str(&svg::line_chart(&LineChart::plain(
        title,
        span,
        lines,
        window_ms,
        Some((0.0, 1.0)),
    )));
}

fn predictions(out: &mut String, r: &Report, t0: i64, t1: i64, window_ms: i64) {
    out.push_str(r#"<section id="predictions"><h2>Predictions</h2>"#);
    if !not_read(out, r, "prediction_drift") {
        if !r.drift.keys().any(|k| k.3) {
            out.push_str(r#"<p class="muted">No prediction drift rows: the outputs are tested once the reference (or the baseline's <code>label</code> and <code>score</code>) and the window hold enough of them.</p>"#);
        }
        out.push_str(r#"<div class="figs">"#);
        for (k, s) in r.drift.iter().filter(|(k, _)| k.3) {
            let title = format!("{}: {} ({})", model_title(&k.0, &k.1), k.2, k.4);
            out.push_str(&drift_chart(s, &title, t0, t1, window_ms));
            histograms(out, s, &title);
        }
        out.push_str("</div>");
    }
    if !not_read(out, r, "label_shares") {
        let mut models: BTreeMap<(&str, &str), Vec<LabelLine>> = BTreeMap::new();
        for (k, q) in &r.shares {
            models
                .entry((k.0.as_str(), k.1.as_str()))
                .or_default()
                .push((
                    k.2.as_str(),
                    q.iter().map(|p| (p.0, p.1)).collect(),
                    q.back().map_or(0.0, |p| p.2),
                ));
        }
        for ((model, version), labels) in models {
            let title = format!("label shares of {}", model_title(model, version));
            let names: Vec<String> = labels
                .iter()
                .map(|l| format!("{} (reference {})", l.0, svg::num(l.2)))
                .collect();
            let lines = labels
                .into_iter()
                .enumerate()
                .map(|(i, (label, points, _))| Line {
                    name: label.to_owned(),
                    class: CLASSES[i % PALETTE],
                    points,
                })
                .collect();
            shares_chart(out, &title, &names, lines, (t0, t1), window_ms);
        }
    }
    out.push_str("</section>");
}

fn performance(out: &mut String, r: &Report, t0: i64, t1: i64, window_ms: i64) {
    out.push_str(r#"<section id="performance"><h2>Performance (delayed labels)</h2>"#);
    if not_read(out, r, "performance") {
        out.push_str("</section>");
        return;
    }
    if r.performance.is_empty() {
        out.push_str(r#"<p class="muted">No labelled predictions yet.</p>"#);
    }
    for ((model, version), q) in &r.performance {
        let title = format!("accuracy of {}", model_title(model, version));
        let pick = |f: fn(&super::PerfPoint) -> Option<f64>| -> Vec<(i64, f64)> {
            q.iter().filter_map(|p| f(p).map(|v| (p.end, v))).collect()
        };
        let lines = [
            ("accuracy (labelled)", pick(|p| p.accuracy)),
            ("estimated from confidence", pick(|p| p.estimated)),
            ("reference accuracy", pick(|p| p.reference)),
        ];
        let names: Vec<String> = lines.iter().map(|l| l.0.to_owned()).collect();
        let lines = lines
            .into_iter()
            .enumerate()
            .map(|(i, (name, points))| Line {
                name: name.to_owned(),
                class: CLASSES[i],
                points,
            })
            .collect();
        shares_chart(out, &title, &names, lines, (t0, t1), window_ms);
        if let Some(last) = q.back() {
            let _ = write!(
                out,
                r#"<p class="muted">{} labelled predictions in the last window's span.</p>"#,
                last.labelled
            );
        }
        let classes: Vec<(&str, _)> = r
            .classes
            .iter()
            .filter(|(k, _)| &k.0 == model && &k.1 == version)
            .map(|(k, q)| (k.2.as_str(), q))
            .take(PALETTE * 2)
            .collect();
        for (what, pick) in [("recall", 0usize), ("precision", 1usize)] {
            if classes.is_empty() {
                break;
            }
            let title = format!("{what} per class of {}", model_title(model, version));
            let names: Vec<String> = classes.iter().map(|c| c.0.to_owned()).collect();
            let lines = classes
                .iter()
                .enumerate()
                .map(|(i, (class, q))| Line {
                    name: class.to_string(),
                    class: CLASSES[i % PALETTE],
                    points: q
                        .iter()
                        .filter_map(|p| {
                            let v = if pick == 0 { p.1 } else { p.2 };
                            v.map(|v| (p.0, v))
                        })
                        .collect(),
                })
                .collect();
            shares_chart(out, &title, &names, lines, (t0, t1), window_ms);
        }
    }
    out.push_str("</section>");
}

fn clients(out: &mut String, r: &Report, t0: i64, t1: i64, window_ms: i64) {
    out.push_str(r#"<section id="clients"><h2>Clients</h2>"#);
    if !r.seen_tables.contains("client_stats") && not_read(out, r, "client_profile") {
        out.push_str("</section>");
        return;
    }
    let source = match r.clients_from.as_deref() {
        Some("client_stats") => "statistics of each window (<code>client_stats</code>)",
        _ => {
            "profiles over the profile horizon as of each window's end (<code>client_profile</code>)"
        }
    };
    let _ = write!(
        out,
        r#"<h3>Flagged clients</h3><p class="muted">Clients named by a firing alert, with their {source} against the population of their model active in the window (band: 25th to 75th percentile of its clients; dashed: the median){}.</p>"#,
        if r.flagged_dropped > 0 {
            format!(
                "; {} further flags are not shown (<code>report.max_clients</code>)",
                r.flagged_dropped
            )
        } else {
            String::new()
        }
    );
    if r.flagged.is_empty() {
        out.push_str(r#"<p class="muted">No client was flagged.</p>"#);
    }
    for (i, ((model, client), (rules, _))) in r.flagged.iter().enumerate() {
        let _ = write!(
            out,
            r#"<details class="client" data-client="{}"{}><summary><b class="id">{}</b> {} · flagged by {}</summary>"#,
            esc(client),
            if i < OPEN_CLIENTS { " open" } else { "" },
            esc(client),
            if model.is_empty() {
                String::new()
            } else {
                format!("of {}", esc(model))
            },
            esc(&rules.iter().cloned().collect::<Vec<_>>().join(", "))
        );
        let rescored: Vec<(&String, &super::Rescored)> = r
            .rescored
            .iter()
            .filter(|(k, _)| &k.1 == client && (model.is_empty() || &k.0 == model))
            .map(|(k, v)| (&k.0, v))
            .collect();
        for (m, s) in &rescored {
            let _ = write!(
                out,
                r#"<p>Re-scored ({}): {} records, {} mismatches with the logged answer, {} adversarial ({}).</p>"#,
                esc(m),
                s.rescored,
                s.mismatches,
                s.adversarial,
                if s.rescored > 0 {
                    format!("{:.1} %", 100.0 * s.adversarial as f64 / s.rescored as f64)
                } else {
                    "-".into()
                }
            );
        }
        let series: Vec<(&(String, String), &super::Followed)> = r
            .followed
            .iter()
            .filter(|(k, _)| &k.1 == client && (model.is_empty() || &k.0 == model))
            .collect();
        if series.is_empty() {
            out.push_str(r#"<p class="muted">No window statistics held for this client (it was flagged outside the span the report holds, or the followed clients were full).</p>"#);
        }
        for ((m, _), q) in series {
            out.push_str(r#"<div class="figs">"#);
            let band = r.bands.get(m);
            for (j, stat) in CLIENT_STATS.iter().enumerate() {
                let points: Vec<(i64, f64)> =
                    q.iter().filter_map(|p| p.1[j].map(|v| (p.0, v))).collect();
                if points.is_empty() {
                    continue;
                }
                let band: Vec<(i64, f64, f64, f64)> = band
                    .map(|b| {
                        b.iter()
                            .filter_map(|(t, qs)| qs[j].map(|q| (*t, q[0], q[1], q[2])))
                            .collect()
                    })
                    .unwrap_or_default();
                let title = format!("{stat} of {client}");
                let _ = write!(
                    out,
                    "<figure>{}<figcaption>{}</figcaption></figure>",
                    svg::line_chart(&LineChart {
                        title: &title,
                        t0,
                        t1,
                        lines: vec![Line {
                            name: stat.to_string(),
                            class: "s4",
                            points,
                        }],
                        threshold: None,
                        band,
                        shaded: Vec::new(),
                        window_ms,
                        y_range: None,
                    }),
                    esc(&title)
                );
            }
            out.push_str("</div>");
        }
        out.push_str("</details>");
    }
    let _ = write!(
        out,
        r#"<h3>Top clients</h3><p class="muted">Per statistic, the clients with the largest values of it in any window held, from the same table as above (shares among clients with at least {} queries).</p><div class="figs">"#,
        r.cfg.min_queries
    );
    for (j, stat) in CLIENT_STATS.iter().enumerate() {
        let top = &r.top[j];
        if top.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            r#"<table class="top"><tr><th colspan="4">{stat}</th></tr><tr><th>client</th><th>model</th><th>value</th><th>window end</th></tr>"#
        );
        for t in top {
            let _ = write!(
                out,
                r#"<tr><td class="id">{}</td><td>{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&t.client),
                esc(&t.model),
                svg::num(t.value),
                &crate::time::rfc3339(t.end)[11..16]
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</div>");
    if r.rescored_dropped > 0 {
        let _ = write!(
            out,
            r#"<p class="muted">Re-scoring outcomes of {} further records are not counted per client.</p>"#,
            r.rescored_dropped
        );
    }
    out.push_str("</section>");
}

fn pipeline(out: &mut String, r: &Report, t: &Totals, t0: i64, t1: i64, window_ms: i64) {
    out.push_str(r#"<section id="pipeline"><h2>Pipeline</h2><div class="figs">"#);
    let w = &r.windows;
    let series = |f: fn(&super::WindowRow) -> f64| -> Vec<(i64, f64)> {
        w.iter().map(|x| (x.end, f(x))).collect()
    };
    // The first window has no close before it: no processing time to draw.
    let timed = |f: fn(&super::WindowRow) -> f64| -> Vec<(i64, f64)> {
        w.iter()
            .filter(|x| x.wall_ms > 0.0)
            .map(|x| (x.end, f(x)))
            .collect()
    };
    let chart = |title: &str, lines: Vec<Line>| {
        format!(
            "<figure>{}<figcaption>{}</figcaption></figure>",
            svg::line_chart(&LineChart::plain(title, (t0, t1), lines, window_ms, None)),
            esc(title)
        )
    };
    out.push_str(&chart(
        "records per window",
        vec![Line {
            name: "records".into(),
            class: "s0",
            points: series(|x| x.records as f64),
        }],
    ));
    out.push_str(&chart(
        "bad (red) and late (amber) records per window",
        vec![
            Line {
                name: "bad".into(),
                class: "s4",
                points: series(|x| x.bad as f64),
            },
            Line {
                name: "late".into(),
                class: "s1",
                points: series(|x| x.late as f64),
            },
        ],
    ));
    out.push_str(&chart(
        "throughput: records per wall-clock second between window closes",
        vec![Line {
            name: "records/s".into(),
            class: "s2",
            points: w
                .iter()
                .filter(|x| x.wall_ms > 0.0)
                .map(|x| (x.end, x.records as f64 / (x.wall_ms / 1e3)))
                .collect(),
        }],
    ));
    out.push_str(&chart(
        "processing: wall-clock ms between window closes (blue), of it in rules (green)",
        vec![
            Line {
                name: "wall ms".into(),
                class: "s0",
                points: timed(|x| x.wall_ms),
            },
            Line {
                name: "rules ms".into(),
                class: "s2",
                points: timed(|x| x.rules_ms),
            },
        ],
    ));
    out.push_str("</div>");
    let _ = write!(
        out,
        r#"<p>{} records read, {} decoded, {} bad, {} late, {} windows closed in {:.1} s of wall-clock time.</p>"#,
        t.records_read, t.good, t.bad, t.late, t.windows_closed, t.elapsed_s
    );
    if r.reasons.is_empty() {
        out.push_str(r#"<p class="muted">No dead letters.</p>"#);
    } else {
        out.push_str("<table><tr><th>dead-letter reason</th><th>records</th></tr>");
        let mut reasons: Vec<(&String, &u64)> = r.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (k, n) in reasons {
            let _ = write!(out, r#"<tr><td>{}</td><td class="n">{n}</td></tr>"#, esc(k));
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn run(out: &mut String, r: &Report) {
    let i = &r.info;
    out.push_str(r#"<section id="run"><h2>What this run was made with</h2><table>"#);
    let mut row = |k: &str, v: &str| {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row("inferwatch", env!("CARGO_PKG_VERSION"));
    row("command", &i.command);
    if let Some(c) = &i.config {
        row("config", c);
    }
    row("sources", &i.sources.join(", "));
    for (k, v) in &i.settings {
        row(k, v);
    }
    out.push_str("</table>");
    if !i.models.is_empty() {
        out.push_str("<h3>Embedded models</h3><table><tr><th>model</th><th>version</th><th>SHA-256 (pinned)</th></tr>");
        for (m, v, sha) in &i.models {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td class="id">{}</td></tr>"#,
                esc(m),
                esc(v.as_deref().unwrap_or("any")),
                esc(sha)
            );
        }
        out.push_str("</table>");
    }
    if !i.baselines.is_empty() {
        out.push_str("<h3>Baselines</h3><table><tr><th>model</th><th>file</th><th>rows</th><th>built from</th></tr>");
        for (m, f, rows, source) in &i.baselines {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td><code>{}</code></td><td class="n">{rows}</td><td>{}</td></tr>"#,
                esc(m),
                esc(f),
                esc(source)
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(
        out,
        "<h3>Rules ({})</h3><table><tr><th>id</th><th>name</th><th>severity</th><th>window</th><th>file</th></tr>",
        i.rules.len()
    );
    for rule in &i.rules {
        let _ = write!(
            out,
            r#"<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>"#,
            esc(&rule.id),
            esc(rule.name.as_deref().unwrap_or("")),
            esc(&rule.severity),
            esc(&rule.window),
            esc(&rule.file)
        );
    }
    out.push_str("</table></section>");
}
