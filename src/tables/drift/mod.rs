//! Data and prediction drift: the `feature_drift` and `prediction_drift` tables.
//!
//! For each closed window and each model, every declared feature (and the model's
//! outputs: `label`, `score`) is compared with the model's baseline when it has one,
//! else with the model's part of the rolling **reference** (`tables::reference`, shared
//! with the client statistics): a deterministic sample of the previous windows, so
//! replay and Kafka under any partitioning see the same reference.
//!
//! The test per column follows the peers' default (Evidently): with a reference of at
//! most `small_reference` values, numeric columns with more than 5 distinct reference
//! values get the two-sample KS test, others χ² (more than 2 categories) or the
//! two-proportion Z-test (2 categories), drifted when p < `p_value`; with a larger
//! reference, effect sizes instead of tests (large samples make every p-value tiny):
//! Wasserstein distance in reference standard deviations for numbers, Jensen–Shannon
//! distance for categories, drifted at ≥ `distance`. `features:` overrides the test and
//! threshold per feature. PSI, JS distance and Wasserstein are reported for every row
//! whatever the test (Wasserstein null for categories).
//!
//! A row needs at least `min_current` values in the window and `min_reference` in the
//! reference; otherwise there is no row (a quiet model is not a drifting one, and a
//! reference of a few hundred values gives a p-value test false alarms at its full
//! 5 %: with the defaults — 256 records a window, 1,000 needed — the rolling reference
//! is past `small_reference` when rows start, so the defaults are distances; the
//! p-value tests serve small references set by `min_reference` or `features:`).
//!
//! `label_shares` has, per model and label, its share of the window's labelled
//! predictions and of the reference's: a collapse of one label's share (the flagged
//! class vanishing, as when evasion succeeds at scale) shows there even when the
//! distribution as a whole moves little.
//!
//! Model names come from traffic, so the models with a rolling reference are capped
//! (`reference.max_models`): a model beyond the cap is still in its windows for every
//! rule, but gets no reference, no drift rows and no metric series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::decode::{FeatureDecl, FeatureKind};
use crate::stats::drift as st;
use crate::tables::reference::{Columns, Reference, WindowSample};
use crate::tables::{DerivedTable, WindowTable};
use crate::window::ClosedWindow;

mod rolling;

/// A test a feature can be given in `drift.features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestName {
    Ks,
    Chi2,
    Z,
    Wasserstein,
    JensenShannon,
    Psi,
    Hellinger,
}

impl TestName {
    fn as_str(self) -> &'static str {
        match self {
            TestName::Ks => "ks",
            TestName::Chi2 => "chi2",
            TestName::Z => "z",
            TestName::Wasserstein => "wasserstein",
            TestName::JensenShannon => "jensen_shannon",
            TestName::Psi => "psi",
            TestName::Hellinger => "hellinger",
        }
    }
    fn is_p_value(self) -> bool {
        matches!(self, TestName::Ks | TestName::Chi2 | TestName::Z)
    }
}

/// Per feature (or output: `label`, `score`): which test, at which threshold.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureDrift {
    pub test: Option<TestName>,
    /// p-value below which (tests) or distance from which (distances) it is drifted.
    pub threshold: Option<f64>,
}

/// `drift:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Moved to `reference.windows` (still read, with a warning).
    pub reference_windows: Option<usize>,
    /// Moved to `reference.sample` (still read, with a warning).
    pub reference_sample: Option<usize>,
    /// Up to this many reference values the default is a test, above it a distance.
    pub small_reference: usize,
    /// Default p-value threshold of KS, χ² and Z.
    pub p_value: f64,
    /// Default threshold of the Wasserstein (normed) and Jensen–Shannon distances.
    pub distance: f64,
    /// Fewest values of a column in a window for it to be tested.
    pub min_current: usize,
    /// Fewest values of a column in the reference for it to be tested.
    pub min_reference: usize,
    /// A p-value test also needs an effect this large to call a column drifted: the
    /// Wasserstein distance in reference standard deviations (numbers) or the
    /// Jensen–Shannon distance (categories). Significant is not the same as large
    /// enough to matter; 0 turns the floor off.
    pub min_effect: f64,
    /// Overrides by feature name (`label`, `score` for the outputs).
    pub features: BTreeMap<String, FeatureDrift>,
    /// Moved to `reference.max_models` (still read, with a warning).
    pub max_models: Option<usize>,
    /// Control the false-discovery rate of the p-value tests across the features of a
    /// model's window (Benjamini–Hochberg): a feature is drifted when its adjusted
    /// p-value (`p_adjusted`) is under its threshold.
    pub fdr: bool,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            reference_windows: None,
            reference_sample: None,
            small_reference: 1000,
            p_value: 0.05,
            distance: 0.1,
            min_current: 30,
            min_reference: 100,
            min_effect: 0.25,
            features: BTreeMap::new(),
            max_models: None,
            fdr: true,
        }
    }
}

struct State {
    last: Option<(WindowKey, Arc<Computed>)>,
    /// The rolling reference of the last window computed.
    rolling: rolling::Rolling,
}

type WindowKey = (i64, i64, i64, i64);

struct Computed {
    features: RecordBatch,
    predictions: RecordBatch,
    shares: RecordBatch,
    /// Reference and window distributions of the drifted rows of both tables.
    histograms: Vec<Histogram>,
}

/// Bins of a histogram a report draws.
const HISTOGRAM_BINS: usize = 20;
/// Categories a histogram shows; the rest are one bar, `(other)`.
const HISTOGRAM_CATEGORIES: usize = 12;

/// A drifted row's two distributions side by side: the reference's and the window's
/// shares of the same bins (numbers: equal-width bins between the 0.5th and 99.5th
/// percentiles of both, the outermost bins holding what lies beyond; categories: the
/// largest shares, then `(other)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub feature: String,
    /// Of `prediction_drift` (the outputs), not of `feature_drift`.
    pub prediction: bool,
    /// One name per bin: its range (numbers) or its category.
    pub bins: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

impl Histogram {
    fn numeric(rv: &[f64], cv: &[f64]) -> Option<(Vec<String>, Vec<f64>, Vec<f64>)> {
        if rv.is_empty() || cv.is_empty() {
            return None;
        }
        let q = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let lo = q(rv, 0.005).min(q(cv, 0.005));
        let hi = q(rv, 0.995).max(q(cv, 0.995));
        if !(lo.is_finite() && hi.is_finite()) {
            return None;
        }
        let k = if hi > lo { HISTOGRAM_BINS } else { 1 };
        let step = (hi - lo) / k as f64;
        let edge = |i: usize| if i == k { hi } else { lo + step * i as f64 };
        // Shares of the sorted values under each inner edge, from the ends inward.
        let shares = |v: &[f64]| {
            let below = |x: f64| v.partition_point(|&y| y < x);
            let mut out = Vec::with_capacity(k);
            let mut from = 0;
            for i in 1..=k {
                let to = if i == k { v.len() } else { below(edge(i)) };
                out.push((to - from) as f64 / v.len() as f64);
                from = to;
            }
            out
        };
        let bins = (0..k)
            .map(|i| format!("{} – {}", short(edge(i)), short(edge(i + 1))))
            .collect();
        Some((bins, shares(rv), shares(cv)))
    }

    fn categorical(r: &Column, c: &Column) -> (Vec<String>, Vec<f64>, Vec<f64>) {
        let (nr, nc) = (
            r.counts.values().sum::<u64>().max(1) as f64,
            c.counts.values().sum::<u64>().max(1) as f64,
        );
        let share = |col: &Column, n: f64, k: &str| *col.counts.get(k).unwrap_or(&0) as f64 / n;
        let mut keys: Vec<(&String, f64)> = r
            .counts
            .keys()
            .chain(c.counts.keys())
            .map(|k| (k, share(r, nr, k).max(share(c, nc, k))))
            .collect();
        keys.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        keys.dedup_by(|a, b| a.0 == b.0);
        keys.truncate(HISTOGRAM_CATEGORIES);
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let mut bins: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let mut reference: Vec<f64> = keys.iter().map(|k| share(r, nr, k.0)).collect();
        let mut current: Vec<f64> = keys.iter().map(|k| share(c, nc, k.0)).collect();
        let (rest_r, rest_c) = (
            1.0 - reference.iter().sum::<f64>(),
            1.0 - current.iter().sum::<f64>(),
        );
        if rest_r > 1e-9 || rest_c > 1e-9 {
            bins.push("(other)".into());
            reference.push(rest_r.max(0.0));
            current.push(rest_c.max(0.0));
        }
        (bins, reference, current)
    }
}

/// A bin edge as a report prints it: four significant digits.
fn short(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" { "0".into() } else { s.to_owned() }
    } else {
        format!("{x:.3e}")
    }
}

/// The shared state behind `feature_drift` and `prediction_drift`.
pub struct Drift {
    cfg: DriftConfig,
    /// Per model, the reference from its baseline (`--baseline`), used instead of the
    /// rolling one.
    baselines: BTreeMap<String, BaseRef>,
    numeric: Vec<String>,
    categorical: Vec<String>,
    schema: SchemaRef,
    shares_schema: SchemaRef,
    /// The rolling reference, shared with the client statistics.
    reference: Arc<Reference>,
    state: Mutex<State>,
}

/// A model's reference from its baseline: per declared feature (None when the
/// baseline lacks it: no row), and the outputs.
struct BaseRef {
    num: Vec<Option<NumRef<'static>>>,
    cat: Vec<Option<Column>>,
    label: Option<Column>,
    score: Option<NumRef<'static>>,
}

/// A numeric reference column: sorted finite values — the rolling sample, or a
/// baseline's quantile summary standing for `n` values — with the standard deviation
/// Wasserstein is normed by, and exact value counts when a baseline has them.
struct NumRef<'a> {
    sorted: std::borrow::Cow<'a, [f64]>,
    /// What Wasserstein reads when it is not `sorted` (a baseline's
    /// [`crate::baseline::Numeric::wasserstein_points`]).
    wasserstein: Option<Vec<f64>>,
    n: u64,
    std: f64,
    counts: Option<Vec<(f64, u64)>>,
}

impl<'a> NumRef<'a> {
    /// A sample's finite values, sorted.
    fn sorted(sorted: &'a [f64]) -> Self {
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n.max(1) as f64;
        let var = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
        Self {
            sorted: sorted.into(),
            wasserstein: None,
            n: n as u64,
            std: var.sqrt(),
            counts: None,
        }
    }
}

impl NumRef<'static> {
    fn summary(s: &crate::baseline::Numeric) -> Self {
        Self {
            sorted: s.points.clone().into(),
            wasserstein: match s.wasserstein_points() {
                std::borrow::Cow::Owned(v) => Some(v),
                std::borrow::Cow::Borrowed(_) => None,
            },
            n: s.count,
            std: s.std,
            counts: s.values.clone(),
        }
    }

    fn borrowed(&self) -> NumRef<'_> {
        NumRef {
            sorted: std::borrow::Cow::Borrowed(&self.sorted),
            wasserstein: self.wasserstein.clone(),
            n: self.n,
            std: self.std,
            counts: self.counts.clone(),
        }
    }
}

impl BaseRef {
    fn new(b: &crate::baseline::Baseline, numeric: &[String], categorical: &[String]) -> Self {
        let cats = |c: &crate::baseline::Categories| {
            let mut counts = c.counts.clone();
            if c.other > 0 {
                counts.insert("(other)".into(), c.other);
            }
            Column {
                values: Vec::new(),
                counts,
                nulls: c.missing as usize,
            }
        };
        Self {
            num: numeric
                .iter()
                .map(|n| b.numeric(n).map(NumRef::summary))
                .collect(),
            cat: categorical
                .iter()
                .map(|n| b.categorical(n).map(cats))
                .collect(),
            label: b.label.as_ref().map(cats),
            score: b.score.as_ref().map(NumRef::summary),
        }
    }
}

/// Versions of one model a window's drift rows are split by; records of further
/// versions share the segment [`OTHER_VERSIONS`].
const MAX_VERSIONS: usize = 4;
const OTHER_VERSIONS: &str = "other";

/// The three tables' rows of a window.
#[derive(Default)]
struct Out {
    features: Rows,
    predictions: Rows,
    shares: ShareRows,
}

/// A column of one model in one window, or in the reference.
#[derive(Default)]
struct Column {
    values: Vec<f64>,
    counts: BTreeMap<String, u64>,
    nulls: usize,
}

/// What one model sent in a window.
#[derive(Default)]
struct ModelWindow {
    num: Vec<Column>,
    cat: Vec<Column>,
    label: Column,
    score: Column,
}

impl Drift {
    pub fn new(
        features: &[FeatureDecl],
        cfg: &DriftConfig,
        baselines: &[Arc<crate::baseline::Baseline>],
        reference: Arc<Reference>,
    ) -> Arc<Self> {
        let names = |k: FeatureKind| crate::tables::feature_names(features, k);
        let f = DataType::Float64;
        let u = DataType::UInt64;
        let s = DataType::Utf8;
        let schema = Schema::new(vec![
            Field::new("model", s.clone(), true),
            Field::new("model_version", s.clone(), true),
            Field::new("feature", s.clone(), false),
            Field::new("kind", s.clone(), false),
            Field::new("test", s, false),
            Field::new("statistic", f.clone(), true),
            Field::new("p_value", f.clone(), true),
            Field::new("p_adjusted", f.clone(), true),
            Field::new("psi", f.clone(), true),
            Field::new("js_distance", f.clone(), true),
            Field::new("wasserstein", f.clone(), true),
            Field::new("missing_share", f, false),
            Field::new("n_ref", u.clone(), false),
            Field::new("n_cur", u, false),
            Field::new("drifted", DataType::Boolean, false),
        ]);
        let shares = Schema::new(vec![
            Field::new("model", DataType::Utf8, true),
            Field::new("model_version", DataType::Utf8, true),
            Field::new("label", DataType::Utf8, false),
            Field::new("ref_share", DataType::Float64, false),
            Field::new("cur_share", DataType::Float64, false),
            Field::new("n_ref", DataType::UInt64, false),
            Field::new("n_cur", DataType::UInt64, false),
        ]);
        let (numeric, categorical) = (
            names(FeatureKind::Numerical),
            names(FeatureKind::Categorical),
        );
        Arc::new(Self {
            shares_schema: Arc::new(shares),
            cfg: cfg.clone(),
            baselines: baselines
                .iter()
                .map(|b| (b.model.clone(), BaseRef::new(b, &numeric, &categorical)))
                .collect(),
            numeric,
            categorical,
            schema: Arc::new(schema),
            reference,
            state: Mutex::new(State {
                last: None,
                rolling: rolling::Rolling::default(),
            }),
        })
    }

    /// The two tables to register with the rule engine.
    pub fn tables(self: &Arc<Self>) -> Vec<Arc<dyn WindowTable>> {
        let (f, p, l) = (self.clone(), self.clone(), self.clone());
        vec![
            // One row per model and declared feature with a reference.
            DerivedTable::of("drift", "feature_drift", self.schema.clone(), move |w| {
                Ok(f.computed(w)?.features.clone())
            }),
            // One row per model and output (`label`, `score`).
            DerivedTable::of("drift", "prediction_drift", self.schema.clone(), move |w| {
                Ok(p.computed(w)?.predictions.clone())
            }),
            // Per model and label, its share now and in the reference.
            DerivedTable::of(
                "drift",
                "label_shares",
                self.shares_schema.clone(),
                move |w| Ok(l.computed(w)?.shares.clone()),
            ),
        ]
    }

    /// The `feature_drift` rows of the last window computed (for the metrics endpoint).
    pub fn latest_features(&self) -> Option<RecordBatch> {
        let st = self.state.lock().expect("drift lock");
        st.last.as_ref().map(|(_, c)| c.features.clone())
    }

    fn computed(&self, w: &ClosedWindow) -> Result<Arc<Computed>, String> {
        let key = (w.start_ms, w.end_ms, w.spec.size_ms, w.spec.slide_ms);
        let mut st = self.state.lock().expect("drift lock");
        if let Some((_, c)) = st.last.as_ref().filter(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.compute(&mut st, w)?);
        st.last = Some((key, c.clone()));
        Ok(c)
    }

    fn compute(&self, st: &mut State, w: &ClosedWindow) -> Result<Computed, String> {
        let mut models: BTreeMap<(String, String), ModelWindow> = BTreeMap::new();
        for b in &w.batches {
            self.read_batch(b, &mut models)?;
        }
        // The rolling reference per model without a baseline: the earlier windows'
        // samples (a model with a baseline is judged against it alone).
        let earlier = self.reference.before(w.end_ms);
        st.rolling.update(&earlier, |window| self.digest(window));
        let reference = &st.rolling;
        // One segment per model and version, each against the model's reference: a
        // new version is judged on its own, not averaged with the one it replaces.
        let mut out = Out::default();
        for ((model, version), cur) in &models {
            let v = (!version.is_empty()).then(|| version.clone());
            out.features.version = v.clone();
            out.predictions.version = v.clone();
            out.shares.version = v;
            self.model_rows(&mut out, model, cur, reference.get(model));
        }
        // The reference takes this window's sample (once, whichever table is first).
        self.reference.admit(w)?;
        let mut histograms = std::mem::take(&mut out.features.histograms);
        for mut h in std::mem::take(&mut out.predictions.histograms) {
            h.prediction = true;
            histograms.push(h);
        }
        Ok(Computed {
            features: out.features.finish(self.schema.clone())?,
            predictions: out.predictions.finish(self.schema.clone())?,
            shares: out.shares.finish(self.shares_schema.clone())?,
            histograms,
        })
    }

    /// The distributions of the drifted rows of window `w` (none when its drift
    /// tables were not computed, or were computed for a later window since).
    pub fn histograms(&self, w: &ClosedWindow) -> Vec<Histogram> {
        let key = (w.start_ms, w.end_ms, w.spec.size_ms, w.spec.slide_ms);
        let st = self.state.lock().expect("drift lock");
        match st.last.as_ref().filter(|(k, _)| *k == key) {
            Some((_, c)) => c.histograms.clone(),
            None => Vec::new(),
        }
    }

    /// The threshold a row of this feature and test is judged by (a p-value for the
    /// tests, a distance otherwise).
    pub fn threshold(&self, feature: &str, test: &str) -> f64 {
        let over = self.cfg.features.get(feature).and_then(|o| o.threshold);
        let p_value = matches!(test, "ks" | "chi2" | "z");
        over.unwrap_or(if p_value {
            self.cfg.p_value
        } else {
            self.cfg.distance
        })
    }

    /// Models refused a rolling reference over `reference.max_models`.
    pub fn models_refused(&self) -> u64 {
        self.reference.models_refused()
    }

    /// The rows of one model's window against its baseline, or else its rolling
    /// reference (none without either).
    fn model_rows(
        &self,
        out: &mut Out,
        model: &str,
        cur: &ModelWindow,
        rolling: Option<&ModelWindow>,
    ) {
        let empty = Column::default();
        let (num, cat, label, score): (Vec<Option<NumRef>>, Vec<Option<&Column>>, _, _) =
            if let Some(b) = self.baselines.get(model) {
                (
                    b.num
                        .iter()
                        .map(|r| r.as_ref().map(|r| r.borrowed()))
                        .collect(),
                    b.cat.iter().map(Option::as_ref).collect(),
                    b.label.as_ref().unwrap_or(&empty),
                    b.score.as_ref().map(|r| r.borrowed()),
                )
            } else if let Some(r) = rolling {
                (
                    r.num
                        .iter()
                        .map(|c| Some(NumRef::sorted(&c.values)))
                        .collect(),
                    r.cat.iter().map(Some).collect(),
                    &r.label,
                    Some(NumRef::sorted(&r.score.values)),
                )
            } else {
                return;
            };
        let first = out.features.feature.len();
        for (j, name) in self.numeric.iter().enumerate() {
            if let Some(r) = &num[j] {
                self.numeric_row(&mut out.features, model, name, r, &cur.num[j]);
            }
        }
        for (j, name) in self.categorical.iter().enumerate() {
            if let Some(r) = cat[j] {
                self.categorical_row(&mut out.features, model, name, r, &cur.cat[j]);
            }
        }
        if self.cfg.fdr {
            out.features.control_fdr(
                first,
                |name| {
                    self.cfg
                        .features
                        .get(name)
                        .and_then(|o| o.threshold)
                        .unwrap_or(self.cfg.p_value)
                },
                self.cfg.min_effect,
            );
        }
        self.categorical_row(&mut out.predictions, model, "label", label, &cur.label);
        if let Some(r) = &score {
            self.numeric_row(&mut out.predictions, model, "score", r, &cur.score);
        }
        let n_ref: u64 = label.counts.values().sum();
        let n_cur: u64 = cur.label.counts.values().sum();
        if n_ref == 0 || n_cur == 0 {
            return;
        }
        let mut labels: Vec<&String> = label.counts.keys().chain(cur.label.counts.keys()).collect();
        labels.sort();
        labels.dedup();
        let shares = &mut out.shares;
        for l in labels {
            let share = |c: &Column, n: u64| *c.counts.get(l).unwrap_or(&0) as f64 / n as f64;
            shares
                .model
                .push((!model.is_empty()).then(|| model.to_owned()));
            shares.model_version.push(shares.version.clone());
            shares.label.push(l.clone());
            shares.ref_share.push(share(label, n_ref));
            shares.cur_share.push(share(&cur.label, n_cur));
            shares.n_ref.push(n_ref);
            shares.n_cur.push(n_cur);
        }
    }

    /// `inferwatch baseline compare`: the `feature_drift` and `prediction_drift` rows of
    /// a whole file's columns (`current`) against the model's baseline, as one batch.
    pub fn compare_columns(
        &self,
        model: &str,
        current: &crate::baseline::Table,
        label_column: &str,
        score_column: &str,
    ) -> Result<RecordBatch, String> {
        let mut cur = self.empty_model();
        for (c, name) in cur.num.iter_mut().zip(&self.numeric) {
            current.numbers(name, |x| push_number(c, x))?;
        }
        for (c, name) in cur.cat.iter_mut().zip(&self.categorical) {
            current.strings(name, |x| push_category(c, x))?;
        }
        current.strings(label_column, |x| push_category(&mut cur.label, x))?;
        current.numbers(score_column, |x| push_number(&mut cur.score, x))?;
        let mut out = Out::default();
        self.model_rows(&mut out, model, &cur, None);
        let features = out.features.finish(self.schema.clone())?;
        let predictions = out.predictions.finish(self.schema.clone())?;
        datafusion::arrow::compute::concat_batches(&self.schema, [&features, &predictions])
            .map_err(|e| e.to_string())
    }

    /// A sampled window's columns per model without a baseline, its numbers finite
    /// and sorted: its part of the rolling reference.
    fn digest(&self, window: &WindowSample) -> BTreeMap<String, ModelWindow> {
        let mut out = BTreeMap::new();
        for (model, samples) in &window.models {
            if self.baselines.contains_key(model.as_str()) {
                continue;
            }
            let mut m = self.empty_model();
            for s in samples {
                self.add(&mut m, &s.num, &s.cat, s.label.as_deref(), s.score);
            }
            for c in m.num.iter_mut().chain(std::iter::once(&mut m.score)) {
                c.values = st::finite_sorted(&c.values);
            }
            out.insert(model.clone(), m);
        }
        out
    }

    fn empty_model(&self) -> ModelWindow {
        ModelWindow {
            num: (0..self.numeric.len()).map(|_| Column::default()).collect(),
            cat: (0..self.categorical.len())
                .map(|_| Column::default())
                .collect(),
            ..ModelWindow::default()
        }
    }

    fn add(
        &self,
        m: &mut ModelWindow,
        num: &[Option<f64>],
        cat: &[Option<String>],
        label: Option<&str>,
        score: Option<f64>,
    ) {
        for (c, v) in m.num.iter_mut().zip(num) {
            push_number(c, *v);
        }
        for (c, v) in m.cat.iter_mut().zip(cat) {
            push_category(c, v.as_deref());
        }
        push_category(&mut m.label, label);
        push_number(&mut m.score, score);
    }

    /// Adds a batch's rows to their models' columns: per run of rows of one model and
    /// version, column by column (a column without nulls is one copy).
    fn read_batch(
        &self,
        b: &RecordBatch,
        models: &mut BTreeMap<(String, String), ModelWindow>,
    ) -> Result<(), String> {
        let cols = Columns::of(b, &self.numeric, &self.categorical)?;
        fn text(a: &StringArray, row: usize) -> &str {
            if a.is_null(row) { "" } else { a.value(row) }
        }
        let mut row = 0;
        while row < b.num_rows() {
            let (name, version) = (text(cols.model, row), text(cols.version, row));
            let mut end = row + 1;
            while end < b.num_rows()
                && text(cols.model, end) == name
                && text(cols.version, end) == version
            {
                end += 1;
            }
            let mut key = (name.to_owned(), version.to_owned());
            if !models.contains_key(&key) {
                // The version is the sender's to choose: a model's first MAX_VERSIONS
                // versions of the window get segments, the rest one.
                let versions = models
                    .range((name.to_owned(), String::new())..)
                    .take_while(|((m, _), _)| m == name)
                    .count();
                if versions >= MAX_VERSIONS {
                    key.1 = OTHER_VERSIONS.to_owned();
                }
            }
            let m = models.entry(key).or_insert_with(|| self.empty_model());
            for (c, a) in m.num.iter_mut().zip(&cols.num) {
                push_numbers(c, a, row..end);
            }
            push_numbers(&mut m.score, cols.score, row..end);
            for (c, a) in m.cat.iter_mut().zip(&cols.cat) {
                for r in row..end {
                    push_category(c, (!a.is_null(r)).then(|| a.value(r)));
                }
            }
            for r in row..end {
                push_category(
                    &mut m.label,
                    (!cols.label.is_null(r)).then(|| cols.label.value(r)),
                );
            }
            row = end;
        }
        Ok(())
    }

    fn numeric_row(&self, out: &mut Rows, model: &str, name: &str, r: &NumRef, c: &Column) {
        // Sorted once; every statistic below reads the sorted finite values.
        let (rv, cv) = (&r.sorted[..], st::finite_sorted(&c.values));
        let (n_ref, n_cur) = (r.n, cv.len() as u64);
        if rv.is_empty()
            || n_ref < self.cfg.min_reference.max(1) as u64
            || n_cur < self.cfg.min_current as u64
        {
            return;
        }
        let over = self.cfg.features.get(name);
        let test = over.and_then(|o| o.test).unwrap_or_else(|| {
            match (
                n_ref <= self.cfg.small_reference as u64,
                r.counts.as_ref().map_or(st::distinct_sorted(rv), Vec::len) > 5,
            ) {
                (true, true) => TestName::Ks,
                (true, false) => TestName::Chi2,
                (false, true) => TestName::Wasserstein,
                (false, false) => TestName::JensenShannon,
            }
        });
        let shares = st::binned_shares_sorted(rv, n_ref, &cv);
        let psi = shares.as_ref().map(|(p, q)| st::psi(p, q));
        let js = shares.as_ref().map(|(p, q)| st::js_distance(p, q));
        let wasserstein = st::wasserstein_sorted(r.wasserstein.as_deref().unwrap_or(rv), &cv)
            .map(|w| w / r.std.max(0.001));
        let (statistic, p_value) = match test {
            TestName::Ks => match st::ks_2samp_summary(rv, n_ref, &cv) {
                Some((t, _)) => (Some(t.statistic), Some(t.p_value)),
                None => (None, None),
            },
            TestName::Chi2 | TestName::Z => {
                // Few distinct values: their counts, as categories.
                let (a, b) = match &r.counts {
                    Some(counts) => counted(counts, &cv),
                    None => value_counts(rv, &cv),
                };
                let t = if test == TestName::Z && a.len() == 2 {
                    st::two_proportion_z(a[0], a.iter().sum(), b[0], b.iter().sum())
                } else {
                    st::chi2_homogeneity(&a, &b)
                };
                (t.map(|t| t.statistic), t.map(|t| t.p_value))
            }
            TestName::Wasserstein => (wasserstein, None),
            TestName::JensenShannon => (js, None),
            TestName::Psi => (psi, None),
            TestName::Hellinger => (shares.as_ref().map(|(p, q)| st::hellinger(p, q)), None),
        };
        let drifted = self.drifted(name, test, statistic, p_value, wasserstein);
        if drifted && let Some((bins, reference, current)) = Histogram::numeric(rv, &cv) {
            out.histogram(model, name, bins, reference, current);
        }
        out.push(Row {
            model,
            feature: name,
            kind: "numerical",
            test,
            statistic,
            p_value,
            psi,
            js,
            wasserstein,
            missing: st::missing_share(&c.values, c.nulls),
            n_ref,
            n_cur,
            drifted,
        });
    }

    fn categorical_row(&self, out: &mut Rows, model: &str, name: &str, r: &Column, c: &Column) {
        let n_ref: u64 = r.counts.values().sum();
        let n_cur: u64 = c.counts.values().sum();
        if (n_ref as usize) < self.cfg.min_reference.max(1)
            || (n_cur as usize) < self.cfg.min_current
        {
            return;
        }
        let keys: Vec<&String> = {
            let mut k: Vec<&String> = r.counts.keys().chain(c.counts.keys()).collect();
            k.sort();
            k.dedup();
            k
        };
        let a: Vec<u64> = keys
            .iter()
            .map(|k| *r.counts.get(*k).unwrap_or(&0))
            .collect();
        let b: Vec<u64> = keys
            .iter()
            .map(|k| *c.counts.get(*k).unwrap_or(&0))
            .collect();
        let (p, q) = st::count_shares(&a, &b);
        let over = self.cfg.features.get(name);
        let test = over.and_then(|o| o.test).unwrap_or({
            match (
                n_ref as usize <= self.cfg.small_reference,
                r.counts.len() > 2,
            ) {
                (true, true) => TestName::Chi2,
                (true, false) => TestName::Z,
                (false, _) => TestName::JensenShannon,
            }
        });
        let psi = st::psi(&p, &q);
        let js = st::js_distance(&p, &q);
        let (statistic, p_value) = match test {
            TestName::Z if a.len() == 2 => {
                let t = st::two_proportion_z(a[0], n_ref, b[0], n_cur);
                (t.map(|t| t.statistic), t.map(|t| t.p_value))
            }
            TestName::Z | TestName::Chi2 | TestName::Ks => {
                let t = st::chi2_homogeneity(&a, &b);
                (t.map(|t| t.statistic), t.map(|t| t.p_value))
            }
            TestName::Psi => (Some(psi), None),
            TestName::Hellinger => (Some(st::hellinger(&p, &q)), None),
            TestName::JensenShannon | TestName::Wasserstein => (Some(js), None),
        };
        let test = match test {
            TestName::Z if a.len() != 2 => TestName::Chi2,
            TestName::Ks => TestName::Chi2,
            TestName::Wasserstein => TestName::JensenShannon,
            t => t,
        };
        let drifted = self.drifted(name, test, statistic, p_value, Some(js));
        if drifted {
            let (bins, reference, current) = Histogram::categorical(r, c);
            out.histogram(model, name, bins, reference, current);
        }
        out.push(Row {
            model,
            feature: name,
            kind: "categorical",
            test,
            statistic,
            p_value,
            psi: Some(psi),
            js: Some(js),
            wasserstein: None,
            missing: c.nulls as f64 / (n_cur as usize + c.nulls).max(1) as f64,
            n_ref,
            n_cur,
            drifted,
        });
    }

    fn drifted(
        &self,
        name: &str,
        test: TestName,
        statistic: Option<f64>,
        p_value: Option<f64>,
        effect: Option<f64>,
    ) -> bool {
        let threshold = self.cfg.features.get(name).and_then(|o| o.threshold);
        if test.is_p_value() {
            p_value.is_some_and(|p| p < threshold.unwrap_or(self.cfg.p_value))
                && effect.is_none_or(|e| e >= self.cfg.min_effect)
        } else {
            statistic.is_some_and(|s| s >= threshold.unwrap_or(self.cfg.distance))
        }
    }
}

/// One value of a number column (None: a null).
fn push_number(c: &mut Column, v: Option<f64>) {
    match v {
        Some(x) => c.values.push(x),
        None => c.nulls += 1,
    }
}

/// Rows `rows` of a number column.
fn push_numbers(c: &mut Column, a: &Float64Array, rows: std::ops::Range<usize>) {
    if a.null_count() == 0 {
        c.values.extend_from_slice(&a.values()[rows]);
    } else {
        for r in rows {
            push_number(c, (!a.is_null(r)).then(|| a.value(r)));
        }
    }
}

fn push_category(c: &mut Column, v: Option<&str>) {
    match v {
        Some(s) => match c.counts.get_mut(s) {
            Some(n) => *n += 1,
            None => {
                c.counts.insert(s.to_owned(), 1);
            }
        },
        None => c.nulls += 1,
    }
}

/// Counts of each distinct value of a baseline's exact counts or of a sample, in
/// value order.
fn counted(reference: &[(f64, u64)], b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let mut keys: Vec<f64> = reference
        .iter()
        .map(|x| x.0)
        .chain(b.iter().copied())
        .collect();
    keys.sort_unstable_by(f64::total_cmp);
    keys.dedup();
    let mut a = vec![0u64; keys.len()];
    for (x, n) in reference {
        if let Ok(i) = keys.binary_search_by(|k| k.total_cmp(x)) {
            a[i] = *n;
        }
    }
    let mut c = vec![0u64; keys.len()];
    for x in b {
        if let Ok(i) = keys.binary_search_by(|k| k.total_cmp(x)) {
            c[i] += 1;
        }
    }
    (a, c)
}

/// Counts of each distinct finite value in either sample, in value order.
fn value_counts(a: &[f64], b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let mut keys: Vec<f64> = a
        .iter()
        .chain(b)
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    keys.sort_unstable_by(f64::total_cmp);
    keys.dedup();
    let count = |v: &[f64]| -> Vec<u64> {
        let mut out = vec![0u64; keys.len()];
        for x in v.iter().filter(|x| x.is_finite()) {
            if let Ok(i) = keys.binary_search_by(|k| k.total_cmp(x)) {
                out[i] += 1;
            }
        }
        out
    };
    (count(a), count(b))
}

struct Row<'a> {
    model: &'a str,
    feature: &'a str,
    kind: &'static str,
    test: TestName,
    statistic: Option<f64>,
    p_value: Option<f64>,
    psi: Option<f64>,
    js: Option<f64>,
    wasserstein: Option<f64>,
    missing: f64,
    n_ref: u64,
    n_cur: u64,
    drifted: bool,
}

#[derive(Default)]
struct Rows {
    /// The version the rows pushed now are of (set per segment).
    version: Option<String>,
    model: Vec<Option<String>>,
    model_version: Vec<Option<String>>,
    feature: Vec<String>,
    kind: Vec<&'static str>,
    test: Vec<&'static str>,
    statistic: Vec<Option<f64>>,
    p_value: Vec<Option<f64>>,
    p_adjusted: Vec<Option<f64>>,
    psi: Vec<Option<f64>>,
    js: Vec<Option<f64>>,
    wasserstein: Vec<Option<f64>>,
    missing: Vec<f64>,
    n_ref: Vec<u64>,
    n_cur: Vec<u64>,
    drifted: Vec<bool>,
    /// Distributions of the rows drifted when pushed (false-discovery control may
    /// clear a row's flag later; a report draws only rows still drifted).
    histograms: Vec<Histogram>,
}

impl Rows {
    fn histogram(
        &mut self,
        model: &str,
        feature: &str,
        bins: Vec<String>,
        reference: Vec<f64>,
        current: Vec<f64>,
    ) {
        self.histograms.push(Histogram {
            model: (!model.is_empty()).then(|| model.to_owned()),
            model_version: self.version.clone(),
            feature: feature.to_owned(),
            prediction: false,
            bins,
            reference,
            current,
        });
    }

    /// Benjamini–Hochberg over the p-value tests of rows `from..`: each gets its
    /// adjusted p-value, and is drifted when that is under `threshold(feature)`.
    fn control_fdr(&mut self, from: usize, threshold: impl Fn(&str) -> f64, min_effect: f64) {
        let tested: Vec<usize> = (from..self.feature.len())
            .filter(|&i| self.p_value[i].is_some())
            .collect();
        let p: Vec<f64> = tested
            .iter()
            .map(|&i| self.p_value[i].unwrap_or(1.0))
            .collect();
        for (&i, q) in tested.iter().zip(st::benjamini_hochberg(&p)) {
            self.p_adjusted[i] = Some(q);
            let effect = if self.kind[i] == "numerical" {
                self.wasserstein[i]
            } else {
                self.js[i]
            };
            self.drifted[i] =
                q < threshold(&self.feature[i]) && effect.is_none_or(|e| e >= min_effect);
        }
    }

    fn push(&mut self, r: Row<'_>) {
        // Not-a-number never reaches a rule: a statistic that is not defined is null.
        let defined = |v: Option<f64>| v.filter(|x| !x.is_nan());
        self.model
            .push((!r.model.is_empty()).then(|| r.model.to_owned()));
        self.model_version.push(self.version.clone());
        self.feature.push(r.feature.to_owned());
        self.kind.push(r.kind);
        self.test.push(r.test.as_str());
        self.statistic.push(defined(r.statistic));
        self.p_value.push(defined(r.p_value));
        self.p_adjusted.push(defined(r.p_value));
        self.psi.push(defined(r.psi));
        self.js.push(defined(r.js));
        self.wasserstein.push(defined(r.wasserstein));
        self.missing.push(r.missing);
        self.n_ref.push(r.n_ref);
        self.n_cur.push(r.n_cur);
        self.drifted.push(r.drifted);
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch, String> {
        let f = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.model)),
            Arc::new(StringArray::from(self.model_version)),
            Arc::new(StringArray::from(self.feature)),
            Arc::new(StringArray::from(self.kind)),
            Arc::new(StringArray::from(self.test)),
            f(self.statistic),
            f(self.p_value),
            f(self.p_adjusted),
            f(self.psi),
            f(self.js),
            f(self.wasserstein),
            Arc::new(Float64Array::from(self.missing)),
            Arc::new(UInt64Array::from(self.n_ref)),
            Arc::new(UInt64Array::from(self.n_cur)),
            Arc::new(BooleanArray::from(self.drifted)),
        ];
        RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct ShareRows {
    version: Option<String>,
    model: Vec<Option<String>>,
    model_version: Vec<Option<String>>,
    label: Vec<String>,
    ref_share: Vec<f64>,
    cur_share: Vec<f64>,
    n_ref: Vec<u64>,
    n_cur: Vec<u64>,
}

impl ShareRows {
    fn finish(self, schema: SchemaRef) -> Result<RecordBatch, String> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.model)),
            Arc::new(StringArray::from(self.model_version)),
            Arc::new(StringArray::from(self.label)),
            Arc::new(Float64Array::from(self.ref_share)),
            Arc::new(Float64Array::from(self.cur_share)),
            Arc::new(UInt64Array::from(self.n_ref)),
            Arc::new(UInt64Array::from(self.n_cur)),
        ];
        RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
    }
}

/// A drift table with a reference of its own, set by the settings `reference:` took
/// over (tests).
#[cfg(test)]
fn drift_with(features: &[FeatureDecl], cfg: &DriftConfig) -> Arc<Drift> {
    let d = crate::tables::reference::ReferenceConfig::default();
    let rc = crate::tables::reference::ReferenceConfig {
        windows: cfg.reference_windows.unwrap_or(d.windows),
        sample: cfg.reference_sample.unwrap_or(d.sample),
        max_models: cfg.max_models.unwrap_or(d.max_models),
    };
    let reference = Reference::new(features, &rc, 0, std::iter::empty());
    Drift::new(features, cfg, &[], reference)
}

#[cfg(test)]
mod formula_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    /// Minute `minute`'s window: one record per model name in `models` (a name repeated
    /// is a busier model), each with feature `x` and a label.
    fn window_of_models(minute: i64, models: &[String]) -> ClosedWindow {
        let records: Vec<serde_json::Value> = models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::json!({
                    "request_id": format!("{minute}-{i}"), "client_id": "c", "model": m,
                    "features": {"x": i}, "prediction": {"label": "L", "score": 0.5},
                })
            })
            .collect();
        let features = vec![FeatureDecl {
            name: "x".into(),
            kind: FeatureKind::Numerical,
        }];
        crate::tables::test_support::minute_window(minute, features, &records)
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    /// Distinct models in the reference.
    fn referenced(d: &Drift) -> std::collections::BTreeSet<String> {
        d.reference
            .before(i64::MAX)
            .iter()
            .flat_map(|w| w.models.keys().cloned())
            .collect()
    }

    #[test]
    fn models_beyond_max_models_get_no_reference_and_each_is_counted_once() {
        let cfg = DriftConfig {
            max_models: Some(8),
            min_current: 1,
            min_reference: 1,
            ..DriftConfig::default()
        };
        let features = [FeatureDecl {
            name: "x".into(),
            kind: FeatureKind::Numerical,
        }];
        let d = drift_with(&features, &cfg);
        // 10,000 models of one record each, and a busy one: the busy one is kept, then
        // 7 by name.
        let mut first = names("a", 10_000);
        first.extend(std::iter::repeat_n("busy".to_owned(), 50));
        d.computed(&window_of_models(0, &first)).unwrap();
        let kept = referenced(&d);
        assert_eq!(kept.len(), 8, "{kept:?}");
        assert!(kept.contains("busy"), "{kept:?}");
        assert_eq!(d.models_refused(), 10_000 - 7);
        // The same models in the next window: the same 8 kept (their rows now), the
        // others not counted again.
        let c = d.computed(&window_of_models(1, &first)).unwrap();
        assert_eq!(referenced(&d), kept);
        let rows: std::collections::BTreeSet<String> = (0..c.features.num_rows())
            .map(|i| c.features.column(0).as_string::<i32>().value(i).to_owned())
            .collect();
        assert_eq!(rows, kept);
        assert_eq!(d.models_refused(), 10_000 - 7);
        // 5,000 new ones: no room left.
        let mut second = names("b", 5_000);
        second.push("busy".to_owned());
        d.computed(&window_of_models(2, &second)).unwrap();
        assert_eq!(referenced(&d), kept);
        assert_eq!(d.models_refused(), 10_000 - 7 + 5_000);
        // Back after a window without them: counted again.
        d.computed(&window_of_models(3, &first)).unwrap();
        assert_eq!(d.models_refused(), 2 * (10_000 - 7) + 5_000);
        assert_eq!(referenced(&d), kept);
    }

    fn row<'a>(feature: &'a str, test: TestName, p: Option<f64>, drifted: bool) -> Row<'a> {
        Row {
            model: "m",
            feature,
            kind: "numerical",
            test,
            statistic: Some(0.2),
            p_value: p,
            psi: None,
            js: None,
            wasserstein: None,
            missing: 0.0,
            n_ref: 500,
            n_cur: 100,
            drifted,
        }
    }

    #[test]
    fn false_discovery_control_keeps_chance_findings_among_many_features_quiet() {
        let mut rows = Rows::default();
        // Another model's row before: left alone.
        rows.push(row("other", TestName::Ks, Some(0.01), true));
        // Raw p under 0.05 for three of five features; a distance row in between.
        let ps = [0.01, 0.04, 0.03, 0.2, 0.5];
        let names = ["a", "b", "c", "d", "e"];
        for (name, p) in names.iter().zip(ps) {
            rows.push(row(name, TestName::Ks, Some(p), p < 0.05));
        }
        rows.push(row("w", TestName::Wasserstein, None, true));
        rows.control_fdr(1, |_| 0.05, 0.0);
        // SciPy's false_discovery_control: [0.05, 0.0667, 0.0667, 0.25, 0.5].
        assert_eq!(
            rows.drifted,
            [true, false, false, false, false, false, true]
        );
        assert!((rows.p_adjusted[1].unwrap() - 0.05).abs() < 1e-15);
        assert_eq!(rows.p_adjusted[0], Some(0.01));
        assert_eq!(rows.p_adjusted[6], None);
        // A looser threshold for one feature (drift.features) is its own.
        rows.control_fdr(1, |f| if f == "a" { 0.1 } else { 0.05 }, 0.0);
        assert_eq!(rows.drifted[1..6], [true, false, false, false, false]);
    }

    #[test]
    fn histograms_put_both_samples_on_the_same_bins() {
        // Reference in [0, 1), window in [1, 2): 20 bins of 0.0995 from 0 to 1.99 hold
        // ten values each, the reference in the first ten bins, the window in the rest.
        let r: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let c: Vec<f64> = (0..100).map(|i| 1.0 + i as f64 / 100.0).collect();
        let (bins, rs, cs) = Histogram::numeric(&r, &c).unwrap();
        assert_eq!(bins.len(), 20);
        assert_eq!(bins[0], "0 – 0.0995");
        assert_eq!(bins[19], "1.8905 – 1.99");
        for i in 0..20 {
            let (want_r, want_c) = if i < 10 { (0.1, 0.0) } else { (0.0, 0.1) };
            assert!((rs[i] - want_r).abs() < 1e-12, "bin {i}: {rs:?}");
            assert!((cs[i] - want_c).abs() < 1e-12, "bin {i}: {cs:?}");
        }
    }

    #[test]
    fn a_histogram_keeps_an_outlier_in_its_last_bin_without_stretching_the_axis() {
        // The 0.5th and 99.5th percentiles bound the bins: one value of 1e300 among 200
        // lands in the last bin and the range stays that of the rest.
        let r: Vec<f64> = (0..200).map(f64::from).collect();
        let mut c = r.clone();
        c[199] = 1e300;
        let (bins, rs, cs) = Histogram::numeric(&r, &c).unwrap();
        assert_eq!(bins.last().unwrap(), "188.15 – 198");
        assert!((rs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((cs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // 189..=198 and the outlier (11 values) are beyond the last inner edge, 188.15.
        assert!((cs[19] - 11.0 / 200.0).abs() < 1e-12, "{cs:?}");
        assert!(Histogram::numeric(&[], &c).is_none());
    }

    #[test]
    fn a_categorical_histogram_shows_the_largest_shares_then_the_rest() {
        let col = |pairs: &[(&str, u64)]| Column {
            values: Vec::new(),
            counts: pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            nulls: 0,
        };
        let mut many: Vec<(String, u64)> = (0..20).map(|i| (format!("c{i:02}"), 1)).collect();
        many.push(("big".into(), 80));
        let refs: Vec<(&str, u64)> = many.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let (bins, rs, cs) = Histogram::categorical(&col(&refs), &col(&[("new", 10)]));
        // 12 categories (the two largest, then ten of the ones-of-100 by name), and the rest.
        assert_eq!(bins.len(), HISTOGRAM_CATEGORIES + 1);
        assert_eq!(bins.last().unwrap(), "(other)");
        assert!(bins.contains(&"big".to_string()) && bins.contains(&"new".to_string()));
        let big = bins.iter().position(|b| b == "big").unwrap();
        let new = bins.iter().position(|b| b == "new").unwrap();
        assert!((rs[big] - 0.8).abs() < 1e-12 && (cs[new] - 1.0).abs() < 1e-12);
        // Ten of the twenty 1 % categories are shown; the other ten are the rest.
        assert!((rs[HISTOGRAM_CATEGORIES] - 0.10).abs() < 1e-12, "{rs:?}");
        assert!(cs[HISTOGRAM_CATEGORIES].abs() < 1e-12);
    }
}
