//! Charts as inline SVG, drawn on the server: line charts over event time (with a
//! threshold, a band and shaded windows), the alert timeline, the drift matrix and
//! paired histograms. Hovering shows `<title>` text; nothing runs in the browser.
//! Every piece of text goes through [`crate::html::escape`].

use std::fmt::Write;

use crate::html::escape;

/// Points a line is thinned to: each of this many equal spans of the time axis keeps
/// its largest value (a spike stays visible).
pub const MAX_POINTS: usize = 360;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 20.0;

/// One line of a chart.
pub struct Line {
    pub name: String,
    /// A CSS class: `s0` … `s7` (the palette), `ref` (dashed grey).
    pub class: &'static str,
    pub points: Vec<(i64, f64)>,
}

/// A chart of values over event time.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub t0: i64,
    pub t1: i64,
    pub lines: Vec<Line>,
    pub threshold: Option<f64>,
    /// Window end, low, middle, high: the population's band and median.
    pub band: Vec<(i64, f64, f64, f64)>,
    /// Ends of windows to shade (drifted), each `window_ms` long.
    pub shaded: Vec<i64>,
    pub window_ms: i64,
    /// Fixed axis range; otherwise from the data (and threshold), from 0 when all ≥ 0.
    pub y_range: Option<(f64, f64)>,
}

impl<'a> LineChart<'a> {
    /// Lines alone: no threshold, band or shading.
    pub fn plain(
        title: &'a str,
        (t0, t1): (i64, i64),
        lines: Vec<Line>,
        window_ms: i64,
        y_range: Option<(f64, f64)>,
    ) -> Self {
        LineChart {
            title,
            t0,
            t1,
            lines,
            threshold: None,
            band: Vec::new(),
            shaded: Vec::new(),
            window_ms,
            y_range,
        }
    }
}

struct Axes {
    t0: i64,
    t1: i64,
    y0: f64,
    y1: f64,
}

impl Axes {
    fn x(&self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + (t - self.t0) as f64 / span * (WIDTH - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        let span = if self.y1 > self.y0 {
            self.y1 - self.y0
        } else {
            1.0
        };
        let v = if v.is_nan() {
            self.y0
        } else {
            v.clamp(self.y0, self.y1)
        };
        HEIGHT - BOTTOM - (v - self.y0) / span * (HEIGHT - TOP - BOTTOM)
    }
}

/// The round number (1, 2, 2.5, 4 or 5 times a power of ten) at or above `x`: the top of
/// an axis whose middle tick is then round too.
pub(super) fn nice(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 4.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&v| v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A number as an axis or tooltip prints it.
pub fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e6 || x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Event time as `HH:MM` (with the day when the axis spans more than one).
fn clock(t: i64, long: bool) -> String {
    let s = crate::time::rfc3339(t);
    if long {
        format!("{} {}", &s[5..10], &s[11..16])
    } else {
        s[11..16].to_owned()
    }
}

/// Text cut to `n` characters, with an ellipsis when cut (the full text is in the
/// element's `<title>`).
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}

/// Thins points to at most [`MAX_POINTS`]: the largest of each span of the axis.
pub fn thin(points: &[(i64, f64)], t0: i64, t1: i64) -> Vec<(i64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let span = (t1 - t0).max(1) as f64;
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(MAX_POINTS);
    let mut bucket = usize::MAX;
    for &(t, v) in points {
        let b = (((t - t0) as f64 / span) * MAX_POINTS as f64) as usize;
        if b == bucket {
            let last = out.last_mut().expect("a point in the bucket");
            if v > last.1 {
                *last = (t, v);
            }
        } else {
            bucket = b;
            out.push((t, v));
        }
    }
    out
}

fn open(out: &mut String, title: &str, height: f64) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
}

/// The time axis of a chart: its line from `from` to `to` at `bottom`, and the start,
/// middle and end of `(t0, t1)` under it (`x` places a time).
fn time_axis(
    out: &mut String,
    (t0, t1): (i64, i64),
    x: impl Fn(i64) -> f64,
    (from, to): (f64, f64),
    bottom: f64,
) {
    let long = t1 - t0 > 86_400_000;
    let _ = write!(
        out,
        r#"<line class="axis" x1="{from:.1}" y1="{bottom:.1}" x2="{to:.1}" y2="{bottom:.1}"/>"#
    );
    for (t, anchor) in [(t0, "start"), (t0 + (t1 - t0) / 2, "middle"), (t1, "end")] {
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x(t),
            bottom + 13.0,
            clock(t, long)
        );
    }
}

/// A line chart (see [`LineChart`]).
pub fn line_chart(c: &LineChart) -> String {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    for l in &c.lines {
        l.points.iter().for_each(|p| see(p.1));
    }
    for b in &c.band {
        see(b.1);
        see(b.3);
    }
    if let Some(t) = c.threshold {
        see(t);
    }
    // Values as large as a float holds would make the axis infinite: it stops at ±1e300.
    const LIMIT: f64 = 1e300;
    let (y0, y1) = c.y_range.unwrap_or_else(|| {
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let lo = if lo >= 0.0 { 0.0 } else { lo.max(-LIMIT) };
        let hi = hi.min(LIMIT);
        let hi = if hi > lo {
            nice(hi - lo) + lo
        } else {
            lo + 1.0
        };
        (lo, hi.min(LIMIT))
    });
    let a = Axes {
        t0: c.t0,
        t1: c.t1.max(c.t0 + 1),
        y0,
        y1,
    };
    let mut out = String::new();
    open(&mut out, c.title, HEIGHT);
    // Shaded windows, merged where they touch.
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &end in &c.shaded {
        let start = end - c.window_ms;
        match runs.last_mut() {
            Some(r) if start <= r.1 => r.1 = end,
            _ => runs.push((start, end)),
        }
    }
    for (s, e) in runs {
        let (x0, x1) = (a.x(s.max(a.t0)), a.x(e.min(a.t1)));
        let _ = write!(
            out,
            r#"<rect class="shade" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}"><title>drifted {}–{}</title></rect>"#,
            (x1 - x0).max(1.0),
            HEIGHT - TOP - BOTTOM,
            clock(s, false),
            clock(e, false)
        );
    }
    if !c.band.is_empty() {
        let band: Vec<(i64, f64, f64, f64)> = if c.band.len() > MAX_POINTS {
            let step = c.band.len().div_ceil(MAX_POINTS);
            c.band.iter().step_by(step).copied().collect()
        } else {
            c.band.clone()
        };
        let mut d = String::new();
        for (i, b) in band.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                a.x(b.0),
                a.y(b.3)
            );
        }
        for b in band.iter().rev() {
            let _ = write!(d, "L{:.1},{:.1}", a.x(b.0), a.y(b.1));
        }
        let _ = write!(
            out,
            r#"<path class="band" d="{d}Z"><title>population: 25th to 75th percentile</title></path>"#
        );
        let mid: Vec<(i64, f64)> = band.iter().map(|b| (b.0, b.2)).collect();
        polyline(
            &mut out,
            &a,
            &mid,
            "median",
            "population median",
            c.window_ms,
        );
    }
    // Axes and ticks.
    for v in [a.y0, (a.y0 + a.y1) / 2.0, a.y1] {
        let y = a.y(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 3.5,
            num(v)
        );
    }
    time_axis(
        &mut out,
        (a.t0, a.t1),
        |t| a.x(t),
        (LEFT, WIDTH - RIGHT),
        HEIGHT - BOTTOM,
    );
    if let Some(t) = c.threshold {
        let y = a.y(t);
        let _ = write!(
            out,
            r#"<line class="threshold" x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}"><title>threshold {}</title></line>"#,
            WIDTH - RIGHT,
            num(t)
        );
    }
    for l in &c.lines {
        let pts = thin(&l.points, a.t0, a.t1);
        polyline(&mut out, &a, &pts, l.class, &l.name, c.window_ms);
    }
    out.push_str("</svg>");
    out
}

/// A line through the points, broken where windows are missing; a lone point is a dot.
fn polyline(out: &mut String, a: &Axes, pts: &[(i64, f64)], class: &str, name: &str, gap: i64) {
    let gap = (gap.max(1) * 2).max((a.t1 - a.t0) / MAX_POINTS as i64 * 2);
    let mut runs: Vec<&[(i64, f64)]> = Vec::new();
    let mut from = 0;
    for i in 1..=pts.len() {
        if i == pts.len() || pts[i].0 - pts[i - 1].0 > gap {
            if i > from {
                runs.push(&pts[from..i]);
            }
            from = i;
        }
    }
    let name = escape(name);
    for run in runs {
        if run.len() == 1 {
            let _ = write!(
                out,
                r#"<circle class="{class} dot" cx="{:.1}" cy="{:.1}" r="2"><title>{name}: {}</title></circle>"#,
                a.x(run[0].0),
                a.y(run[0].1),
                num(run[0].1)
            );
            continue;
        }
        let mut d = String::with_capacity(run.len() * 12);
        for (i, p) in run.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                a.x(p.0),
                a.y(p.1)
            );
        }
        let last = run[run.len() - 1].1;
        let _ = write!(
            out,
            r#"<path class="{class} line" d="{d}"><title>{name} (last {})</title></path>"#,
            num(last)
        );
    }
}

/// One row of the alert timeline.
pub struct Lane {
    pub label: String,
    /// The anchor of the alert's details.
    pub anchor: String,
    /// Start, end, firing (else pending); an open end is the axis's end.
    pub spans: Vec<(i64, i64, bool)>,
}

/// The alert timeline: one lane per alert, pending in amber, firing in red.
pub fn timeline(lanes: &[Lane], t0: i64, t1: i64) -> String {
    const LANE: f64 = 14.0;
    const LABEL: f64 = 230.0;
    let height = TOP + lanes.len() as f64 * LANE + BOTTOM + 4.0;
    let width = 900.0;
    let t1 = t1.max(t0 + 1);
    let x = |t: i64| LABEL + (t - t0) as f64 / (t1 - t0) as f64 * (width - LABEL - RIGHT);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart timeline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="alert timeline"><title>alert timeline</title>"#
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        let label = clip(&lane.label, 34);
        let _ = write!(
            out,
            r##"<a href="#{}"><text class="lane" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            escape(&lane.anchor),
            LABEL - 6.0,
            y + LANE - 4.0,
            escape(&label)
        );
        for &(s, e, firing) in &lane.spans {
            let (x0, x1) = (x(s.max(t0)), x(e.min(t1)));
            let _ = write!(
                out,
                r#"<rect class="{}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {} {}–{}</title></rect>"#,
                if firing { "firing" } else { "pending" },
                y + 2.0,
                (x1 - x0).max(2.0),
                LANE - 4.0,
                escape(&lane.label),
                if firing { "firing" } else { "pending" },
                clock(s, false),
                clock(e, false)
            );
        }
        out.push_str("</a>");
    }
    let bottom = TOP + lanes.len() as f64 * LANE + 2.0;
    time_axis(&mut out, (t0, t1), x, (LABEL, width - RIGHT), bottom);
    out.push_str("</svg>");
    out
}

/// The drift matrix: one row per column, its drifted windows in red.
pub fn matrix(rows: &[(String, Vec<(i64, bool)>)], t0: i64, t1: i64, window_ms: i64) -> String {
    const ROW: f64 = 9.0;
    const LABEL: f64 = 150.0;
    let width = 900.0;
    let height = TOP + rows.len() as f64 * ROW + BOTTOM + 4.0;
    let t1 = t1.max(t0 + 1);
    let x = |t: i64| LABEL + (t - t0) as f64 / (t1 - t0) as f64 * (width - LABEL - RIGHT);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart matrix" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="drifted windows per column"><title>drifted windows per column</title>"#
    );
    for (i, (name, points)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW;
        let label = clip(name, 28);
        let _ = write!(
            out,
            r#"<text class="lane small" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="tested" x="{LABEL}" y="{y:.1}" width="{:.1}" height="{:.1}"/>"#,
            LABEL - 4.0,
            y + ROW - 1.5,
            escape(&label),
            width - LABEL - RIGHT,
            ROW - 1.0
        );
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for &(end, drifted) in points {
            if !drifted {
                continue;
            }
            let start = end - window_ms;
            match runs.last_mut() {
                Some(r) if start <= r.1 => r.1 = end,
                _ => runs.push((start, end)),
            }
        }
        for (s, e) in runs {
            let (x0, x1) = (x(s.max(t0)), x(e.min(t1)));
            let _ = write!(
                out,
                r#"<rect class="drifted" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>{}: drifted {}–{}</title></rect>"#,
                (x1 - x0).max(1.0),
                ROW - 1.0,
                escape(name),
                clock(s, false),
                clock(e, false)
            );
        }
    }
    let bottom = TOP + rows.len() as f64 * ROW + 2.0;
    time_axis(&mut out, (t0, t1), x, (LABEL, width - RIGHT), bottom);
    out.push_str("</svg>");
    out
}

/// Reference (grey) and window (colour) shares of the same bins, side by side.
pub fn histogram(title: &str, bins: &[String], reference: &[f64], current: &[f64]) -> String {
    let height = 150.0;
    let n = bins.len().max(1);
    let max = reference
        .iter()
        .chain(current)
        .copied()
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let slot = (WIDTH - LEFT - RIGHT) / n as f64;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    let y = |v: f64| height - BOTTOM - v / max * (height - TOP - BOTTOM);
    let mut out = String::new();
    open(&mut out, title, height);
    for v in [0.0, max / 2.0, max] {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            y(v),
            WIDTH - RIGHT,
            y(v),
            LEFT - 4.0,
            y(v) + 3.5,
            num(v)
        );
    }
    for (i, b) in bins.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let (r, c) = (
            reference.get(i).copied().unwrap_or(0.0),
            current.get(i).copied().unwrap_or(0.0),
        );
        let b = escape(b);
        let _ = write!(
            out,
            r#"<rect class="refbar" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}"><title>{b}: reference {}</title></rect><rect class="curbar" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}"><title>{b}: window {}</title></rect>"#,
            x + 1.0,
            y(r),
            height - BOTTOM - y(r),
            num(r),
            x + 1.0 + bar,
            y(c),
            height - BOTTOM - y(c),
            num(c)
        );
    }
    // Bin names: each category, or the ends of the numeric range.
    let numeric = bins.first().is_some_and(|b| b.contains(" – "));
    if numeric {
        let first = bins[0].split(" – ").next().unwrap_or("");
        let last = bins[n - 1].split(" – ").nth(1).unwrap_or("");
        let _ = write!(
            out,
            r#"<text class="tick" x="{LEFT}" y="{:.1}">{}</text><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            height - 6.0,
            escape(first),
            WIDTH - RIGHT,
            height - 6.0,
            escape(last)
        );
    } else {
        for (i, b) in bins.iter().enumerate() {
            let short: String = b.chars().take((slot / 6.0).max(1.0) as usize).collect();
            let _ = write!(
                out,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + (i as f64 + 0.5) * slot,
                height - 6.0,
                escape(&short)
            );
        }
    }
    out.push_str("</svg>");
    out
}
