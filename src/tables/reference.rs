//! The rolling reference: one deterministic sample of the recent natural traffic that
//! the drift tables (`feature_drift`, `prediction_drift`, `label_shares`) and the client
//! statistics (`client_stats`, `client_profile`) both measure a window against, when a
//! model has no baseline.
//!
//! Each closed window is sampled once, whichever table sees it first: per model, the
//! `reference.sample` records with the smallest keyed hash of their request id
//! (bottom-k; the key is the state directory's secret, so a client cannot aim its
//! records into the sample), a repeated request id once, and no client more than an
//! eighth of the sample. Bottom-k samples merge — the sample of a union is the bottom-k
//! of the samples — so replay and Kafka under any partitioning see the same reference,
//! and the client statistics' reference across models is the bottom-k of the per-model
//! samples. The reference of a window is the samples of the `reference.windows`
//! windows that ended before it.
//!
//! Model names come from traffic, so the models kept are capped (`reference.max_models`):
//! the models the reference holds keep their place, new ones take the places left,
//! busiest first (ties by name); the others get no reference (their records are still
//! windowed and seen by rules), are counted (summary, `/metrics`) and the first is
//! logged. Models with a baseline are always kept.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Float64Type;
use serde::{Deserialize, Serialize};

use crate::decode::{FeatureDecl, FeatureKind};
use crate::stable_hash::{bottom_k, hash_of, keyed_hash_of, per_client_share};
use crate::window::ClosedWindow;

/// `reference:` in the config.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// Windows of earlier traffic in the reference.
    pub windows: usize,
    /// Records sampled per window and model.
    pub sample: usize,
    /// Most models (without a baseline) with a reference.
    pub max_models: usize,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        Self {
            windows: 30,
            sample: 256,
            max_models: 64,
        }
    }
}

/// One sampled record: its numeric features (None = missing), its categories, its
/// label and score, and the keys it was sampled by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The keyed hash of its request id: the sampling order.
    pub key: u64,
    /// A hash of its client id (the per-client share).
    pub client: u64,
    pub num: Vec<Option<f64>>,
    pub cat: Vec<Option<String>>,
    pub label: Option<String>,
    pub score: Option<f64>,
}

/// A model's records of a window: (key, client, (batch, row)).
type Candidates = Vec<(u64, u64, (usize, usize))>;

/// One window's sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSample {
    /// Per model, in key order.
    pub models: BTreeMap<String, Vec<Sample>>,
    /// The across-models sample as a checkpoint before format 4 kept it: its per-model
    /// samples carry no client, so the across-models one cannot be drawn from them.
    legacy_pooled: Option<Vec<Sample>>,
    /// The across-models pick, once drawn: (sample size, (model, index) per sample).
    #[serde(skip)]
    pooled_pick: Memo,
}

/// A cache that takes no part in equality or in what a checkpoint holds.
#[derive(Debug, Clone, Default)]
struct Memo(std::sync::OnceLock<(usize, Vec<(usize, usize)>)>);

impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl WindowSample {
    /// The across-models sample (what the client statistics measure against): the
    /// bottom-k of the per-model samples, with the same per-client share.
    pub fn pooled(&self, k: usize) -> Vec<&Sample> {
        if let Some(p) = &self.legacy_pooled {
            return p.iter().collect();
        }
        let lists: Vec<&Vec<Sample>> = self.models.values().collect();
        let pick = |(m, i): &(usize, usize)| &lists[*m][*i];
        if let Some((size, picked)) = self.pooled_pick.0.get()
            && *size == k
        {
            return picked.iter().map(pick).collect();
        }
        let all: Vec<(u64, u64, (usize, usize))> = lists
            .iter()
            .enumerate()
            .flat_map(|(m, l)| {
                l.iter()
                    .enumerate()
                    .map(move |(i, s)| (s.key, s.client, (m, i)))
            })
            .collect();
        let picked: Vec<(usize, usize)> = bottom_k(all, k, per_client_share(k))
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        let out = picked.iter().map(pick).collect();
        let _ = self.pooled_pick.0.set((k, picked));
        out
    }
}

/// What a checkpoint carries.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ReferenceSnapshot {
    /// Per window (its end, epoch ms), its sample; oldest first.
    windows: Vec<(i64, WindowSample)>,
    consumed_until: i64,
}

impl std::fmt::Debug for ReferenceSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReferenceSnapshot({} windows)", self.windows.len())
    }
}

/// The references of checkpoints before format 4: the drift tables' per-model samples
/// and the client statistics' across-models samples, each of the last windows, with
/// their own layouts (read, never written).
pub mod legacy {
    use super::*;

    #[derive(Clone, Deserialize)]
    pub struct DriftSample {
        key: u64,
        num: Vec<Option<f64>>,
        cat: Vec<Option<String>>,
        label: Option<String>,
        score: Option<f64>,
    }

    #[derive(Clone, Deserialize)]
    pub struct DriftSnapshot {
        windows: Vec<BTreeMap<String, Vec<DriftSample>>>,
        consumed_until: i64,
    }

    /// The client statistics' sample: NaN and "" for missing values.
    #[derive(Clone, Deserialize)]
    pub struct ClientsSample {
        pub key: u64,
        #[serde(deserialize_with = "f64_bits")]
        pub num: Vec<f64>,
        pub cat: Vec<String>,
    }

    fn f64_bits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }

    /// One reference from the two: window by window from the newest (each kept the
    /// same last windows), the drift tables' samples per model and the client
    /// statistics' across-models sample. Window ends were not kept: they are given
    /// in order, the newest at `consumed_until`.
    pub fn merge(
        drift: Option<DriftSnapshot>,
        clients: Vec<Vec<ClientsSample>>,
        clients_until: i64,
    ) -> ReferenceSnapshot {
        let (drift_windows, until) = match drift {
            Some(d) => (d.windows, d.consumed_until.max(clients_until)),
            None => (Vec::new(), clients_until),
        };
        let n = drift_windows.len().max(clients.len());
        let mut windows: Vec<WindowSample> = vec![WindowSample::default(); n];
        for (w, models) in windows
            .iter_mut()
            .rev()
            .zip(drift_windows.into_iter().rev())
        {
            w.models = models
                .into_iter()
                .map(|(m, samples)| {
                    let samples = samples
                        .into_iter()
                        .map(|s| Sample {
                            key: s.key,
                            client: 0,
                            num: s.num,
                            cat: s.cat,
                            label: s.label,
                            score: s.score,
                        })
                        .collect();
                    (m, samples)
                })
                .collect();
        }
        for (w, pooled) in windows.iter_mut().rev().zip(clients.into_iter().rev()) {
            w.legacy_pooled = Some(
                pooled
                    .into_iter()
                    .map(|s| Sample {
                        key: s.key,
                        client: 0,
                        num: s.num.iter().map(|x| (!x.is_nan()).then_some(*x)).collect(),
                        cat: s
                            .cat
                            .into_iter()
                            .map(|c| (!c.is_empty()).then_some(c))
                            .collect(),
                        label: None,
                        score: None,
                    })
                    .collect(),
            );
        }
        let n = windows.len() as i64;
        ReferenceSnapshot {
            windows: windows
                .into_iter()
                .enumerate()
                .map(|(i, w)| (until.saturating_sub(n - 1 - i as i64), w))
                .collect(),
            consumed_until: until,
        }
    }
}

struct State {
    windows: VecDeque<(i64, Arc<WindowSample>)>,
    /// Windows ending at or before this were sampled.
    consumed_until: i64,
    /// Models refused over `max_models`, in this process: each counted once per run of
    /// consecutive windows it is refused in.
    refused: u64,
    /// Hashes of the models refused in the previous window.
    refused_last: HashSet<u64>,
}

pub struct Reference {
    cfg: ReferenceConfig,
    /// Secret key of the sample's hash (from the state directory; 0 without one).
    sample_key: u64,
    numeric: Vec<String>,
    categorical: Vec<String>,
    /// Models with a baseline: always kept, not counted against `max_models`.
    with_baseline: HashSet<String>,
    state: Mutex<State>,
}

impl Reference {
    pub fn new(
        features: &[FeatureDecl],
        cfg: &ReferenceConfig,
        sample_key: u64,
        with_baseline: impl IntoIterator<Item = String>,
    ) -> Arc<Self> {
        let names = |k: FeatureKind| crate::tables::feature_names(features, k);
        Arc::new(Reference {
            cfg: cfg.clone(),
            sample_key,
            numeric: names(FeatureKind::Numerical),
            categorical: names(FeatureKind::Categorical),
            with_baseline: with_baseline.into_iter().collect(),
            state: Mutex::new(State {
                windows: VecDeque::new(),
                consumed_until: i64::MIN,
                refused: 0,
                refused_last: HashSet::new(),
            }),
        })
    }

    /// Records sampled per window and model.
    pub fn sample_size(&self) -> usize {
        self.cfg.sample
    }

    /// Samples `w` unless a window ending at or after it was sampled already (each
    /// window once, whichever table sees it first).
    pub fn admit(&self, w: &ClosedWindow) -> Result<(), String> {
        let mut st = self.state.lock().expect("reference lock");
        if w.end_ms <= st.consumed_until {
            return Ok(());
        }
        // Per model: (key, client, (batch, row)) of every record.
        let mut candidates: BTreeMap<String, Candidates> = BTreeMap::new();
        let batches: Vec<Columns> = w
            .batches
            .iter()
            .map(|b| Columns::of(b, &self.numeric, &self.categorical))
            .collect::<Result<_, _>>()?;
        for (bi, (b, cols)) in w.batches.iter().zip(&batches).enumerate() {
            for row in 0..b.num_rows() {
                let name = if cols.model.is_null(row) {
                    ""
                } else {
                    cols.model.value(row)
                };
                let key = if cols.request.is_null(row) {
                    hash_of((row, name))
                } else {
                    keyed_hash_of(self.sample_key, cols.request.value(row))
                };
                let client = if cols.client.is_null(row) {
                    0
                } else {
                    hash_of(cols.client.value(row))
                };
                if let Some(c) = candidates.get_mut(name) {
                    c.push((key, client, (bi, row)));
                } else {
                    candidates.insert(name.to_owned(), vec![(key, client, (bi, row))]);
                }
            }
        }
        self.keep_models(&mut st, &mut candidates);
        let k = self.cfg.sample;
        let mut sample = WindowSample::default();
        for (model, c) in candidates {
            let picked = bottom_k(c, k, per_client_share(k));
            let mut out = Vec::with_capacity(picked.len());
            for (key, (bi, row)) in picked {
                let cols = &batches[bi];
                out.push(Sample {
                    key,
                    client: if cols.client.is_null(row) {
                        0
                    } else {
                        hash_of(cols.client.value(row))
                    },
                    num: cols
                        .num
                        .iter()
                        .map(|a| (!a.is_null(row)).then(|| a.value(row)))
                        .collect(),
                    cat: cols
                        .cat
                        .iter()
                        .map(|a| (!a.is_null(row)).then(|| a.value(row).to_owned()))
                        .collect(),
                    label: (!cols.label.is_null(row)).then(|| cols.label.value(row).to_owned()),
                    score: (!cols.score.is_null(row)).then(|| cols.score.value(row)),
                });
            }
            sample.models.insert(model, out);
        }
        st.windows.push_back((w.end_ms, Arc::new(sample)));
        // One more than the reference holds: the newest window may be the one a second
        // table is still measuring against the windows before it.
        while st.windows.len() > self.cfg.windows.max(1) + 1 {
            st.windows.pop_front();
        }
        st.consumed_until = w.end_ms;
        Ok(())
    }

    /// The reference of the window ending at `end_ms`: the samples of the last
    /// `reference.windows` windows that ended before it, oldest first.
    pub fn before(&self, end_ms: i64) -> Vec<Arc<WindowSample>> {
        let st = self.state.lock().expect("reference lock");
        let earlier: Vec<&Arc<WindowSample>> = st
            .windows
            .iter()
            .filter(|(end, _)| *end < end_ms)
            .map(|(_, s)| s)
            .collect();
        let n = self.cfg.windows.max(1);
        earlier[earlier.len().saturating_sub(n)..]
            .iter()
            .map(|s| Arc::clone(s))
            .collect()
    }

    /// The sample of the window ending at `end_ms`, once admitted.
    pub fn of(&self, end_ms: i64) -> Option<Arc<WindowSample>> {
        let st = self.state.lock().expect("reference lock");
        st.windows
            .iter()
            .find(|(end, _)| *end == end_ms)
            .map(|(_, s)| s.clone())
    }

    /// Models refused a reference over `reference.max_models`.
    pub fn models_refused(&self) -> u64 {
        self.state.lock().expect("reference lock").refused
    }

    /// Keeps the models the reference holds and, busiest first, new ones up to
    /// `max_models`; takes the others out of `candidates` and counts them.
    fn keep_models<T>(&self, st: &mut State, candidates: &mut BTreeMap<String, Vec<T>>) {
        let learned = |m: &str| !self.with_baseline.contains(m);
        let known: HashSet<&str> = st
            .windows
            .iter()
            .flat_map(|(_, w)| w.models.keys())
            .map(String::as_str)
            .filter(|m| learned(m))
            .collect();
        let mut new: Vec<(usize, &str)> = candidates
            .iter()
            .filter(|(m, _)| learned(m) && !known.contains(m.as_str()))
            .map(|(m, c)| (c.len(), m.as_str()))
            .collect();
        let room = self.cfg.max_models.saturating_sub(known.len());
        if new.len() <= room {
            st.refused_last.clear();
            return;
        }
        new.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let refused: Vec<String> = new[room..].iter().map(|(_, m)| (*m).to_owned()).collect();
        let hashes: HashSet<u64> = refused.iter().map(|m| hash_of(m.as_str())).collect();
        let fresh = hashes.difference(&st.refused_last).count() as u64;
        if st.refused == 0 && fresh > 0 {
            let first: String = refused[0].chars().take(64).collect();
            tracing::warn!(
                max_models = self.cfg.max_models,
                refused = refused.len(),
                first = ?first,
                "reference.max_models reached: models beyond it get no rolling reference, \
                 hence no drift rows or metrics (their records are still windowed and seen \
                 by rules); raise reference.max_models if they are real models"
            );
        }
        st.refused += fresh;
        st.refused_last = hashes;
        for m in &refused {
            candidates.remove(m);
        }
    }

    pub fn snapshot(&self) -> ReferenceSnapshot {
        let st = self.state.lock().expect("reference lock");
        ReferenceSnapshot {
            windows: st
                .windows
                .iter()
                .map(|(end, s)| (*end, s.as_ref().clone()))
                .collect(),
            consumed_until: st.consumed_until,
        }
    }

    pub fn restore(&self, snap: ReferenceSnapshot) {
        let mut st = self.state.lock().expect("reference lock");
        st.windows = snap
            .windows
            .into_iter()
            .map(|(end, s)| (end, Arc::new(s)))
            .collect();
        st.consumed_until = snap.consumed_until;
    }
}

/// The `events` columns the reference and the drift tables read.
pub(super) struct Columns<'a> {
    pub request: &'a StringArray,
    pub client: &'a StringArray,
    pub model: &'a StringArray,
    pub version: &'a StringArray,
    pub label: &'a StringArray,
    pub score: &'a Float64Array,
    pub num: Vec<&'a Float64Array>,
    pub cat: Vec<&'a StringArray>,
}

impl<'a> Columns<'a> {
    pub fn of(
        b: &'a RecordBatch,
        numeric: &[String],
        categorical: &[String],
    ) -> Result<Self, String> {
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("events has no column {name}"))
        };
        Ok(Self {
            request: col("request_id")?.as_string::<i32>(),
            client: col("client_id")?.as_string::<i32>(),
            model: col("model")?.as_string::<i32>(),
            version: col("model_version")?.as_string::<i32>(),
            label: col("prediction_label")?.as_string::<i32>(),
            score: col("prediction_score")?.as_primitive::<Float64Type>(),
            num: numeric
                .iter()
                .map(|n| col(n).map(|c| c.as_primitive::<Float64Type>()))
                .collect::<Result<_, _>>()?,
            cat: categorical
                .iter()
                .map(|n| col(n).map(|c| c.as_string::<i32>()))
                .collect::<Result<_, _>>()?,
        })
    }
}
