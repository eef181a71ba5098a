//! The report: what a run saw, drawn for people who would rather look than read.
//!
//! The pipeline hands [`Report`] each closed window's tables (those its rules read: the
//! report computes nothing of its own, so it adds no work and changes no state), the
//! drifted rows' distributions, every alert state change and every dead letter's reason.
//! The report keeps small summaries of them in bounded memory — series per model and
//! feature, per-window population bands, the followed clients' rows, the alerts' state
//! changes — for the last `report.hours` of event time, and renders them on demand as
//! one self-contained HTML page ([`page`]): inline CSS and server-side SVG, no script,
//! nothing fetched. `replay --report FILE` writes it at the end; `GET /report` renders
//! it live.
//!
//! Its size grows with windows, features and followed clients, never with records:
//! charts are thinned to at most [`svg::MAX_POINTS`] points, clients are the top few
//! per statistic and the flagged ones (`report.max_clients`), alerts are capped
//! (`report.max_alerts`).

mod page;
mod svg;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use datafusion::arrow::array::{
    Array, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use serde::Deserialize;

use crate::alert::{Evidence, Notification, State};
use crate::tables::drift::Histogram;
use crate::window::ClosedWindow;

/// `report:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Event time the report covers, back from the newest window (hours).
    pub hours: u64,
    /// Clients listed per client statistic.
    pub top_clients: usize,
    /// Clients followed over time: the flagged ones first, then the top few of each
    /// statistic in each window.
    pub max_clients: usize,
    /// Alerts drawn and listed; further alerts are counted.
    pub max_alerts: usize,
    /// Fewest queries in a window for a client's shares to rank it (a client of three
    /// queries has shares of 0 or 1 that say little).
    pub min_queries: u64,
    /// Models the report follows (model names come from the traffic): the models of
    /// `models:` and of the baselines always, others in the order they appear.
    pub max_models: usize,
    /// Drift series (model × version × column) held; further ones are counted.
    pub max_series: usize,
}

impl ReportConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=24 * 366).contains(&self.hours) {
            return Err(format!(
                "report.hours must be from 1 to {} (a year), not {}",
                24 * 366,
                self.hours
            ));
        }
        Ok(())
    }
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            hours: 6,
            top_clients: 10,
            max_clients: 100,
            max_alerts: 1000,
            min_queries: 30,
            max_models: 8,
            max_series: 2000,
        }
    }
}

/// What a report says it was made with.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// `replay` or `run`.
    pub command: String,
    pub config: Option<String>,
    pub sources: Vec<String>,
    pub rules: Vec<RuleInfo>,
    /// Embedded models: name, version, pinned SHA-256.
    pub models: Vec<(String, Option<String>, String)>,
    /// Baselines: model, file, rows, what they were built from.
    pub baselines: Vec<(String, String, u64, String)>,
    /// Other settings worth a line: name, value.
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub id: String,
    pub name: Option<String>,
    pub severity: String,
    pub window: String,
    pub file: String,
}

/// The client statistics (columns of `client_profile` or `client_stats`; a column
/// the table lacks is not drawn) the report ranks and draws.
pub(crate) const CLIENT_STATS: &[&str] = &[
    "queries",
    "qps",
    "distinct_input_share",
    "near_duplicate_share",
    "ood_share",
    "atypical_share",
    "coverage_ratio",
    "low_confidence_share",
    "boundary_share",
    "low_margin_share",
    "label_entropy",
    "error_share",
];
/// Of [`CLIENT_STATS`], the counts (ranked among all clients, not only those with
/// `min_queries`).
const COUNTS: usize = 2;
/// Clients of each statistic's top followed in each window.
const FOLLOW_PER_STAT: usize = 3;
/// Labels per model drawn in the label shares.
const MAX_LABELS: usize = 20;
/// Distinct dead-letter reasons counted; further ones are `(other)`.
const MAX_REASONS: usize = 30;
/// Clients whose re-scoring outcomes are counted.
const MAX_RESCORED: usize = 10_000;
/// Versions of one model the report follows (versions come from the traffic).
const MAX_VERSIONS: usize = 8;
/// Characters of a client id, label or version the report keeps (they come from the
/// traffic, up to a record's size).
const MAX_TEXT: usize = 256;
/// Distributions kept per drifted feature: its first drifted window and its worst.
const HISTOGRAMS_PER_FEATURE: usize = 2;

type Stats = [Option<f64>; CLIENT_STATS.len()];
/// (model, model version, label or class)
type Labelled = (String, String, String);
/// Window end, share now, share in the reference.
type SharePoint = (i64, f64, f64);
/// Window end, recall, precision, reference recall.
type ClassPoint = (i64, Option<f64>, Option<f64>, Option<f64>);
/// Window end, the quartiles of each statistic (none: no client had it).
type Band = (i64, Vec<Option<[f64; 3]>>);
/// A followed client's rows: window end, statistics.
type Followed = VecDeque<(i64, Stats)>;

/// One window's pipeline counts.
#[derive(Debug, Clone)]
struct WindowRow {
    start: i64,
    end: i64,
    records: u64,
    bad: u64,
    late: u64,
    /// Wall-clock time from the previous window's close to this one's, and the rules'
    /// time in it (milliseconds).
    wall_ms: f64,
    rules_ms: f64,
}

/// A drift statistic of one model (version) and column over time.
#[derive(Debug, Clone, Default)]
struct DriftSeries {
    test: String,
    threshold: f64,
    /// Window end, the value drawn (the statistic, or −log₁₀ p of a test), drifted.
    points: VecDeque<(i64, Option<f64>, bool)>,
    /// Kept distributions: window end, the value then, the histogram.
    histograms: Vec<(i64, f64, Histogram)>,
}

/// (model, model version, column, prediction drift?)
/// (model, model version, column, prediction drift?, test): a column judged by another
/// test (a small rolling reference gets a p-value test, a larger one a distance) is
/// another series, its values on another scale.
type DriftKey = (String, String, String, bool, String);

#[derive(Debug, Clone, Default)]
struct PerfPoint {
    end: i64,
    accuracy: Option<f64>,
    estimated: Option<f64>,
    reference: Option<f64>,
    labelled: u64,
}

/// One alert's state changes.
#[derive(Debug, Clone)]
struct AlertTrack {
    rule_id: String,
    name: Option<String>,
    severity: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// Event time (window end) of each state change.
    changes: Vec<(State, i64)>,
    /// The evidence of the latest change.
    evidence: Evidence,
    window: (String, String),
    /// It fired (a firing change, or a resolve that says it had fired: the report may
    /// not have seen every change, as after a restart).
    fired: bool,
}

impl AlertTrack {
    fn fired(&self) -> bool {
        self.fired
    }
    fn last(&self) -> i64 {
        self.changes.last().map_or(i64::MIN, |c| c.1)
    }
}

/// A client in a ranking: its best value, when.
#[derive(Debug, Clone)]
struct Ranked {
    model: String,
    client: String,
    value: f64,
    end: i64,
}

#[derive(Debug, Clone, Default)]
struct Rescored {
    rescored: u64,
    mismatches: u64,
    adversarial: u64,
    /// End of the last window with a re-scored record of the client.
    last: i64,
}

/// The report's memory: see the module doc.
pub struct Report {
    cfg: ReportConfig,
    info: RunInfo,
    /// The window (size, slide) the report follows: the first one whose tables it got.
    spec: Option<(i64, i64)>,
    windows: VecDeque<WindowRow>,
    last_close: Option<std::time::Instant>,
    drift: BTreeMap<DriftKey, DriftSeries>,
    /// (model, version, label) → window end, share now, share in the reference.
    shares: BTreeMap<Labelled, VecDeque<SharePoint>>,
    performance: BTreeMap<(String, String), VecDeque<PerfPoint>>,
    /// (model, version, class) → window end, recall, precision, reference recall.
    classes: BTreeMap<Labelled, VecDeque<ClassPoint>>,
    /// Per model, per window: the quartiles of each statistic over its clients.
    bands: BTreeMap<String, VecDeque<Band>>,
    /// Followed clients' rows: (model, client) → window end, statistics.
    followed: BTreeMap<(String, String), Followed>,
    /// Clients named by a firing alert (`client_id` label): (model or "", client) →
    /// the rules that flagged it, and when it was last flagged.
    flagged: BTreeMap<(String, String), (BTreeSet<String>, i64)>,
    flagged_dropped: u64,
    top: Vec<Vec<Ranked>>,
    rescored: BTreeMap<(String, String), Rescored>,
    rescored_dropped: u64,
    alerts: BTreeMap<String, AlertTrack>,
    alerts_dropped: u64,
    reasons: BTreeMap<String, u64>,
    /// Tables some rule read in some window so far (the others' sections say so).
    seen_tables: BTreeSet<String>,
    /// Models followed, and rows of other models left out; the configured models.
    models: BTreeSet<String>,
    pinned: BTreeSet<String>,
    /// Versions followed per model.
    versions: BTreeMap<String, BTreeSet<String>>,
    /// Labels followed per (model, version) in the label shares.
    labels: BTreeMap<(String, String), usize>,
    models_refused: u64,
    series_refused: u64,
    /// Time spent keeping windows and alerts (not rendering).
    spent: std::time::Duration,
    /// The table the client statistics came from last (`client_profile` or
    /// `client_stats`).
    clients_from: Option<String>,
}

/// The tables the report reads, for [`crate::rules::engine::Engine::keep_tables`].
pub const TABLES: &[&str] = &[
    "client_profile",
    "client_stats",
    "feature_drift",
    "prediction_drift",
    "label_shares",
    "rescored",
    "performance",
    "class_performance",
];

impl Report {
    pub fn new(cfg: ReportConfig, info: RunInfo) -> Report {
        // The configured models are always followed.
        let models: BTreeSet<String> = info
            .models
            .iter()
            .map(|m| m.0.clone())
            .chain(info.baselines.iter().map(|b| b.0.clone()))
            .collect();
        Report {
            top: vec![Vec::new(); CLIENT_STATS.len()],
            cfg,
            info,
            spec: None,
            windows: VecDeque::new(),
            last_close: None,
            drift: BTreeMap::new(),
            shares: BTreeMap::new(),
            performance: BTreeMap::new(),
            classes: BTreeMap::new(),
            bands: BTreeMap::new(),
            followed: BTreeMap::new(),
            flagged: BTreeMap::new(),
            flagged_dropped: 0,
            rescored: BTreeMap::new(),
            rescored_dropped: 0,
            alerts: BTreeMap::new(),
            alerts_dropped: 0,
            reasons: BTreeMap::new(),
            seen_tables: BTreeSet::new(),
            clients_from: None,
            pinned: models.clone(),
            models,
            versions: BTreeMap::new(),
            labels: BTreeMap::new(),
            models_refused: 0,
            series_refused: 0,
            spent: std::time::Duration::ZERO,
        }
    }

    /// A record sent to the dead letters, by the kind of its reason.
    pub fn dead_letter(&mut self, reason: &str) {
        let kind = reason_kind(reason);
        if let Some(n) = self.reasons.get_mut(&kind) {
            *n += 1;
        } else if self.reasons.len() < MAX_REASONS {
            self.reasons.insert(kind, 1);
        } else {
            *self.reasons.entry("(other)".into()).or_default() += 1;
        }
    }

    /// A closed window with the tables its rules read (`tables`), the drift tables'
    /// distributions of its drifted rows, the threshold of each drift row (by feature
    /// and test) and the rules' time on it.
    pub fn window(
        &mut self,
        w: &ClosedWindow,
        tables: &[(String, Vec<RecordBatch>)],
        histograms: Vec<Histogram>,
        threshold: impl Fn(&str, &str) -> f64,
        rules_ms: f64,
    ) {
        let started = std::time::Instant::now();
        self.keep_window(w, tables, histograms, threshold, rules_ms);
        self.spent += started.elapsed();
    }

    /// Time spent keeping windows and alerts so far (the report's cost to the run).
    pub fn spent(&self) -> std::time::Duration {
        self.spent
    }

    fn keep_window(
        &mut self,
        w: &ClosedWindow,
        tables: &[(String, Vec<RecordBatch>)],
        histograms: Vec<Histogram>,
        threshold: impl Fn(&str, &str) -> f64,
        rules_ms: f64,
    ) {
        let spec = (w.spec.size_ms, w.spec.slide_ms);
        for (name, _) in tables {
            self.seen_tables.insert(name.clone());
        }
        if self.spec.is_none() && !tables.is_empty() {
            self.spec = Some(spec);
        }
        if self.spec.is_some_and(|s| s != spec) {
            return;
        }
        let now = std::time::Instant::now();
        let wall_ms = self
            .last_close
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64() * 1e3);
        self.last_close = Some(now);
        self.windows.push_back(WindowRow {
            start: w.start_ms,
            end: w.end_ms,
            records: w.stats.records,
            bad: w.stats.bad,
            late: w.stats.late,
            wall_ms,
            rules_ms,
        });
        let end = w.end_ms;
        for (name, batches) in tables {
            for b in batches {
                match name.as_str() {
                    "feature_drift" => self.drift_rows(end, b, false, &threshold),
                    "prediction_drift" => self.drift_rows(end, b, true, &threshold),
                    "label_shares" => self.share_rows(end, b),
                    "performance" => self.performance_rows(end, b),
                    "class_performance" => self.class_rows(end, b),
                    "rescored" => self.rescored_rows(w, b),
                    _ => {}
                }
            }
        }
        // The profiles (what the default client rules judge), else the window's stats.
        let clients = ["client_profile", "client_stats"]
            .iter()
            .find_map(|t| tables.iter().find(|(n, _)| n == t));
        if let Some((name, b)) = clients {
            self.clients_from = Some(name.clone());
            self.client_rows(end, b);
        }
        for h in histograms {
            let (m, v) = (
                h.model.clone().unwrap_or_default(),
                clip(h.model_version.as_deref().unwrap_or_default()),
            );
            // The column's series of this window (whichever test judged it), when its
            // row is still drifted after false-discovery control.
            let found = self.drift.iter_mut().find_map(|(k, s)| {
                let this = k.0 == m && k.1 == v && k.2 == h.feature && k.3 == h.prediction;
                match s.points.back() {
                    Some(&(t, Some(value), true)) if this && t == end => Some((s, value)),
                    _ => None,
                }
            });
            let Some((s, v)) = found else {
                continue;
            };
            if s.histograms.len() < HISTOGRAMS_PER_FEATURE {
                s.histograms.push((end, v, h));
            } else if v > s.histograms[HISTOGRAMS_PER_FEATURE - 1].1 {
                s.histograms[HISTOGRAMS_PER_FEATURE - 1] = (end, v, h);
            }
        }
        self.forget_before(end.saturating_sub(self.cfg.hours as i64 * 3_600_000));
    }

    /// Alert state changes, as delivered.
    pub fn alerts(&mut self, notes: &[Notification]) {
        for n in notes {
            if !self.alerts.contains_key(&n.id) && self.alerts.len() >= self.cfg.max_alerts {
                self.alerts_dropped += u64::from(n.state != State::Resolved);
                continue;
            }
            let t = self
                .alerts
                .entry(n.id.clone())
                .or_insert_with(|| AlertTrack {
                    rule_id: n.rule_id.clone(),
                    name: n.name.clone(),
                    severity: n.severity.as_str().to_owned(),
                    labels: n.labels.clone(),
                    annotations: BTreeMap::new(),
                    changes: Vec::new(),
                    evidence: n.evidence.clone(),
                    window: (String::new(), String::new()),
                    fired: false,
                });
            t.fired |= n.state == State::Firing || n.evidence.fired == Some(true);
            t.changes.push((n.state, n.at_ms));
            t.annotations = n.annotations.clone();
            t.evidence = n.evidence.clone();
            t.window = (n.window_start.clone(), n.window_end.clone());
            if n.state == State::Firing
                && let Some(client) = n.labels.get("client_id")
            {
                let key = (
                    n.labels.get("model").cloned().unwrap_or_default(),
                    clip(client),
                );
                if let Some((rules, last)) = self.flagged.get_mut(&key) {
                    rules.insert(n.rule_id.clone());
                    *last = n.at_ms;
                } else if self.flagged.len() < self.cfg.max_clients {
                    self.flagged
                        .insert(key, (BTreeSet::from([n.rule_id.clone()]), n.at_ms));
                } else {
                    self.flagged_dropped += 1;
                }
            }
        }
    }

    /// Renders the whole page.
    pub fn render(&self, totals: &Totals) -> String {
        page::render(self, totals)
    }

    /// Whether rows of `model` are kept (see `max_models`); counts those that are not.
    fn admit(&mut self, model: &str) -> bool {
        if self.models.contains(model) {
            return true;
        }
        if self.models.len() < self.cfg.max_models {
            self.models.insert(model.to_owned());
            return true;
        }
        self.models_refused += 1;
        false
    }

    /// Row `i`'s model and version, when the report follows them.
    fn segment(
        &mut self,
        model: &StringArray,
        version: &StringArray,
        i: usize,
    ) -> Option<(String, String)> {
        let (m, v) = (text(model, i), clip(&text(version, i)));
        (self.admit(&m) && self.admit_version(&m, &v)).then_some((m, v))
    }

    /// Whether rows of this version of `model` are kept (see [`MAX_VERSIONS`]).
    fn admit_version(&mut self, model: &str, version: &str) -> bool {
        let v = self.versions.entry(model.to_owned()).or_default();
        if v.contains(version) {
            return true;
        }
        if v.len() < MAX_VERSIONS {
            v.insert(version.to_owned());
            return true;
        }
        self.models_refused += 1;
        false
    }

    /// The rules of a reloaded rule set; alerts of rules no longer in it are dropped
    /// (their state is gone: they will neither fire nor resolve).
    pub fn set_rules(&mut self, rules: Vec<RuleInfo>) {
        let ids: BTreeSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        self.alerts.retain(|_, a| ids.contains(a.rule_id.as_str()));
        self.info.rules = rules;
    }

    fn forget_before(&mut self, cutoff: i64) {
        while self.windows.front().is_some_and(|w| w.end <= cutoff) {
            self.windows.pop_front();
        }
        fn trim<T>(q: &mut VecDeque<T>, end: impl Fn(&T) -> i64, cutoff: i64) {
            while q.front().is_some_and(|x| end(x) <= cutoff) {
                q.pop_front();
            }
        }
        self.drift.retain(|_, s| {
            trim(&mut s.points, |p| p.0, cutoff);
            s.histograms.retain(|h| h.0 > cutoff);
            !s.points.is_empty()
        });
        self.shares.retain(|_, q| {
            trim(q, |p| p.0, cutoff);
            !q.is_empty()
        });
        self.performance.retain(|_, q| {
            trim(q, |p| p.end, cutoff);
            !q.is_empty()
        });
        self.classes.retain(|_, q| {
            trim(q, |p| p.0, cutoff);
            !q.is_empty()
        });
        self.bands.retain(|_, q| {
            trim(q, |p| p.0, cutoff);
            !q.is_empty()
        });
        self.followed.retain(|_, q| {
            trim(q, |p| p.0, cutoff);
            !q.is_empty()
        });
        for top in &mut self.top {
            top.retain(|r| r.end > cutoff);
        }
        self.flagged.retain(|_, f| f.1 > cutoff);
        self.rescored.retain(|_, r| r.last > cutoff);
        // Versions and labels no series holds any more free their place.
        let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for k in self.drift.keys() {
            held.entry(k.0.clone()).or_default().insert(k.1.clone());
        }
        let mut labels: BTreeMap<(String, String), usize> = BTreeMap::new();
        for k in self.shares.keys() {
            held.entry(k.0.clone()).or_default().insert(k.1.clone());
            *labels.entry((k.0.clone(), k.1.clone())).or_default() += 1;
        }
        for k in self.performance.keys() {
            held.entry(k.0.clone()).or_default().insert(k.1.clone());
        }
        for k in self.classes.keys() {
            held.entry(k.0.clone()).or_default().insert(k.1.clone());
        }
        self.versions = held;
        self.labels = labels;
        self.alerts
            .retain(|_, a| a.last() > cutoff || !a.changes.iter().any(|c| c.0 == State::Resolved));
    }

    fn drift_rows(
        &mut self,
        end: i64,
        b: &RecordBatch,
        predictions: bool,
        threshold: &impl Fn(&str, &str) -> f64,
    ) {
        let (Some(model), Some(version), Some(feature), Some(test)) = (
            strings(b, "model"),
            strings(b, "model_version"),
            strings(b, "feature"),
            strings(b, "test"),
        ) else {
            return;
        };
        let (Some(stat), Some(p), Some(drifted)) = (
            floats(b, "statistic"),
            floats(b, "p_adjusted"),
            bools(b, "drifted"),
        ) else {
            return;
        };
        for i in 0..b.num_rows() {
            let test_name = test.value(i);
            let p_test = matches!(test_name, "ks" | "chi2" | "z");
            let Some((m, v)) = self.segment(model, version, i) else {
                continue;
            };
            let key = (
                m,
                v,
                feature.value(i).to_owned(),
                predictions,
                test_name.to_owned(),
            );
            // The configured models' series are always kept.
            if !self.drift.contains_key(&key)
                && self.drift.len() >= self.cfg.max_series
                && !self.pinned.contains(&key.0)
            {
                self.series_refused += 1;
                continue;
            }
            let s = self.drift.entry(key).or_default();
            s.test = test_name.to_owned();
            let t = threshold(feature.value(i), test_name);
            s.threshold = if p_test { -t.max(1e-300).log10() } else { t };
            let value = if p_test {
                value(p, i).map(|p| -p.max(1e-300).log10())
            } else {
                value(stat, i)
            };
            s.points.push_back((end, value, drifted.value(i)));
        }
    }

    fn share_rows(&mut self, end: i64, b: &RecordBatch) {
        let (Some(model), Some(version), Some(label), Some(cur), Some(reference)) = (
            strings(b, "model"),
            strings(b, "model_version"),
            strings(b, "label"),
            floats(b, "cur_share"),
            floats(b, "ref_share"),
        ) else {
            return;
        };
        for i in 0..b.num_rows() {
            let Some((m, v)) = self.segment(model, version, i) else {
                continue;
            };
            let key = (m.clone(), v.clone(), clip(label.value(i)));
            if !self.shares.contains_key(&key) {
                let n = self.labels.entry((m, v)).or_default();
                if *n >= MAX_LABELS {
                    continue;
                }
                *n += 1;
            }
            self.shares
                .entry(key)
                .or_default()
                .push_back((end, cur.value(i), reference.value(i)));
        }
    }

    fn performance_rows(&mut self, end: i64, b: &RecordBatch) {
        let (Some(model), Some(version), Some(acc), Some(est), Some(reference), Some(labelled)) = (
            strings(b, "model"),
            strings(b, "model_version"),
            floats(b, "accuracy"),
            floats(b, "estimated_accuracy"),
            floats(b, "reference_accuracy"),
            counts(b, "labelled"),
        ) else {
            return;
        };
        for i in 0..b.num_rows() {
            let Some(key) = self.segment(model, version, i) else {
                continue;
            };
            self.performance
                .entry(key)
                .or_default()
                .push_back(PerfPoint {
                    end,
                    accuracy: value(acc, i),
                    estimated: value(est, i),
                    reference: value(reference, i),
                    labelled: labelled.value(i),
                });
        }
    }

    fn class_rows(&mut self, end: i64, b: &RecordBatch) {
        let (Some(model), Some(version), Some(class), Some(recall), Some(precision), Some(rr)) = (
            strings(b, "model"),
            strings(b, "model_version"),
            strings(b, "class"),
            floats(b, "recall"),
            floats(b, "precision"),
            floats(b, "reference_recall"),
        ) else {
            return;
        };
        for i in 0..b.num_rows() {
            let Some((m, v)) = self.segment(model, version, i) else {
                continue;
            };
            self.classes
                .entry((m, v, clip(class.value(i))))
                .or_default()
                .push_back((end, value(recall, i), value(precision, i), value(rr, i)));
        }
    }

    fn rescored_rows(&mut self, w: &ClosedWindow, b: &RecordBatch) {
        let (Some(model), Some(client), Some(mismatch), Some(adversarial)) = (
            strings(b, "model"),
            strings(b, "client_id"),
            bools(b, "mismatch"),
            bools(b, "adversarial"),
        ) else {
            return;
        };
        let ts = b
            .column_by_name("ts")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>());
        // Overlapping (sliding) windows share records: each counts in the window whose
        // last slide holds it.
        let from = w.end_ms - w.spec.slide_ms;
        for i in 0..b.num_rows() {
            if ts.is_some_and(|t| t.is_valid(i) && t.value(i) < from) {
                continue;
            }
            let key = (text(model, i), clip(client.value(i)));
            if !self.rescored.contains_key(&key) && self.rescored.len() >= MAX_RESCORED {
                self.rescored_dropped += 1;
                continue;
            }
            let r = self.rescored.entry(key).or_default();
            r.rescored += 1;
            r.mismatches += u64::from(mismatch.is_valid(i) && mismatch.value(i));
            r.adversarial += u64::from(adversarial.is_valid(i) && adversarial.value(i));
            r.last = w.end_ms;
        }
    }

    /// The window's `client_stats`: population quartiles per model, the rankings, and
    /// the rows of the followed clients.
    fn client_rows(&mut self, end: i64, batches: &[RecordBatch]) {
        // (model, client, statistics) of every row.
        let mut rows: Vec<(String, String, Stats)> = Vec::new();
        for b in batches {
            let (Some(model), Some(client)) = (strings(b, "model"), strings(b, "client_id")) else {
                continue;
            };
            let cols: Vec<Option<Vec<Option<f64>>>> =
                CLIENT_STATS.iter().map(|c| numbers(b, c)).collect();
            for i in 0..b.num_rows() {
                let mut s: Stats = [None; CLIENT_STATS.len()];
                for (j, c) in cols.iter().enumerate() {
                    s[j] = c.as_ref().and_then(|c| c[i]).filter(|x| x.is_finite());
                }
                let m = text(model, i);
                if self.admit(&m) {
                    rows.push((m, clip(client.value(i)), s));
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let min_queries = self.cfg.min_queries as f64;
        let ranked = |s: &Stats, j: usize| {
            if j < COUNTS || s[0].is_some_and(|q| q >= min_queries) {
                s[j]
            } else {
                None
            }
        };
        // Quartiles per model, of the clients a statistic ranks.
        let mut by_model: BTreeMap<&str, Vec<&Stats>> = BTreeMap::new();
        for (m, _, s) in &rows {
            by_model.entry(m.as_str()).or_default().push(s);
        }
        for (m, list) in &by_model {
            let quartiles = (0..CLIENT_STATS.len())
                .map(|j| {
                    let mut v: Vec<f64> = list.iter().filter_map(|s| ranked(s, j)).collect();
                    crate::stats::drift::sort_floats(&mut v);
                    (!v.is_empty()).then(|| {
                        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
                        [q(0.25), q(0.5), q(0.75)]
                    })
                })
                .collect();
            self.bands
                .entry((*m).to_owned())
                .or_default()
                .push_back((end, quartiles));
        }
        // Rankings over the report's span, and who to follow.
        let mut follow: BTreeSet<usize> = BTreeSet::new();
        for j in 0..CLIENT_STATS.len() {
            let mut order: Vec<(usize, f64)> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| ranked(&r.2, j).map(|v| (i, v)))
                .collect();
            order.sort_by(|a, b| {
                b.1.total_cmp(&a.1)
                    .then_with(|| rows[a.0].1.cmp(&rows[b.0].1))
            });
            let k = self.cfg.top_clients;
            follow.extend(order.iter().take(FOLLOW_PER_STAT).map(|o| o.0));
            let top = &mut self.top[j];
            for &(i, v) in order.iter().take(k) {
                let (m, c, _) = &rows[i];
                match top.iter_mut().find(|r| &r.model == m && &r.client == c) {
                    Some(r) if v > r.value => (r.value, r.end) = (v, end),
                    Some(_) => {}
                    None => top.push(Ranked {
                        model: m.clone(),
                        client: c.clone(),
                        value: v,
                        end,
                    }),
                }
            }
            top.sort_by(|a, b| {
                b.value
                    .total_cmp(&a.value)
                    .then_with(|| a.client.cmp(&b.client))
            });
            top.truncate(k);
        }
        for (i, (m, c, s)) in rows.iter().enumerate() {
            let key = (m.clone(), c.clone());
            let flagged = self.flagged.contains_key(&key)
                || self.flagged.contains_key(&(String::new(), c.clone()));
            if let Some(q) = self.followed.get_mut(&key) {
                q.push_back((end, *s));
            } else if (flagged || follow.contains(&i)) && self.make_room(flagged, end) {
                self.followed.insert(key, VecDeque::from([(end, *s)]));
            }
        }
    }

    /// Whether one more client may be followed; when full, the unflagged client seen
    /// longest ago makes room (see below).
    fn make_room(&mut self, flagged: bool, now: i64) -> bool {
        if self.followed.len() < self.cfg.max_clients {
            return true;
        }
        // An unflagged client makes room for a flagged one, or for a new top client
        // when it has not been seen for an hour of event time.
        let stale = now - 3_600_000;
        let victim = self
            .followed
            .iter()
            .filter(|(k, q)| {
                !self.flagged.contains_key(*k)
                    && !self.flagged.contains_key(&(String::new(), k.1.clone()))
                    && (flagged || q.back().is_none_or(|p| p.0 <= stale))
            })
            .min_by_key(|(_, q)| q.back().map_or(i64::MIN, |p| p.0))
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.followed.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// The report's lock. A panic while it was held (a bug) leaves the report as it was,
/// not the pipeline stopped: the report is a view, never a reason to lose records.
pub fn lock(r: &std::sync::Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the report shows besides its own memory, read when it is rendered.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub records_read: u64,
    pub good: u64,
    pub bad: u64,
    pub late: u64,
    pub windows_closed: u64,
    pub rule_errors: u64,
    /// Wall-clock seconds since the run started.
    pub elapsed_s: f64,
    /// When the page was made (RFC 3339, wall clock).
    pub generated: String,
}

/// A dead-letter reason without its numbers, cut short: `record of 912 bytes is over
/// max_record_bytes` → `record of # bytes is over max_record_bytes`.
fn reason_kind(reason: &str) -> String {
    let head = reason.split(": ").next().unwrap_or(reason);
    let mut out = String::new();
    let mut digits = false;
    for c in head.chars().take(100) {
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// Text from the traffic as the report keeps it: at most [`MAX_TEXT`] characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)?.as_any().downcast_ref()
}
fn floats<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Float64Array> {
    b.column_by_name(name)?.as_any().downcast_ref()
}
fn counts<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a UInt64Array> {
    b.column_by_name(name)?.as_any().downcast_ref()
}
fn bools<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a BooleanArray> {
    b.column_by_name(name)?.as_any().downcast_ref()
}
/// A numeric column (floats or counts) as optional floats.
fn numbers(b: &RecordBatch, name: &str) -> Option<Vec<Option<f64>>> {
    if let Some(f) = floats(b, name) {
        return Some((0..f.len()).map(|i| value(f, i)).collect());
    }
    let u = counts(b, name)?;
    Some(
        (0..u.len())
            .map(|i| u.is_valid(i).then(|| u.value(i) as f64))
            .collect(),
    )
}
fn value(a: &Float64Array, i: usize) -> Option<f64> {
    (a.is_valid(i) && a.value(i).is_finite()).then(|| a.value(i))
}
fn text(a: &StringArray, i: usize) -> String {
    if a.is_valid(i) {
        a.value(i).to_owned()
    } else {
        String::new()
    }
}
