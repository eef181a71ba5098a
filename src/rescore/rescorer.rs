//! Which records are re-scored, within the budget, and the `rescored` table.
//!
//! When a window closes, the rules that do not read `rescored` run first. The clients
//! that a rule with `rescore: true` returned (a `client_id` column; without one, the
//! whole window) become suspects from the window's start until `suspect_for` after its
//! end. Then the window's records of a configured model are candidates when their
//! client is a suspect at their event time, or when the hash of their request id falls
//! in the random sample (`sample_rate`, for tampering checks on all traffic). Per
//! second of event time at most `budget_per_second` records are re-scored: suspects'
//! records first, then the sample, each group in the order of the hash — never arrival
//! order, so a replay and a run on the topic re-score the same records. What the
//! budget leaves out is counted (per second: the most candidates any window saw that
//! could not be re-scored). Then the rules that read `rescored` run on the results of
//! the window's records.
//!
//! A record is re-scored once: results are kept per second of event time for as long
//! as a window that covers that second may still close, and go into checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimestampMillisecondType,
};
use serde::{Deserialize, Serialize};

use super::EmbeddedModel;
use super::squeeze::Squeezer;
use crate::secret::Secret;
use crate::stable_hash::hash_of;
use crate::telemetry::RescoreTotals;
use crate::window::ClosedWindow;

/// `rescore:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RescoreConfig {
    /// Records re-scored per second of event time, at most.
    #[serde(default = "default_budget")]
    pub budget_per_second: u32,
    /// Share of all records re-scored (by a hash of the request id), so that tampering
    /// shows without a rule flagging anyone. 0 turns the sample off.
    #[serde(default = "default_sample")]
    pub sample_rate: f64,
    /// How long after the window that flagged it a client stays a suspect.
    #[serde(with = "humantime_serde", default = "default_suspect_for")]
    #[schemars(with = "String")]
    pub suspect_for: Duration,
    /// A logged probability further than this from the embedded model's is a mismatch.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Mixed into the sample's hash: with a secret here (`${INFERWATCH_SAMPLE_SALT}`), a
    /// client that picks its own request ids cannot pick ones outside the sample. The
    /// same salt gives the same sample in `run` and `replay`.
    #[serde(default)]
    pub sample_salt: Secret,
    /// Suspects tracked at most (those whose suspicion ends first are dropped).
    #[serde(default = "default_max_suspects")]
    pub max_suspects: usize,
}

fn default_budget() -> u32 {
    50
}
fn default_sample() -> f64 {
    0.1
}
fn default_suspect_for() -> Duration {
    Duration::from_secs(600)
}
fn default_tolerance() -> f64 {
    1e-3
}
fn default_max_suspects() -> usize {
    10_000
}

impl Default for RescoreConfig {
    fn default() -> Self {
        Self {
            budget_per_second: default_budget(),
            sample_rate: default_sample(),
            suspect_for: default_suspect_for(),
            tolerance: default_tolerance(),
            max_suspects: default_max_suspects(),
            sample_salt: Secret::default(),
        }
    }
}

impl RescoreConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(format!(
                "rescore.sample_rate: {} is not a share between 0 and 1",
                self.sample_rate
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!(
                "rescore.tolerance: {} is not a probability difference (0 or more)",
                self.tolerance
            ));
        }
        if self.max_suspects == 0 {
            return Err("rescore.max_suspects: track at least 1 suspect".into());
        }
        Ok(())
    }
}

/// A model ready to re-score records: the columns of its features in `events`.
pub struct ServedModel {
    pub model: EmbeddedModel,
    /// The `model_version` it serves (None: every version).
    pub version: Option<String>,
    pub squeeze: Option<Squeezer>,
    columns: Vec<usize>,
}

impl ServedModel {
    /// Checks that every feature of the model is a numeric column of `events`.
    pub fn new(
        model: EmbeddedModel,
        squeeze: Option<Squeezer>,
        events: &Schema,
    ) -> Result<ServedModel, String> {
        let mut columns = Vec::new();
        for f in &model.features {
            let i = events.index_of(f).map_err(|_| {
                format!(
                    "models.{}: feature {f} is not a declared feature (declare it under \
                     decode.features as numerical, or give the model's baseline)",
                    model.name
                )
            })?;
            if !events.field(i).data_type().is_numeric() {
                return Err(format!(
                    "models.{}: feature {f} is declared categorical; the model takes numbers",
                    model.name
                ));
            }
            columns.push(i);
        }
        Ok(ServedModel {
            model,
            version: None,
            squeeze,
            columns,
        })
    }
}

/// Why a record was re-scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its client (or its window) was flagged by a rule with `rescore: true`.
    Flagged,
    /// It fell in the random sample.
    Sample,
}

/// One re-scored record: a row of `rescored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rescored {
    pub ts: i64,
    pub request_id: Option<String>,
    pub client_id: String,
    pub model: String,
    pub model_version: Option<String>,
    pub reason: Reason,
    pub logged_label: Option<String>,
    pub logged_score: Option<f64>,
    pub model_label: String,
    pub model_score: f64,
    pub prob_diff: Option<f64>,
    pub mismatch: Option<bool>,
    pub squeeze_score: Option<f64>,
    /// The model's threshold when the row was scored.
    pub squeeze_threshold: Option<f64>,
    pub adversarial: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Second {
    used: u32,
    /// Most candidates one window saw in this second that the budget left out.
    dropped: u64,
    /// Identities of the records already taken (re-scored or unscorable).
    done: BTreeSet<u64>,
    rows: Vec<Rescored>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Suspicion {
    from_ms: i64,
    until_ms: i64,
}

/// What a checkpoint keeps of the re-scorer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RescoreState {
    /// By client, then model ("" for every model).
    suspects: BTreeMap<String, BTreeMap<String, Suspicion>>,
    /// Windows flagged as a whole (a `rescore: true` rule without `client_id`).
    windows: Vec<(i64, i64)>,
    seconds: BTreeMap<i64, Second>,
    latest_end: Option<i64>,
    totals: RescoreTotals,
}

impl RescoreState {
    /// The totals, with what the budget left out of the seconds still kept.
    fn totals(&self) -> RescoreTotals {
        let mut t = self.totals;
        t.dropped += self.seconds.values().map(|s| s.dropped).sum::<u64>();
        t
    }

    fn suspect(&self, model: &str, client: &str, ts: i64) -> bool {
        let covers = |s: Option<&Suspicion>| s.is_some_and(|s| s.from_ms <= ts && ts < s.until_ms);
        self.suspects
            .get(client)
            .is_some_and(|by_model| covers(by_model.get(model)) || covers(by_model.get("")))
            || self.windows.iter().any(|&(a, b)| a <= ts && ts < b)
    }

    fn suspect_count(&self) -> usize {
        self.suspects.values().map(BTreeMap::len).sum()
    }

    fn flag(&mut self, model: String, client: String, s: Suspicion, cap: usize) {
        let e = self
            .suspects
            .entry(client)
            .or_default()
            .entry(model)
            .or_insert(s);
        e.from_ms = e.from_ms.min(s.from_ms);
        e.until_ms = e.until_ms.max(s.until_ms);
        let mut count = self.suspect_count();
        while count > cap {
            // The suspicion that ends first goes (ties: by client, then model).
            let (client, model) = self
                .suspects
                .iter()
                .flat_map(|(c, m)| m.iter().map(move |(m, s)| (s.until_ms, c, m)))
                .min()
                .map(|(_, c, m)| (c.clone(), m.clone()))
                .expect("not empty");
            let by_model = self.suspects.get_mut(&client).expect("present");
            by_model.remove(&model);
            if by_model.is_empty() {
                self.suspects.remove(&client);
            }
            self.totals.suspects_evicted += 1;
            count -= 1;
        }
    }

    /// Forgets what no window that may still close can cover.
    fn prune(&mut self, horizon_ms: i64) {
        let Some(end) = self.latest_end else { return };
        let keep_from = end - horizon_ms;
        let old: Vec<i64> = self
            .seconds
            .range(..keep_from.div_euclid(1000))
            .map(|(s, _)| *s)
            .collect();
        for s in old {
            if let Some(sec) = self.seconds.remove(&s) {
                self.totals.dropped += sec.dropped;
            }
        }
        for by_model in self.suspects.values_mut() {
            by_model.retain(|_, s| s.until_ms > keep_from);
        }
        self.suspects.retain(|_, m| !m.is_empty());
        self.windows.retain(|&(_, b)| b > keep_from);
    }
}

/// Who a window's `rescore: true` rules flagged.
#[derive(Debug, Default)]
pub struct Flags {
    /// (model if the rule returned one, client).
    pub clients: Vec<(Option<String>, String)>,
    /// A rule without a `client_id` column returned rows: the whole window.
    pub window: bool,
}

impl Flags {
    /// Reads the rows a `rescore: true` rule returned.
    pub fn add(&mut self, batches: &[RecordBatch]) {
        for b in batches {
            if b.num_rows() == 0 {
                continue;
            }
            let Some(clients) = string_column(b, "client_id") else {
                self.window = true;
                continue;
            };
            let models = string_column(b, "model");
            for row in 0..b.num_rows() {
                if clients.is_null(row) {
                    continue;
                }
                let model = models
                    .as_ref()
                    .filter(|m| !m.is_null(row))
                    .map(|m| m.as_string::<i32>().value(row).to_owned());
                self.clients
                    .push((model, clients.as_string::<i32>().value(row).to_owned()));
            }
        }
    }
}

fn string_column(b: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let c = b.column_by_name(name)?;
    cast(c, &DataType::Utf8).ok()
}

/// The re-scorer, shared by the pipeline (which feeds it) and the `rescored` table.
pub struct Rescorer {
    cfg: RescoreConfig,
    models: Vec<ServedModel>,
    /// Longest window size plus grace among the rules: how long results are kept.
    horizon_ms: i64,
    state: Mutex<RescoreState>,
    /// Time spent picking and re-scoring records in this process.
    busy: Mutex<Duration>,
    /// (model, version) pairs without a pinned file already logged (at most
    /// [`MAX_VERSIONS_LOGGED`]: versions come from the traffic).
    versions_logged: Mutex<BTreeSet<(String, String)>>,
}

const MAX_VERSIONS_LOGGED: usize = 16;

/// One record picked for re-scoring.
struct Pick {
    sec: i64,
    key: u64,
    reason: Reason,
    /// Index of its model in `models`; None when no pinned file serves its version.
    model: Option<usize>,
    batch: usize,
    row: usize,
}

impl Rescorer {
    /// A re-scorer that keeps results as long as a window of `specs` may need them.
    pub fn with_windows(
        cfg: RescoreConfig,
        models: Vec<ServedModel>,
        specs: &[crate::window::WindowSpec],
    ) -> Arc<Rescorer> {
        let horizon_ms = specs
            .iter()
            .map(|s| s.size_ms + s.grace_ms + s.slide_ms)
            .max()
            .unwrap_or(0);
        Arc::new(Rescorer {
            cfg,
            models,
            horizon_ms,
            state: Mutex::new(RescoreState::default()),
            busy: Mutex::default(),
            versions_logged: Mutex::default(),
        })
    }

    /// Says once per (model, version), loudly, that records of a version without a
    /// pinned file go unchecked.
    fn log_version(&self, model: &str, version: &str) {
        let mut logged = self.versions_logged.lock().expect("versions lock");
        if logged.len() >= MAX_VERSIONS_LOGGED {
            return;
        }
        if logged.insert((model.to_owned(), version.to_owned())) {
            tracing::warn!(
                model,
                model_version = version,
                "records of this model version are not re-scored: no file under models: pins \
                 it (add an entry with its version and sha256); counted as other_version in \
                 inferwatch_rescore_outcomes"
            );
        }
    }

    pub fn is_active(&self) -> bool {
        !self.models.is_empty()
    }

    pub fn models(&self) -> &[ServedModel] {
        &self.models
    }

    pub fn totals(&self) -> RescoreTotals {
        self.state.lock().expect("rescore lock").totals()
    }

    pub fn snapshot(&self) -> RescoreState {
        self.state.lock().expect("rescore lock").clone()
    }

    pub fn restore(&self, s: RescoreState) {
        *self.state.lock().expect("rescore lock") = s;
    }

    fn sampled(&self, request_id: Option<&str>, key: u64) -> bool {
        let h = request_id.map_or(key, |r| {
            hash_of(("sample", self.cfg.sample_salt.expose(), r))
        });
        (h as f64) < self.cfg.sample_rate * (u64::MAX as f64)
    }

    /// Makes the flagged clients suspects from the window's start until `suspect_for`
    /// after its end (flagging twice changes nothing).
    pub fn flag(&self, w: &ClosedWindow, flags: Flags) {
        if !self.is_active() {
            return;
        }
        let mut st = self.state.lock().expect("rescore lock");
        let until = w.end_ms + self.cfg.suspect_for.as_millis() as i64;
        for (model, client) in flags.clients {
            let s = Suspicion {
                from_ms: w.start_ms,
                until_ms: until,
            };
            st.flag(model.unwrap_or_default(), client, s, self.cfg.max_suspects);
        }
        if flags.window && !st.windows.contains(&(w.start_ms, w.end_ms)) {
            st.windows.push((w.start_ms, w.end_ms));
        }
    }

    /// What `GET /api/v1/rescore` shows: the models, the settings, the totals, and the
    /// current suspects (those whose suspicion ends last first, at most `limit`).
    pub fn report(&self, limit: usize) -> serde_json::Value {
        let st = self.state.lock().expect("rescore lock");
        let mut suspects: Vec<(i64, &str, &str, &Suspicion)> = st
            .suspects
            .iter()
            .flat_map(|(c, by)| {
                by.iter()
                    .map(move |(m, s)| (s.until_ms, c.as_str(), m.as_str(), s))
            })
            .collect();
        suspects.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)).then(a.2.cmp(b.2)));
        let rfc = crate::time::rfc3339;
        let models: Vec<serde_json::Value> = self
            .models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.model.name,
                    "features": m.model.features.len(),
                    "labels": m.model.labels,
                    "squeeze": m.squeeze.as_ref().map(|s| serde_json::json!({
                        "levels": s.levels(),
                        "threshold": s.threshold,
                    })),
                })
            })
            .collect();
        let totals = st.totals();
        serde_json::json!({
            "models": models,
            "budget_per_second": self.cfg.budget_per_second,
            "sample_rate": self.cfg.sample_rate,
            "suspect_for": humantime::format_duration(self.cfg.suspect_for).to_string(),
            "tolerance": self.cfg.tolerance,
            "totals": totals,
            "suspect_count": suspects.len(),
            "suspects": suspects.iter().take(limit).map(|(_, c, m, s)| serde_json::json!({
                "client_id": c,
                "model": (!m.is_empty()).then_some(m),
                "from": rfc(s.from_ms),
                "until": rfc(s.until_ms),
            })).collect::<Vec<_>>(),
            "flagged_windows": st.windows.iter().map(|&(a, b)| serde_json::json!({
                "start": rfc(a),
                "end": rfc(b),
            })).collect::<Vec<_>>(),
        })
    }

    /// Time spent picking and re-scoring records in this process.
    pub fn busy(&self) -> Duration {
        *self.busy.lock().expect("busy lock")
    }

    /// Re-scores the window's candidates within the budget.
    pub fn score_window(&self, w: &ClosedWindow) -> Result<(), String> {
        if !self.is_active() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = self.pick_and_score(w);
        *self.busy.lock().expect("busy lock") += started.elapsed();
        result
    }

    /// The window's records of a configured model that are not re-scored yet and are
    /// a suspect's or in the sample, by second of event time.
    fn candidates(&self, st: &RescoreState, columns: &[Columns]) -> BTreeMap<i64, Vec<Pick>> {
        let mut candidates: BTreeMap<i64, Vec<Pick>> = BTreeMap::new();
        for (bi, cols) in columns.iter().enumerate() {
            for row in 0..cols.ts.len() {
                let Some(model) = cols.model(row) else {
                    continue;
                };
                let version = cols.version_str(row);
                let mut named = false;
                let mi = self.models.iter().position(|m| {
                    named |= m.model.name == model;
                    m.model.name == model
                        && (m.version.is_none() || m.version.as_deref() == version)
                });
                if mi.is_none() && !named {
                    continue;
                }
                let ts = cols.ts.value(row);
                let client = cols.client.value(row);
                let request = cols.request(row);
                let key = hash_of((request, ts, client, model));
                let sec = ts.div_euclid(1000);
                if st.seconds.get(&sec).is_some_and(|s| s.done.contains(&key)) {
                    continue;
                }
                let reason = if st.suspect(model, client, ts) {
                    Reason::Flagged
                } else if self.sampled(request, key) {
                    Reason::Sample
                } else {
                    continue;
                };
                if mi.is_none() {
                    self.log_version(model, version.unwrap_or(""));
                }
                candidates.entry(sec).or_default().push(Pick {
                    sec,
                    key,
                    reason,
                    model: mi,
                    batch: bi,
                    row,
                });
            }
        }
        candidates
    }

    fn pick_and_score(&self, w: &ClosedWindow) -> Result<(), String> {
        let columns = w
            .batches
            .iter()
            .map(Columns::of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self.state.lock().expect("rescore lock");
        let candidates = self.candidates(&st, &columns);
        let mut picked = Vec::new();
        for (sec, mut list) in candidates {
            let s = st.seconds.entry(sec).or_default();
            // A version without a pinned file: counted once, never re-scored.
            let before = list.len();
            list.retain(|p| {
                p.model.is_some() || {
                    s.done.insert(p.key);
                    false
                }
            });
            st.totals.other_version += (before - list.len()) as u64;
            let s = st.seconds.entry(sec).or_default();
            list.sort_by_key(|p| (p.reason, p.key));
            let room = self.cfg.budget_per_second.saturating_sub(s.used) as usize;
            let take = room.min(list.len());
            s.dropped = s.dropped.max((list.len() - take) as u64);
            s.used += take as u32;
            list.truncate(take);
            for p in &list {
                s.done.insert(p.key);
            }
            picked.extend(list);
        }
        let rows = self.score(w, &columns, &picked, &mut st.totals)?;
        for (sec, row) in rows {
            st.seconds.entry(sec).or_default().rows.push(row);
        }
        st.latest_end = Some(st.latest_end.map_or(w.end_ms, |e| e.max(w.end_ms)));
        st.prune(self.horizon_ms);
        Ok(())
    }

    /// Runs the models on the picked records.
    fn score(
        &self,
        w: &ClosedWindow,
        columns: &[Columns],
        picked: &[Pick],
        totals: &mut RescoreTotals,
    ) -> Result<Vec<(i64, Rescored)>, String> {
        let mut out = Vec::with_capacity(picked.len());
        for (mi, served) in self.models.iter().enumerate() {
            let m = &served.model;
            let mut rows: Vec<Vec<f32>> = Vec::new();
            let mut whose: Vec<&Pick> = Vec::new();
            for p in picked.iter().filter(|p| p.model == Some(mi)) {
                match features(&w.batches[p.batch], &served.columns, p.row) {
                    Some(x) => {
                        rows.push(x);
                        whose.push(p);
                    }
                    None => totals.unscorable += 1,
                }
            }
            if rows.is_empty() {
                continue;
            }
            let probs = m.probabilities(&rows)?;
            let squeeze = match &served.squeeze {
                Some(s) => Some(s.scores(m, &rows, &probs)?),
                None => None,
            };
            for (i, p) in whose.iter().enumerate() {
                let r = self.compare(
                    m,
                    &columns[p.batch],
                    p,
                    &probs[i],
                    squeeze.as_ref().map(|s| s[i]),
                    served.squeeze.as_ref().and_then(|s| s.threshold),
                );
                totals.rescored += 1;
                match p.reason {
                    Reason::Flagged => totals.flagged += 1,
                    Reason::Sample => totals.sampled += 1,
                }
                totals.mismatches += u64::from(r.mismatch == Some(true));
                totals.adversarial += u64::from(r.adversarial == Some(true));
                out.push((p.sec, r));
            }
        }
        Ok(out)
    }

    /// The embedded model's answer against the logged one.
    fn compare(
        &self,
        m: &EmbeddedModel,
        cols: &Columns,
        p: &Pick,
        probs: &[f32],
        squeeze: Option<f64>,
        threshold: Option<f64>,
    ) -> Rescored {
        let row = p.row;
        let top = super::top_class(probs);
        let logged_label = cols.label(row);
        let logged_score = cols.score(row);
        let logged_probs = cols.probs(row);
        let tol = self.cfg.tolerance;
        let mut diff: Option<f64> = None;
        let mut bad = false;
        let logged_index = logged_label
            .as_deref()
            .map(|l| m.labels.iter().position(|x| x == l));
        match (&logged_probs, logged_index) {
            (Some(lp), _) if lp.len() == probs.len() => {
                diff = Some(
                    lp.iter()
                        .zip(probs)
                        .map(|(a, b)| (a - f64::from(*b)).abs())
                        .fold(0.0, f64::max),
                );
            }
            (Some(_), _) => bad = true,
            (None, Some(Some(i))) => {
                diff = logged_score.map(|s| (s - f64::from(probs[i])).abs());
            }
            _ => {}
        }
        bad |= diff.is_some_and(|d| d.is_nan() || d > tol);
        match logged_index {
            // A label the model does not have.
            Some(None) => bad = true,
            // Another label, unless the two are tied within the tolerance.
            Some(Some(i)) => bad |= f64::from(probs[top]) - f64::from(probs[i]) > tol,
            None => {}
        }
        let compared = logged_label.is_some() || logged_probs.is_some() || diff.is_some();
        Rescored {
            ts: cols.ts.value(row),
            request_id: cols.request(row).map(str::to_owned),
            client_id: cols.client.value(row).to_owned(),
            model: m.name.clone(),
            model_version: cols.version(row),
            reason: p.reason,
            logged_label,
            logged_score,
            model_label: m.labels[top].clone(),
            model_score: f64::from(probs[top]),
            prob_diff: diff,
            mismatch: compared.then_some(bad),
            squeeze_score: squeeze,
            squeeze_threshold: threshold,
            adversarial: squeeze.zip(threshold).map(|(s, t)| s > t),
        }
    }

    /// The `rescored` rows of a window: its records' results, in event-time order.
    pub fn rows(&self, w: &ClosedWindow) -> Vec<Rescored> {
        let st = self.state.lock().expect("rescore lock");
        let mut rows: Vec<Rescored> = st
            .seconds
            .range(w.start_ms.div_euclid(1000)..=(w.end_ms - 1).div_euclid(1000))
            .flat_map(|(_, s)| s.rows.iter())
            .filter(|r| w.start_ms <= r.ts && r.ts < w.end_ms)
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            (a.ts, &a.client_id, &a.request_id).cmp(&(b.ts, &b.client_id, &b.request_id))
        });
        rows
    }

    /// The `rescored` table.
    pub fn table(self: &Arc<Self>) -> Arc<dyn crate::tables::WindowTable> {
        let me = self.clone();
        crate::tables::DerivedTable::shared("rescored", schema(), move |w| to_batch(&me.rows(w)))
    }
}

/// Columns of `rescored`.
pub fn schema() -> SchemaRef {
    let utf8 = DataType::Utf8;
    let f64t = DataType::Float64;
    Arc::new(Schema::new(vec![
        Field::new("ts", crate::decode::ts_type(), false),
        Field::new("request_id", utf8.clone(), true),
        Field::new("client_id", utf8.clone(), false),
        Field::new("model", utf8.clone(), false),
        Field::new("model_version", utf8.clone(), true),
        Field::new("reason", utf8.clone(), false),
        Field::new("logged_label", utf8.clone(), true),
        Field::new("model_label", utf8.clone(), false),
        Field::new("logged_score", f64t.clone(), true),
        Field::new("model_score", f64t.clone(), false),
        Field::new("prob_diff", f64t.clone(), true),
        Field::new("mismatch", DataType::Boolean, true),
        Field::new("squeeze_score", f64t.clone(), true),
        Field::new("squeeze_threshold", f64t, true),
        Field::new("adversarial", DataType::Boolean, true),
    ]))
}

fn to_batch(rows: &[Rescored]) -> Result<RecordBatch, String> {
    let text = |f: fn(&Rescored) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let number = |f: fn(&Rescored) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let flag = |f: fn(&Rescored) -> Option<bool>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<BooleanArray>())
    };
    let ts = TimestampMillisecondArray::from(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
        .with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts),
        text(|r| r.request_id.as_deref()),
        text(|r| Some(&r.client_id)),
        text(|r| Some(&r.model)),
        text(|r| r.model_version.as_deref()),
        text(|r| {
            Some(match r.reason {
                Reason::Flagged => "flagged",
                Reason::Sample => "sample",
            })
        }),
        text(|r| r.logged_label.as_deref()),
        text(|r| Some(&r.model_label)),
        number(|r| r.logged_score),
        number(|r| Some(r.model_score)),
        number(|r| r.prob_diff),
        flag(|r| r.mismatch),
        number(|r| r.squeeze_score),
        number(|r| r.squeeze_threshold),
        flag(|r| r.adversarial),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())
}

/// The columns of `events` the re-scorer reads.
struct Columns<'a> {
    ts: &'a TimestampMillisecondArray,
    client: &'a StringArray,
    request: &'a StringArray,
    model: &'a StringArray,
    version: &'a StringArray,
    label: &'a StringArray,
    score: &'a Float64Array,
    probs: &'a ListArray,
}

impl<'a> Columns<'a> {
    fn of(b: &'a RecordBatch) -> Result<Columns<'a>, String> {
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("events has no column {name}"))
        };
        let text = |name: &str| -> Result<&'a StringArray, String> {
            col(name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("events.{name} is not text"))
        };
        Ok(Columns {
            ts: col("ts")?
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or("events.ts is not a timestamp")?,
            client: text("client_id")?,
            request: text("request_id")?,
            model: text("model")?,
            version: text("model_version")?,
            label: text("prediction_label")?,
            score: col("prediction_score")?
                .as_primitive_opt::<Float64Type>()
                .ok_or("events.prediction_score is not a number")?,
            probs: col("probs")?
                .as_list_opt::<i32>()
                .ok_or("events.probs is not a list")?,
        })
    }

    fn opt_text(a: &StringArray, row: usize) -> Option<&str> {
        (!a.is_null(row)).then(|| a.value(row))
    }

    fn model(&self, row: usize) -> Option<&'a str> {
        (!self.model.is_null(row)).then(|| self.model.value(row))
    }

    fn request(&self, row: usize) -> Option<&'a str> {
        (!self.request.is_null(row)).then(|| self.request.value(row))
    }

    fn version_str(&self, row: usize) -> Option<&'a str> {
        Self::opt_text(self.version, row)
    }

    fn version(&self, row: usize) -> Option<String> {
        Self::opt_text(self.version, row).map(str::to_owned)
    }

    fn label(&self, row: usize) -> Option<String> {
        Self::opt_text(self.label, row).map(str::to_owned)
    }

    fn score(&self, row: usize) -> Option<f64> {
        (!self.score.is_null(row)).then(|| self.score.value(row))
    }

    fn probs(&self, row: usize) -> Option<Vec<f64>> {
        if self.probs.is_null(row) {
            return None;
        }
        let v = self.probs.value(row);
        let v = v.as_primitive_opt::<Float64Type>()?;
        Some(
            (0..v.len())
                .map(|i| if v.is_null(i) { f64::NAN } else { v.value(i) })
                .collect(),
        )
    }
}

/// The row's features in the model's order, as f32; `None` when one is missing or
/// not finite as f32 (1e39 is finite as f64 only).
fn features(b: &RecordBatch, columns: &[usize], row: usize) -> Option<Vec<f32>> {
    columns
        .iter()
        .map(|&c| {
            let a = b.column(c);
            if a.is_null(row) {
                return None;
            }
            let v = match a.data_type() {
                DataType::Float64 => a.as_primitive::<Float64Type>().value(row),
                _ => {
                    let one = cast(&a.slice(row, 1), &DataType::Float64).ok()?;
                    one.as_primitive::<Float64Type>().value(0)
                }
            };
            // Finite as the model reads it: 1e39 is finite as f64, not as f32.
            let v = v as f32;
            v.is_finite().then_some(v)
        })
        .collect()
}

#[cfg(test)]
mod feature_tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_feature_the_model_would_read_as_infinite_makes_the_row_unscorable() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Float64, true),
            Field::new("b", DataType::Float64, true),
        ]);
        let b = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Float64Array::from(vec![1.5, 1.5, 1.5])),
                Arc::new(Float64Array::from(vec![2.0, 1e39, -1e39])),
            ],
        )
        .unwrap();
        assert_eq!(super::features(&b, &[0, 1], 0), Some(vec![1.5, 2.0]));
        // 1e39 is finite as f64, beyond f32's range: the model would read infinity.
        assert_eq!(super::features(&b, &[0, 1], 1), None);
        assert_eq!(super::features(&b, &[0, 1], 2), None);
    }
}
