//! Feature squeezing (Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial
//! Examples in Deep Neural Networks", NDSS 2018), for tabular inputs: each numeric
//! feature is rounded to one of `levels` evenly spaced values within its baseline range
//! (values outside the range go to its ends; a feature the baseline saw at one value
//! only, such as an image's always-blank border pixel, is squeezed to that value). An
//! adversarial input sits where a small change moves the model's answer, so its
//! probabilities move when it is squeezed; an ordinary input's barely do. Score = L1 distance between the probability vectors of
//! the input and of the squeezed input, as in the paper.
//!
//! The threshold is set from benign traffic at a chosen false-positive rate:
//! `inferwatch model calibrate` computes the scores of a benign sample and prints their
//! (1 − fpr) quantile (5 % by default, the paper's choice).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::EmbeddedModel;

/// `squeeze:` of a model.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqueezeConfig {
    /// Values each feature is rounded to (at least 2).
    #[serde(default = "default_levels")]
    pub levels: u32,
    /// Scores above this mark an input as adversarial (`inferwatch model calibrate`).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Per feature `[min, max]`; features not listed take their baseline's range.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

fn default_levels() -> u32 {
    16
}

impl Default for SqueezeConfig {
    fn default() -> Self {
        Self {
            levels: default_levels(),
            threshold: None,
            ranges: BTreeMap::new(),
        }
    }
}

/// A model's squeezer, its ranges resolved.
#[derive(Debug, Clone)]
pub struct Squeezer {
    lo: Vec<f32>,
    hi: Vec<f32>,
    levels: u32,
    pub threshold: Option<f64>,
}

impl Squeezer {
    /// Ranges from the config, else from the model's baseline; every feature needs one.
    pub fn new(
        c: &SqueezeConfig,
        model: &str,
        features: &[String],
        baseline: Option<&crate::baseline::Baseline>,
    ) -> Result<Squeezer, String> {
        let at = format!("models.{model}.squeeze");
        if c.levels < 2 {
            return Err(format!("{at}.levels: give at least 2 levels"));
        }
        if let Some(t) = c.threshold
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            return Err(format!(
                "{at}.threshold: {t} is not an L1 distance of probabilities (0 to 2)"
            ));
        }
        if let Some(name) = c.ranges.keys().find(|n| !features.contains(n)) {
            return Err(format!(
                "{at}.ranges: {name} is not one of the model's features"
            ));
        }
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for f in features {
            let [a, b] = match c.ranges.get(f) {
                Some(r) => *r,
                None => {
                    let n = baseline.and_then(|b| b.numeric(f)).ok_or_else(|| {
                        format!(
                            "{at}: no range for feature {f}: give the baseline of model {model} \
                             (baselines: or --baseline) or set ranges.{f}: [min, max]"
                        )
                    })?;
                    [n.min, n.max]
                }
            };
            if !(a.is_finite() && b.is_finite() && a <= b) {
                return Err(format!(
                    "{at}: the range of {f} is [{a}, {b}]: it needs two finite values, min <= max"
                ));
            }
            lo.push(a as f32);
            hi.push(b as f32);
        }
        Ok(Squeezer {
            lo,
            hi,
            levels: c.levels,
            threshold: c.threshold,
        })
    }

    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// The row with each feature rounded to its nearest level.
    pub fn squeeze(&self, row: &[f32]) -> Vec<f32> {
        let steps = (self.levels - 1) as f32;
        row.iter()
            .zip(self.lo.iter().zip(&self.hi))
            .map(|(&x, (&lo, &hi))| {
                if hi <= lo {
                    return lo;
                }
                let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
                lo + (t * steps).round() / steps * (hi - lo)
            })
            .collect()
    }

    /// Squeezing scores of rows whose probabilities are known.
    pub fn scores(
        &self,
        model: &EmbeddedModel,
        rows: &[Vec<f32>],
        probs: &[Vec<f32>],
    ) -> Result<Vec<f64>, String> {
        let squeezed: Vec<Vec<f32>> = rows.iter().map(|r| self.squeeze(r)).collect();
        let after = model.probabilities(&squeezed)?;
        Ok(probs.iter().zip(&after).map(|(a, b)| l1(a, b)).collect())
    }
}

/// L1 distance of two probability vectors.
pub fn l1(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum()
}

/// The threshold that flags a share `fpr` of these benign scores: their (1 − fpr)
/// quantile, taken as the smallest score with at most `fpr` of the scores above it.
pub fn threshold_at(scores: &[f64], fpr: f64) -> Option<f64> {
    if scores.is_empty() || !(0.0..1.0).contains(&fpr) {
        return None;
    }
    let mut s: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    // At most floor(fpr·n) scores may lie strictly above the threshold.
    let above = (fpr * n as f64).floor() as usize;
    s.get(n - 1 - above.min(n - 1)).copied()
}

/// The squeezing scores of a benign sample, and the threshold they give.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub rows: usize,
    /// Rows left out because a feature was missing.
    pub skipped: usize,
    pub fpr: f64,
    pub threshold: f64,
    /// Share of the sample scoring above the threshold (at most `fpr`).
    pub flagged: f64,
    /// Score quantiles at 50, 90, 95 and 99 %.
    pub quantiles: [f64; 4],
}

/// Scores the rows of a file of benign inputs (a column per feature) and picks the
/// threshold that flags `fpr` of them.
pub fn calibrate(
    model: &EmbeddedModel,
    squeezer: &Squeezer,
    table: &crate::baseline::Table,
    fpr: f64,
) -> Result<Calibration, String> {
    if !(0.0..1.0).contains(&fpr) || fpr == 0.0 {
        return Err(format!(
            "--fpr {fpr}: give a share between 0 and 1, such as 0.05"
        ));
    }
    let mut columns: Vec<Vec<Option<f64>>> = Vec::new();
    for f in &model.features {
        let mut col = Vec::new();
        if !table.numbers(f, |v| col.push(v))? {
            return Err(format!(
                "the input has no numeric column {f} (the model's features: {})",
                model.features.join(", ")
            ));
        }
        columns.push(col);
    }
    let n = columns.first().map_or(0, Vec::len);
    let rows: Vec<Vec<f32>> = (0..n)
        .filter_map(|i| {
            columns
                .iter()
                .map(|c| c[i].filter(|v| v.is_finite()).map(|v| v as f32))
                .collect()
        })
        .collect();
    if rows.is_empty() {
        return Err("no row of the input has every feature".into());
    }
    let mut scores = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(4096) {
        let probs = model.probabilities(chunk)?;
        scores.extend(squeezer.scores(model, chunk, &probs)?);
    }
    let threshold = threshold_at(&scores, fpr).ok_or("no finite score")?;
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| crate::stats::quantile(&sorted, p);
    Ok(Calibration {
        rows: rows.len(),
        skipped: n - rows.len(),
        fpr,
        threshold,
        flagged: scores.iter().filter(|s| **s > threshold).count() as f64 / scores.len() as f64,
        quantiles: [q(0.5), q(0.9), q(0.95), q(0.99)],
    })
}
