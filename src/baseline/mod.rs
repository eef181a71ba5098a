//! Baselines: a model's reference profile, built from training or reference data
//! (`inferwatch baseline build`, Parquet or CSV read with polars) and used instead of the
//! rolling reference by the drift tables and the client statistics (`--baseline FILE`).
//!
//! A profile holds, per numeric feature, its count, missing and infinite values, mean,
//! standard deviation, the quantiles the client statistics use, and a **quantile
//! summary**: `QUANTILE_POINTS` (1,000) values at equally spaced ranks (all values when
//! there are fewer), plus exact value counts when the column has at most
//! `EXACT_VALUE_COUNTS` distinct values; per categorical feature its category counts;
//! the predicted label's distribution and the score's summary; and the input-space grid
//! of the coverage statistic (quartile cells × categories, as shares).
//!
//! Precision: the summary's points, read as a sample, have an empirical CDF within
//! 1/1000 + 1/n of the data's at every x (point k is the value at rank ⌈k·n/1000⌉, so
//! below it lie at least k/1000 of the values and below the next fewer than
//! (k+1)/1000 + 1/n). The KS statistic against a profile is therefore within
//! 0.001 + 1/n of the exact two-sample statistic, and every bin share within 0.002
//! (tested on 1,000,000 rows against SciPy's `ks_2samp`). Counts, means, standard
//! deviations and category frequencies are exact.
//!
//! The file: one JSON header line (`format`, `version`, `sha256` of the rest), then the
//! profile as JSON. A changed or truncated file fails its checksum and is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::{FeatureDecl, FeatureKind};
use crate::stable_hash::hex;
use crate::stats::{grid_cell, quantile};

pub const FORMAT: &str = "inferwatch-baseline";
pub const VERSION: u32 = 1;
/// Points of a numeric quantile summary.
pub const QUANTILE_POINTS: usize = 1000;
/// Up to this many distinct values, a numeric column also keeps exact value counts.
pub const EXACT_VALUE_COUNTS: usize = 20;
/// Categories kept per column; rarer ones are counted together as `other`.
pub const MAX_CATEGORIES: usize = 10_000;

/// Columns of a training file that are not features.
const NOT_FEATURES: &[&str] = &[
    "ts",
    "timestamp",
    "request_id",
    "client_id",
    "model",
    "model_version",
    "latency_ms",
    "probs",
];

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("baseline input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
}

/// A model's reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub model: String,
    /// Rows of the data it was built from.
    pub rows: u64,
    /// The input file's name (no directories).
    pub source: String,
    pub built_by: String,
    pub features: Vec<Feature>,
    pub label: Option<Categories>,
    pub score: Option<Numeric>,
    pub grid: Grid,
    /// How far from the typical row the rows lie (absent in baselines of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typicality: Option<Typicality>,
    /// The model's performance on held-out rows with true labels (`--true-label-column`):
    /// what the `performance` tables compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
}

/// Performance on held-out rows with true labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    /// Rows with both a true and a predicted label.
    pub labelled: u64,
    pub accuracy: f64,
    /// Per true or predicted class.
    pub classes: BTreeMap<String, ClassHeldOut>,
    /// Per confidence bin (ten, of the top probability): rows, Σ confidence, rows
    /// right; empty without confidences. What estimates of accuracy calibrate on
    /// before labels arrive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<(u64, f64, u64)>,
}

/// One class's held-out performance (scikit-learn's definitions; undefined is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassHeldOut {
    /// Rows whose true label is the class.
    pub support: u64,
    /// Rows predicted as the class.
    pub predicted: u64,
    pub recall: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
}

/// The held-out performance of predicted against true labels (rows missing either are
/// left out), with confidence bins when `confidence` (the top probability per row) is
/// given; None without such rows.
pub fn held_out(
    truth: &[Option<String>],
    predicted: &[Option<String>],
    confidence: &[Option<f64>],
) -> Option<HeldOut> {
    let mut bins = vec![(0u64, 0.0f64, 0u64); crate::stats::CONFIDENCE_BINS];
    let mut binned = false;
    let mut support: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pred: BTreeMap<&str, u64> = BTreeMap::new();
    let mut tp: BTreeMap<&str, u64> = BTreeMap::new();
    let mut labelled = 0u64;
    for (i, (t, p)) in truth.iter().zip(predicted).enumerate() {
        let (Some(t), Some(p)) = (t.as_deref(), p.as_deref()) else {
            continue;
        };
        labelled += 1;
        if let Some(c) = confidence
            .get(i)
            .copied()
            .flatten()
            .filter(|c| c.is_finite())
        {
            let b = &mut bins[crate::stats::confidence_bin(c)];
            b.0 += 1;
            b.1 += c;
            b.2 += u64::from(t == p);
            binned = true;
        }
        *support.entry(t).or_default() += 1;
        *pred.entry(p).or_default() += 1;
        if t == p {
            *tp.entry(t).or_default() += 1;
        }
    }
    if labelled == 0 {
        return None;
    }
    let names: std::collections::BTreeSet<&str> =
        support.keys().chain(pred.keys()).copied().collect();
    let classes = names
        .into_iter()
        .filter(|c| support.contains_key(c))
        .map(|c| {
            let (s, p, hit) = (
                support[c],
                pred.get(c).copied().unwrap_or(0),
                tp.get(c).copied().unwrap_or(0),
            );
            let f1 = (s + p > 0).then(|| 2.0 * hit as f64 / (s + p) as f64);
            (
                c.to_owned(),
                ClassHeldOut {
                    support: s,
                    predicted: p,
                    recall: hit as f64 / s as f64,
                    precision: (p > 0).then(|| hit as f64 / p as f64),
                    f1,
                },
            )
        })
        .collect();
    Some(HeldOut {
        labelled,
        accuracy: tp.values().sum::<u64>() as f64 / labelled as f64,
        classes,
        bins: if binned { bins } else { Vec::new() },
    })
}

/// The distribution of a row's squared distance from the mean, in standard deviations
/// of each numeric feature (Σ z², a diagonal Mahalanobis distance; a constant feature
/// counts in units of 1): what the client statistics call an atypical input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typicality {
    /// The 99th percentile of Σ z² over the rows.
    pub q99: f64,
    /// Each row's distance to its nearest other row (RMS over the numeric features, in
    /// standard deviations; exact copies left out), sorted; of at most
    /// [`NEAREST_ROWS`] rows spread evenly over the file.
    #[serde(default)]
    pub nearest: Option<Vec<f64>>,
}

/// Rows the nearest-neighbour distances are measured on.
pub const NEAREST_ROWS: usize = 1000;

/// Σ (aᵢ − bᵢ)² over the common length, in eight independent partial sums: the
/// compiler vectorizes it (one running sum is a chain of dependent additions, four
/// times slower on 64 features). Sums in another order than left to right, so the last
/// bits may differ from a sequential sum.
#[inline]
pub fn sum_squared_differences(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let square = |(x, y): (&f64, &f64)| (x - y) * (x - y);
    if n < 8 {
        // The same bits as below, where the eight partial sums stay zero: 0 + tail.
        return a.iter().zip(b).map(square).sum::<f64>() + 0.0;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(square).sum();
    let mut acc = [0.0f64; 8];
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Each row's distance to its nearest other row that is not an exact copy (RMS over
/// the standardized features: √(Σ (aᵢ − bᵢ)² / n)), sorted. Each pair is measured once,
/// for both rows (its sum is the same either way: the same differences, squared, added
/// in the same order), and only each row's least sum gets its square root.
pub fn nearest_distances(z: &[Vec<f64>]) -> Vec<f64> {
    let mut nearest: Vec<Option<f64>> = vec![None; z.len()];
    for (i, a) in z.iter().enumerate() {
        for (j, b) in z.iter().enumerate().skip(i + 1) {
            let s = sum_squared_differences(a, b);
            // NaN and exact copies (0) are no distance.
            if s.is_nan() || s <= 0.0 {
                continue;
            }
            for k in [i, j] {
                if nearest[k].is_none_or(|n| s < n) {
                    nearest[k] = Some(s);
                }
            }
        }
    }
    let mut out: Vec<f64> = z
        .iter()
        .zip(nearest)
        .filter_map(|(a, s)| s.map(|s| (s / a.len() as f64).sqrt()))
        .collect();
    crate::stats::drift::sort_floats(&mut out);
    out
}

/// The `q` quantile of [`nearest_distances`]; None for fewer than 20 rows.
pub fn nearest_neighbour_quantile(z: &[Vec<f64>], q: f64) -> Option<f64> {
    let d = nearest_distances(z);
    (d.len() >= 20).then(|| quantile(&d, q))
}

/// Σ z² of one row (missing values count 0).
pub fn squared_distance(num: &[f64], mean: &[f64], std: &[f64]) -> f64 {
    num.iter()
        .zip(mean.iter().zip(std))
        .filter(|(x, _)| x.is_finite())
        .map(|(x, (m, s))| {
            let z = (x - m) / if *s > 0.0 { *s } else { 1.0 };
            z * z
        })
        .sum()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Summary {
    Numerical(Numeric),
    Categorical(Categories),
}

/// A numeric column's profile. (Unknown fields are not refused here: serde can't with
/// the flattened, tagged `Summary`; the checksum guards the file.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Numeric {
    /// Finite values.
    pub count: u64,
    /// Nulls and NaNs.
    pub missing: u64,
    /// ±∞ (left out of every statistic, as in the streaming tables).
    pub infinite: u64,
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Quantiles at 0.5 %, 25 %, 50 %, 75 %, 99.5 % (linear interpolation, as NumPy):
    /// the support and grid of the client statistics.
    pub quantiles: [f64; 5],
    /// The quantile summary, sorted.
    pub points: Vec<f64>,
    /// (value, count) of every distinct value, when there are few.
    pub values: Option<Vec<(f64, u64)>>,
}

impl Numeric {
    /// The reference sample Wasserstein-1 reads. When the summary stands for more
    /// values than it has points and the column is continuous (no exact counts), point
    /// k — the value at rank ⌈k·n/m⌉, the top of its rank interval — is replaced by the
    /// middle of its interval, (point k−1 + point k)/2 with point 0 = min: the data's
    /// quantile function lies between the two ends on that interval, so the bound
    /// (max − min)/m/std holds either way, and for smooth data the error of the
    /// step summary (always of one sign) mostly cancels. Otherwise the points.
    pub fn wasserstein_points(&self) -> std::borrow::Cow<'_, [f64]> {
        if self.values.is_some() || self.count <= self.points.len() as u64 {
            return std::borrow::Cow::Borrowed(&self.points);
        }
        let mut below = self.min;
        self.points
            .iter()
            .map(|&p| {
                let mid = below + (p - below) / 2.0;
                below = p;
                mid
            })
            .collect()
    }
}

/// A categorical column's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Categories {
    pub count: u64,
    pub missing: u64,
    pub counts: BTreeMap<String, u64>,
    /// Values of categories past `MAX_CATEGORIES` (the rarest).
    pub other: u64,
}

/// The coverage grid: cells are quartile bins of each numeric feature × category.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// (share of rows in a cell, number of cells with that share).
    pub cells: Vec<(f64, f64)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    sha256: String,
}

/// What `baseline build` reads besides the features.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub model: String,
    pub label_column: String,
    pub score_column: String,
    /// Column of true labels: with it the profile gets the held-out performance of the
    /// predictions in `label_column`.
    pub true_label_column: Option<String>,
}

impl Baseline {
    /// The features it profiles, as `decode.features` declares them.
    pub fn feature_decls(&self) -> Vec<FeatureDecl> {
        self.features
            .iter()
            .map(|f| FeatureDecl {
                name: f.name.clone(),
                kind: match f.summary {
                    Summary::Numerical(_) => FeatureKind::Numerical,
                    Summary::Categorical(_) => FeatureKind::Categorical,
                },
            })
            .collect()
    }

    pub fn numeric(&self, name: &str) -> Option<&Numeric> {
        self.features.iter().find_map(|f| match &f.summary {
            Summary::Numerical(n) if f.name == name => Some(n),
            _ => None,
        })
    }

    pub fn categorical(&self, name: &str) -> Option<&Categories> {
        self.features.iter().find_map(|f| match &f.summary {
            Summary::Categorical(c) if f.name == name => Some(c),
            _ => None,
        })
    }

    /// The file's bytes: header line, then the profile.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).expect("a profile serializes");
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            sha256: hex(&Sha256::digest(&body)),
        };
        let mut out = serde_json::to_vec(&header).expect("a header serializes");
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    /// Writes the file (temporary name, then renamed: never half a profile).
    pub fn write(&self, path: &Path) -> Result<(), BaselineError> {
        let err = |e: std::io::Error| BaselineError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_bytes()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let bad = |reason: String| BaselineError::File {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        Self::from_bytes(&bytes).map_err(bad)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let not_one = "not an inferwatch baseline (build one with `inferwatch baseline build`)";
        let split = memchr::memchr(b'\n', bytes).ok_or(not_one)?;
        let header: Header = serde_json::from_slice(&bytes[..split]).map_err(|_| not_one)?;
        if header.format != FORMAT {
            return Err(not_one.into());
        }
        if header.version != VERSION {
            return Err(format!(
                "format version {} (this inferwatch reads version {VERSION}): rebuild it with \
                 `inferwatch baseline build`",
                header.version
            ));
        }
        let body = &bytes[split + 1..];
        if hex(&Sha256::digest(body)) != header.sha256 {
            return Err(
                "checksum mismatch: the file was changed or truncated after it was \
                 built; rebuild it with `inferwatch baseline build`"
                    .into(),
            );
        }
        serde_json::from_slice(body).map_err(|e| format!("unreadable profile: {e}"))
    }
}

/// A column of the training data, as inferwatch profiles it.
pub enum ColumnData {
    Numbers(Vec<Option<f64>>),
    Strings(Vec<Option<String>>),
}

/// Builds a profile from a Parquet or CSV file (by extension).
pub fn build_from_file(input: &Path, opts: &BuildOptions) -> Result<Baseline, BaselineError> {
    let columns = read_columns(input)?;
    let source = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    build(columns, source, opts).map_err(|reason| BaselineError::Input {
        path: input.to_owned(),
        reason,
    })
}

/// A Parquet or CSV file read with polars, column by column without copying.
pub struct Table {
    df: polars::prelude::DataFrame,
}

impl Table {
    /// Reads a Parquet or CSV file (by extension; CSV with a header row).
    pub fn read(input: &Path) -> Result<Table, BaselineError> {
        use polars::prelude::*;
        let bad = |reason: String| BaselineError::Input {
            path: input.to_owned(),
            reason,
        };
        let ext = input
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let df = match ext.as_str() {
            "csv" => CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(10_000))
                .try_into_reader_with_file_path(Some(input.to_owned()))
                .and_then(|r| r.finish()),
            "parquet" | "pq" => std::fs::File::open(input)
                .map_err(|e| PolarsError::IO {
                    error: Arc::new(e),
                    msg: None,
                })
                .and_then(|f| ParquetReader::new(f).finish()),
            _ => {
                return Err(bad(
                    "unknown file type: name it .parquet or .csv (with a header row)".into(),
                ));
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Table { df })
    }

    /// The column's kind: numbers (integers and floats), text (strings and booleans),
    /// or `None` for a column that is absent or of another type (dates, lists).
    pub fn kind(&self, name: &str) -> Option<ColumnKind> {
        let dtype = self.df.column(name).ok()?.dtype();
        if dtype.is_primitive_numeric() {
            Some(ColumnKind::Numbers)
        } else if dtype.is_string() || dtype.is_bool() {
            Some(ColumnKind::Text)
        } else {
            None
        }
    }

    /// Feeds each value of a column to `f` as a number (text is parsed; what does not
    /// parse is missing). False if the column is absent or of another type.
    pub fn numbers(&self, name: &str, mut f: impl FnMut(Option<f64>)) -> Result<bool, String> {
        match self.kind(name) {
            Some(ColumnKind::Numbers) => {
                let c = self.cast(name, &polars::prelude::DataType::Float64)?;
                let a = c.f64().map_err(|e| format!("column {name}: {e}"))?;
                for chunk in a.downcast_iter() {
                    match chunk.validity() {
                        None => chunk.values().iter().for_each(|x| f(Some(*x))),
                        Some(_) => chunk.iter().for_each(|x| f(x.copied())),
                    }
                }
                Ok(true)
            }
            Some(ColumnKind::Text) => {
                let c = self.cast(name, &polars::prelude::DataType::String)?;
                let a = c.str().map_err(|e| format!("column {name}: {e}"))?;
                a.iter().for_each(|s| f(s.and_then(|s| s.parse().ok())));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Feeds each value of a column to `f` as text (numbers are formatted). False if
    /// the column is absent or of another type.
    pub fn strings(&self, name: &str, mut f: impl FnMut(Option<&str>)) -> Result<bool, String> {
        match self.kind(name) {
            Some(ColumnKind::Text) => {
                let c = self.cast(name, &polars::prelude::DataType::String)?;
                let a = c.str().map_err(|e| format!("column {name}: {e}"))?;
                a.iter().for_each(&mut f);
                Ok(true)
            }
            Some(ColumnKind::Numbers) => {
                let c = self.cast(name, &polars::prelude::DataType::Float64)?;
                let a = c.f64().map_err(|e| format!("column {name}: {e}"))?;
                let mut text = String::new();
                for x in a.iter() {
                    match x {
                        Some(x) => {
                            use std::fmt::Write;
                            text.clear();
                            let _ = write!(text, "{x}");
                            f(Some(&text));
                        }
                        None => f(None),
                    }
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn cast(
        &self,
        name: &str,
        to: &polars::prelude::DataType,
    ) -> Result<polars::prelude::Column, String> {
        let c = self.df.column(name).map_err(|e| e.to_string())?;
        if c.dtype() == to {
            Ok(c.clone())
        } else {
            c.cast(to).map_err(|e| format!("column {name}: {e}"))
        }
    }

    /// Column names in file order.
    pub fn names(&self) -> Vec<String> {
        self.df
            .get_column_names()
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }
}

/// How a file's column is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Numbers,
    Text,
}

/// Reads every column: numbers (integers and floats) as f64, strings and booleans as
/// text; other types (dates, lists) are left out with a warning.
pub fn read_columns(input: &Path) -> Result<Vec<(String, ColumnData)>, BaselineError> {
    let table = Table::read(input)?;
    let bad = |reason: String| BaselineError::Input {
        path: input.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for name in table.names() {
        let data = match table.kind(&name) {
            Some(ColumnKind::Numbers) => {
                let mut v = Vec::with_capacity(table.df.height());
                table.numbers(&name, |x| v.push(x)).map_err(bad)?;
                ColumnData::Numbers(v)
            }
            Some(ColumnKind::Text) => {
                let mut v = Vec::with_capacity(table.df.height());
                table
                    .strings(&name, |x| v.push(x.map(str::to_owned)))
                    .map_err(bad)?;
                ColumnData::Strings(v)
            }
            None => {
                let dtype = table.df.column(&name).map(|c| c.dtype().to_string());
                tracing::warn!(column = %name, dtype = %dtype.unwrap_or_default(), "baseline: column type not profiled (numbers, strings and booleans are); left out");
                continue;
            }
        };
        out.push((name, data));
    }
    Ok(out)
}

/// Builds a profile from columns: every column but the label, the score and the
/// record fields (`ts`, `request_id`, `client_id`, ...) is a feature, numeric or
/// categorical by its type.
pub fn build(
    columns: Vec<(String, ColumnData)>,
    source: String,
    opts: &BuildOptions,
) -> Result<Baseline, String> {
    let rows = match columns.first() {
        Some((_, ColumnData::Numbers(v))) => v.len(),
        Some((_, ColumnData::Strings(v))) => v.len(),
        None => return Err("no columns".into()),
    };
    if rows == 0 {
        return Err("no rows: a profile needs data".into());
    }
    let mut features = Vec::new();
    let mut label = None;
    let mut score = None;
    let text_of = |data: &ColumnData| -> Vec<Option<String>> {
        match data {
            ColumnData::Strings(v) => v.clone(),
            ColumnData::Numbers(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
        }
    };
    let column = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, d)| d);
    let held_out = match &opts.true_label_column {
        None => None,
        Some(t) => {
            let truth = column(t).ok_or_else(|| format!("no true-label column {t:?}"))?;
            let predicted = column(&opts.label_column).ok_or_else(|| {
                format!(
                    "no prediction column {:?} to compare the true labels with",
                    opts.label_column
                )
            })?;
            let confidence: Vec<Option<f64>> = match column(&opts.score_column) {
                Some(ColumnData::Numbers(v)) => v.clone(),
                _ => Vec::new(),
            };
            Some(
                held_out(&text_of(truth), &text_of(predicted), &confidence)
                    .ok_or_else(|| format!("no row has both {t:?} and {:?}", opts.label_column))?,
            )
        }
    };
    let mut num_cols: Vec<&[Option<f64>]> = Vec::new();
    let mut cat_cols: Vec<&[Option<String>]> = Vec::new();
    for (name, data) in &columns {
        if Some(name) == opts.true_label_column.as_ref() {
            continue;
        }
        if *name == opts.label_column {
            label = Some(match data {
                ColumnData::Strings(v) => categories(v.iter().map(|s| s.as_deref())),
                ColumnData::Numbers(v) => {
                    let text: Vec<Option<String>> =
                        v.iter().map(|x| x.map(|x| x.to_string())).collect();
                    categories(text.iter().map(|s| s.as_deref()))
                }
            });
            continue;
        }
        if *name == opts.score_column {
            match data {
                ColumnData::Numbers(v) => score = Some(numeric(v)),
                ColumnData::Strings(_) => {
                    return Err(format!("the score column {name} is not numeric"));
                }
            }
            continue;
        }
        if NOT_FEATURES.contains(&name.as_str()) {
            continue;
        }
        let summary = match data {
            ColumnData::Numbers(v) => {
                num_cols.push(v);
                Summary::Numerical(numeric(v))
            }
            ColumnData::Strings(v) => {
                cat_cols.push(v);
                Summary::Categorical(categories(v.iter().map(|s| s.as_deref())))
            }
        };
        features.push(Feature {
            name: name.clone(),
            summary,
        });
    }
    if features.is_empty() {
        return Err(
            "no feature columns (every column is a record field, the label or the \
                    score)"
                .into(),
        );
    }
    let nums: Vec<&Numeric> = features
        .iter()
        .filter_map(|f| match &f.summary {
            Summary::Numerical(n) => Some(n),
            _ => None,
        })
        .collect();
    let cats: Vec<&Categories> = features
        .iter()
        .filter_map(|f| match &f.summary {
            Summary::Categorical(c) => Some(c),
            _ => None,
        })
        .collect();
    let grid = grid(&num_cols, &cat_cols, &nums, &cats, rows);
    let typicality = typicality(&num_cols, &nums, rows);
    Ok(Baseline {
        model: opts.model.clone(),
        rows: rows as u64,
        source,
        built_by: format!("inferwatch {}", env!("CARGO_PKG_VERSION")),
        features,
        label,
        score,
        grid,
        typicality,
        held_out,
    })
}

/// The typicality of every row (see [`Typicality`]); none without numeric features.
fn typicality(num_cols: &[&[Option<f64>]], nums: &[&Numeric], rows: usize) -> Option<Typicality> {
    if num_cols.is_empty() || rows == 0 {
        return None;
    }
    let mean: Vec<f64> = nums.iter().map(|n| n.mean).collect();
    let std: Vec<f64> = nums.iter().map(|n| n.std).collect();
    let mut num = vec![0.0; num_cols.len()];
    let mut d2: Vec<f64> = (0..rows)
        .map(|row| {
            for (x, col) in num.iter_mut().zip(num_cols) {
                *x = col[row].unwrap_or(f64::NAN);
            }
            squared_distance(&num, &mean, &std)
        })
        .collect();
    crate::stats::drift::sort_floats(&mut d2);
    let step = rows.div_ceil(NEAREST_ROWS).max(1);
    let z: Vec<Vec<f64>> = (0..rows)
        .step_by(step)
        .map(|row| {
            num_cols
                .iter()
                .zip(mean.iter().zip(&std))
                .map(|(col, (m, s))| match col[row] {
                    Some(x) if x.is_finite() => (x - m) / if *s > 0.0 { *s } else { 1.0 },
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    let nearest = nearest_distances(&z);
    Some(Typicality {
        q99: quantile(&d2, 0.99),
        nearest: (nearest.len() >= 20).then_some(nearest),
    })
}

/// A numeric column's profile (see the module's precision note).
pub fn numeric(v: &[Option<f64>]) -> Numeric {
    let mut finite: Vec<f64> = v
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let missing = v.iter().filter(|x| x.is_none_or(|x| x.is_nan())).count() as u64;
    let infinite = v.iter().flatten().filter(|x| x.is_infinite()).count() as u64;
    crate::stats::drift::sort_floats(&mut finite);
    let n = finite.len();
    let (mean, std) = if n == 0 {
        (f64::NAN, f64::NAN)
    } else {
        let mean = finite.iter().sum::<f64>() / n as f64;
        let var = finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        (mean, var.sqrt())
    };
    let q = |p: f64| {
        if n == 0 {
            f64::NAN
        } else {
            quantile(&finite, p)
        }
    };
    let values = {
        let mut out: Vec<(f64, u64)> = Vec::new();
        for &x in &finite {
            if let Some((_, c)) = out.last_mut().filter(|(v, _)| *v == x) {
                *c += 1;
            } else if out.len() == EXACT_VALUE_COUNTS {
                out.clear();
                break;
            } else {
                out.push((x, 1));
            }
        }
        (!out.is_empty()).then_some(out)
    };
    Numeric {
        count: n as u64,
        missing,
        infinite,
        mean,
        std,
        min: finite.first().copied().unwrap_or(f64::NAN),
        max: finite.last().copied().unwrap_or(f64::NAN),
        quantiles: [q(0.005), q(0.25), q(0.5), q(0.75), q(0.995)],
        points: quantile_points(&finite),
        values,
    }
}

/// The quantile summary of sorted values: the value at rank ⌈k·n/Q⌉ for k = 1..=Q, or
/// every value when n ≤ Q.
pub fn quantile_points(sorted: &[f64]) -> Vec<f64> {
    let n = sorted.len();
    if n <= QUANTILE_POINTS {
        return sorted.to_vec();
    }
    (1..=QUANTILE_POINTS)
        .map(|k| sorted[(k * n).div_ceil(QUANTILE_POINTS) - 1])
        .collect()
}

fn categories<'a>(v: impl Iterator<Item = Option<&'a str>>) -> Categories {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut missing = 0;
    for x in v {
        match x {
            Some(s) => *counts.entry(s).or_default() += 1,
            None => missing += 1,
        }
    }
    let count = counts.values().sum();
    let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let other = by_count.iter().skip(MAX_CATEGORIES).map(|x| x.1).sum();
    Categories {
        count,
        missing,
        counts: by_count
            .into_iter()
            .take(MAX_CATEGORIES)
            .map(|(k, c)| (k.to_owned(), c))
            .collect(),
        other,
    }
}

/// The coverage grid of the client statistics over every row (see `clients`).
fn grid(
    num_cols: &[&[Option<f64>]],
    cat_cols: &[&[Option<String>]],
    nums: &[&Numeric],
    cats: &[&Categories],
    rows: usize,
) -> Grid {
    let edges: Vec<[f64; 3]> = nums
        .iter()
        .map(|n| [n.quantiles[1], n.quantiles[2], n.quantiles[3]])
        .collect();
    let ids: Vec<HashMap<&str, u32>> = cats
        .iter()
        .map(|c| {
            c.counts
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i as u32))
                .collect()
        })
        .collect();
    let mut cells: HashMap<u64, u64> = HashMap::new();
    let mut num = vec![0.0; num_cols.len()];
    let mut cat = vec![0u32; cat_cols.len()];
    for row in 0..rows {
        for (x, col) in num.iter_mut().zip(num_cols) {
            *x = col[row].unwrap_or(f64::NAN);
        }
        for ((c, col), ids) in cat.iter_mut().zip(cat_cols).zip(&ids) {
            *c = col[row]
                .as_deref()
                .and_then(|s| ids.get(s).copied())
                .unwrap_or(u32::MAX);
        }
        *cells.entry(grid_cell(&edges, &num, &cat)).or_default() += 1;
    }
    let mut by_count: BTreeMap<u64, u64> = BTreeMap::new();
    for &c in cells.values() {
        *by_count.entry(c).or_default() += 1;
    }
    Grid {
        cells: by_count
            .into_iter()
            .map(|(c, n)| (c as f64 / rows as f64, n as f64))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition: for each row, the least RMS distance to another row,
    /// exact copies and NaN left out, by a plain double loop over all ordered pairs.
    #[test]
    fn nearest_distances_are_each_rows_least_rms_distance_to_another() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut z: Vec<Vec<f64>> = (0..60)
            .map(|_| (0..5).map(|_| next() * 4.0 - 2.0).collect())
            .collect();
        z.push(z[3].clone());
        z.push(z[3].clone());
        z[7][2] = f64::NAN;
        z.push(vec![1e300, -1e300, 0.0, 0.0, 0.0]);
        let mut expected: Vec<f64> = (0..z.len())
            .filter_map(|i| {
                (0..z.len())
                    .filter(|&j| j != i)
                    .map(|j| {
                        let s: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| (a - b) * (a - b)).sum();
                        (s / 5.0).sqrt()
                    })
                    .filter(|d| *d > 0.0)
                    .min_by(f64::total_cmp)
            })
            .collect();
        expected.sort_by(f64::total_cmp);
        let got = nearest_distances(&z);
        assert_eq!(got.len(), expected.len());
        assert_eq!(got.len(), z.len() - 1, "the row with a NaN has no distance");
        for (g, e) in got.iter().zip(&expected) {
            assert!(g == e || ((g - e) / e).abs() < 1e-12, "{g} vs {e}");
        }
    }

    fn opts() -> BuildOptions {
        BuildOptions {
            model: "m".into(),
            label_column: "prediction_label".into(),
            score_column: "prediction_score".into(),
            true_label_column: None,
        }
    }

    /// Deterministic uniform values in [0, 1), the same as `scripts/drift_fixtures.py`
    /// makes (SplitMix64, top 53 bits).
    pub(crate) fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    /// The eight-lane sum equals the plain sum of squares (within rounding) at every
    /// length around the lane width, and is exactly 0 for equal rows.
    #[test]
    fn sum_of_squared_differences_at_every_length() {
        for n in 0..=27usize {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 10.0).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let got = sum_squared_differences(&a, &b);
            assert!(
                (got - plain).abs() <= 1e-12 * plain.max(1.0),
                "n {n}: {got} vs {plain}"
            );
            assert_eq!(sum_squared_differences(&a, &a), 0.0);
            if n < 8 {
                // Rows this short take a shortcut that must give the eight-lane bits.
                let lanes = [0.0f64; 8].iter().sum::<f64>();
                let tail: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
                assert_eq!(got.to_bits(), (lanes + tail).to_bits(), "n {n}");
            }
        }
    }

    #[test]
    fn a_profile_survives_its_file_and_a_changed_byte_is_refused() {
        let cols = vec![
            (
                "amount".to_owned(),
                ColumnData::Numbers(uniform(1, 5000).into_iter().map(Some).collect()),
            ),
            (
                "country".to_owned(),
                ColumnData::Strings(
                    (0..5000)
                        .map(|i| (i % 7 != 0).then(|| ["DE", "FR", "US"][i % 3].to_owned()))
                        .collect(),
                ),
            ),
            (
                "prediction_label".to_owned(),
                ColumnData::Strings((0..5000).map(|i| Some(format!("c{}", i % 2))).collect()),
            ),
            (
                "request_id".to_owned(),
                ColumnData::Strings((0..5000).map(|i| Some(format!("r{i}"))).collect()),
            ),
        ];
        let b = build(cols, "train.csv".into(), &opts()).unwrap();
        assert_eq!(
            b.features.len(),
            2,
            "request_id and the label are no features"
        );
        let c = b.categorical("country").unwrap();
        assert_eq!(c.missing, 715);
        assert_eq!(c.count + c.missing, 5000);
        assert_eq!(b.label.as_ref().unwrap().counts["c0"], 2500);
        let bytes = b.to_bytes();
        // serde_json reads a float back within an ulp of what it wrote (exactly with
        // its `float_roundtrip` feature, which would rebuild the whole tree): compare
        // the numbers with that tolerance, the rest exactly.
        let back = Baseline::from_bytes(&bytes).unwrap();
        let close = |a: f64, b: f64| a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs();
        let (Summary::Numerical(x), Summary::Numerical(y)) =
            (&back.features[0].summary, &b.features[0].summary)
        else {
            panic!("amount is numerical");
        };
        assert_eq!(x.points.len(), y.points.len());
        for (p, q) in x
            .points
            .iter()
            .zip(&y.points)
            .chain(x.quantiles.iter().zip(&y.quantiles))
        {
            assert!(close(*p, *q), "{p} vs {q}");
        }
        assert!(close(x.mean, y.mean) && close(x.std, y.std));
        assert_eq!(back.features[1], b.features[1]);
        assert_eq!(
            (&back.label, back.rows, &back.model),
            (&b.label, b.rows, &b.model)
        );
        let mut changed = bytes.clone();
        let at = changed.len() / 2;
        changed[at] = if changed[at] == b'1' { b'2' } else { b'1' };
        let e = Baseline::from_bytes(&changed).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
        let e = Baseline::from_bytes(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
        let e = Baseline::from_bytes(b"{\"a\":1}\n{}").unwrap_err();
        assert!(e.contains("not an inferwatch baseline"), "{e}");
    }

    #[test]
    fn the_summary_cdf_is_within_its_stated_bound_with_ties_and_without() {
        // Continuous, and discrete (24 values with uneven counts).
        let cont: Vec<f64> = uniform(7, 100_000).iter().map(|u| u * u * 10.0).collect();
        let disc: Vec<f64> = uniform(8, 100_000)
            .iter()
            .map(|u| (u * u * 24.0).floor())
            .collect();
        for data in [cont, disc] {
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            let points = quantile_points(&sorted);
            assert_eq!(points.len(), QUANTILE_POINTS);
            let n = sorted.len() as f64;
            let bound = 1.0 / QUANTILE_POINTS as f64 + 1.0 / n;
            for &x in sorted.iter().step_by(97).chain(&points) {
                let f = sorted.partition_point(|&y| y <= x) as f64 / n;
                let g = points.partition_point(|&y| y <= x) as f64 / points.len() as f64;
                assert!((f - g).abs() <= bound, "x={x}: F={f} G={g}");
            }
        }
    }

    fn shaped(kind: &str, u: &[f64]) -> Vec<f64> {
        u.iter()
            .map(|&u| match kind {
                "square" => u * u * 10.0,
                "square_shifted" => u * u * 10.0 + 0.3,
                "linear" => u * 10.0,
                "square_steps" => (u * u * 24.0).floor(),
                "linear_steps" => (u * 24.0).floor(),
                other => panic!("unknown shape {other}"),
            })
            .collect()
    }

    #[derive(serde::Deserialize)]
    struct SketchCase {
        ref_kind: String,
        ref_seed: u64,
        n_ref: usize,
        cur_kind: String,
        cur_seed: u64,
        n_cur: usize,
        statistic: f64,
        wasserstein_normed: f64,
    }

    /// The stated precision, against SciPy's exact values on a 1,000,000-row reference
    /// (`scripts/drift_fixtures.py`, section `sketch`).
    #[test]
    fn statistics_against_a_profile_are_within_the_stated_precision_of_scipy() {
        use crate::stats::drift as st;
        #[derive(serde::Deserialize)]
        struct Fixtures {
            sketch: Vec<SketchCase>,
        }
        let f: Fixtures =
            serde_json::from_str(include_str!("../stats/drift_fixtures.json")).unwrap();
        assert_eq!(f.sketch.len(), 5);
        for c in &f.sketch {
            let reference = shaped(&c.ref_kind, &uniform(c.ref_seed, c.n_ref));
            let mut cur = shaped(&c.cur_kind, &uniform(c.cur_seed, c.n_cur));
            cur.sort_by(f64::total_cmp);
            let profile = numeric(&reference.iter().map(|&x| Some(x)).collect::<Vec<_>>());
            let case = format!("{} vs {}", c.ref_kind, c.cur_kind);
            let (t, _) = st::ks_2samp_summary(&profile.points, profile.count, &cur).unwrap();
            let bound = 1.0 / QUANTILE_POINTS as f64 + 1.0 / c.n_ref as f64;
            assert!(
                (t.statistic - c.statistic).abs() <= bound,
                "{case}: KS {} vs SciPy {}",
                t.statistic,
                c.statistic
            );
            let w =
                st::wasserstein_sorted(&profile.wasserstein_points(), &cur).unwrap() / profile.std;
            let w_bound = (profile.max - profile.min) / QUANTILE_POINTS as f64 / profile.std;
            assert!(
                (w - c.wasserstein_normed).abs() <= w_bound,
                "{case}: Wasserstein {w} vs SciPy {}",
                c.wasserstein_normed
            );
            let mut sorted = reference.clone();
            sorted.sort_by(f64::total_cmp);
            let (exact, _) = st::binned_shares_sorted(&sorted, sorted.len() as u64, &cur).unwrap();
            let (approx, _) =
                st::binned_shares_sorted(&profile.points, sorted.len() as u64, &cur).unwrap();
            assert_eq!(exact.len(), approx.len(), "{case}");
            for (e, a) in exact.iter().zip(&approx) {
                assert!((e - a).abs() <= 2.0 * bound, "{case}: share {a} vs {e}");
            }
        }
    }

    #[test]
    fn few_distinct_values_keep_exact_counts() {
        let v: Vec<Option<f64>> = (0..1000)
            .map(|i| match i % 10 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(f64::INFINITY),
                k => Some((k % 3) as f64),
            })
            .collect();
        let n = numeric(&v);
        assert_eq!((n.count, n.missing, n.infinite), (700, 200, 100));
        assert_eq!(
            n.values,
            Some(vec![(0.0, 300), (1.0, 200), (2.0, 200)]),
            "i % 10 in 3, 6, 9 → 0; 4, 7 → 1; 5, 8 → 2"
        );
        let many = numeric(&(0..100).map(|i| Some(i as f64)).collect::<Vec<_>>());
        assert_eq!(many.values, None);
        assert_eq!(many.points.len(), 100, "fewer than Q values: all kept");
    }
}
