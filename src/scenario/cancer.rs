//! Traffic of the second monitored model, `breast_cancer_lr` (the embedded test model of
//! `models/`, made by `scripts/train_model.py`): the `evasion` and `tampering`
//! scenarios. Honest inputs are rows of the model's training split, each feature
//! jittered by 1 %; honest predictions are computed in float64 from the fitted
//! parameters (as a serving stack would, so the embedded float32 copy differs by
//! rounding only).
//!
//! - Evasion: inputs the model calls malignant, moved by FGSM (the sign of the
//!   gradient of the logit, in standardized units — exact for a logistic regression)
//!   just far enough to be called benign, plus a small random margin: the least
//!   visible adversarial input.
//! - Tampering: honest inputs whose logged prediction comes from another model (the
//!   same data, 100× the regularization), as a swapped model or forged logs would.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

/// The `model` value of this traffic, and the name of the embedded model.
pub const MODEL: &str = "breast_cancer_lr";

const META: &str = include_str!("../../models/breast_cancer_lr.json");
const TRAIN: &str = include_str!("../../models/breast_cancer_train.csv");

/// P(label 1) = sigmoid(((x − mean) / scale) · coef + intercept).
#[derive(Debug, Clone, Deserialize)]
pub struct Linear {
    mean: Vec<f64>,
    scale: Vec<f64>,
    coef: Vec<f64>,
    intercept: f64,
}

impl Linear {
    pub fn logit(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.coef)
            .map(|(((x, m), s), c)| (x - m) / s * c)
            .sum::<f64>()
            + self.intercept
    }

    pub fn probs(&self, x: &[f64]) -> [f64; 2] {
        let p = 1.0 / (1.0 + (-self.logit(x)).exp());
        [1.0 - p, p]
    }

    /// FGSM towards the other label: each feature moves by ε standard deviations along
    /// the sign of the logit's gradient, ε the smallest step that crosses the boundary
    /// plus `margin` (in logit units) beyond it.
    pub fn fgsm(&self, x: &[f64], margin: f64) -> Vec<f64> {
        let z = self.logit(x);
        let toward = if z < 0.0 { 1.0 } else { -1.0 };
        // Moving every feature by ε·scale·sign(coef)·toward changes z by ε·Σ|coef|·toward.
        let l1: f64 = self.coef.iter().map(|c| c.abs()).sum();
        let eps = (z.abs() + margin) / l1;
        x.iter()
            .zip(&self.scale)
            .zip(&self.coef)
            .map(|((x, s), c)| x + toward * eps * s * c.signum())
            .collect()
    }
}

#[derive(Deserialize)]
struct Meta {
    features: Vec<String>,
    labels: Vec<String>,
    linear: Linear,
    other_model: Linear,
}

/// Who called the model, and when.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub ts: &'a str,
    pub request_id: &'a str,
    pub client: &'a str,
    pub latency: f64,
}

/// The data and both models.
pub struct Cancer {
    pub features: Vec<String>,
    pub labels: Vec<String>,
    pub model: Linear,
    pub other: Linear,
    pub train: Vec<Vec<f64>>,
    jitter: Normal<f64>,
}

impl Cancer {
    pub fn load() -> Cancer {
        let meta: Meta = serde_json::from_str(META).expect("models/breast_cancer_lr.json parses");
        let train = TRAIN
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(',')
                    .map(|v| v.parse().expect("a number in breast_cancer_train.csv"))
                    .collect()
            })
            .collect();
        Cancer {
            features: meta.features,
            labels: meta.labels,
            model: meta.linear,
            other: meta.other_model,
            train,
            jitter: Normal::new(0.0, 0.01).expect("valid normal"),
        }
    }

    /// A training row, each feature scaled by 1 + N(0, 1 %).
    pub fn honest(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let row = &self.train[rng.random_range(0..self.train.len())];
        row.iter()
            .map(|v| round6(v * (1.0 + self.jitter.sample(rng))))
            .collect()
    }

    /// An honest input the model calls malignant, moved by FGSM to be called benign.
    pub fn evasive(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        loop {
            let x = self.honest(rng);
            if self.model.logit(&x) < 0.0 {
                let margin = rng.random_range(0.1..0.6);
                return self
                    .model
                    .fgsm(&x, margin)
                    .into_iter()
                    .map(round6)
                    .collect();
            }
        }
    }

    /// One inference record with the given logged probabilities.
    pub fn write(&self, out: &mut Vec<u8>, call: &Call, x: &[f64], probs: [f64; 2]) {
        let Call {
            ts,
            request_id,
            client,
            latency,
        } = *call;
        let top = usize::from(probs[1] >= 0.5);
        let _ = write!(
            out,
            "{{\"ts\":\"{ts}\",\"request_id\":\"{request_id}\",\"client_id\":\"{client}\",\
             \"model\":\"{MODEL}\",\"model_version\":\"1\",\"features\":{{"
        );
        for (i, (name, v)) in self.features.iter().zip(x).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{v}");
        }
        let _ = write!(
            out,
            "}},\"prediction\":{{\"label\":\"{}\",\"score\":{:.7},\"probs\":[{:.7},{:.7}]}},\
             \"latency_ms\":{latency:.2}}}",
            self.labels[top], probs[top], probs[0], probs[1]
        );
    }
}

/// Six decimals: the record carries the exact value the predictions were computed from.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
