//! Classification performance from counts: what one span of labelled predictions adds up
//! to ([`Tally`]), and the measures the `performance` tables show, defined as
//! scikit-learn defines them (`accuracy_score`, `recall_score`, `precision_score`,
//! `f1_score(average="macro")`, `log_loss`), plus the expected calibration error over
//! ten equal-width confidence bins (bins as `sklearn.calibration.calibration_curve`
//! makes them) and confidence-based estimates of accuracy and recall.
//!
//! A tally is additive: the tables keep one per minute of prediction time and add the
//! minutes a row covers.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

/// Confidence bins of the calibration error.
pub const BINS: usize = crate::stats::CONFIDENCE_BINS;

/// Labelled reference records a confidence bin needs to calibrate the estimate.
pub const MIN_BIN: u64 = 30;

/// What a set of predictions (and the labels that arrived for them) adds up to. `k`
/// classes; a logged label outside them is predicted class `k` ("other").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Predictions, labelled or not.
    pub predictions: u64,
    /// Of them, with logged probabilities (the estimates need them).
    pub with_probs: u64,
    /// Σ of the top probability over predictions with probabilities: the expected
    /// number correct (confidence-based estimation).
    pub expected_correct: f64,
    /// Per class c, Σ p_c over predictions with probabilities: the expected support.
    pub expected_support: Vec<f64>,
    /// Per class c, Σ p_c over those predicted c: the expected true positives.
    pub expected_tp: Vec<f64>,
    /// Per confidence bin: predictions with probabilities and Σ of their confidence.
    pub confidence_bins: Vec<(u64, f64)>,
    /// Labelled predictions.
    pub labelled: u64,
    /// `confusion[true * (k + 1) + predicted]`, predicted `k` = a label outside the classes.
    pub confusion: Vec<u64>,
    /// Labelled predictions with probabilities, Σ −ln p(true class) over them, and Σ of
    /// their top probabilities (the estimate on exactly the labelled records).
    pub scored: u64,
    pub log_loss_sum: f64,
    pub expected_correct_labelled: f64,
    /// Per confidence bin: labelled predictions, Σ confidence, number correct.
    pub bins: Vec<(u64, f64, u64)>,
}

impl Tally {
    pub fn new(k: usize) -> Self {
        Self {
            predictions: 0,
            with_probs: 0,
            expected_correct: 0.0,
            expected_support: vec![0.0; k],
            expected_tp: vec![0.0; k],
            confidence_bins: vec![(0, 0.0); BINS],
            labelled: 0,
            confusion: vec![0; k * (k + 1)],
            scored: 0,
            log_loss_sum: 0.0,
            expected_correct_labelled: 0.0,
            bins: vec![(0, 0.0, 0); BINS],
        }
    }

    pub fn classes(&self) -> usize {
        self.expected_support.len()
    }

    /// A prediction: its class (`k` for other) and its probabilities, when logged and
    /// of the right length.
    pub fn predict(&mut self, predicted: usize, probs: Option<&[f32]>) {
        self.predictions += 1;
        let Some(p) = probs else { return };
        self.with_probs += 1;
        let conf = confidence(p, predicted);
        self.expected_correct += conf;
        let b = &mut self.confidence_bins[bin(conf)];
        b.0 += 1;
        b.1 += conf;
        for (s, &q) in self.expected_support.iter_mut().zip(p) {
            *s += f64::from(q);
        }
        if let (Some(tp), Some(&q)) = (self.expected_tp.get_mut(predicted), p.get(predicted)) {
            *tp += f64::from(q);
        }
    }

    /// The label of a prediction counted with [`Tally::predict`].
    pub fn label(&mut self, truth: usize, predicted: usize, probs: Option<&[f32]>) {
        let k = self.classes();
        self.labelled += 1;
        self.confusion[truth * (k + 1) + predicted.min(k)] += 1;
        let Some(p) = probs else { return };
        self.scored += 1;
        let q = f64::from(p[truth]).clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        self.log_loss_sum -= q.ln();
        let conf = confidence(p, predicted);
        self.expected_correct_labelled += conf;
        let b = &mut self.bins[bin(conf)];
        b.0 += 1;
        b.1 += conf;
        b.2 += u64::from(truth == predicted);
    }

    /// Adds another tally of the same classes.
    pub fn add(&mut self, o: &Tally) {
        self.predictions += o.predictions;
        self.with_probs += o.with_probs;
        self.expected_correct += o.expected_correct;
        for (a, b) in self.expected_support.iter_mut().zip(&o.expected_support) {
            *a += b;
        }
        for (a, b) in self.expected_tp.iter_mut().zip(&o.expected_tp) {
            *a += b;
        }
        for (a, b) in self.confidence_bins.iter_mut().zip(&o.confidence_bins) {
            a.0 += b.0;
            a.1 += b.1;
        }
        self.labelled += o.labelled;
        for (a, b) in self.confusion.iter_mut().zip(&o.confusion) {
            *a += b;
        }
        self.scored += o.scored;
        self.log_loss_sum += o.log_loss_sum;
        self.expected_correct_labelled += o.expected_correct_labelled;
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 += b.2;
        }
    }

    fn cell(&self, truth: usize, predicted: usize) -> u64 {
        self.confusion[truth * (self.classes() + 1) + predicted]
    }

    /// Labelled records of class c predicted c.
    pub fn tp(&self, c: usize) -> u64 {
        self.cell(c, c)
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes()).map(|c| self.cell(c, c)).sum()
    }

    /// Labelled records of class c.
    pub fn support(&self, c: usize) -> u64 {
        (0..=self.classes()).map(|p| self.cell(c, p)).sum()
    }

    /// Labelled records predicted c.
    pub fn predicted(&self, c: usize) -> u64 {
        (0..self.classes()).map(|t| self.cell(t, c)).sum()
    }

    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.correct(), self.labelled)
    }

    pub fn recall(&self, c: usize) -> Option<f64> {
        ratio(self.cell(c, c), self.support(c))
    }

    pub fn precision(&self, c: usize) -> Option<f64> {
        ratio(self.cell(c, c), self.predicted(c))
    }

    /// 2·TP / (2·TP + FP + FN); undefined when the class was neither true nor predicted.
    pub fn f1(&self, c: usize) -> Option<f64> {
        let tp = self.cell(c, c);
        ratio(2 * tp, self.support(c) + self.predicted(c))
    }

    /// Mean F1 over the classes that occur as a label or a prediction (scikit-learn's
    /// `average="macro"` without `labels=`).
    pub fn macro_f1(&self) -> Option<f64> {
        let f: Vec<f64> = (0..self.classes()).filter_map(|c| self.f1(c)).collect();
        (!f.is_empty()).then(|| f.iter().sum::<f64>() / f.len() as f64)
    }

    pub fn log_loss(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.log_loss_sum / self.scored as f64)
    }

    /// Σ over bins of (share of records) × |accuracy − mean confidence|.
    pub fn calibration_error(&self) -> Option<f64> {
        (self.scored > 0).then(|| {
            self.bins
                .iter()
                .filter(|b| b.0 > 0)
                .map(|&(_, conf, correct)| (correct as f64 - conf).abs())
                .sum::<f64>()
                / self.scored as f64
        })
    }

    /// Mean top probability over every prediction with probabilities.
    pub fn estimated_accuracy(&self) -> Option<f64> {
        (self.with_probs > 0).then(|| self.expected_correct / self.with_probs as f64)
    }

    /// Expected accuracy with the confidence calibrated on `reference`'s labelled
    /// records (histogram binning, as confidence-based estimation calibrates on labelled
    /// reference data): each prediction counts the accuracy the reference achieved at
    /// its confidence bin. Where the reference has fewer than [`MIN_BIN`] labelled
    /// records in a bin (a new service, or after a gap), those pooled with the
    /// baseline's held-out records in the bin and this span's own labelled ones (the
    /// labels as they arrive), made up to [`MIN_BIN`] with the prediction's own
    /// confidence where even these are fewer.
    pub fn calibrated_accuracy(
        &self,
        reference: &Tally,
        baseline: &[(u64, f64, u64)],
    ) -> Option<f64> {
        calibrated(
            self.confidence_bins.iter().copied(),
            reference,
            baseline,
            &self.bins,
        )
    }

    /// The same estimate over the labelled records only: comparable with
    /// [`Tally::accuracy`] record for record.
    pub fn calibrated_accuracy_labelled(
        &self,
        reference: &Tally,
        baseline: &[(u64, f64, u64)],
    ) -> Option<f64> {
        calibrated(
            self.bins.iter().map(|&(n, conf, _)| (n, conf)),
            reference,
            baseline,
            &self.bins,
        )
    }

    /// Mean confidence minus accuracy over the labelled records: how far the model's
    /// confidence overstates how often it is right.
    pub fn confidence_gap(&self) -> Option<f64> {
        Some(self.estimated_accuracy_labelled()? - self.accuracy_scored()?)
    }

    /// Accuracy over the labelled records with probabilities (those the confidence
    /// gap compares with).
    fn accuracy_scored(&self) -> Option<f64> {
        let correct: u64 = self.bins.iter().map(|b| b.2).sum();
        ratio(correct, self.scored)
    }

    /// The same over the labelled ones: comparable with [`Tally::accuracy`] record for
    /// record.
    pub fn estimated_accuracy_labelled(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.expected_correct_labelled / self.scored as f64)
    }

    /// Expected true positives over expected support of class c.
    pub fn estimated_recall(&self, c: usize) -> Option<f64> {
        let s = self.expected_support[c];
        (s > 0.0).then(|| self.expected_tp[c] / s)
    }
}

/// Σ over confidence bins of their records × the reference's accuracy in the bin when
/// it has [`MIN_BIN`] labelled records there; else the accuracy of every labelled record
/// at hand in the bin (the reference's, the baseline's held-out ones, the span's own,
/// `own`), made up to [`MIN_BIN`] with the records' own confidence where there are
/// fewer (no labels at all: the confidence itself); over the records.
fn calibrated(
    bins: impl Iterator<Item = (u64, f64)>,
    reference: &Tally,
    baseline: &[(u64, f64, u64)],
    own: &[(u64, f64, u64)],
) -> Option<f64> {
    let (mut sum, mut records) = (0.0, 0u64);
    for (b, (n, conf_sum)) in bins.enumerate() {
        if n == 0 {
            continue;
        }
        records += n;
        let (rn, _, rc) = reference.bins[b];
        let (bn, _, bc) = baseline.get(b).copied().unwrap_or_default();
        let (on, _, oc) = own.get(b).copied().unwrap_or_default();
        let (pn, pc) = (rn + bn + on, rc + bc + oc);
        let accuracy = if rn >= MIN_BIN {
            rc as f64 / rn as f64
        } else if pn >= MIN_BIN {
            pc as f64 / pn as f64
        } else {
            let conf = conf_sum / n as f64;
            (pc as f64 + (MIN_BIN - pn) as f64 * conf) / MIN_BIN as f64
        };
        sum += n as f64 * accuracy;
    }
    (records > 0).then(|| sum / records as f64)
}

/// The probability of the logged answer (a model with a decision threshold other than
/// ½ may answer a class that is not its most probable one); the top probability when
/// the answer is not one of the classes.
fn confidence(p: &[f32], predicted: usize) -> f64 {
    p.get(predicted).map_or_else(|| top(p), |&q| f64::from(q))
}

fn top(p: &[f32]) -> f64 {
    f64::from(p.iter().copied().fold(0.0f32, f32::max))
}

fn bin(conf: f64) -> usize {
    crate::stats::confidence_bin(conf)
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// How unlikely `hits` of `n` are if the true rate were the reference's: the binomial
/// lower tail P(X ≤ hits) under the reference rate `ref_hits / ref_n`, smoothed
/// ((hits + ½) / (n + 1)) so that a reference of 100% does not make every miss
/// impossible. None without records on either side.
pub fn drop_p(hits: u64, n: u64, ref_hits: u64, ref_n: u64) -> Option<f64> {
    if n == 0 || ref_n == 0 {
        return None;
    }
    let rate = (ref_hits as f64 + 0.5) / (ref_n as f64 + 1.0);
    let b = Binomial::new(rate, n).ok()?;
    Some(b.cdf(hits))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases made by `scripts/labels_fixtures.py` with scikit-learn 1.9 (see there).
    #[derive(Deserialize)]
    struct Case {
        name: String,
        classes: usize,
        y_true: Vec<usize>,
        y_pred: Vec<usize>,
        probs: Vec<Vec<f64>>,
        accuracy: f64,
        macro_f1: f64,
        log_loss: f64,
        calibration_error: f64,
        recall: Vec<Option<f64>>,
        precision: Vec<Option<f64>>,
        f1: Vec<Option<f64>>,
    }

    fn close(what: &str, got: Option<f64>, want: Option<f64>) {
        match (got, want) {
            (Some(g), Some(w)) => assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{what}: {g} vs scikit-learn {w}"
            ),
            (g, w) => assert_eq!(g, w, "{what}"),
        }
    }

    #[test]
    fn measures_agree_with_scikit_learn() {
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("fixtures.json")).expect("fixtures");
        assert!(cases.len() >= 4);
        for case in cases {
            let mut t = Tally::new(case.classes);
            for ((&y, &p), probs) in case.y_true.iter().zip(&case.y_pred).zip(&case.probs) {
                let probs: Vec<f32> = probs.iter().map(|&v| v as f32).collect();
                t.predict(p, Some(&probs));
                t.label(y, p, Some(&probs));
            }
            // Tallies are additive: the same records split in two and added.
            let mut halves = Tally::new(case.classes);
            for (i, part) in [0, 1].iter().enumerate() {
                let mut h = Tally::new(case.classes);
                for (j, ((&y, &p), probs)) in case
                    .y_true
                    .iter()
                    .zip(&case.y_pred)
                    .zip(&case.probs)
                    .enumerate()
                {
                    if j % 2 == *part {
                        let probs: Vec<f32> = probs.iter().map(|&v| v as f32).collect();
                        h.predict(p, Some(&probs));
                        h.label(y, p, Some(&probs));
                    }
                }
                let _ = i;
                halves.add(&h);
            }
            assert_eq!(halves.confusion, t.confusion, "{}", case.name);
            let n = &case.name;
            close(&format!("{n} accuracy"), t.accuracy(), Some(case.accuracy));
            close(&format!("{n} macro F1"), t.macro_f1(), Some(case.macro_f1));
            close(&format!("{n} log loss"), t.log_loss(), Some(case.log_loss));
            close(
                &format!("{n} calibration error"),
                t.calibration_error(),
                Some(case.calibration_error),
            );
            for c in 0..case.classes {
                close(&format!("{n} recall {c}"), t.recall(c), case.recall[c]);
                close(
                    &format!("{n} precision {c}"),
                    t.precision(c),
                    case.precision[c],
                );
                close(&format!("{n} F1 {c}"), t.f1(c), case.f1[c]);
            }
        }
    }

    #[test]
    fn the_estimate_of_a_calibrated_model_is_its_mean_confidence() {
        // Three predictions of class 0 at 0.9, 0.6, 0.7 and one of class 1 at 0.8.
        let mut t = Tally::new(2);
        for (pred, p0) in [(0, 0.9f32), (0, 0.6), (0, 0.7), (1, 0.2)] {
            t.predict(pred, Some(&[p0, 1.0 - p0]));
        }
        close(
            "accuracy",
            t.estimated_accuracy(),
            Some((0.9 + 0.6 + 0.7 + 0.8) / 4.0),
        );
        // Expected recall of class 0: Σ p0 over predicted 0 / Σ p0.
        close("recall 0", t.estimated_recall(0), Some(2.2 / 2.4));
        assert_eq!(t.labelled, 0);
        assert_eq!(t.accuracy(), None);
    }

    #[test]
    fn the_calibrated_estimate_counts_the_accuracy_the_reference_had_at_each_confidence() {
        // Reference: 100 answers at confidence 0.95, 80 of them right; 10 at 0.55.
        let mut r = Tally::new(2);
        for i in 0..100 {
            let p = [0.95f32, 0.05];
            r.predict(0, Some(&p));
            r.label(if i < 80 { 0 } else { 1 }, 0, Some(&p));
        }
        for _ in 0..10 {
            let p = [0.55f32, 0.45];
            r.predict(0, Some(&p));
            r.label(0, 0, Some(&p));
        }
        // Now: 50 at 0.95 (bin with 100 reference records: 0.8) and 50 at 0.55 (10 right
        // of 10: too few, made up to 30 with 20 at its own confidence).
        let mut t = Tally::new(2);
        for i in 0..100 {
            let p = if i < 50 {
                [0.95f32, 0.05]
            } else {
                [0.55, 0.45]
            };
            t.predict(0, Some(&p));
        }
        let thin = (10.0 + 20.0 * f64::from(0.55f32)) / 30.0;
        let want = (50.0 * 0.8 + 50.0 * thin) / 100.0;
        close("calibrated", t.calibrated_accuracy(&r, &[]), Some(want));
        // Against an empty reference it is the mean confidence.
        close(
            "uncalibrated",
            t.calibrated_accuracy(&Tally::new(2), &[]),
            t.estimated_accuracy(),
        );
        // With no reference, a baseline's held-out bins calibrate: 40 records at the
        // 0.55 bin, 30 of them right.
        let mut baseline = vec![(0, 0.0, 0); BINS];
        baseline[bin(f64::from(0.55f32))] = (40, 22.0, 30);
        let want = (50.0 * f64::from(0.95f32) + 50.0 * 0.75) / 100.0;
        close(
            "from the baseline",
            t.calibrated_accuracy(&Tally::new(2), &baseline),
            Some(want),
        );
        // Labels as they arrive: 20 of the span's 0.95 records labelled, 15 of them
        // right, pooled with 20 held-out records of that bin, 18 right: 33 of 40.
        for i in 0..20 {
            let p = [0.95f32, 0.05];
            t.label(if i < 15 { 0 } else { 1 }, 0, Some(&p));
        }
        baseline[bin(f64::from(0.95f32))] = (20, 19.0, 18);
        let want = (50.0 * 33.0 / 40.0 + 50.0 * 0.75) / 100.0;
        close(
            "from the baseline and the span's labels",
            t.calibrated_accuracy(&Tally::new(2), &baseline),
            Some(want),
        );
        // A realised reference bin still comes first; a thin one is pooled with the
        // rest: at 0.55, 10 of 10 and 30 of 40.
        close(
            "reference first",
            t.calibrated_accuracy(&r, &baseline),
            Some(0.8),
        );
    }

    #[test]
    fn a_drop_from_the_reference_is_unlikely_and_no_drop_is_not() {
        // 40 of 100 against 97 of 100: scipy.stats.binom.cdf(40, 100, 97.5/101) < 1e-40.
        assert!(drop_p(40, 100, 97, 100).unwrap() < 1e-40);
        // 96 of 100 against the same reference: not unusual.
        assert!(drop_p(96, 100, 97, 100).unwrap() > 0.2);
        assert_eq!(drop_p(0, 0, 97, 100), None);
    }
}
