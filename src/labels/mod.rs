//! Delayed ground truth: true labels that arrive later, from elsewhere (a chargeback, a
//! reviewer, a user's correction), joined to the logged predictions by `request_id` and
//! model, and the `performance` and `class_performance` tables built from them.
//!
//! - Every prediction of a model with known classes waits for its label for
//!   `labels.horizon` of event time, in bounded state (`labels.max_pending`; the oldest
//!   is evicted first, counted). Only what the measures need is kept: the request id,
//!   time, series (model × `model_version`), predicted class and probabilities.
//! - Labels are read from their own source (JSONL files or a Kafka topic) and applied in
//!   event time: a label of time `t` is joined when the predictions' watermark has
//!   passed `t` (at the end of a window of the inference log), so its prediction has
//!   been read and the tables of a window see the same labels in a replay and on Kafka.
//!   Labels read ahead of the predictions wait (`labels.max_waiting`, the furthest ahead
//!   dead-lettered first).
//! - A label with no waiting prediction, a second label, one past the horizon, one for
//!   an unknown class or model, and an undecodable one are dead letters, each with its
//!   reason, and counted.
//! - Per series and minute of *prediction* time, a [`score::Tally`] adds up predictions
//!   and labels. A window's rows cover the `labels.window` of prediction time before the
//!   window's end with the labels that arrived by then (`share_labelled` says how
//!   complete that is); the `labels.reference` before it is what they are compared with
//!   (or the baseline's held-out values).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
use serde::{Deserialize, Serialize};

use crate::source::{Poll, Source, SourceConfig, SourceError};
pub use crate::telemetry::LabelTotals;

pub mod score;
mod table;

pub use table::tables;

use score::Tally;

const MINUTE: i64 = 60_000;

/// `labels:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Where labels come from: `type: file` (JSONL, plain or `.gz`) or `type: kafka`;
    /// `replay --labels FILE` (and a rule test's `labels:` input) give it instead.
    #[serde(default = "no_source")]
    pub source: SourceConfig,
    /// Dotted JSON paths of a label record's fields.
    #[serde(default)]
    pub fields: LabelFields,
    /// How long (event time) a prediction waits for its label.
    #[serde(with = "humantime_serde", default = "default_horizon")]
    #[schemars(with = "String")]
    pub horizon: Duration,
    /// The span of prediction time a row of the tables covers, ending at the window's end.
    #[serde(with = "humantime_serde", default = "default_window")]
    #[schemars(with = "String")]
    pub window: Duration,
    /// The span before it that rows are compared with (realised performance).
    #[serde(with = "humantime_serde", default = "default_reference")]
    #[schemars(with = "String")]
    pub reference: Duration,
    /// Predictions waiting for a label, at most (the oldest are evicted, counted).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Labels read ahead of the predictions, at most (reading pauses at half of it;
    /// past it, the furthest ahead are dead letters).
    #[serde(default = "default_max_waiting")]
    pub max_waiting: usize,
    /// `model_version` values tracked per model; more are counted under `other`.
    #[serde(default = "default_max_versions")]
    pub max_versions: usize,
    /// Class names per model, in the order of its probability vector; models with an
    /// entry under `models:` take theirs from there.
    #[serde(default)]
    pub classes: BTreeMap<String, Vec<String>>,
}

fn no_source() -> SourceConfig {
    SourceConfig::File(crate::source::file::FileSourceConfig::replay(Vec::new()))
}

fn default_horizon() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_window() -> Duration {
    Duration::from_secs(600)
}
fn default_reference() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_pending() -> usize {
    1_000_000
}
fn default_max_waiting() -> usize {
    100_000
}
fn default_max_versions() -> usize {
    8
}

/// Where a label record keeps its fields (dotted paths).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LabelFields {
    pub request_id: String,
    pub ts: String,
    pub model: String,
    pub label: String,
}

impl Default for LabelFields {
    fn default() -> Self {
        Self {
            request_id: "request_id".into(),
            ts: "ts".into(),
            model: "model".into(),
            label: "label".into(),
        }
    }
}

impl LabelsConfig {
    /// Labels from `source`, everything else at its default.
    pub fn new(source: SourceConfig) -> Self {
        Self {
            source,
            fields: LabelFields::default(),
            horizon: default_horizon(),
            window: default_window(),
            reference: default_reference(),
            max_pending: default_max_pending(),
            max_waiting: default_max_waiting(),
            max_versions: default_max_versions(),
            classes: BTreeMap::new(),
        }
    }

    /// Everything but the presence of a source (which `replay --labels` may add).
    pub fn validate_settings(&self) -> Result<(), String> {
        if matches!(self.source, SourceConfig::Generator(_)) {
            return Err("labels.source: use a file or a kafka source".into());
        }
        for (what, d) in [
            ("horizon", self.horizon),
            ("window", self.window),
            ("reference", self.reference),
        ] {
            if d.as_millis() < MINUTE as u128 {
                return Err(format!("labels.{what} must be at least 1m"));
            }
        }
        if self.max_pending == 0 || self.max_waiting == 0 || self.max_versions == 0 {
            return Err("labels.max_pending, max_waiting and max_versions must be > 0".into());
        }
        for (m, c) in &self.classes {
            if c.is_empty() {
                return Err(format!("labels.classes.{m}: give the class names"));
            }
        }
        Ok(())
    }

    /// The settings, and a source to read.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_settings()?;
        if matches!(&self.source, SourceConfig::File(f) if f.paths.is_empty()) {
            return Err(
                "labels: no label source: give labels.source (or replay --labels FILE)".into(),
            );
        }
        Ok(())
    }
}

/// A label as read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Label {
    ts: i64,
    model: String,
    request_id: String,
    class: String,
    /// Where it came from: partition name and position.
    source: String,
    position: u64,
}

/// A prediction waiting for its label.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    ts: i64,
    series: u32,
    /// Class index; the number of classes for a label outside them.
    predicted: u16,
    labelled: bool,
    probs: Option<Box<[f32]>>,
}

/// A label that became a dead letter.
#[derive(Debug)]
pub struct DeadLabel {
    pub source: String,
    pub position: u64,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// The model's classes and the baseline's held-out performance for them.
struct ModelInfo {
    name: String,
    classes: Vec<String>,
    index: HashMap<String, usize>,
    baseline: Option<crate::baseline::HeldOut>,
}

/// What goes into a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabelsState {
    /// Per label partition, where to resume reading.
    positions: BTreeMap<String, u64>,
    series: Vec<(String, String)>,
    /// In arrival order: (model index and request id, the prediction).
    pending: Vec<(Vec<u8>, Pending)>,
    tallies: Vec<((u32, i64), Tally)>,
    waiting: Vec<Label>,
    totals: LabelTotals,
    /// Each model's name and classes, by the index its join keys carry.
    models: Vec<(String, Vec<String>)>,
}

/// What the labels' reader thread hands on: a poll and, for a batch, each record
/// decoded (on the reader thread, off the pipeline's).
type Read = Result<(Poll, Vec<Result<DecodedLabel, String>>), SourceError>;

/// A label record's time, model, request id and class.
type DecodedLabel = (i64, String, String, String);

/// Maps keyed by what the traffic sends: foldhash with a seed drawn per map (see
/// `docs/security.md`).
type Fast = foldhash::fast::RandomState;

/// The labels' reader thread's end.
struct Feed {
    rx: mpsc::Receiver<Read>,
    names: Vec<String>,
    ended: bool,
    /// How long the first windows wait for a quiet label source (`time.idle_timeout`).
    idle_timeout: std::time::Duration,
    quiet_since: Option<std::time::Instant>,
    /// Quiet for longer than that: windows no longer wait until it sends again.
    idle: bool,
    /// It has sent something: from then on a quiet poll ends a window's wait at once
    /// (only the start — joining a Kafka group — is waited out).
    sent: bool,
}

struct Inner {
    config: LabelsConfig,
    models: Vec<ModelInfo>,
    series: Vec<(usize, String)>,
    series_index: HashMap<(usize, String), u32, Fast>,
    versions_per_model: Vec<usize>,
    /// Keyed by request ids the traffic chooses: a seed drawn for the map, and a cap
    /// (`max_pending`); nothing is read in the map's order.
    pending: HashMap<Arc<[u8]>, Pending, Fast>,
    /// The keys of `pending` in arrival order, each with its prediction's time (the
    /// expiry reads it without a lookup).
    order: VecDeque<(i64, Arc<[u8]>)>,
    tallies: BTreeMap<(u32, i64), Tally>,
    /// Labels read, by (time, arrival) order.
    waiting: BTreeMap<(i64, u64), Label>,
    seq: u64,
    positions: BTreeMap<String, u64>,
    totals: LabelTotals,
    feed: Option<Feed>,
    /// The time labels have been applied up to.
    applied_to: i64,
    /// A prediction's probabilities were out of [0, 1] (said once in the log).
    warned_probs: bool,
    /// The key a label is looked up by, kept between labels (no allocation per label).
    label_key: Vec<u8>,
}

/// Delayed labels: the join and the tables' state. Shared by the pipeline (which feeds
/// it) and the two tables (which read it).
pub struct Labels {
    inner: Arc<Mutex<Inner>>,
    /// Where registrations go when they are applied on their own thread (see
    /// [`Labels::register`]).
    queue: Mutex<Queue>,
}

/// The registering thread's end: started on the first registration; it ends when the
/// [`Labels`] holding its sender is dropped.
#[derive(Default)]
struct Queue {
    tx: Option<mpsc::SyncSender<Job>>,
    /// A registration was sent since the last barrier.
    dirty: bool,
}

enum Job {
    Register(RecordBatch, Vec<usize>),
    /// Answered once every registration sent before it is applied.
    Barrier(mpsc::SyncSender<()>),
}

const OTHER_VERSION: &str = "other";

impl Labels {
    /// `models` gives the classes of models configured for re-scoring; baselines with
    /// held-out performance give their per-class values.
    pub fn new(
        config: &LabelsConfig,
        models: &[crate::rescore::ModelConfig],
        baselines: &[Arc<crate::baseline::Baseline>],
    ) -> Result<Arc<Self>, String> {
        config.validate()?;
        let mut classes: BTreeMap<String, Vec<String>> = config.classes.clone();
        for m in models {
            let known = classes
                .entry(m.name.clone())
                .or_insert_with(|| m.labels.clone());
            if *known != m.labels {
                return Err(format!(
                    "labels.classes.{}: {:?} differs from the classes under models: {:?}",
                    m.name, known, m.labels
                ));
            }
        }
        if classes.is_empty() {
            return Err(
                "labels: no model has known classes; give labels.classes or models:".into(),
            );
        }
        let models = classes
            .into_iter()
            .map(|(name, classes)| {
                let index = classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect();
                let baseline = baselines
                    .iter()
                    .find(|b| b.model == name)
                    .and_then(|b| b.held_out.clone());
                ModelInfo {
                    name,
                    classes,
                    index,
                    baseline,
                }
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(Self {
            inner: Arc::new(Mutex::new(Inner::new(config.clone(), models))),
            queue: Mutex::default(),
        }))
    }

    /// No labels configured: the tables exist (rules can be checked) and stay empty.
    pub fn empty() -> Arc<Self> {
        let config = LabelsConfig::new(SourceConfig::File(
            crate::source::file::FileSourceConfig::replay(Vec::new()),
        ));
        Arc::new(Self {
            inner: Arc::new(Mutex::new(Inner::new(config, Vec::new()))),
            queue: Mutex::default(),
        })
    }

    /// Whether [`Labels::start`] was called.
    pub fn is_started(&self) -> bool {
        self.lock().feed.is_some()
    }

    /// The state, with every registration sent so far applied.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut queue = self.queue.lock().expect("labels queue lock");
        if queue.dirty
            && let Some(tx) = &queue.tx
        {
            let (done, applied) = mpsc::sync_channel(1);
            // The thread only stops when its sender is dropped, or by a panic, which
            // is passed on here as it would have been on the pipeline's thread.
            if tx.send(Job::Barrier(done)).is_err() || applied.recv().is_err() {
                panic!("the labels' registering thread failed");
            }
            queue.dirty = false;
        }
        drop(queue);
        self.inner.lock().expect("labels lock")
    }

    /// Opens the label source at the saved positions and starts reading it on its own
    /// thread (at most two batches ahead of what the pipeline took).
    pub fn start(
        &self,
        max_record_bytes: usize,
        idle_timeout: Duration,
    ) -> Result<(), SourceError> {
        let mut inner = self.lock();
        let mut source = inner.config.source.build(max_record_bytes)?;
        let names = source.partitions();
        if !inner.positions.is_empty() {
            source.resume(&inner.positions)?;
        }
        let (tx, rx) = mpsc::sync_channel(2);
        let fields = inner.config.fields.clone();
        std::thread::Builder::new()
            .name("inferwatch-labels".into())
            .spawn(move || read_labels(source, &fields, tx))
            .map_err(|e| SourceError::Kafka(format!("cannot start the label reader: {e}")))?;
        inner.feed = Some(Feed {
            rx,
            names,
            ended: false,
            idle_timeout,
            quiet_since: None,
            idle: false,
            sent: false,
        });
        Ok(())
    }

    /// Registers the accepted rows of a decoded batch (`skip`: rows that were late or
    /// refused) as predictions waiting for labels.
    ///
    /// They are applied in order on a thread of their own, off the pipeline's thread;
    /// every other use of the labels waits until those sent before it are applied, so
    /// the state is the same as if they were applied here.
    pub fn register(&self, events: &RecordBatch, skip: &[usize]) {
        let mut queue = self.queue.lock().expect("labels queue lock");
        if queue.tx.is_none() {
            let (tx, rx) = mpsc::sync_channel::<Job>(4);
            let inner = Arc::clone(&self.inner);
            let started = std::thread::Builder::new()
                .name("inferwatch-label-join".into())
                .spawn(move || {
                    for job in rx {
                        match job {
                            Job::Register(events, skip) => {
                                inner.lock().expect("labels lock").register(&events, &skip)
                            }
                            Job::Barrier(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                });
            if started.is_ok() {
                queue.tx = Some(tx);
            }
        }
        match &queue.tx {
            Some(tx) => {
                if tx
                    .send(Job::Register(events.clone(), skip.to_vec()))
                    .is_err()
                {
                    panic!("the labels' registering thread failed");
                }
                queue.dirty = true;
            }
            // Without a thread, here.
            None => {
                drop(queue);
                self.lock().register(events, skip);
            }
        }
    }

    /// Applies every label of time < `t` (reading on as needed), expires predictions past
    /// the horizon, and returns the dead letters.
    pub fn advance_to(&self, t: i64) -> Result<Vec<DeadLabel>, SourceError> {
        let mut inner = self.lock();
        inner.advance_to(t, true)
    }

    /// End of input: reads and applies every remaining label, expiring nothing.
    pub fn drain(&self) -> Result<Vec<DeadLabel>, SourceError> {
        let mut inner = self.lock();
        inner.advance_to(i64::MAX, false)
    }

    pub fn totals(&self) -> LabelTotals {
        let inner = self.lock();
        inner.current_totals()
    }

    /// The state for a checkpoint, encoded (postcard) straight from the live state:
    /// no copy of the waiting predictions is made.
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        let inner = self.lock();
        let series: Vec<(&str, &str)> = inner
            .series
            .iter()
            .map(|(m, v)| (inner.models[*m].name.as_str(), v.as_str()))
            .collect();
        let pending: Vec<(&[u8], &Pending)> = inner
            .order
            .iter()
            .filter_map(|(_, k)| inner.pending.get(k).map(|p| (&k[..], p)))
            .collect();
        let tallies: Vec<(&(u32, i64), &Tally)> = inner.tallies.iter().collect();
        let waiting: Vec<&Label> = inner.waiting.values().collect();
        let models: Vec<(&str, &[String])> = inner
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.classes.as_slice()))
            .collect();
        // The fields of `LabelsState`, in its order.
        let view = (
            &inner.positions,
            series,
            pending,
            tallies,
            waiting,
            inner.current_totals(),
            models,
        );
        postcard::to_extend(&view, Vec::new()).map_err(|e| format!("labels: {e}"))
    }

    /// Decodes what [`Labels::snapshot`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<LabelsState, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("labels: {e}"))
    }

    /// Takes a checkpoint's state (before [`Labels::start`]). Series of models no longer
    /// configured are dropped with their predictions.
    pub fn restore(&self, state: LabelsState) {
        let mut inner = self.lock();
        // A saved model keeps its state only if it is still configured with the same
        // classes (its tallies and probabilities are sized and ordered by them); its
        // join keys carry its index of then, mapped to today's.
        let model_now: Vec<Option<usize>> = state
            .models
            .iter()
            .map(|(name, classes)| {
                inner
                    .models
                    .iter()
                    .position(|m| &m.name == name && &m.classes == classes)
            })
            .collect();
        let mut map = Vec::with_capacity(state.series.len());
        for (model, version) in &state.series {
            let now = state
                .models
                .iter()
                .position(|(name, _)| name == model)
                .and_then(|i| model_now[i]);
            map.push(now.map(|m| inner.series_of(m, version)));
        }
        for (mut key, mut p) in state.pending {
            let Some(Some(s)) = map.get(p.series as usize) else {
                continue;
            };
            let Some(m) = inner.series.get(*s as usize).map(|(m, _)| *m) else {
                continue;
            };
            if key.len() < 2 {
                continue;
            }
            key[..2].copy_from_slice(&(m as u16).to_le_bytes());
            p.series = *s;
            let key: Arc<[u8]> = key.into();
            inner.order.push_back((p.ts, key.clone()));
            inner.pending.insert(key, p);
        }
        for ((s, minute), t) in state.tallies {
            if let Some(Some(s)) = map.get(s as usize) {
                inner.tallies.insert((*s, minute), t);
            }
        }
        for l in state.waiting {
            let seq = inner.seq;
            inner.seq += 1;
            inner.waiting.insert((l.ts, seq), l);
        }
        inner.positions = state.positions;
        inner.totals = state.totals;
    }
}

/// The reader thread: polls the label source, decodes the records of each batch, and
/// hands on what it gives until the pipeline stops listening or the input ends.
fn read_labels(mut source: Box<dyn Source>, fields: &LabelFields, tx: mpsc::SyncSender<Read>) {
    loop {
        let p = source.poll().map(|p| {
            let decoded = match &p {
                Poll::Batch(raw) => (0..raw.len())
                    .map(|i| decode_label(raw.record(i), fields))
                    .collect(),
                _ => Vec::new(),
            };
            (p, decoded)
        });
        let stop = matches!(p, Ok((Poll::End, _)) | Err(_));
        if tx.send(p).is_err() || stop {
            return;
        }
    }
}

impl Inner {
    fn new(config: LabelsConfig, models: Vec<ModelInfo>) -> Self {
        let n = models.len();
        Self {
            config,
            models,
            series: Vec::new(),
            series_index: HashMap::default(),
            versions_per_model: vec![0; n],
            pending: HashMap::default(),
            order: VecDeque::new(),
            tallies: BTreeMap::new(),
            waiting: BTreeMap::new(),
            seq: 0,
            positions: BTreeMap::new(),
            totals: LabelTotals::default(),
            feed: None,
            applied_to: i64::MIN,
            warned_probs: false,
            label_key: Vec::new(),
        }
    }

    fn current_totals(&self) -> LabelTotals {
        LabelTotals {
            pending: self.pending.len() as u64,
            waiting: self.waiting.len() as u64,
            ..self.totals
        }
    }

    /// The series of a model and version (versions past `max_versions` share one).
    fn series_of(&mut self, model: usize, version: &str) -> u32 {
        if let Some(&s) = self.series_index.get(&(model, version.to_owned())) {
            return s;
        }
        let version = if self.versions_per_model[model] >= self.config.max_versions {
            if let Some(&s) = self.series_index.get(&(model, OTHER_VERSION.to_owned())) {
                return s;
            }
            OTHER_VERSION.to_owned()
        } else {
            self.versions_per_model[model] += 1;
            version.to_owned()
        };
        let s = self.series.len() as u32;
        self.series.push((model, version.clone()));
        self.series_index.insert((model, version), s);
        s
    }

    fn register(&mut self, events: &RecordBatch, skip: &[usize]) {
        let col = |name: &str| events.column_by_name(name);
        let (Some(ts), Some(rid), Some(model)) = (col("ts"), col("request_id"), col("model"))
        else {
            return;
        };
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let rid = rid.as_string::<i32>();
        let model = model.as_string::<i32>();
        let version = col("model_version").map(|c| c.as_string::<i32>());
        let label = col("prediction_label").map(|c| c.as_string::<i32>());
        let probs = col("probs").map(|c| c.as_list::<i32>());
        let prob_values = probs.and_then(|l| l.values().as_primitive_opt::<Float64Type>());
        let mut skip = skip.iter().copied().peekable();
        // Consecutive records mostly share their model and series: no lookup for those.
        let mut last_model: Option<(String, Option<usize>)> = None;
        let mut last: Option<(usize, String, u32)> = None;
        let mut key = Vec::with_capacity(64);
        for row in 0..events.num_rows() {
            if skip.peek() == Some(&row) {
                skip.next();
                continue;
            }
            if rid.is_null(row) || model.is_null(row) {
                continue;
            }
            let name = model.value(row);
            let m = match &last_model {
                Some((n, m)) if n == name => *m,
                _ => {
                    let m = self.models.iter().position(|m| m.name == name);
                    last_model = Some((name.to_owned(), m));
                    m
                }
            };
            let Some(m) = m else {
                continue;
            };
            let k = self.models[m].classes.len();
            // Kept only when they are probabilities (a little slack for a model's
            // rounding): a sender's 1e300 would make every estimate of its series
            // infinite, and scores of another kind (logits) estimate nothing. Their
            // largest still names the answer of a record without a label.
            let mut top_of_scores = None;
            let p: Option<Box<[f32]>> = probs.filter(|l| l.is_valid(row)).and_then(|l| {
                // Through the offsets: `l.value(row)` would allocate a slice per row.
                let values = prob_values?;
                let offsets = l.value_offsets();
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                let v = &values.values()[from..to];
                let nulls = values
                    .nulls()
                    .is_some_and(|n| (from..to).any(|i| n.is_null(i)));
                if v.len() != k || nulls || !v.iter().all(|x| x.is_finite()) {
                    return None;
                }
                let scores: Box<[f32]> = v.iter().map(|&x| x as f32).collect();
                if v.iter().all(|x| (-1e-6..=1.0 + 1e-6).contains(x)) {
                    return Some(scores);
                }
                top_of_scores = Some(crate::rescore::top_class(&scores));
                None
            });
            if top_of_scores.is_some() {
                self.totals.probs_out_of_range += 1;
                if !self.warned_probs {
                    self.warned_probs = true;
                    tracing::warn!(
                        model = %self.models[m].name,
                        "prediction.probs outside [0, 1]: those predictions join without probabilities (no confidence estimates, log loss or calibration from them); counted in inferwatch_label_predictions_total{{outcome=\"probs_out_of_range\"}}"
                    );
                }
            }
            let predicted = match label.filter(|l| l.is_valid(row)) {
                Some(l) => self.models[m].index.get(l.value(row)).copied().unwrap_or(k),
                None => match (&p, top_of_scores) {
                    (Some(p), _) => crate::rescore::top_class(p),
                    (None, Some(top)) => top,
                    (None, None) => continue,
                },
            };
            let v = version
                .filter(|v| v.is_valid(row))
                .map(|v| v.value(row))
                .unwrap_or("");
            let series = match &last {
                Some((lm, lv, s)) if *lm == m && lv == v => *s,
                _ => {
                    let s = self.series_of(m, v);
                    last = Some((m, v.to_owned(), s));
                    s
                }
            };
            key_into(&mut key, m, rid.value(row));
            // Full: the oldest makes room, unless this one is a duplicate (it takes
            // none). Then one lookup finds a duplicate or the place of a new one.
            if self.pending.len() >= self.config.max_pending && !self.pending.contains_key(&key[..])
            {
                self.evict_oldest();
            }
            let std::collections::hash_map::Entry::Vacant(slot) =
                self.pending.entry(Arc::from(&key[..]))
            else {
                self.totals.duplicate_predictions += 1;
                continue;
            };
            let t = ts.value(row);
            self.tallies
                .entry((series, t.div_euclid(MINUTE)))
                .or_insert_with(|| Tally::new(k))
                .predict(predicted, p.as_deref());
            self.order.push_back((t, slot.key().clone()));
            slot.insert(Pending {
                ts: t,
                series,
                predicted: predicted as u16,
                labelled: false,
                probs: p,
            });
            self.totals.predictions += 1;
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, k)) = self.order.pop_front()
            && let Some(p) = self.pending.remove(&k)
            && !p.labelled
        {
            self.totals.evicted += 1;
        }
    }

    fn advance_to(&mut self, t: i64, expire: bool) -> Result<Vec<DeadLabel>, SourceError> {
        let mut dead = Vec::new();
        if t <= self.applied_to {
            return Ok(dead);
        }
        let horizon = self.config.horizon.as_millis() as i64;
        let read_ahead = (self.config.max_waiting / 2).max(1);
        loop {
            while let Some(entry) = self.waiting.first_entry() {
                if entry.key().0 >= t {
                    break;
                }
                let label = entry.remove();
                if let Some(d) = self.apply(label) {
                    dead.push(d);
                }
            }
            // Read on until a label at or after `t` shows the source has passed it (one
            // beyond the horizon does not count: a stray far-future time must not stop
            // the reading), within the read-ahead bound.
            let passed = t != i64::MAX
                && self
                    .waiting
                    .range((t, 0)..(t.saturating_add(horizon), 0))
                    .next()
                    .is_some();
            if !passed && self.waiting.len() >= read_ahead {
                // Full of labels beyond the horizon: none can join before the
                // predictions get there, and they must not stop the reading.
                while self.waiting.len() >= (read_ahead / 2).max(1) {
                    let (_, l) = self.waiting.pop_last().expect("waiting labels");
                    self.totals.ahead += 1;
                    dead.push(dead_label(
                        &l,
                        "label too far ahead of the predictions (past labels.horizon, with labels.max_waiting / 2 waiting)",
                    ));
                }
            }
            if passed || self.waiting.len() >= read_ahead || !self.read_more(&mut dead, expire)? {
                break;
            }
        }
        while self.waiting.len() > self.config.max_waiting {
            let (_, l) = self.waiting.pop_last().expect("more than max_waiting");
            self.totals.ahead += 1;
            dead.push(dead_label(
                &l,
                "label read too far ahead of the predictions (over labels.max_waiting)",
            ));
        }
        if expire {
            let horizon = self.config.horizon.as_millis() as i64;
            let cutoff = t.saturating_sub(horizon);
            while self.order.front().is_some_and(|(ts, _)| *ts < cutoff) {
                let (_, k) = self.order.pop_front().expect("front");
                if let Some(p) = self.pending.remove(&k) {
                    self.totals.expired += u64::from(!p.labelled);
                }
            }
            let keep = (self.config.window + self.config.reference).as_millis() as i64 + MINUTE;
            let oldest = t.saturating_sub(keep).div_euclid(MINUTE);
            self.tallies.retain(|&(_, m), _| m >= oldest);
        }
        self.applied_to = t;
        Ok(dead)
    }

    /// Takes the next poll of the label source into `waiting`. False when there is
    /// nothing more for now: the input ended, or the source is quiet — at the start
    /// (`patient`) only after `time.idle_timeout`, so that joining a Kafka group is
    /// waited out; later at once, so a sparse label stream never holds the pipeline
    /// up (its labels are applied at a later window).
    fn read_more(&mut self, dead: &mut Vec<DeadLabel>, patient: bool) -> Result<bool, SourceError> {
        let Some(feed) = self.feed.as_mut() else {
            return Ok(false);
        };
        if feed.ended {
            return Ok(false);
        }
        let (poll, decoded) = if feed.idle {
            match feed.rx.try_recv() {
                Ok(p) => p?,
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => (Poll::End, Vec::new()),
            }
        } else {
            match feed.rx.recv() {
                Ok(p) => p?,
                Err(_) => (Poll::End, Vec::new()),
            }
        };
        if let Poll::Idle | Poll::Waiting(_) = poll {
            if !patient || feed.idle || feed.sent {
                return Ok(false);
            }
            let since = *feed.quiet_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= feed.idle_timeout {
                tracing::info!(
                    "the label source is quiet: windows no longer wait for its labels until it sends again"
                );
                feed.idle = true;
                return Ok(false);
            }
            return Ok(true);
        }
        feed.quiet_since = None;
        if matches!(poll, Poll::Batch(_)) {
            feed.sent = true;
        }
        if feed.idle {
            tracing::info!("the label source sends again");
            feed.idle = false;
        }
        match poll {
            Poll::Batch(raw) => {
                let name = feed.names.get(raw.partition).cloned().unwrap_or_default();
                for o in &raw.oversized {
                    self.totals.read += 1;
                    self.totals.malformed += 1;
                    dead.push(DeadLabel {
                        source: format!("labels:{name}"),
                        position: o.position,
                        reason: format!("label record of {} bytes is too big", o.len),
                        raw: o.head.clone(),
                    });
                }
                for (i, label) in decoded.into_iter().enumerate() {
                    self.totals.read += 1;
                    match label {
                        Ok((ts, model, request_id, class)) => {
                            let seq = self.seq;
                            self.seq += 1;
                            self.waiting.insert(
                                (ts, seq),
                                Label {
                                    ts,
                                    model,
                                    request_id,
                                    class,
                                    source: name.clone(),
                                    position: raw.positions[i],
                                },
                            );
                        }
                        Err(why) => {
                            self.totals.malformed += 1;
                            dead.push(DeadLabel {
                                source: format!("labels:{name}"),
                                position: raw.positions[i],
                                reason: format!("malformed label: {why}"),
                                raw: raw.record(i).to_vec(),
                            });
                        }
                    }
                }
                self.positions.insert(name, raw.resume_at);
                Ok(true)
            }
            Poll::Added(pid, name) => {
                if feed.names.len() <= pid {
                    feed.names.resize(pid + 1, String::new());
                }
                feed.names[pid] = name;
                Ok(true)
            }
            Poll::Removed(_) | Poll::PartitionDone(_) => Ok(true),
            Poll::End => {
                feed.ended = true;
                Ok(false)
            }
            Poll::Idle | Poll::Waiting(_) => Ok(false),
        }
    }

    /// Joins a label to its prediction, or says why it cannot be.
    fn apply(&mut self, l: Label) -> Option<DeadLabel> {
        let Some(m) = self.models.iter().position(|m| m.name == l.model) else {
            self.totals.unknown_model += 1;
            return Some(dead_label(&l, "label for a model without known classes"));
        };
        let Some(&truth) = self.models[m].index.get(&l.class) else {
            self.totals.unknown_class += 1;
            return Some(dead_label(&l, "label is not one of the model's classes"));
        };
        let horizon = self.config.horizon.as_millis() as i64;
        key_into(&mut self.label_key, m, &l.request_id);
        let Some(p) = self.pending.get_mut(&self.label_key[..]) else {
            self.totals.no_prediction += 1;
            return Some(dead_label(
                &l,
                "no prediction with this request_id and model waits for a label (never seen, or past labels.horizon)",
            ));
        };
        if p.labelled {
            self.totals.duplicate += 1;
            return Some(dead_label(&l, "duplicate label: the prediction has one"));
        }
        if l.ts.saturating_sub(p.ts) > horizon {
            self.totals.too_late += 1;
            return Some(dead_label(&l, "label arrived after labels.horizon"));
        }
        p.labelled = true;
        if let Some(tally) = self.tallies.get_mut(&(p.series, p.ts.div_euclid(MINUTE))) {
            tally.label(truth, p.predicted as usize, p.probs.as_deref());
        }
        self.totals.joined += 1;
        None
    }
}

fn dead_label(l: &Label, reason: &str) -> DeadLabel {
    let raw = serde_json::json!({
        "request_id": l.request_id,
        "ts": crate::time::rfc3339(l.ts),
        "model": l.model,
        "label": l.class,
    });
    DeadLabel {
        source: format!("labels:{}", l.source),
        position: l.position,
        reason: reason.to_owned(),
        raw: raw.to_string().into_bytes(),
    }
}

/// Request ids longer than this are kept as their SHA-256: the sender chooses them, and
/// a million waiting predictions must not hold a million long ids.
const MAX_KEY_ID: usize = 64;

/// The join key, into `key`: the model's index, then the request id (tag 0) or, for a
/// long one, its SHA-256 (tag 1).
fn key_into(key: &mut Vec<u8>, model: usize, request_id: &str) {
    use sha2::{Digest, Sha256};
    key.clear();
    key.extend_from_slice(&(model as u16).to_le_bytes());
    if request_id.len() <= MAX_KEY_ID {
        key.push(0);
        key.extend_from_slice(request_id.as_bytes());
    } else {
        key.push(1);
        key.extend_from_slice(&Sha256::digest(request_id.as_bytes()));
    }
}

/// Longest request id, model or class name a label may carry.
const MAX_TEXT: usize = 1024;

/// A label record's time (RFC 3339 or epoch milliseconds), model, request id and class
/// (a string, or a number or boolean written as JSON writes it).
fn decode_label(bytes: &[u8], f: &LabelFields) -> Result<DecodedLabel, String> {
    if let Some(label) = flat::decode(bytes, f) {
        return Ok(label);
    }
    decode_label_value(bytes, f)
}

/// [`decode_label`] through a `serde_json::Value` of the whole record: any paths, and
/// the reasons a record is refused.
fn decode_label_value(bytes: &[u8], f: &LabelFields) -> Result<DecodedLabel, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let get = |path: &str| -> Result<&serde_json::Value, String> {
        path.split('.')
            .try_fold(&v, |v, k| v.get(k))
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("no {path:?}"))
    };
    let text = |path: &str| -> Result<String, String> {
        let s = match get(path)? {
            serde_json::Value::String(s) => s.clone(),
            n @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => n.to_string(),
            _ => return Err(format!("{path:?} is not a string")),
        };
        if s.len() > MAX_TEXT {
            return Err(format!("{path:?} is longer than {MAX_TEXT} bytes"));
        }
        Ok(s)
    };
    let ts = match get(&f.ts)? {
        serde_json::Value::String(s) => crate::time::parse_rfc3339(&f.ts, s)?,
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{:?} is not whole milliseconds", f.ts))?,
        _ => return Err(format!("{:?} is not a time", f.ts)),
    };
    Ok((ts, text(&f.model)?, text(&f.request_id)?, text(&f.label)?))
}

/// Label records whose fields are top-level keys (the default paths), read in one pass
/// with their strings borrowed, without a `Value` tree (a map and its strings allocated
/// per label). Gives a label only when it is certain [`decode_label_value`]
/// gives the same; anything else (a dotted path, an escaped key, a missing, null or
/// nested field, a bad time, a long text) goes there for its reason.
mod flat {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    use super::{DecodedLabel, LabelFields, MAX_TEXT};

    /// A wanted field's value, as far as a label needs it.
    #[derive(Clone)]
    enum Field<'a> {
        Text(Cow<'a, str>),
        Number(serde_json::Number),
        Bool(bool),
        /// Null, an object or an array: never a label's field.
        Other,
    }

    pub(super) fn decode(bytes: &[u8], f: &LabelFields) -> Option<DecodedLabel> {
        let keys = [&f.ts, &f.model, &f.request_id, &f.label].map(String::as_str);
        if keys.iter().any(|k| k.contains('.')) {
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let [ts, model, request_id, label] = Wanted(keys).deserialize(&mut de).ok()?;
        de.end().ok()?;
        let ts = match ts? {
            Field::Text(s) => crate::time::parse_rfc3339(&f.ts, &s).ok()?,
            Field::Number(n) => n.as_i64()?,
            _ => return None,
        };
        Some((ts, text(model?)?, text(request_id?)?, text(label?)?))
    }

    /// A string as it is; a number or boolean as JSON writes it.
    fn text(field: Field<'_>) -> Option<String> {
        let s = match field {
            Field::Text(s) => s.into_owned(),
            Field::Number(n) => serde_json::Value::Number(n).to_string(),
            Field::Bool(b) => serde_json::Value::Bool(b).to_string(),
            Field::Other => return None,
        };
        (s.len() <= MAX_TEXT).then_some(s)
    }

    /// The values of the four keys in a record (the last of a repeated key, as a map
    /// keeps it); other keys are skipped unread.
    struct Wanted<'k>([&'k str; 4]);

    impl<'de> DeserializeSeed<'de> for Wanted<'_> {
        type Value = [Option<Field<'de>>; 4];
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Wanted<'_> {
        type Value = [Option<Field<'de>>; 4];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a label record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found: [Option<Field<'de>>; 4] = Default::default();
            // An escaped key cannot be borrowed: an error here, the record goes the
            // long way.
            while let Some(key) = map.next_key::<&'de str>()? {
                if !self.0.contains(&key) {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                let value = map.next_value_seed(AnyField)?;
                for (slot, wanted) in found.iter_mut().zip(self.0) {
                    if wanted == key {
                        *slot = Some(value.clone());
                    }
                }
            }
            Ok(found)
        }
    }

    struct AnyField;

    impl<'de> DeserializeSeed<'de> for AnyField {
        type Value = Field<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for AnyField {
        type Value = Field<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(Field::Text(Cow::Borrowed(s)))
        }
        fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Field::Text(Cow::Owned(s.to_owned())))
        }
        fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
            Ok(Field::Text(Cow::Owned(s)))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Field::Number(n.into()))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Field::Number(n.into()))
        }
        fn visit_f64<E>(self, x: f64) -> Result<Self::Value, E> {
            Ok(serde_json::Number::from_f64(x).map_or(Field::Other, Field::Number))
        }
        fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Field::Bool(b))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Field::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Field::Other)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Field::Other)
        }
    }
}

#[cfg(test)]
mod tests;
