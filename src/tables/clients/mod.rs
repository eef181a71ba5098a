//! Per-client query statistics: the `client_stats` table (per window) and the
//! `client_profile` table (per client over a long horizon), for rules that catch model
//! extraction, probing and floods without flagging honest heavy users.
//!
//! Both are computed once per closed window, in Rust (no SQL), from the window's
//! `events` rows and a **reference** of natural traffic: a model's baseline when it has
//! one, else the rolling reference (`tables::reference`, shared with the drift tables)
//! across models — the bottom-k of its per-model samples of the previous windows; for
//! the very first window, that window's own sample.
//!
//! Definitions (n = the client's queries in the window or horizon):
//! - `qps` = n / window seconds; `latency_ms_sum` = Σ latency_ms.
//! - `distinct_input_share` = distinct feature vectors / n (exact equality of every
//!   declared feature).
//! - `near_duplicate_share` = share of queries that are not an exact repeat of an earlier
//!   query of the client but lie within `near_duplicate` radius of one of its last 16
//!   distinct inputs: the RMS distance over the standardized numeric features (same
//!   categories) under that quantile of the reference's nearest-neighbour distances
//!   (0.05: closer than 95 % of natural inputs are to their nearest natural neighbour).
//!   Looking back a fixed 16 inputs keeps the share of natural traffic independent of
//!   the client's volume (a look-back over all earlier inputs would grow with it, as in
//!   the birthday problem). The default rule compares each client with the median one.
//! - `ood_share` = share of queries with a numeric feature outside the reference's
//!   [0.5 %, 99.5 %] quantile range or a category the reference never saw.
//! - `atypical_share` = share of inputs farther from the typical natural row than 99 %
//!   of natural rows are (Σ z² over the numeric features, against the baseline's
//!   centre and scale, or the rolling reference's median and IQR); null when no input
//!   could be judged.
//! - `coverage_ratio` = distinct input-space cells the client touched / the number of
//!   distinct cells n natural queries are expected to touch, Σ_c 1 − (1 − p_c)^n, with
//!   cells = quartile bins of each numeric feature × category, and p_c their shares in
//!   the reference. Natural traffic ≈ 1; a client confined to a corner (a batch job for
//!   one merchant) < 1; inputs spread to cover the space (synthetic extraction) > 1.
//! - `low_confidence_share` = share with top-1 probability < `low_confidence`;
//!   `boundary_share` = share with top-1 − top-2 probability < `boundary_margin`
//!   (probabilities from `probs`, or `prediction_score` as P(positive) of two classes).
//! - `low_margin_share` = share of the client's distinct inputs (exact repeats are not
//!   counted again) whose answer's top-1 − top-2 margin is under the
//!   `low_margin_quantile` of the model's answers in the same window, each client
//!   weighing at most 20 answers there (evenly spaced in its own sorted margins), so
//!   neither a flood nor the judged client moves the quantile; null until 20 answers
//!   were judged (answers of fewer than 5 clients in a window are not judged, nor
//!   those before a restore from a checkpoint of format 5 or older). Natural
//!   clients ≈ the quantile; adversarial examples, placed just across the boundary, far
//!   more. `low_margin_p` = the binomial chance of at least that many low margins among
//!   that many inputs if each were low with the quantile's probability: small shares
//!   of few inputs are noise, the rule asks for both a large share and a small p.
//! - `label_entropy` = Shannon entropy (bits) of the labels returned to the client;
//!   `population_label_entropy` the same over every client of the model.
//! - `error_share` = share of records without a prediction label.
//! - `min_dist_w` (profile): PRADA (Juuti et al., EuroS&P 2019). Per client and
//!   predicted class, each new query's minimum L2 distance (numeric features in reference
//!   standard deviations, +1 per differing category) to the client's earlier queries of
//!   that class (the first `prada_points` of them); exact repeats (distance 0) are left
//!   out; W = Shapiro–Wilk W of the distances (at most the first `prada_distances`),
//!   null below 20, recomputed each time their count has grown by 5 % (or reached the
//!   cap) — between, it is the W of the count it was last computed at.
//!
//! The profile horizon is tumbling per client: it starts at the client's first query
//! and restarts `horizon` later. Clients idle for `horizon` are evicted; when the
//! profiles' estimated memory passes `max_memory`, the least recently seen are evicted
//! (counted, logged). Sets inside a profile are capped (`profile_set_cap`): beyond it
//! new inputs are still counted, but distinct counts stop growing (stated in docs/clients.md).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::CompactString;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use statrs::distribution::{Binomial, DiscreteCDF};

use crate::baseline::squared_distance;
use crate::decode::{FeatureDecl, FeatureKind, ts_type};
use crate::stable_hash::{hash_of, keyed_hash_of};
use crate::stats::{entropy_bits, grid_cell, quantile, royston_coefficients, shapiro_wilk_with};
use crate::tables::reference::{Sample as SharedSample, WindowSample};
use crate::tables::{DerivedTable, WindowTable};
use crate::telemetry::ClientsUsage;
use crate::window::ClosedWindow;
use points::{Points, Recent};

mod points;

/// `clients:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// Long horizon of `client_profile` (and idle eviction).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub horizon: Duration,
    /// Estimated memory of all profiles; beyond it the least recently seen are evicted.
    pub max_memory: u64,
    /// Top-1 probability under this is low confidence.
    pub low_confidence: f64,
    /// Top-1 minus top-2 probability under this is at the decision boundary.
    pub boundary_margin: f64,
    /// An answer is a low-margin answer when its top-1 − top-2 margin is under this
    /// quantile of the margins of the model's answers in the same window, each client
    /// weighing at most `MARGIN_POINTS` answers (0.1: less sure than 90 % of answers).
    pub low_margin_quantile: f64,
    /// A near-duplicate lies closer to one of the client's recent inputs than this
    /// quantile of the reference's nearest-neighbour distances (0.05: closer than 95 %
    /// of natural inputs are to their nearest natural neighbour).
    pub near_duplicate: f64,
    /// Moved to `reference.windows` (still read, with a warning).
    pub reference_windows: Option<usize>,
    /// Moved to `reference.sample` (still read, with a warning).
    pub reference_sample: Option<usize>,
    /// Earlier queries per client and class that PRADA distances are measured to.
    pub prada_points: usize,
    /// Distances per client that W is computed on.
    pub prada_distances: usize,
    /// Cap of each distinct-value set in a profile.
    pub profile_set_cap: usize,
    /// Secret key of the hash that orders a client's records of one event time (from
    /// the state directory; 0 without one).
    #[serde(skip)]
    pub sample_key: SampleKey,
    /// Secret key of input identities: derived from the state directory's secret, so
    /// a restart finds its checkpoint's identities again, or random per run without one.
    #[serde(skip)]
    pub input_key: InputKey,
    /// Threads the per-client pass of a window runs on (`engine.table_threads`).
    #[serde(skip)]
    pub threads: usize,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(3600),
            max_memory: 1 << 30,
            low_confidence: 0.6,
            boundary_margin: 0.1,
            low_margin_quantile: 0.1,
            near_duplicate: 0.05,
            reference_windows: None,
            reference_sample: None,
            prada_points: 32,
            prada_distances: 2000,
            profile_set_cap: 4096,
            sample_key: SampleKey(0),
            input_key: InputKey::random(),
            threads: 1,
        }
    }
}

/// The state directory's secret (`sample.key`), as the client statistics hold it:
/// `Debug` never shows it.
#[derive(Clone, Copy, Default)]
pub struct SampleKey(pub u64);

impl std::fmt::Debug for SampleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// The secret key of input identities (SipHash-1-3). A sender who could compute
/// identities could make different inputs one, and pass its new queries off as
/// repeats. `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InputKey([u64; 2]);

impl InputKey {
    /// A key of this run alone (no checkpoint will be read back).
    pub fn random() -> Self {
        InputKey(rand::random())
    }

    /// The key for a state directory's secret: a one-way function of it, so the two
    /// uses of the secret tell nothing of each other.
    pub fn from_secret(secret: u64) -> Self {
        let derive = |label: &[u8]| {
            let mut h = SipHasher13::new_with_keys(secret, 0);
            h.write(label);
            h.finish()
        };
        InputKey([derive(b"input identity 0"), derive(b"input identity 1")])
    }

    fn hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.0[0], self.0[1])
    }

    /// A value checkpoints keep to tell whether their identities were made with this
    /// key (it says nothing of the key).
    fn check(&self) -> u64 {
        let mut h = self.hasher();
        h.write(b"key check");
        h.finish()
    }
}

impl std::fmt::Debug for InputKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

impl ClientsConfig {
    /// Quantiles inside (0, 1), thresholds that can be met.
    pub fn validate(&self) -> Result<(), String> {
        for (name, q) in [
            ("clients.low_margin_quantile", self.low_margin_quantile),
            ("clients.near_duplicate", self.near_duplicate),
        ] {
            if !(q > 0.0 && q < 1.0) {
                return Err(format!(
                    "{name} is {q}: a quantile between 0 and 1 (exclusive)"
                ));
            }
        }
        Ok(())
    }
}

/// Answers of one client that weigh in a window's margin quantile; also the judged
/// answers a `low_margin_share` needs.
const MARGIN_POINTS: usize = 20;
/// Clients a window's margin quantile needs.
const MARGIN_CLIENTS: usize = 5;

/// One record, reduced to what the statistics need.
struct Rec {
    ts: i64,
    order: u64,
    model: u32,
    client: u32,
    label: Option<u32>,
    latency: f64,
    top1: Option<f64>,
    margin: Option<f64>,
    /// Margin under the window's population quantile (None: not judged).
    low_margin: Option<bool>,
    /// Where its features are in the window's [`Features`].
    row: usize,
    /// The input's identity: a hash of every feature's value.
    input: u64,
    /// Against the reference (filled once it is known): the near-duplicate cell, the
    /// coverage cell, out of distribution.
    cell: u64,
    ood: bool,
    /// None when the reference has no typicality threshold.
    atypical: Option<bool>,
}

/// The feature values of a window's records, one flat vector per kind (record `row`'s
/// numeric features at `row * n_num ..`): no allocation per record.
#[derive(Default)]
struct Features {
    n_num: usize,
    n_cat: usize,
    /// Numeric features (NaN = missing).
    num: Vec<f64>,
    /// Categorical features as the reference's ids (u32::MAX = missing or unseen).
    cat: Vec<u32>,
    /// Numeric features in reference standard deviations.
    z: Vec<f64>,
}

impl Features {
    fn num(&self, row: usize) -> &[f64] {
        &self.num[row * self.n_num..(row + 1) * self.n_num]
    }
    fn cat(&self, row: usize) -> &[u32] {
        &self.cat[row * self.n_cat..(row + 1) * self.n_cat]
    }
    fn z(&self, row: usize) -> &[f64] {
        &self.z[row * self.n_num..(row + 1) * self.n_num]
    }
}

/// Strings seen in a window, interned: borrowed from the window's batches, not
/// copied. A hasher with a random seed per table: the strings are client ids and
/// models the traffic chooses, which must not be able to aim at one bucket; the
/// traffic never sees a hash or a table's order, so foldhash's seeding is enough (std's
/// SipHash was a twentieth of the pipeline thread's time with 100,000 clients a day).
#[derive(Default)]
struct Interner<'w> {
    ids: HashMap<Name<'w>, u32, Fast>,
    names: Vec<&'w str>,
}

/// A string of the traffic as a key: compared without a call to `memcmp` (ids and
/// model names are short; a window interns several per record).
#[derive(Clone, Copy, Hash)]
struct Name<'w>(&'w str);

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        crate::decode::same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Name<'_> {}

impl<'w> Interner<'w> {
    fn get(&mut self, s: &'w str) -> u32 {
        *self.ids.entry(Name(s)).or_insert_with(|| {
            self.names.push(s);
            self.names.len() as u32 - 1
        })
    }
}

/// Fewest reference records a typicality threshold is drawn from.
const MIN_TYPICALITY_SAMPLE: usize = 40;

/// Reference records the near-duplicate radius of the rolling reference is drawn from.
const NEAR_SAMPLE: usize = 512;

/// `Vec<Arc<T>>` (de)serialized as `Vec<T>`.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &[Arc<T>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.as_ref()))
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Arc<T>>, D::Error> {
        Ok(Vec::<T>::deserialize(d)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// What a window's statistics are measured against.
struct Reference {
    /// 0 for the rolling reference, i for the i-th baseline.
    id: usize,
    mean: Vec<f64>,
    std: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// Quartile edges per numeric feature.
    edges: Vec<[f64; 3]>,
    /// The sample's values per numeric feature, sorted (for quantile ranks).
    sorted: Vec<Vec<f64>>,
    /// Known categories per categorical feature, with their index.
    cats: Vec<HashMap<String, u32>>,
    /// Share of the reference sample in each cell.
    /// Shares of the reference sample in its cells, as (share, number of cells with
    /// that share): cells share counts, so this is far shorter than the cell list.
    cell_p: Vec<(f64, f64)>,
    /// Σ z² beyond which an input is atypical: the reference's 99th percentile (None
    /// when it cannot be known: no numeric feature, too small a sample, a baseline of
    /// an older release or of other features).
    atypical_at: Option<f64>,
    /// Centre and scale per numeric feature that typicality is measured in: a
    /// baseline's mean and standard deviation; for the rolling reference, whose sample
    /// a client may fill an eighth of, the median and the interquartile range / 1.349
    /// (robust to that share).
    typ_center: Vec<f64>,
    typ_scale: Vec<f64>,
    /// RMS distance (reference standard deviations) under which an input is a
    /// near-duplicate of another; None when it cannot be known.
    near_radius: Option<f64>,
}

impl Reference {
    fn build(samples: &[&SharedSample], n_num: usize, n_cat: usize, near_q: f64) -> Self {
        let mut r = Reference {
            id: 0,
            mean: vec![0.0; n_num],
            std: vec![1.0; n_num],
            lo: vec![f64::NEG_INFINITY; n_num],
            hi: vec![f64::INFINITY; n_num],
            edges: vec![[f64::NEG_INFINITY; 3]; n_num],
            sorted: vec![Vec::new(); n_num],
            cats: vec![HashMap::new(); n_cat],
            cell_p: Vec::new(),
            atypical_at: None,
            typ_center: vec![0.0; n_num],
            typ_scale: vec![1.0; n_num],
            near_radius: None,
        };
        // The samples' numbers, read once (sample i's at `i * n_num ..`, NaN = missing).
        let mut flat: Vec<f64> = Vec::with_capacity(samples.len() * n_num);
        for s in samples {
            flat.extend((0..n_num).map(|j| s.num.get(j).copied().flatten().unwrap_or(f64::NAN)));
        }
        let row = |i: usize| &flat[i * n_num..(i + 1) * n_num];
        let mut v: Vec<f64> = Vec::with_capacity(samples.len());
        for j in 0..n_num {
            v.clear();
            v.extend(
                flat.iter()
                    .skip(j)
                    .step_by(n_num)
                    .copied()
                    .filter(|x| x.is_finite()),
            );
            if v.is_empty() {
                continue;
            }
            crate::stats::drift::sort_floats(&mut v);
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            r.mean[j] = mean;
            r.std[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
            r.lo[j] = crate::stats::quantile(&v, 0.005);
            r.hi[j] = crate::stats::quantile(&v, 0.995);
            r.edges[j] = [
                crate::stats::quantile(&v, 0.25),
                crate::stats::quantile(&v, 0.5),
                crate::stats::quantile(&v, 0.75),
            ];
            r.sorted[j] = v.clone();
        }
        // Each sample's category ids: the index of its category in the sorted list of
        // the sample's non-empty categories (u32::MAX for a missing or empty one).
        let mut ids = vec![u32::MAX; samples.len() * n_cat];
        let mut seen: Vec<(&str, u32)> = Vec::with_capacity(samples.len());
        for (j, cats) in r.cats.iter_mut().enumerate() {
            seen.clear();
            seen.extend(samples.iter().enumerate().filter_map(|(i, s)| {
                s.cat[j]
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .map(|c| (c, i as u32))
            }));
            seen.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut last: Option<&str> = None;
            for &(c, i) in &seen {
                if last != Some(c) {
                    cats.insert(c.to_owned(), cats.len() as u32);
                    last = Some(c);
                }
                ids[i as usize * n_cat + j] = cats.len() as u32 - 1;
            }
        }
        let mut cells: HashMap<u64, u64, Fast> = HashMap::default();
        for i in 0..samples.len() {
            *cells
                .entry(r.cell(row(i), &ids[i * n_cat..(i + 1) * n_cat]))
                .or_default() += 1;
        }
        let total = samples.len().max(1) as f64;
        let mut by_count: BTreeMap<u64, u64> = BTreeMap::new();
        for &c in cells.values() {
            *by_count.entry(c).or_default() += 1;
        }
        r.cell_p = by_count
            .into_iter()
            .map(|(c, cells)| (c as f64 / total, cells as f64))
            .collect();
        for j in 0..n_num {
            let v = &r.sorted[j];
            if v.is_empty() {
                continue;
            }
            let q = |p: f64| crate::stats::quantile(v, p);
            r.typ_center[j] = q(0.5);
            let iqr = (q(0.75) - q(0.25)) / 1.349;
            r.typ_scale[j] = if iqr > 0.0 { iqr } else { r.std[j] };
        }
        // Typicality and the near-duplicate radius from a sample in which no client has
        // more than half a percent: one client cannot move a 99th percentile or make
        // its own inputs the nearest neighbours.
        let capped: Vec<usize> = {
            let cap = (samples.len() / 200).max(1);
            let mut per_client: HashMap<u64, usize, Fast> = HashMap::default();
            (0..samples.len())
                .filter(|&i| {
                    let n = per_client.entry(samples[i].client).or_default();
                    *n += 1;
                    *n <= cap
                })
                .collect()
        };
        if n_num > 0 && capped.len() >= MIN_TYPICALITY_SAMPLE {
            let mut d2: Vec<f64> = capped
                .iter()
                .map(|&i| squared_distance(row(i), &r.typ_center, &r.typ_scale))
                .collect();
            crate::stats::drift::sort_floats(&mut d2);
            r.atypical_at = Some(crate::stats::quantile(&d2, 0.99));
            let z: Vec<Vec<f64>> = capped
                .iter()
                .take(NEAR_SAMPLE)
                .map(|&i| {
                    let mut z = Vec::with_capacity(n_num);
                    r.standardize_into(row(i), &mut z);
                    z
                })
                .collect();
            r.near_radius = crate::baseline::nearest_neighbour_quantile(&z, near_q);
        }
        r
    }

    /// The reference a model's baseline gives: its support, quartiles and quantile
    /// summary per numeric feature, its categories, and its coverage grid — the grid
    /// only when the baseline profiles the same features in the same order (its cells
    /// are hashed over them); features the baseline lacks are never out of support.
    fn from_baseline(
        b: &crate::baseline::Baseline,
        numeric: &[String],
        categorical: &[String],
        id: usize,
        near_q: f64,
    ) -> Self {
        let (n_num, n_cat) = (numeric.len(), categorical.len());
        let mut r = Reference {
            id,
            mean: vec![0.0; n_num],
            std: vec![1.0; n_num],
            lo: vec![f64::NEG_INFINITY; n_num],
            hi: vec![f64::INFINITY; n_num],
            edges: vec![[f64::NEG_INFINITY; 3]; n_num],
            sorted: vec![Vec::new(); n_num],
            cats: vec![HashMap::new(); n_cat],
            cell_p: Vec::new(),
            atypical_at: None,
            typ_center: vec![0.0; n_num],
            typ_scale: vec![1.0; n_num],
            near_radius: None,
        };
        for (j, name) in numeric.iter().enumerate() {
            let Some(s) = b.numeric(name).filter(|s| s.count > 0) else {
                continue;
            };
            r.mean[j] = s.mean;
            r.std[j] = if s.std > 0.0 { s.std } else { 1.0 };
            r.lo[j] = s.quantiles[0];
            r.hi[j] = s.quantiles[4];
            r.edges[j] = [s.quantiles[1], s.quantiles[2], s.quantiles[3]];
            r.sorted[j] = s.points.clone();
        }
        for (j, name) in categorical.iter().enumerate() {
            if let Some(c) = b.categorical(name) {
                r.cats[j] = c
                    .counts
                    .keys()
                    .enumerate()
                    .map(|(i, k)| (k.clone(), i as u32))
                    .collect();
            }
        }
        let decls = b.feature_decls();
        let of = |k: FeatureKind| -> Vec<&str> {
            decls
                .iter()
                .filter(|f| f.kind == k)
                .map(|f| f.name.as_str())
                .collect()
        };
        if of(FeatureKind::Numerical) == numeric.iter().map(String::as_str).collect::<Vec<_>>()
            && of(FeatureKind::Categorical)
                == categorical.iter().map(String::as_str).collect::<Vec<_>>()
        {
            r.cell_p = b.grid.cells.clone();
            r.atypical_at = b.typicality.as_ref().map(|t| t.q99);
            r.typ_center = r.mean.clone();
            r.typ_scale = r.std.clone();
            r.near_radius = b
                .typicality
                .as_ref()
                .and_then(|t| t.nearest.as_ref())
                .map(|q| crate::stats::quantile(q, near_q));
            if r.atypical_at.is_none() && n_num > 0 {
                tracing::warn!(model = %b.model, "the baseline was built by an older release: atypical_share stays null and no near-duplicates are counted for this model (rebuild it with `inferwatch baseline build`)");
            }
        } else {
            tracing::warn!(model = %b.model, "the baseline profiles other features than the config declares: coverage_ratio and atypical_share stay null for this model (declare the baseline's features, or none to take them from it)");
        }
        r
    }

    /// Coverage cell of a record: quartile bin of each numeric feature × category.
    fn cell(&self, num: &[f64], cat: &[u32]) -> u64 {
        grid_cell(&self.edges, num, cat)
    }

    /// Expected distinct cells touched by n natural queries.
    fn expected_cells(&self, n: u64) -> f64 {
        let n = n as f64;
        self.cell_p
            .iter()
            .map(|&(p, cells)| cells * (1.0 - (1.0 - p).powf(n)))
            .sum()
    }

    fn is_ood(&self, num: &[f64], cat: &[u32]) -> bool {
        num.iter()
            .enumerate()
            .any(|(j, &x)| x.is_finite() && (x < self.lo[j] || x > self.hi[j]))
            || cat.contains(&u32::MAX)
    }

    /// The record in reference standard deviations, appended to `out`.
    fn standardize_into(&self, num: &[f64], out: &mut Vec<f64>) {
        out.extend(num.iter().enumerate().map(|(j, &x)| {
            if x.is_nan() {
                0.0
            } else {
                (x - self.mean[j]) / self.std[j]
            }
        }));
    }
}

/// Sets of input and cell hashes. Those hashes are stable (they are kept in
/// checkpoints), so a sender can choose inputs whose hashes share their low bits;
/// hashed again with a seed drawn for each table, they cannot pile into one bucket.
/// foldhash rather than SipHash: a sender never sees these hashes or the tables'
/// order, and every set is capped (`profile_set_cap`), while SipHash was a tenth of
/// the per-client pass.
type Set = HashSet<u64, Fast>;

/// Maps of labels and other small keys in the per-record loops (same reasoning as
/// [`Set`]).
type Fast = foldhash::fast::RandomState;

/// Maps and sets by [`Clients::client_key`], a hash with a random key already: no
/// second hashing.
type ByKey = std::hash::BuildHasherDefault<PassThrough>;

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Long-horizon state of one (model, client).
#[derive(Default, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    model: CompactString,
    client: CompactString,
    horizon_start: i64,
    last_seen: i64,
    queries: u64,
    repeats: u64,
    near_dups: u64,
    ood: u64,
    /// Inputs judged for typicality, and the atypical ones among them.
    judged: u64,
    atypical: u64,
    boundary: u64,
    low_conf: u64,
    /// Answers judged against the window's margin quantile, and the low-margin ones.
    margin_judged: u64,
    low_margin: u64,
    inputs: Set,
    /// The client's last `RECENT` distinct inputs (standardized, then categories).
    recent: Recent,
    cells: Set,
    labels: BTreeMap<CompactString, u64>,
    /// Per predicted class: earlier queries (standardized, then categories).
    points: HashMap<CompactString, Points, Fast>,
    distances: Vec<f64>,
    /// W of the first n distances, for n = the count it was computed at.
    #[serde(default)]
    w: Option<(usize, Option<f64>)>,
    /// [`Profile::bytes`] as of its last update (the total is kept up to date from it,
    /// not recomputed over every profile each window).
    #[serde(skip)]
    est: u64,
    /// Which [`State::expiry`] entry is this profile's (0: none yet).
    #[serde(skip)]
    generation: u64,
}

/// A profile as checkpoints of formats 2 to 4 hold it: near-duplicates were grid
/// cells, typicality was not judged (read, never written).
#[derive(Clone, Deserialize)]
pub(crate) struct ProfileV4 {
    model: CompactString,
    client: CompactString,
    horizon_start: i64,
    last_seen: i64,
    queries: u64,
    repeats: u64,
    near_dups: u64,
    ood: u64,
    boundary: u64,
    low_conf: u64,
    inputs: Set,
    #[allow(dead_code)]
    recent: VecDeque<u64>,
    cells: Set,
    labels: BTreeMap<CompactString, u64>,
    points: HashMap<CompactString, Points, Fast>,
    distances: Vec<f64>,
    #[serde(default)]
    w: Option<(usize, Option<f64>)>,
}

impl From<ProfileV4> for ProfileV5 {
    /// The recent inputs start empty (cells cannot become points); typicality is
    /// judged from the next input on.
    fn from(p: ProfileV4) -> ProfileV5 {
        ProfileV5 {
            model: p.model,
            client: p.client,
            horizon_start: p.horizon_start,
            last_seen: p.last_seen,
            queries: p.queries,
            repeats: p.repeats,
            near_dups: p.near_dups,
            ood: p.ood,
            judged: 0,
            atypical: 0,
            boundary: p.boundary,
            low_conf: p.low_conf,
            inputs: p.inputs,
            recent: Recent::default(),
            cells: p.cells,
            labels: p.labels,
            points: p.points,
            distances: p.distances,
            w: p.w,
        }
    }
}

impl From<ProfileV4> for Profile {
    /// Through format 5: each upgrade adds what its format lacked.
    fn from(p: ProfileV4) -> Profile {
        ProfileV5::from(p).into()
    }
}

/// A profile as checkpoints of format 5 hold it: margins were not judged against the
/// population (read, never written).
#[derive(Clone, Deserialize)]
pub(crate) struct ProfileV5 {
    model: CompactString,
    client: CompactString,
    horizon_start: i64,
    last_seen: i64,
    queries: u64,
    repeats: u64,
    near_dups: u64,
    ood: u64,
    judged: u64,
    atypical: u64,
    boundary: u64,
    low_conf: u64,
    inputs: Set,
    recent: Recent,
    cells: Set,
    labels: BTreeMap<CompactString, u64>,
    points: HashMap<CompactString, Points, Fast>,
    distances: Vec<f64>,
    #[serde(default)]
    w: Option<(usize, Option<f64>)>,
}

impl From<ProfileV5> for Profile {
    /// Low margins are judged from the next answer on.
    fn from(p: ProfileV5) -> Profile {
        Profile {
            model: p.model,
            client: p.client,
            horizon_start: p.horizon_start,
            last_seen: p.last_seen,
            queries: p.queries,
            repeats: p.repeats,
            near_dups: p.near_dups,
            ood: p.ood,
            judged: p.judged,
            atypical: p.atypical,
            boundary: p.boundary,
            low_conf: p.low_conf,
            margin_judged: 0,
            low_margin: 0,
            inputs: p.inputs,
            recent: p.recent,
            cells: p.cells,
            labels: p.labels,
            points: p.points,
            distances: p.distances,
            w: p.w,
            est: 0,
            generation: 0,
        }
    }
}

fn upgrade_profiles<P: Into<Profile>>(v: Vec<P>) -> Vec<Arc<Profile>> {
    v.into_iter().map(|p| Arc::new(p.into())).collect()
}

/// The per-client state as checkpoints of formats 4 to 7 hold it, with profiles of
/// that format: [`ProfileV4`] (4), [`ProfileV5`] (5), [`Profile`] (6 and 7). Their input
/// identities are of an unkeyed hash, with no key check (read, never written).
#[derive(Deserialize)]
pub(crate) struct OlderClientsSnapshot<P> {
    profiles: Vec<P>,
    consumed_until: i64,
    usage: ClientsUsage,
}

pub(crate) type ClientsSnapshotV4 = OlderClientsSnapshot<ProfileV4>;
pub(crate) type ClientsSnapshotV5 = OlderClientsSnapshot<ProfileV5>;
pub(crate) type ClientsSnapshotV7 = OlderClientsSnapshot<Profile>;

impl<P> std::fmt::Debug for OlderClientsSnapshot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OlderClientsSnapshot({} profiles)", self.profiles.len())
    }
}

impl<P: Into<Profile>> From<OlderClientsSnapshot<P>> for ClientsSnapshot {
    fn from(s: OlderClientsSnapshot<P>) -> ClientsSnapshot {
        ClientsSnapshot {
            profiles: upgrade_profiles(s.profiles),
            consumed_until: s.consumed_until,
            usage: s.usage,
            key_check: None,
            _writer: None,
        }
    }
}

impl Profile {
    /// A new client's empty profile.
    fn new(model: &str, client: &str) -> Arc<Profile> {
        Arc::new(Profile {
            model: model.into(),
            client: client.into(),
            ..Profile::default()
        })
    }

    /// Estimated heap footprint, from capacities: what the allocator really holds for
    /// the profile, its map entry and its `Arc`, with 16 bytes of allocator overhead per
    /// allocation (size-class rounding and headers). Hash tables: an entry and a control
    /// byte per bucket, 16 more control bytes.
    fn bytes(&self) -> u64 {
        const ALLOC: usize = 16;
        let table = |capacity: usize, entry: usize| match hash_buckets(capacity) {
            0 => 0,
            buckets => buckets * (entry + 1) + 16 + ALLOC,
        };
        let set = |capacity: usize| table(capacity, 8);
        // Names of up to 24 bytes are held inline.
        let string = |s: &CompactString| {
            if s.is_heap_allocated() {
                s.capacity() + ALLOC
            } else {
                0
            }
        };
        // A class's entry: its name, its points' two buffers.
        let classes: usize = self
            .points
            .iter()
            .map(|(k, v)| string(k) + v.heap_bytes(ALLOC))
            .sum();
        let bytes = std::mem::size_of::<Profile>() + 16 + ALLOC // the Arc's allocation
            + 16 // the map's entry (key, pointer)
            + 48 // its expiry entry (24 bytes, in a bucket up to twice that)
            + string(&self.model)
            + string(&self.client)
            + set(self.inputs.capacity())
            + set(self.cells.capacity())
            + self.recent.heap_bytes(ALLOC)
            + btree_bytes(self.labels.len(), ALLOC)
            + self.labels.keys().map(string).sum::<usize>()
            + table(self.points.capacity(), std::mem::size_of::<(CompactString, Points)>())
            + classes
            + self.distances.capacity() * 8;
        bytes as u64
    }
}

/// Buckets of a hash table (hashbrown's) that can hold `capacity` entries: a power of
/// two, 7/8 of it usable from 8 buckets on, all but one below.
fn hash_buckets(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        1..=7 => (capacity + 1).next_power_of_two(),
        _ => (capacity * 8 / 7).next_power_of_two(),
    }
}

/// Bytes of a leaf of the profile's label counts (`BTreeMap<String, u64>`): a parent
/// pointer, two u16 and room for 11 keys and values; an inner node has 12 child
/// pointers more.
const BTREE_LEAF: usize = 16 + 11 * (std::mem::size_of::<String>() + 8);
const BTREE_INNER: usize = BTREE_LEAF + 12 * 8;

/// Bytes of the nodes of a B-tree of `len` label counts, with `alloc` bytes of
/// allocator overhead each: one leaf up to 11, then leaves counted half full (a full
/// leaf splits in halves; keys that come in order leave them so) and the inner nodes
/// above them.
fn btree_bytes(len: usize, alloc: usize) -> usize {
    let (leaves, inner) = match len {
        0 => (0, 0),
        1..=11 => (1, 0),
        _ => {
            let leaves = len.div_ceil(6);
            (leaves, leaves.div_ceil(6))
        }
    };
    leaves * (BTREE_LEAF + alloc) + inner * (BTREE_INNER + alloc)
}

/// What one closed window produced for both tables.
pub(crate) struct Computed {
    key: (i64, i64, i64, i64),
    stats: RecordBatch,
    profile: RecordBatch,
}

struct State {
    /// By [`Clients::client_key`].
    /// Shared with a snapshot until the writer is done with it: taking a snapshot copies
    /// pointers, and a profile is copied only when it changes while a snapshot holds it.
    profiles: HashMap<u64, Arc<Profile>, ByKey>,
    /// Rows before this event time already went into the profiles.
    consumed_until: i64,
    last: Option<Arc<Computed>>,
    usage: ClientsUsage,
    /// Held by every snapshot until its writer drops it: while more than one holds it,
    /// a changed profile leaves its earlier copy to the writer.
    writer: Arc<()>,
    /// One entry per profile, (a time at or before its last query, its key, its
    /// generation): idle eviction looks at the profiles that may have gone idle, not
    /// at every profile each window. An entry whose generation is not its profile's
    /// (evicted, then made anew) is dropped when it comes up.
    expiry: Expiry,
    /// The last generation given to a profile.
    gens: u64,
}

/// The expiry entries `(since, key, generation)` of the profiles, in buckets of 1,024
/// ms of `since`, soonest bucket first. Taking the due ones takes whole buckets (and
/// looks into the one the cut falls in): no per-entry reordering as in a heap, whose
/// pops were a tenth of the pipeline thread's time with 100,000 clients a day. The
/// entries of a bucket are in no order; nothing depends on the order they are taken in.
#[derive(Default)]
struct Expiry {
    buckets: BTreeMap<i64, Vec<(i64, u64, u64)>>,
    len: usize,
}

impl Expiry {
    const BUCKET_SHIFT: u32 = 10;

    fn push(&mut self, entry: (i64, u64, u64)) {
        self.buckets
            .entry(entry.0 >> Self::BUCKET_SHIFT)
            .or_default()
            .push(entry);
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Moves the entries with `since <= cutoff` to `out`.
    fn take_due(&mut self, cutoff: i64, out: &mut Vec<(i64, u64, u64)>) {
        let last = cutoff >> Self::BUCKET_SHIFT;
        while let Some(mut bucket) = self.buckets.first_entry() {
            if *bucket.key() > last {
                break;
            }
            if *bucket.key() < last {
                // Every entry of a bucket before the cut's is due.
                let entries = bucket.remove();
                self.len -= entries.len();
                out.extend(entries);
                continue;
            }
            let entries = bucket.get_mut();
            let before = entries.len();
            entries.retain(|&e| {
                let keep = e.0 > cutoff;
                if !keep {
                    out.push(e);
                }
                keep
            });
            self.len -= before - entries.len();
            if entries.is_empty() {
                bucket.remove();
            }
            break;
        }
    }
}

impl State {
    /// Gives `p`, a profile new to the map, a generation and its expiry entry.
    fn track(&mut self, key: u64, p: &mut Profile, since: i64) {
        self.gens += 1;
        p.generation = self.gens;
        self.expiry.push((since, key, p.generation));
    }

    /// A new client's empty profile under `key`, tracked from `since` (its first query).
    fn new_profile(&mut self, key: u64, model: &str, client: &str, since: i64) -> Arc<Profile> {
        let mut p = Profile::new(model, client);
        self.track(key, Arc::make_mut(&mut p), since);
        p
    }

    /// The profile, for changing: copied first if a snapshot shares it (the copy is
    /// counted until the writer is done).
    fn unshare<'p>(usage: &mut ClientsUsage, p: &'p mut Arc<Profile>) -> &'p mut Profile {
        if Arc::strong_count(p) > 1 {
            usage.checkpoint_copies += p.est;
        }
        Arc::make_mut(p)
    }
}

/// The per-client state a checkpoint carries: every profile, and how far the records
/// went into them (the reference has a section of its own).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ClientsSnapshot {
    #[serde(with = "shared")]
    profiles: Vec<Arc<Profile>>,
    consumed_until: i64,
    usage: ClientsUsage,
    /// [`InputKey::check`] of the key the profiles' input identities were made with
    /// (none before checkpoint format 8, when they were an unkeyed hash).
    key_check: Option<u64>,
    /// Tells the state, by being alive, that a writer still holds these profiles.
    #[serde(skip)]
    _writer: Option<Arc<()>>,
}

/// The per-client state as checkpoints before format 4 kept it, with the client
/// statistics' own reference (read, never written).
#[derive(Clone, Deserialize)]
pub struct LegacyClientsSnapshot {
    windows: Vec<Vec<crate::tables::reference::legacy::ClientsSample>>,
    profiles: Vec<ProfileV4>,
    consumed_until: i64,
    usage: ClientsUsage,
}

impl std::fmt::Debug for LegacyClientsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegacyClientsSnapshot({} profiles)", self.profiles.len())
    }
}

impl LegacyClientsSnapshot {
    /// Today's client state, and the old reference's windows with how far it went.
    pub fn upgrade(
        self,
    ) -> (
        ClientsSnapshot,
        Vec<Vec<crate::tables::reference::legacy::ClientsSample>>,
        i64,
    ) {
        (
            ClientsSnapshot {
                profiles: upgrade_profiles(self.profiles),
                consumed_until: self.consumed_until,
                usage: self.usage,
                key_check: None,
                _writer: None,
            },
            self.windows,
            self.consumed_until,
        )
    }
}

impl std::fmt::Debug for ClientsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientsSnapshot({} profiles)", self.profiles.len())
    }
}

impl ClientsSnapshot {
    pub fn clients(&self) -> usize {
        self.profiles.len()
    }

    #[cfg(test)]
    pub(crate) fn key_check(&self) -> Option<u64> {
        self.key_check
    }
}

/// The shared state behind `client_stats` and `client_profile`.
pub struct Clients {
    cfg: ClientsConfig,
    /// Per model, the reference from its baseline (`--baseline`); other models use the
    /// rolling one.
    baselines: BTreeMap<String, Arc<Reference>>,
    numeric: Vec<String>,
    categorical: Vec<String>,
    stats_schema: SchemaRef,
    profile_schema: SchemaRef,
    /// The rolling reference, shared with the drift tables.
    reference: Arc<crate::tables::reference::Reference>,
    state: Mutex<State>,
    /// Keys the profile map by a hash seeded at random per process (see
    /// [`Clients::client_key`]).
    keys: std::hash::RandomState,
    /// Shapiro–Wilk coefficients per sample size.
    coefficients: Mutex<HashMap<usize, Arc<Vec<f64>>>>,
    /// The rolling reference of the next window, built on a thread of its own while the
    /// pipeline finishes this one (see [`Clients::rolling`]).
    ahead: Mutex<(Option<Builder>, Option<Ahead>)>,
    /// Where evicted profiles are freed, off the pipeline's thread (see
    /// [`Clients::free`]).
    dropper: Mutex<Option<std::sync::mpsc::SyncSender<Vec<Arc<Profile>>>>>,
}

/// A rolling reference being built ahead: the window samples it is built from and where
/// the build arrives (None when they pool no record).
struct Ahead {
    from: Vec<Arc<WindowSample>>,
    built: std::sync::mpsc::Receiver<Option<Reference>>,
}

/// The thread that builds rolling references ahead, started on first use; it ends when
/// the [`Clients`] holding its sender is dropped.
struct Builder {
    jobs: std::sync::mpsc::SyncSender<BuildJob>,
}

/// The window samples to build from and where the build goes.
type BuildJob = (
    Vec<Arc<WindowSample>>,
    std::sync::mpsc::SyncSender<Option<Reference>>,
);

impl Builder {
    fn start(k: usize, n_num: usize, n_cat: usize, near_q: f64) -> Option<Self> {
        // One job waits at most: a build nobody waits for (the windows' references
        // changed under it) cannot pile work up behind it.
        let (jobs, rx) = std::sync::mpsc::sync_channel::<BuildJob>(1);
        std::thread::Builder::new()
            .name("inferwatch-reference".into())
            .spawn(move || {
                while let Ok((from, done)) = rx.recv() {
                    let pool: Vec<&SharedSample> = from.iter().flat_map(|s| s.pooled(k)).collect();
                    let built =
                        (!pool.is_empty()).then(|| Reference::build(&pool, n_num, n_cat, near_q));
                    // A build the next window does not use is not waited for.
                    let _ = done.send(built);
                }
            })
            .ok()?;
        Some(Self { jobs })
    }
}

impl Clients {
    pub fn new(
        features: &[FeatureDecl],
        cfg: &ClientsConfig,
        baselines: &[Arc<crate::baseline::Baseline>],
        reference: Arc<crate::tables::reference::Reference>,
    ) -> Arc<Self> {
        let names = |k: FeatureKind| crate::tables::feature_names(features, k);
        let u = DataType::UInt64;
        let f = DataType::Float64;
        let s = DataType::Utf8;
        let stats = Schema::new(vec![
            Field::new("model", s.clone(), true),
            Field::new("client_id", s.clone(), false),
            Field::new("queries", u.clone(), false),
            Field::new("qps", f.clone(), false),
            Field::new("latency_ms_sum", f.clone(), false),
            Field::new("distinct_input_share", f.clone(), false),
            Field::new("near_duplicate_share", f.clone(), false),
            Field::new("ood_share", f.clone(), false),
            Field::new("atypical_share", f.clone(), true),
            Field::new("coverage_ratio", f.clone(), true),
            Field::new("low_confidence_share", f.clone(), false),
            Field::new("boundary_share", f.clone(), false),
            Field::new("low_margin_share", f.clone(), true),
            Field::new("low_margin_p", f.clone(), true),
            Field::new("label_entropy", f.clone(), false),
            Field::new("population_label_entropy", f.clone(), false),
            Field::new("error_share", f.clone(), false),
        ]);
        let profile = Schema::new(vec![
            Field::new("model", s.clone(), true),
            Field::new("client_id", s, false),
            Field::new("horizon_start", ts_type(), false),
            Field::new("last_seen", ts_type(), false),
            Field::new("queries", u.clone(), false),
            Field::new("distinct_input_share", f.clone(), false),
            Field::new("near_duplicate_share", f.clone(), false),
            Field::new("ood_share", f.clone(), false),
            Field::new("atypical_share", f.clone(), true),
            Field::new("coverage_ratio", f.clone(), true),
            Field::new("boundary_share", f.clone(), false),
            Field::new("low_margin_share", f.clone(), true),
            Field::new("low_margin_p", f.clone(), true),
            Field::new("low_confidence_share", f.clone(), false),
            Field::new("label_entropy", f.clone(), false),
            Field::new("min_dist_w", f.clone(), true),
            Field::new("prada_distances", u, false),
        ]);
        let (numeric, categorical) = (
            names(FeatureKind::Numerical),
            names(FeatureKind::Categorical),
        );
        let baselines = baselines
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let r =
                    Reference::from_baseline(b, &numeric, &categorical, i + 1, cfg.near_duplicate);
                (b.model.clone(), Arc::new(r))
            })
            .collect();
        Arc::new(Self {
            cfg: cfg.clone(),
            baselines,
            numeric,
            categorical,
            stats_schema: Arc::new(stats),
            profile_schema: Arc::new(profile),
            coefficients: Mutex::new(HashMap::new()),
            ahead: Mutex::new((None, None)),
            dropper: Mutex::new(None),
            reference,
            keys: std::hash::RandomState::new(),
            state: Mutex::new(State {
                profiles: HashMap::default(),
                consumed_until: i64::MIN,
                last: None,
                usage: ClientsUsage::default(),
                writer: Arc::new(()),
                expiry: Expiry::default(),
                gens: 0,
            }),
        })
    }

    /// A profile's key: a hash of model and client id (64 bits: two of a million
    /// clients share one with a probability of about 3·10⁻⁸). The ids are the
    /// traffic's to choose, so the hash is keyed at random per process: with a known
    /// hash a sender could pick ids that share a key with another client (and write
    /// into its profile) or that pile into one bucket of the map (and make every
    /// lookup slow). Keys are never stored: a restored checkpoint is keyed anew.
    fn client_key(&self, model: &str, client: &str) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one((model, client))
    }

    fn coefficients(&self, n: usize) -> Vec<f64> {
        let mut memo = self.coefficients.lock().expect("coefficients lock");
        memo.entry(n)
            .or_insert_with(|| Arc::new(royston_coefficients(n)))
            .as_ref()
            .clone()
    }

    /// The two tables to register with the rule engine.
    pub fn tables(self: &Arc<Self>) -> Vec<Arc<dyn WindowTable>> {
        let (stats, profile) = (self.clone(), self.clone());
        vec![
            // `client_stats`: one row per (model, client) of the window.
            DerivedTable::of(
                "clients",
                "client_stats",
                self.stats_schema.clone(),
                move |w| Ok(stats.computed(w)?.stats.clone()),
            ),
            // `client_profile`: the long-horizon profile of each (model, client) active
            // in the window, as of the window's end.
            DerivedTable::of(
                "clients",
                "client_profile",
                self.profile_schema.clone(),
                move |w| Ok(profile.computed(w)?.profile.clone()),
            ),
        ]
    }

    /// A copy of the state, taken between windows (serialized on the writer thread).
    pub fn snapshot(&self) -> ClientsSnapshot {
        let mut st = self.state.lock().expect("clients lock");
        // The last writer is done (it is awaited before the next snapshot): its copies
        // are gone.
        if Arc::strong_count(&st.writer) == 1 {
            st.usage.checkpoint_copies = 0;
        }
        ClientsSnapshot {
            profiles: st.profiles.values().cloned().collect(),
            consumed_until: st.consumed_until,
            usage: st.usage,
            key_check: Some(self.cfg.input_key.check()),
            _writer: Some(st.writer.clone()),
        }
    }

    pub fn restore(&self, snap: ClientsSnapshot) {
        // Identities made with another key (or none) are no input's any more: forgotten,
        // so inputs seen before the restart count as new once; the counts are kept.
        let forget = snap.key_check != Some(self.cfg.input_key.check());
        if forget && !snap.profiles.is_empty() {
            match snap.key_check {
                None => tracing::info!(
                    "the checkpoint's client profiles hold unkeyed input identities (a \
                     format before 8): forgotten; inputs seen before this restart count \
                     as new once"
                ),
                Some(_) => tracing::warn!(
                    "the checkpoint's input identities were made with another key (was \
                     sample.key replaced?): forgotten; inputs seen before this restart \
                     count as new once"
                ),
            }
        }
        let mut st = self.state.lock().expect("clients lock");
        st.profiles = HashMap::default();
        st.expiry = Expiry::default();
        for mut p in snap.profiles {
            let profile = Arc::make_mut(&mut p);
            if forget {
                profile.inputs = Set::default();
            }
            profile.est = profile.bytes();
            let key = self.client_key(&profile.model, &profile.client);
            st.track(key, profile, profile.last_seen);
            st.profiles.insert(key, p);
        }
        st.consumed_until = snap.consumed_until;
        st.usage = snap.usage;
        st.usage.bytes = st.profiles.values().map(|p| p.est).sum();
        st.last = None;
    }

    #[cfg(test)]
    pub(crate) fn input_identities(&self) -> usize {
        let st = self.state.lock().expect("clients lock");
        st.profiles.values().map(|p| p.inputs.len()).sum()
    }

    pub fn usage(&self) -> ClientsUsage {
        let st = self.state.lock().expect("clients lock");
        ClientsUsage {
            clients: st.profiles.len(),
            ..st.usage
        }
    }

    /// The `client_stats` rows of the last window computed (for the metrics endpoint).
    pub fn latest_stats(&self) -> Option<RecordBatch> {
        let st = self.state.lock().expect("clients lock");
        st.last.as_ref().map(|c| c.stats.clone())
    }

    pub(crate) fn computed(&self, w: &ClosedWindow) -> Result<Arc<Computed>, String> {
        let key = (w.start_ms, w.end_ms, w.spec.size_ms, w.spec.slide_ms);
        let mut st = self.state.lock().expect("clients lock");
        if let Some(c) = st.last.as_ref().filter(|c| c.key == key) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.compute(&mut st, w, key)?);
        st.last = Some(c.clone());
        Ok(c)
    }

    fn compute(
        &self,
        st: &mut State,
        w: &ClosedWindow,
        key: (i64, i64, i64, i64),
    ) -> Result<Computed, String> {
        if Arc::strong_count(&st.writer) == 1 {
            st.usage.checkpoint_copies = 0;
        }
        let mut models = Interner::default();
        let mut clients = Interner::default();
        let mut labels = Interner::default();
        let mut cats: Vec<Interner> = (0..self.categorical.len())
            .map(|_| Interner::default())
            .collect();
        let rows: usize = w.batches.iter().map(RecordBatch::num_rows).sum();
        let mut recs: Vec<Rec> = Vec::with_capacity(rows);
        let mut f = Features {
            n_num: self.numeric.len(),
            n_cat: self.categorical.len(),
            num: Vec::with_capacity(rows * self.numeric.len()),
            cat: Vec::with_capacity(rows * self.categorical.len()),
            ..Features::default()
        };
        for b in &w.batches {
            self.read_batch(
                b,
                &mut models,
                &mut clients,
                &mut labels,
                &mut cats,
                &mut recs,
                &mut f,
            )?;
        }
        // The rolling reference: the previous windows' across-models samples, or this
        // window's at the start; a model with a baseline is measured against the
        // baseline instead.
        self.reference.admit(w)?;
        // Built only when a model of the window has no baseline (it is the costliest
        // part of a window with wide records: nearest neighbours of 512 samples).
        let needs_rolling = models
            .names
            .iter()
            .any(|m| !self.baselines.contains_key(*m));
        let rolling = if needs_rolling {
            self.rolling(w)
        } else {
            Reference::build(
                &[],
                self.numeric.len(),
                self.categorical.len(),
                self.cfg.near_duplicate,
            )
        };
        let refs: Vec<&Reference> = models
            .names
            .iter()
            .map(|m| self.baselines.get(*m).map_or(&rolling, |r| r.as_ref()))
            .collect();
        // Category ids of this window → each reference's (computed for the references
        // in use).
        let mut cat_maps: HashMap<usize, Vec<Vec<u32>>> = HashMap::new();
        for reference in &refs {
            cat_maps.entry(reference.id).or_insert_with(|| {
                cats.iter()
                    .enumerate()
                    .map(|(j, names)| {
                        names
                            .names
                            .iter()
                            .map(|n| reference.cats[j].get(*n).copied().unwrap_or(u32::MAX))
                            .collect()
                    })
                    .collect()
            });
        }
        let mut z = Vec::with_capacity(f.num.len());
        for r in &mut recs {
            let reference = refs[r.model as usize];
            if f.n_cat > 0 {
                let map = &cat_maps[&reference.id];
                for (j, c) in f.cat[r.row * f.n_cat..(r.row + 1) * f.n_cat]
                    .iter_mut()
                    .enumerate()
                {
                    if *c != u32::MAX {
                        *c = map[j][*c as usize];
                    }
                }
            }
            let (num, cat) = (f.num(r.row), f.cat(r.row));
            reference.standardize_into(num, &mut z);
            r.cell = reference.cell(num, cat);
            r.ood = reference.is_ood(num, cat);
            r.atypical = reference
                .atypical_at
                .map(|t| squared_distance(num, &reference.typ_center, &reference.typ_scale) > t);
        }
        f.z = z;
        // Per client, in event-time order (then request id): the same in any partitioning.
        recs.sort_unstable_by_key(|r| (r.model, r.client, r.ts, r.order));
        self.judge_margins(&mut recs);
        let window_secs = ((w.end_ms - w.start_ms) as f64 / 1000.0).max(1e-9);

        let mut pop_labels: HashMap<u32, HashMap<u32, u64, Fast>> = HashMap::new();
        for r in &recs {
            if let Some(l) = r.label {
                *pop_labels.entry(r.model).or_default().entry(l).or_default() += 1;
            }
        }
        let pop_entropy: HashMap<u32, f64> = pop_labels
            .iter()
            .map(|(m, c)| (*m, entropy_bits(c.values().copied())))
            .collect();

        // One group per (model, client), in the sorted order; each takes its profile
        // out of the map while it is worked on (a fresh one for a new client).
        let runs = 1 + recs
            .windows(2)
            .filter(|p| (p[0].model, p[0].client) != (p[1].model, p[1].client))
            .count();
        let mut groups: Vec<Group> = Vec::with_capacity(runs);
        let mut taken: HashSet<u64, ByKey> =
            HashSet::with_capacity_and_hasher(runs, ByKey::default());
        let mut i = 0;
        while i < recs.len() {
            let (m, c) = (recs[i].model, recs[i].client);
            let mut j = i;
            while j < recs.len() && recs[j].model == m && recs[j].client == c {
                j += 1;
            }
            let key = self.client_key(models.names[m as usize], clients.names[c as usize]);
            let fresh = recs[i..j].iter().any(|r| r.ts >= st.consumed_until);
            // Two (model, client) pairs with one key (a hash collision) share a profile,
            // as they always did: the later one updates it after the pass.
            let shared = !taken.insert(key);
            // Not touched here (with many clients it is not in any cache): a pass
            // thread reads and changes it.
            let profile = (fresh && !shared).then(|| {
                st.profiles.remove(&key).unwrap_or_else(|| {
                    st.new_profile(
                        key,
                        models.names[m as usize],
                        clients.names[c as usize],
                        recs[i].ts,
                    )
                })
            });
            groups.push(Group {
                range: (i, j),
                key,
                profile,
                later: fresh && shared,
                shared_later: false,
                est: None,
                copied: 0,
            });
            i = j;
        }
        let later_keys: HashSet<u64, ByKey> =
            groups.iter().filter(|g| g.later).map(|g| g.key).collect();
        for g in &mut groups {
            g.shared_later = later_keys.contains(&g.key);
        }
        // The groups are independent: contiguous runs of them (of about equal numbers of
        // records) go to the threads, and their rows are joined in the same order.
        let ctx = PassContext {
            recs: &recs,
            models: &models,
            clients: &clients,
            labels: &labels,
            f: &f,
            refs: &refs,
            rolling: &rolling,
            window_secs,
            pop_entropy: &pop_entropy,
            consumed_until: st.consumed_until,
        };
        let threads = if recs.len() >= PARALLEL_RECORDS {
            self.cfg.threads.clamp(1, groups.len().max(1))
        } else {
            1
        };
        let mut stats = StatsColumns::default();
        let mut expected_memo: HashMap<(usize, u64), f64> = HashMap::new();
        // Each group's profile row, when the pass makes it: beside the groups, not in
        // them, so that a group is small to move.
        let mut rows: Vec<Option<ProfileRow>> = Vec::with_capacity(groups.len());
        rows.resize_with(groups.len(), || None);
        if threads <= 1 {
            self.client_pass(&ctx, &mut groups, &mut rows, &mut stats, &mut expected_memo);
        } else {
            // Parts of about equal numbers of records, more parts than threads, taken
            // in turn by this thread and the pool's: a pool thread that the machine
            // gives a core late finds less left to do, and no thread waits for a
            // fixed half that another has not started. Each part's rows are joined in
            // the parts' order, so the result is the same for any number of threads.
            let per = recs.len().div_ceil(threads * PASS_PARTS_PER_THREAD);
            type Part<'g, 'w> = (&'g mut [Group], &'g mut [Option<ProfileRow<'w>>]);
            let mut parts: Vec<Mutex<Option<Part>>> = Vec::new();
            let (mut rest, mut rest_rows): Part = (&mut groups, &mut rows);
            while !rest.is_empty() {
                let mut n = 0;
                let mut records = 0;
                while n < rest.len() && (records < per || n == 0) {
                    records += rest[n].range.1 - rest[n].range.0;
                    n += 1;
                }
                let (part, tail) = rest.split_at_mut(n);
                let (part_rows, tail_rows) = rest_rows.split_at_mut(n);
                parts.push(Mutex::new(Some((part, part_rows))));
                (rest, rest_rows) = (tail, tail_rows);
            }
            let next = std::sync::atomic::AtomicUsize::new(0);
            let work = || {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(part) = parts.get(i) else {
                        return done;
                    };
                    let taken = part.lock().expect("pass part lock").take();
                    let Some((groups, rows)) = taken else {
                        continue;
                    };
                    let mut stats = StatsColumns::default();
                    let mut memo = HashMap::new();
                    self.client_pass(&ctx, groups, rows, &mut stats, &mut memo);
                    done.push((i, stats));
                }
            };
            // The pool's threads live as long as the process (a thread per window
            // costs its start and, with the profiles it allocated, its allocator
            // heap's hand-over at exit). This thread is never one of them, and no
            // part waits for anything, so no part waits for itself.
            let by_pool: Mutex<Vec<(usize, StatsColumns)>> = Mutex::new(Vec::new());
            let mut all = rayon::in_place_scope(|s| {
                for _ in 1..threads {
                    s.spawn(|_| {
                        let done = work();
                        by_pool.lock().expect("pass results lock").extend(done);
                    });
                }
                work()
            });
            all.extend(by_pool.into_inner().expect("pass results lock"));
            all.sort_unstable_by_key(|(i, _)| *i);
            for (_, part) in all {
                stats.append(part);
            }
        }
        let mut active: Vec<u64> = Vec::with_capacity(groups.len());
        let mut done: Vec<Option<Option<(u64, u64)>>> = Vec::with_capacity(groups.len());
        let mut later = Vec::new();
        for g in groups {
            st.usage.checkpoint_copies += g.copied;
            if let Some(p) = g.profile {
                st.profiles.insert(g.key, p);
            }
            if g.later {
                later.push((g.range, g.key));
            }
            active.push(g.key);
            done.push(g.est);
        }
        for ((i, j), key) in later {
            let group = &recs[i..j];
            if !st.profiles.contains_key(&key) {
                let (m, c) = (group[0].model as usize, group[0].client as usize);
                let p = st.new_profile(key, models.names[m], clients.names[c], group[0].ts);
                st.profiles.insert(key, p);
            }
            let p = st.profiles.get_mut(&key).expect("inserted above");
            State::unshare(&mut st.usage, p);
            self.take_fresh(&ctx, group, p);
        }
        if w.end_ms > st.consumed_until {
            st.consumed_until = w.end_ms;
        }
        // W of the active clients (see `w_due`) and their memory estimates: done in the
        // pass for the profiles it updated, here for the others (a key a colliding
        // group updated after the pass, a client without fresh records).
        for (key, done) in active.iter().zip(&done) {
            if done.is_none()
                && let Some(p) = st.profiles.get_mut(key)
                && self.w_due(p)
            {
                self.take_w(State::unshare(&mut st.usage, p));
            }
        }
        // The memory estimate follows the profiles that changed.
        for (key, done) in active.iter().zip(&done) {
            match done {
                Some(Some((old, new))) => {
                    st.usage.bytes = (st.usage.bytes + new).saturating_sub(*old);
                }
                Some(None) => {}
                None => {
                    if let Some(p) = st.profiles.get_mut(key) {
                        let new = p.bytes();
                        if new != p.est {
                            st.usage.bytes = (st.usage.bytes + new).saturating_sub(p.est);
                            State::unshare(&mut st.usage, p).est = new;
                        }
                    }
                }
            }
        }
        let profile = self.profile_rows(st, &active, rows, &rolling, &mut expected_memo)?;
        self.evict(st, w.end_ms);
        st.usage.peak_bytes = st
            .usage
            .peak_bytes
            .max(st.usage.bytes + st.usage.checkpoint_copies);
        Ok(Computed {
            key,
            stats: stats.finish(self.stats_schema.clone())?,
            profile,
        })
    }

    /// The rolling reference of `w`: the pooled samples of the windows before it, or
    /// its own at the start. It is a pure function of those samples, so the next
    /// window's is built ahead on a thread of its own, from the windows admitted so far
    /// (those the next window's reference holds unless a window closes in between, and
    /// then the build is not used): off the path that waits for this window's rows.
    fn rolling(&self, w: &ClosedWindow) -> Reference {
        let (n_num, n_cat, near_q) = (
            self.numeric.len(),
            self.categorical.len(),
            self.cfg.near_duplicate,
        );
        let k = self.reference.sample_size();
        let earlier = self.reference.before(w.end_ms);
        let mut ahead = self.ahead.lock().expect("ahead lock");
        let (builder, pending) = &mut *ahead;
        let built = pending.take().and_then(|a| {
            let same = a.from.len() == earlier.len()
                && a.from.iter().zip(&earlier).all(|(a, b)| Arc::ptr_eq(a, b));
            // A build that is not used is not waited for.
            if same {
                a.built.recv().ok().flatten()
            } else {
                None
            }
        });
        let next = self.reference.before(w.end_ms.saturating_add(1));
        if !next.is_empty() {
            if builder.is_none() {
                *builder = Builder::start(k, n_num, n_cat, near_q);
            }
            let (done, built) = std::sync::mpsc::sync_channel(1);
            // With the thread busy, or without it, the next window builds its own.
            match builder
                .as_ref()
                .map(|b| b.jobs.try_send((next.clone(), done)))
            {
                Some(Ok(())) => *pending = Some(Ahead { from: next, built }),
                Some(Err(std::sync::mpsc::TrySendError::Full(_))) => {}
                Some(Err(std::sync::mpsc::TrySendError::Disconnected(_))) | None => {
                    *builder = None;
                }
            }
        }
        drop(ahead);
        if let Some(r) = built {
            return r;
        }
        let mut pool: Vec<&SharedSample> = earlier.iter().flat_map(|s| s.pooled(k)).collect();
        let this = self.reference.of(w.end_ms);
        if pool.is_empty()
            && let Some(this) = &this
        {
            pool = this.pooled(k);
        }
        Reference::build(&pool, n_num, n_cat, near_q)
    }

    /// The window's row of each group and the update of its profile; `rows[k]` gets
    /// the profile row of `groups[k]` when the pass makes it (the profile is final for
    /// the window then).
    fn client_pass<'w>(
        &self,
        ctx: &PassContext<'w>,
        groups: &mut [Group],
        rows: &mut [Option<ProfileRow<'w>>],
        stats: &mut StatsColumns<'w>,
        memo: &mut HashMap<(usize, u64), f64>,
    ) {
        let mut scratch = Scratch::default();
        for (g, row) in groups.iter_mut().zip(rows) {
            let group = &ctx.recs[g.range.0..g.range.1];
            let m = group[0].model;
            let model = ctx.models.names[m as usize];
            let client = ctx.clients.names[group[0].client as usize];
            self.window_row(
                group,
                ctx.refs[m as usize],
                ctx.window_secs,
                memo,
                stats,
                model,
                client,
                ctx.pop_entropy.get(&m).copied().unwrap_or(0.0),
                &mut scratch,
                ctx.f,
            );
            if let Some(p) = g.profile.as_mut() {
                if Arc::strong_count(p) > 1 {
                    g.copied = p.est;
                }
                self.take_fresh(ctx, group, p);
                // A key a later group shares gets its W after that group's update.
                if !g.shared_later {
                    if self.w_due(p) {
                        self.take_w(Arc::make_mut(p));
                    }
                    // The memory estimate, while the profile is at hand.
                    let (old, new) = (p.est, p.bytes());
                    g.est = Some((new != old).then_some((old, new)));
                    if new != old {
                        Arc::make_mut(p).est = new;
                    }
                    *row = Some(self.profile_row(p, Some((model, client)), ctx.rolling, memo));
                }
            }
        }
    }

    /// Whether W of a profile's distances is due: first at 20 distances, then once they
    /// grew by 5 % or reached the cap (it is the costliest statistic and moves little
    /// in between).
    fn w_due(&self, p: &Profile) -> bool {
        let n = p.distances.len();
        match p.w {
            None => n >= 20,
            Some((m, _)) => n != m && (n >= m + m / 20 || n >= self.cfg.prada_distances),
        }
    }

    /// Takes W of a profile's distances with their count. The distances are left
    /// sorted (W does not depend on their order): the next time, only the ones added
    /// since are sorted and merged in, not all of them again.
    fn take_w(&self, p: &mut Profile) {
        let n = p.distances.len();
        p.distances.sort_by(f64::total_cmp);
        let w = (n >= 20)
            .then(|| shapiro_wilk_with(&p.distances, &|n| self.coefficients(n)).ok())
            .flatten()
            .map(|(w, _)| w);
        p.w = Some((n, w));
    }

    /// Updates a group's profile with the group's records it has not taken yet.
    fn take_fresh(&self, ctx: &PassContext<'_>, group: &[Rec], p: &mut Arc<Profile>) {
        let fresh = group.iter().filter(|r| r.ts >= ctx.consumed_until);
        let near_radius = ctx.refs[group[0].model as usize].near_radius;
        self.update_profile(Arc::make_mut(p), fresh, ctx.labels, ctx.f, near_radius);
    }

    /// Marks each answer whose margin is under the `low_margin_quantile` of its model's
    /// answers in the window. Each client weighs at most `MARGIN_POINTS` answers (evenly
    /// spaced order statistics of its own margins, so the pick does not depend on
    /// arrival order): a flood or a batch job cannot move the quantile, and neither can
    /// the client being judged. With answers from fewer than `MARGIN_CLIENTS` clients
    /// there is no population to judge against and nothing is marked.
    fn judge_margins(&self, recs: &mut [Rec]) {
        let mut pool: Vec<f64> = Vec::new();
        let mut own: Vec<f64> = Vec::new();
        let mut start = 0;
        while start < recs.len() {
            let m = recs[start].model;
            let end = start + recs[start..].iter().take_while(|r| r.model == m).count();
            pool.clear();
            let mut clients = 0usize;
            let mut i = start;
            while i < end {
                let c = recs[i].client;
                own.clear();
                while i < end && recs[i].client == c {
                    own.extend(recs[i].margin.filter(|m| m.is_finite()));
                    i += 1;
                }
                if own.is_empty() {
                    continue;
                }
                clients += 1;
                own.sort_unstable_by(f64::total_cmp);
                if own.len() <= MARGIN_POINTS {
                    pool.extend_from_slice(&own);
                } else {
                    let last = (own.len() - 1) as f64;
                    pool.extend((0..MARGIN_POINTS).map(|k| {
                        own[(k as f64 * last / (MARGIN_POINTS - 1) as f64).round() as usize]
                    }));
                }
            }
            if clients >= MARGIN_CLIENTS {
                pool.sort_unstable_by(f64::total_cmp);
                let threshold = quantile(&pool, self.cfg.low_margin_quantile);
                for r in &mut recs[start..end] {
                    r.low_margin = r.margin.filter(|m| m.is_finite()).map(|m| m < threshold);
                }
            }
            start = end;
        }
    }

    /// `low_margin_share` and `low_margin_p` of `low` low-margin answers among `judged`
    /// distinct inputs: the share, and the chance of at least `low` if each answer were
    /// low with the quantile's probability (binomial upper tail); null under
    /// `MARGIN_POINTS` judged.
    fn low_margin(&self, low: u64, judged: u64) -> (Option<f64>, Option<f64>) {
        if judged < MARGIN_POINTS as u64 {
            return (None, None);
        }
        let share = low as f64 / judged as f64;
        let p = match low {
            0 => 1.0,
            _ => Binomial::new(self.cfg.low_margin_quantile, judged)
                .map_or(f64::NAN, |b| b.sf(low - 1)),
        };
        (Some(share), Some(p))
    }

    #[allow(clippy::too_many_arguments)]
    fn read_batch<'w>(
        &self,
        b: &'w RecordBatch,
        models: &mut Interner<'w>,
        clients: &mut Interner<'w>,
        labels: &mut Interner<'w>,
        cats: &mut [Interner<'w>],
        recs: &mut Vec<Rec>,
        f: &mut Features,
    ) -> Result<(), String> {
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("events has no column {name}"))
        };
        let ts = col("ts")?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or("ts is not a millisecond timestamp")?;
        let request = col("request_id")?.as_string::<i32>();
        let client = col("client_id")?.as_string::<i32>();
        let model = col("model")?.as_string::<i32>();
        let latency = col("latency_ms")?.as_primitive::<Float64Type>();
        let label = col("prediction_label")?.as_string::<i32>();
        let score = col("prediction_score")?.as_primitive::<Float64Type>();
        let probs = col("probs")?.as_list::<i32>();
        let prob_values = probs
            .values()
            .as_primitive_opt::<Float64Type>()
            .ok_or("probs is not a list of doubles")?;
        let num: Vec<&Float64Array> = self
            .numeric
            .iter()
            .map(|n| col(n).map(|c| c.as_primitive::<Float64Type>()))
            .collect::<Result<_, _>>()?;
        let cat: Vec<&StringArray> = self
            .categorical
            .iter()
            .map(|n| col(n).map(|c| c.as_string::<i32>()))
            .collect::<Result<_, _>>()?;
        for row in 0..b.num_rows() {
            let order = if request.is_null(row) {
                hash_of((ts.value(row), client.value(row), row))
            } else {
                keyed_hash_of(self.cfg.sample_key.0, request.value(row))
            };
            let (top1, margin) = confidence(probs, prob_values, score, row);
            // The input's identity: every numeric value's bits and category's text,
            // under a secret key (a sender who could compute it could make different
            // inputs one, and hide its queries as repeats).
            let mut input = self.cfg.input_key.hasher();
            for a in &num {
                let x = if a.is_null(row) {
                    f64::NAN
                } else {
                    a.value(row)
                };
                input.write_u64(x.to_bits());
                f.num.push(x);
            }
            for (j, a) in cat.iter().enumerate() {
                let name = if a.is_null(row) { "" } else { a.value(row) };
                input.write(name.as_bytes());
                input.write_u8(0xff);
                f.cat.push(if name.is_empty() {
                    u32::MAX
                } else {
                    cats[j].get(name)
                });
            }
            let model_name = if model.is_null(row) {
                ""
            } else {
                model.value(row)
            };
            recs.push(Rec {
                ts: ts.value(row),
                order,
                model: models.get(model_name),
                client: clients.get(client.value(row)),
                label: (!label.is_null(row)).then(|| labels.get(label.value(row))),
                latency: if latency.is_null(row) {
                    0.0
                } else {
                    latency.value(row)
                },
                top1,
                margin,
                low_margin: None,
                row: recs.len(),
                input: input.finish(),
                cell: 0,
                ood: false,
                atypical: None,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn window_row<'w>(
        &self,
        group: &[Rec],
        reference: &Reference,
        window_secs: f64,
        memo: &mut HashMap<(usize, u64), f64>,
        out: &mut StatsColumns<'w>,
        model: &'w str,
        client: &'w str,
        population_entropy: f64,
        scratch: &mut Scratch,
        f: &Features,
    ) {
        let n = group.len() as f64;
        let Scratch {
            inputs,
            recent,
            cells,
            labels: label_counts,
        } = scratch;
        inputs.clear();
        recent.clear();
        cells.clear();
        label_counts.clear();
        let (mut near_dups, mut ood, mut low, mut boundary, mut errors) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let (mut judged, mut atypical) = (0u64, 0u64);
        let (mut margin_judged, mut low_margin) = (0u64, 0u64);
        for r in group {
            let new_input = inputs.insert(r.input);
            if new_input {
                near_dups += reference.near_radius.is_some_and(|radius| {
                    recent
                        .iter()
                        .any(|&row| is_near(f.z(r.row), f.cat(r.row), f.z(row), f.cat(row), radius))
                }) as u64;
                remember(recent, r.row);
            }
            cells.insert(r.cell);
            ood += r.ood as u64;
            if let Some(a) = r.atypical {
                judged += 1;
                atypical += a as u64;
            }
            low += r.top1.is_some_and(|t| t < self.cfg.low_confidence) as u64;
            boundary += r.margin.is_some_and(|m| m < self.cfg.boundary_margin) as u64;
            if let Some(l) = r.low_margin.filter(|_| new_input) {
                margin_judged += 1;
                low_margin += l as u64;
            }
            match r.label {
                Some(l) => *label_counts.entry(l).or_default() += 1,
                None => errors += 1,
            }
        }
        let distinct = inputs.len() as u64;
        out.model.push(Some(model));
        out.client.push(client);
        out.queries.push(group.len() as u64);
        out.qps.push(n / window_secs);
        out.latency.push(group.iter().map(|r| r.latency).sum());
        out.distinct.push(distinct as f64 / n);
        out.near.push(near_dups as f64 / n);
        out.ood.push(ood as f64 / n);
        out.atypical
            .push((judged > 0).then(|| atypical as f64 / judged as f64));
        out.coverage
            .push(coverage_ratio(cells.len(), distinct, reference, memo));
        out.low.push(low as f64 / n);
        out.boundary.push(boundary as f64 / n);
        let (share, p) = self.low_margin(low_margin, margin_judged);
        out.low_margin.push(share);
        out.low_margin_p.push(p);
        out.entropy
            .push(entropy_bits(label_counts.values().copied()));
        out.pop_entropy.push(population_entropy);
        out.errors.push(errors as f64 / n);
    }

    fn update_profile<'r>(
        &self,
        p: &mut Profile,
        recs: impl Iterator<Item = &'r Rec>,
        labels: &Interner<'_>,
        f: &Features,
        near_radius: Option<f64>,
    ) {
        let cap = self.cfg.profile_set_cap;
        for r in recs {
            if p.queries == 0 || r.ts - p.horizon_start >= self.cfg.horizon.as_millis() as i64 {
                *p = Profile {
                    model: std::mem::take(&mut p.model),
                    client: std::mem::take(&mut p.client),
                    horizon_start: r.ts,
                    // Still counted in the total until the next update replaces it.
                    est: p.est,
                    generation: p.generation,
                    ..Profile::default()
                };
            }
            p.last_seen = p.last_seen.max(r.ts);
            p.queries += 1;
            let input = r.input;
            // One probe: an insert says whether the input is new, until the set is full.
            let new_input = if p.inputs.len() < cap {
                p.inputs.insert(input)
            } else {
                !p.inputs.contains(&input)
            };
            if !new_input {
                p.repeats += 1;
            }
            if new_input {
                let (z, cat) = (f.z(r.row), f.cat(r.row));
                p.near_dups += near_radius.is_some_and(|radius| {
                    p.recent
                        .iter()
                        .any(|(pz, pc)| is_near(z, cat, pz, pc, radius))
                }) as u64;
                p.recent.remember(z, cat, RECENT);
            }
            if p.cells.len() < cap {
                p.cells.insert(r.cell);
            }
            p.ood += r.ood as u64;
            if let Some(a) = r.atypical {
                p.judged += 1;
                p.atypical += a as u64;
            }
            p.low_conf += r.top1.is_some_and(|t| t < self.cfg.low_confidence) as u64;
            p.boundary += r.margin.is_some_and(|m| m < self.cfg.boundary_margin) as u64;
            if let Some(l) = r.low_margin.filter(|_| new_input) {
                p.margin_judged += 1;
                p.low_margin += l as u64;
            }
            // Labels are keys of the profile's maps; a key is allocated only when new.
            let label = r.label.map_or("", |l| labels.names[l as usize]);
            if let Some(n) = p.labels.get_mut(label) {
                *n += 1;
            } else if p.labels.len() < 64 {
                p.labels.insert(label.into(), 1);
            }
            if !new_input {
                continue;
            }
            // PRADA: distance to the earlier queries of the same predicted class.
            // One hash of the label when its class is known (the usual case).
            let points = match p.points.get_mut(label) {
                Some(points) => points,
                None => p.points.entry(label.into()).or_default(),
            };
            if !points.is_empty() {
                let d = nearest_squared(points, f.z(r.row), f.cat(r.row)).sqrt();
                // An infinite distance (a feature of ±1e308 or more) would make W
                // uncomputable for the whole horizon: it is not a distance to keep.
                if d > 0.0 && d.is_finite() && p.distances.len() < self.cfg.prada_distances {
                    p.distances.push(d);
                }
            }
            if points.len() < self.cfg.prada_points {
                points.push(f.z(r.row), f.cat(r.row));
            }
        }
    }

    /// The window's profile table: a row per active key, in their order. `rows` holds
    /// the rows the pass made (for the profiles it left final); the others are made
    /// here.
    fn profile_rows<'w>(
        &self,
        st: &State,
        active: &[u64],
        rows: Vec<Option<ProfileRow<'w>>>,
        rolling: &Reference,
        memo: &mut HashMap<(usize, u64), f64>,
    ) -> Result<RecordBatch, String> {
        let mut c = ProfileColumns::default();
        for (key, row) in active.iter().zip(rows) {
            match row {
                Some(row) => c.push(row),
                None => {
                    if let Some(p) = st.profiles.get(key) {
                        c.push(self.profile_row(p, None, rolling, memo));
                    }
                }
            }
        }
        c.finish(self.profile_schema.clone())
    }

    /// A profile's row of the window's profile table; `names`, the (model, client) of
    /// the window's records, stand for the profile's own when they are the same.
    fn profile_row<'w>(
        &self,
        p: &Profile,
        names: Option<(&'w str, &'w str)>,
        rolling: &Reference,
        memo: &mut HashMap<(usize, u64), f64>,
    ) -> ProfileRow<'w> {
        let name = |own: &CompactString, window: Option<&'w str>| match window {
            Some(w) if w == own => Cow::Borrowed(w),
            _ => Cow::Owned(own.to_string()),
        };
        let n = p.queries.max(1) as f64;
        let distinct = p.queries - p.repeats;
        let (low_margin, low_margin_p) = self.low_margin(p.low_margin, p.margin_judged);
        ProfileRow {
            model: name(&p.model, names.map(|n| n.0)),
            client: name(&p.client, names.map(|n| n.1)),
            start: p.horizon_start,
            last: p.last_seen,
            queries: p.queries,
            distinct: distinct as f64 / n,
            near: p.near_dups as f64 / n,
            ood: p.ood as f64 / n,
            atypical: (p.judged > 0).then(|| p.atypical as f64 / p.judged as f64),
            coverage: coverage_ratio(
                p.cells.len(),
                distinct,
                self.baselines
                    .get(p.model.as_str())
                    .map_or(rolling, |r| r.as_ref()),
                memo,
            ),
            boundary: p.boundary as f64 / n,
            low_margin,
            low_margin_p,
            low: p.low_conf as f64 / n,
            entropy: entropy_bits(p.labels.values().copied()),
            w: p.w.and_then(|(_, w)| w),
            distances: p.distances.len() as u64,
        }
    }

    /// Frees evicted profiles on a thread of their own (`inferwatch-free`, started on
    /// first use): with 100,000 clients a day, freeing them was a tenth of the pipeline
    /// thread's time. When that thread is behind (two lots waiting) or cannot start,
    /// they are freed here.
    fn free(&self, gone: Vec<Arc<Profile>>) {
        if gone.is_empty() {
            return;
        }
        let mut dropper = self.dropper.lock().expect("dropper lock");
        if dropper.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Arc<Profile>>>(2);
            let started = std::thread::Builder::new()
                .name("inferwatch-free".into())
                .spawn(move || rx.into_iter().for_each(drop));
            if started.is_ok() {
                *dropper = Some(tx);
            }
        }
        let Some(tx) = dropper.as_ref() else {
            return;
        };
        match tx.try_send(gone) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(gone)) => drop(gone),
            Err(std::sync::mpsc::TrySendError::Disconnected(gone)) => {
                *dropper = None;
                drop(gone);
            }
        }
    }

    /// Drops clients idle for a horizon, then the least recently seen while over the
    /// memory cap.
    fn evict(&self, st: &mut State, now_ms: i64) {
        let horizon = self.cfg.horizon.as_millis() as i64;
        let (mut idle, mut freed) = (0u64, 0u64);
        let mut still_held = 0u64;
        let mut gone: Vec<Arc<Profile>> = Vec::new();
        // Due: `now_ms - since >= horizon`, that is `since <= now_ms - horizon`.
        let cutoff = now_ms
            .checked_sub(horizon)
            .or((horizon < 0).then_some(i64::MAX));
        let mut due = Vec::new();
        if let Some(cutoff) = cutoff {
            st.expiry.take_due(cutoff, &mut due);
        }
        for (_, key, generation) in due {
            let last_seen = match st.profiles.get(&key) {
                Some(p) if p.generation == generation => p.last_seen,
                _ => continue,
            };
            if now_ms.saturating_sub(last_seen) < horizon {
                st.expiry.push((last_seen, key, generation));
                continue;
            }
            let p = st.profiles.remove(&key).expect("looked up above");
            idle += 1;
            freed += p.est;
            // A writer holds it: its memory goes when the writer is done.
            if Arc::strong_count(&p) > 1 {
                still_held += p.est;
            }
            gone.push(p);
        }
        // What a pass over every profile would have left.
        debug_assert!(
            st.profiles
                .values()
                .all(|p| now_ms.saturating_sub(p.last_seen) < horizon)
        );
        st.usage.checkpoint_copies += still_held;
        st.usage.evicted_idle += idle;
        let mut bytes: u64 = st.usage.bytes.saturating_sub(freed);
        if bytes > self.cfg.max_memory {
            let mut by_age: Vec<(i64, &str, &str, u64, u64)> = st
                .profiles
                .iter()
                .map(|(&k, p)| (p.last_seen, p.model.as_str(), p.client.as_str(), k, p.est))
                .collect();
            by_age.sort_unstable();
            let by_age: Vec<(u64, u64)> =
                by_age.into_iter().map(|(_, _, _, k, b)| (k, b)).collect();
            // Down to 90% of the cap, so that eviction does not run on every window.
            let target = self.cfg.max_memory / 10 * 9;
            let mut evicted = 0u64;
            for (k, b) in by_age {
                if bytes <= target {
                    break;
                }
                if let Some(p) = st.profiles.remove(&k) {
                    if Arc::strong_count(&p) > 1 {
                        st.usage.checkpoint_copies += b;
                    }
                    gone.push(p);
                }
                bytes -= b;
                evicted += 1;
            }
            st.usage.evicted_memory += evicted;
            tracing::warn!(
                evicted,
                cap = self.cfg.max_memory,
                "client profiles over clients.max_memory: least recently seen evicted"
            );
        }
        // Profiles evicted for memory leave their entries until those are due: when
        // such entries outnumber the profiles, the queue is made anew from the profiles,
        // so a sender making up client ids cannot grow it past the profiles kept.
        if st.expiry.len() > 2 * st.profiles.len() + 1024 {
            st.expiry = Expiry::default();
            for (&key, p) in &st.profiles {
                st.expiry.push((p.last_seen, key, p.generation));
            }
        }
        st.usage.bytes = bytes;
        self.free(gone);
        debug_assert_eq!(
            bytes,
            st.profiles.values().map(|p| p.est).sum::<u64>(),
            "the running memory estimate drifted from the profiles'"
        );
    }
}

/// Top-1 probability and top-1 − top-2 margin of a record. Reads the list's values
/// through its offsets (slicing a `ListArray` per row allocates).
fn confidence(
    probs: &datafusion::arrow::array::ListArray,
    values: &Float64Array,
    score: &Float64Array,
    row: usize,
) -> (Option<f64>, Option<f64>) {
    if !probs.is_null(row) {
        let offsets = probs.value_offsets();
        let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
        let mut top = [f64::NEG_INFINITY; 2];
        for i in from..to {
            if values.is_null(i) {
                continue;
            }
            let x = values.value(i);
            if x > top[0] {
                top = [x, top[0]];
            } else if x > top[1] {
                top[1] = x;
            }
        }
        if top[0].is_finite() {
            let second = if top[1].is_finite() {
                top[1]
            } else {
                1.0 - top[0]
            };
            return (Some(top[0]), Some(top[0] - second));
        }
    }
    if score.is_null(row) {
        return (None, None);
    }
    let s = score.value(row).clamp(0.0, 1.0);
    let top = s.max(1.0 - s);
    (Some(top), Some(2.0 * top - 1.0))
}

/// Buffers reused from one client's window statistics to the next.
#[derive(Default)]
struct Scratch {
    inputs: Set,
    /// Rows of the client's last `RECENT` distinct inputs.
    recent: VecDeque<usize>,
    cells: Set,
    labels: HashMap<u32, u64, Fast>,
}

/// A window's records of one (model, client): `recs[range.0..range.1]`, its profile's
/// key, and the profile, taken out of the map while it is updated (None when the
/// group has no record the profile has not taken yet, or shares its key with an
/// earlier group: then `later`, when it has such records, says it updates the profile
/// after the pass).
struct Group {
    range: (usize, usize),
    key: u64,
    profile: Option<Arc<Profile>>,
    later: bool,
    /// A later group shares this group's key.
    shared_later: bool,
    /// Set by the pass when it updated the profile and no later group shares its key:
    /// its memory estimate before and after, or None when unchanged.
    est: Option<Option<(u64, u64)>>,
    /// Set by the pass when a snapshot held the profile it updated: the estimate of
    /// the copy the update made (counted until the snapshot's writer is done).
    copied: u64,
}

/// What every group of a window's per-client pass reads.
struct PassContext<'a> {
    recs: &'a [Rec],
    models: &'a Interner<'a>,
    clients: &'a Interner<'a>,
    labels: &'a Interner<'a>,
    f: &'a Features,
    refs: &'a [&'a Reference],
    /// The rolling reference (of models without a baseline).
    rolling: &'a Reference,
    window_secs: f64,
    pop_entropy: &'a HashMap<u32, f64>,
    consumed_until: i64,
}

/// Records in a window under which its per-client pass runs on one thread (spawning
/// threads would cost more than it saves).
const PARALLEL_RECORDS: usize = 1024;

/// Parts per thread of a window's per-client pass.
const PASS_PARTS_PER_THREAD: usize = 4;

/// Distinct inputs a near-duplicate is looked for among.
const RECENT: usize = 16;

fn remember<T>(recent: &mut VecDeque<T>, item: T) {
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(item);
}

/// Within `radius` (RMS over the standardized numeric features) and in the same
/// categories; an exact copy is a repeat, not a near-duplicate.
fn is_near(z: &[f64], cat: &[u32], pz: &[f64], pc: &[u32], radius: f64) -> bool {
    // Element by element: a few ids, where `==` on slices would call memcmp.
    if cat.len() != pc.len() || cat.iter().zip(pc).any(|(a, b)| a != b) {
        return false;
    }
    if z.is_empty() {
        return false;
    }
    // RMS distance < radius ⇔ Σ (zᵢ − pᵢ)² < radius² · n; most pairs are far apart,
    // so the sum stops as soon as it is past that (every 16 features).
    let limit = radius * radius * z.len() as f64;
    let mut sum = 0.0;
    for (a, b) in z.chunks(16).zip(pz.chunks(16)) {
        sum += crate::baseline::sum_squared_differences(a, b);
        // NaN (a missing feature) is never near.
        if sum.is_nan() || sum >= limit {
            return false;
        }
    }
    sum > 0.0
}

/// The least squared [`distance`] from (`z`, `cat`) to a point of `points` (infinity
/// when there is none, or only NaN).
fn nearest_squared(points: &Points, z: &[f64], cat: &[u32]) -> f64 {
    let mut best = f64::INFINITY;
    let (nz, nc) = points.width();
    if (nz, nc) == (z.len(), cat.len()) && (1..8).contains(&nz) && nc > 0 {
        // A few numeric features and some categories (the common shape of tabular
        // models): one short sum per point, the bits `squared_distance_below` gives
        // (its one chunk), without its slicing per point.
        let (all_z, all_cat) = points.flat();
        for (pz, pc) in all_z.chunks_exact(nz).zip(all_cat.chunks_exact(nc)) {
            let mut sum = cat.iter().zip(pc).filter(|(a, b)| a != b).count() as f64;
            if sum >= best {
                continue;
            }
            sum += crate::baseline::sum_squared_differences(z, pz);
            if sum < best {
                best = sum;
            }
        }
        return best;
    }
    for (pz, pc) in points.iter() {
        if let Some(d2) = squared_distance_below(z, cat, pz, pc, best) {
            best = d2;
        }
    }
    best
}

/// The squared [`distance`] when it is below `bound` (else None, found as soon as a
/// partial sum reaches the bound: the nearest of many points costs little more than
/// one distance).
fn squared_distance_below(
    z: &[f64],
    cat: &[u32],
    pz: &[f64],
    pc: &[u32],
    bound: f64,
) -> Option<f64> {
    let mut sum = cat.iter().zip(pc).filter(|(a, b)| a != b).count() as f64;
    for (a, b) in z.chunks(16).zip(pz.chunks(16)) {
        if sum.is_nan() || sum >= bound {
            return None;
        }
        sum += crate::baseline::sum_squared_differences(a, b);
    }
    (sum < bound).then_some(sum)
}

#[cfg(test)]
fn distance(z: &[f64], cat: &[u32], pz: &[f64], pc: &[u32]) -> f64 {
    let num = crate::baseline::sum_squared_differences(z, pz);
    let cats = cat.iter().zip(pc).filter(|(a, b)| a != b).count() as f64;
    (num + cats).sqrt()
}

fn coverage_ratio(
    cells: usize,
    distinct: u64,
    r: &Reference,
    memo: &mut HashMap<(usize, u64), f64>,
) -> Option<f64> {
    if distinct == 0 || r.cell_p.is_empty() {
        return None;
    }
    let expected = *memo
        .entry((r.id, distinct))
        .or_insert_with(|| r.expected_cells(distinct));
    Some(cells as f64 / expected.max(1.0))
}

/// The window's client statistics, a column each; names borrowed from the window's
/// records (no allocation per row).
#[derive(Default)]
struct StatsColumns<'w> {
    model: Vec<Option<&'w str>>,
    client: Vec<&'w str>,
    queries: Vec<u64>,
    qps: Vec<f64>,
    latency: Vec<f64>,
    distinct: Vec<f64>,
    near: Vec<f64>,
    ood: Vec<f64>,
    atypical: Vec<Option<f64>>,
    coverage: Vec<Option<f64>>,
    low: Vec<f64>,
    boundary: Vec<f64>,
    low_margin: Vec<Option<f64>>,
    low_margin_p: Vec<Option<f64>>,
    entropy: Vec<f64>,
    pop_entropy: Vec<f64>,
    errors: Vec<f64>,
}

fn f64s(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}

impl StatsColumns<'_> {
    /// Appends the rows of `other`.
    fn append(&mut self, mut other: Self) {
        self.model.append(&mut other.model);
        self.client.append(&mut other.client);
        self.queries.append(&mut other.queries);
        self.qps.append(&mut other.qps);
        self.latency.append(&mut other.latency);
        self.distinct.append(&mut other.distinct);
        self.near.append(&mut other.near);
        self.ood.append(&mut other.ood);
        self.atypical.append(&mut other.atypical);
        self.coverage.append(&mut other.coverage);
        self.low.append(&mut other.low);
        self.boundary.append(&mut other.boundary);
        self.low_margin.append(&mut other.low_margin);
        self.low_margin_p.append(&mut other.low_margin_p);
        self.entropy.append(&mut other.entropy);
        self.pop_entropy.append(&mut other.pop_entropy);
        self.errors.append(&mut other.errors);
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch, String> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.model)),
            Arc::new(StringArray::from(self.client)),
            Arc::new(UInt64Array::from(self.queries)),
            f64s(self.qps),
            f64s(self.latency),
            f64s(self.distinct),
            f64s(self.near),
            f64s(self.ood),
            Arc::new(Float64Array::from(self.atypical)),
            Arc::new(Float64Array::from(self.coverage)),
            f64s(self.low),
            f64s(self.boundary),
            Arc::new(Float64Array::from(self.low_margin)),
            Arc::new(Float64Array::from(self.low_margin_p)),
            f64s(self.entropy),
            f64s(self.pop_entropy),
            f64s(self.errors),
        ];
        RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct ProfileColumns<'w> {
    model: Vec<Option<Cow<'w, str>>>,
    client: Vec<Cow<'w, str>>,
    start: Vec<i64>,
    last: Vec<i64>,
    queries: Vec<u64>,
    distinct: Vec<f64>,
    near: Vec<f64>,
    ood: Vec<f64>,
    atypical: Vec<Option<f64>>,
    coverage: Vec<Option<f64>>,
    boundary: Vec<f64>,
    low_margin: Vec<Option<f64>>,
    low_margin_p: Vec<Option<f64>>,
    low: Vec<f64>,
    entropy: Vec<f64>,
    w: Vec<Option<f64>>,
    distances: Vec<u64>,
}

/// One row of [`ProfileColumns`]. A profile's names are borrowed from the window's
/// records when they are the same (a string made per row on a pass thread and freed on
/// another costs the allocator).
struct ProfileRow<'w> {
    model: Cow<'w, str>,
    client: Cow<'w, str>,
    start: i64,
    last: i64,
    queries: u64,
    distinct: f64,
    near: f64,
    ood: f64,
    atypical: Option<f64>,
    coverage: Option<f64>,
    boundary: f64,
    low_margin: Option<f64>,
    low_margin_p: Option<f64>,
    low: f64,
    entropy: f64,
    w: Option<f64>,
    distances: u64,
}

impl<'w> ProfileColumns<'w> {
    fn push(&mut self, r: ProfileRow<'w>) {
        self.model.push(Some(r.model));
        self.client.push(r.client);
        self.start.push(r.start);
        self.last.push(r.last);
        self.queries.push(r.queries);
        self.distinct.push(r.distinct);
        self.near.push(r.near);
        self.ood.push(r.ood);
        self.atypical.push(r.atypical);
        self.coverage.push(r.coverage);
        self.boundary.push(r.boundary);
        self.low_margin.push(r.low_margin);
        self.low_margin_p.push(r.low_margin_p);
        self.low.push(r.low);
        self.entropy.push(r.entropy);
        self.w.push(r.w);
        self.distances.push(r.distances);
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch, String> {
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                self.model
                    .iter()
                    .map(|m| m.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(self.client.iter())),
            ts(self.start),
            ts(self.last),
            Arc::new(UInt64Array::from(self.queries)),
            f64s(self.distinct),
            f64s(self.near),
            f64s(self.ood),
            Arc::new(Float64Array::from(self.atypical)),
            Arc::new(Float64Array::from(self.coverage)),
            f64s(self.boundary),
            Arc::new(Float64Array::from(self.low_margin)),
            Arc::new(Float64Array::from(self.low_margin_p)),
            f64s(self.low),
            f64s(self.entropy),
            Arc::new(Float64Array::from(self.w)),
            Arc::new(UInt64Array::from(self.distances)),
        ];
        RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
