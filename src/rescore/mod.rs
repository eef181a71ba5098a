//! The embedded model: an ONNX copy of a monitored model, run by tract (pure Rust,
//! nothing downloaded at build time), its SHA-256 checked against the config before a
//! byte of it is parsed. A mismatch, a file that does not load, or an input shape that
//! does not match the declared features is a startup error (exit code 2).
//!
//! [`rescorer`] picks the records to re-score (flagged clients and a sample, within a
//! budget per second of event time) and fills the `rescored` table; [`squeeze`] is the
//! feature-squeezing detector of adversarial inputs.

pub mod rescorer;
pub mod squeeze;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

/// One entry of `models:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The `model` value of the records this model serves.
    pub name: String,
    /// The `model_version` of the records this file serves. Records of another version
    /// are not re-scored against it (counted as `other_version`); without it, every
    /// version is. Give one entry per deployed version.
    #[serde(default)]
    pub version: Option<String>,
    /// The ONNX file (relative to the config file).
    pub path: PathBuf,
    /// Its SHA-256, hex: checked before loading.
    pub sha256: String,
    /// Feature names in the order of the model's input columns.
    pub features: Vec<String>,
    /// The output holding the probability vector.
    #[serde(default = "default_probabilities")]
    pub probabilities_output: String,
    /// Label names, in the order of the probability vector.
    pub labels: Vec<String>,
    /// Feature squeezing (adversarial inputs); without it `squeeze_score` is null.
    #[serde(default)]
    pub squeeze: Option<squeeze::SqueezeConfig>,
}

fn default_probabilities() -> String {
    "probabilities".into()
}

/// A loaded, checked, optimized model.
pub struct EmbeddedModel {
    pub name: String,
    pub features: Vec<String>,
    pub labels: Vec<String>,
    plan: Arc<TypedRunnableModel>,
    /// Index of the probability output among the plan's outputs.
    output: usize,
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::stable_hash::hex(&Sha256::digest(bytes))
}

/// The class a probability vector answers: the most probable, the first of equals.
pub fn top_class(probs: &[f32]) -> usize {
    (0..probs.len())
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

impl EmbeddedModel {
    pub fn load(c: &ModelConfig) -> Result<EmbeddedModel, String> {
        let at = format!("models.{}", c.name);
        let bytes = std::fs::read(&c.path)
            .map_err(|e| format!("{at}: cannot read {}: {e}", c.path.display()))?;
        let found = sha256_hex(&bytes);
        if !found.eq_ignore_ascii_case(c.sha256.trim()) {
            return Err(format!(
                "{at}: {} has SHA-256 {found}, but the config pins {}: refusing to load it \
                 (a different or tampered model file; pin the new hash only if the file \
                 is the one you meant)",
                c.path.display(),
                c.sha256.trim()
            ));
        }
        if c.labels.is_empty() || c.features.is_empty() {
            return Err(format!("{at}: give the model's features and labels"));
        }
        Self::from_bytes(c, &bytes, &at)
    }

    fn from_bytes(c: &ModelConfig, bytes: &[u8], at: &str) -> Result<EmbeddedModel, String> {
        let bad = |what: &str, e: TractError| format!("{at}: {what}: {e:#}");
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| bad("not a loadable ONNX model", e))?;
        let output = model
            .output_outlets()
            .map_err(|e| bad("no outputs", e))?
            .iter()
            .position(|o| model.outlet_label(*o) == Some(c.probabilities_output.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = model
                    .output_outlets()
                    .map(|outs| outs.iter().filter_map(|o| model.outlet_label(*o)).collect())
                    .unwrap_or_default();
                format!(
                    "{at}: the model has no output {:?} (its outputs: {})",
                    c.probabilities_output,
                    names.join(", ")
                )
            })?;
        let batch = model.sym("batch");
        let fact = f32::fact([batch.to_dim(), (c.features.len() as i64).to_dim()]);
        let typed = model
            .with_input_fact(0, fact.into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| {
                bad(
                    &format!(
                        "its input does not take {} features per row (the features declared)",
                        c.features.len()
                    ),
                    e,
                )
            })?;
        let plan = typed
            .into_runnable()
            .map_err(|e| bad("cannot plan the model", e))?;
        let m = EmbeddedModel {
            name: c.name.clone(),
            features: c.features.clone(),
            labels: c.labels.clone(),
            plan,
            output,
        };
        // One row of zeros: the declared labels must match the probability vector.
        let probe = m
            .probabilities(&[vec![0.0; c.features.len()]])
            .map_err(|e| {
                format!(
                    "{at}: a row of the {} features declared does not run through the model \
                 ({e}): declare the features of its input, in order",
                    c.features.len()
                )
            })?;
        if probe[0].len() != c.labels.len() {
            return Err(format!(
                "{at}: the model gives {} probabilities per row, the config names {} labels",
                probe[0].len(),
                c.labels.len()
            ));
        }
        Ok(m)
    }

    /// The probability vector of each row (rows in the declared feature order).
    pub fn probabilities(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, String> {
        let n = self.features.len();
        if rows.iter().any(|r| r.len() != n) {
            return Err(format!("model {}: each row needs {n} features", self.name));
        }
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let input = tract_ndarray::Array2::from_shape_vec((rows.len(), n), flat)
            .map_err(|e| format!("model {}: {e}", self.name))?;
        let out = self
            .plan
            .run(tvec!(Tensor::from(input).into()))
            .map_err(|e| format!("model {}: {e:#}", self.name))?;
        let probs = out
            .get(self.output)
            .ok_or_else(|| format!("model {}: no probability output", self.name))?
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("model {}: {e:#}", self.name))?
            .into_dimensionality::<tract_ndarray::Ix2>()
            .map_err(|e| format!("model {}: {e}", self.name))?
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        Ok(probs)
    }
}

/// Loads and checks every configured model (relative paths against `base`), with its
/// squeezer (ranges from the config or from the model's baseline), against the columns
/// of `events`.
pub fn serve(
    models: &[ModelConfig],
    base: &Path,
    events: &datafusion::arrow::datatypes::Schema,
    baselines: &[Arc<crate::baseline::Baseline>],
) -> Result<Vec<rescorer::ServedModel>, String> {
    let mut names = std::collections::BTreeSet::new();
    let mut served = Vec::new();
    for c in models {
        if !names.insert((c.name.as_str(), c.version.as_deref())) {
            return Err(match &c.version {
                Some(v) => format!("models: {} version {v} is listed twice", c.name),
                None => format!("models: {} is listed twice", c.name),
            });
        }
        if c.version.is_none() && models.iter().filter(|m| m.name == c.name).count() > 1 {
            return Err(format!(
                "models: {} is listed more than once, so each entry needs its version",
                c.name
            ));
        }
        let mut c = c.clone();
        if c.path.is_relative() {
            c.path = base.join(&c.path);
        }
        let model = EmbeddedModel::load(&c)?;
        // Features first: a typo in one is a clearer error than its missing range.
        let mut model = rescorer::ServedModel::new(model, None, events)?;
        model.version = c.version.clone();
        let baseline = baselines.iter().find(|b| b.model == c.name).map(|b| &**b);
        model.squeeze = c
            .squeeze
            .as_ref()
            .map(|s| squeeze::Squeezer::new(s, &c.name, &c.features, baseline))
            .transpose()?;
        served.push(model);
    }
    Ok(served)
}

#[cfg(test)]
mod tests;
