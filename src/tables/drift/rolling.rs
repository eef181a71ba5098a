//! The drift tables' rolling reference, kept from one window to the next.
//!
//! A window's rolling reference is the samples of the `reference.windows` windows
//! before it, so the next window's differs from it by the oldest window leaving and
//! the newest coming in. Instead of gathering and sorting every sample again, the
//! merged columns are kept: the leaving window's values are taken out of each sorted
//! column and the new window's merged in (both linear), its categories subtracted and
//! added. The result is the same multiset, sorted in the same total order, so every
//! statistic is the same to the bit as when the reference is built anew.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Column, ModelWindow};
use crate::tables::reference::WindowSample;

/// The merged reference of the windows last asked for.
#[derive(Default)]
pub(super) struct Rolling {
    /// The sampled windows merged, as [`crate::tables::reference::Reference::before`]
    /// gave them.
    windows: Vec<Arc<WindowSample>>,
    /// Per model (without a baseline): how many of `windows` hold it, and its merged
    /// columns: numbers finite and sorted in `f64::total_cmp` order, categories counted.
    models: BTreeMap<String, (usize, ModelWindow)>,
}

impl Rolling {
    /// Makes the merged reference that of `earlier`. `digest` gives a window's columns
    /// per model, its numbers finite and sorted.
    pub(super) fn update(
        &mut self,
        earlier: &[Arc<WindowSample>],
        digest: impl Fn(&WindowSample) -> BTreeMap<String, ModelWindow>,
    ) {
        let holds = |list: &[Arc<WindowSample>], w: &Arc<WindowSample>| {
            list.iter().any(|x| Arc::ptr_eq(x, w))
        };
        let gone: Vec<&Arc<WindowSample>> =
            self.windows.iter().filter(|w| !holds(earlier, w)).collect();
        let new: Vec<&Arc<WindowSample>> = earlier
            .iter()
            .filter(|w| !holds(&self.windows, w))
            .collect();
        if gone.is_empty() && new.is_empty() {
            return;
        }
        // Mostly other windows (a restore, another window spec): built anew.
        if gone.len() + new.len() > earlier.len() {
            self.models.clear();
            for w in earlier {
                self.add(digest(w));
            }
        } else {
            let gone: Vec<BTreeMap<String, ModelWindow>> = gone.iter().map(|w| digest(w)).collect();
            for d in gone {
                self.remove(d);
            }
            for w in new {
                self.add(digest(w));
            }
        }
        self.windows = earlier.to_vec();
    }

    /// The merged reference of `model`, if a window of it holds the model.
    pub(super) fn get(&self, model: &str) -> Option<&ModelWindow> {
        self.models.get(model).map(|(_, m)| m)
    }

    fn add(&mut self, digest: BTreeMap<String, ModelWindow>) {
        for (model, d) in digest {
            let (windows, m) = self.models.entry(model).or_insert_with(|| {
                (
                    0,
                    ModelWindow {
                        num: d.num.iter().map(|_| Column::default()).collect(),
                        cat: d.cat.iter().map(|_| Column::default()).collect(),
                        ..ModelWindow::default()
                    },
                )
            });
            *windows += 1;
            each_column(m, &d, add_sorted, add_counts);
        }
    }

    fn remove(&mut self, digest: BTreeMap<String, ModelWindow>) {
        for (model, d) in digest {
            let Some((windows, m)) = self.models.get_mut(&model) else {
                debug_assert!(false, "a window leaves a model it never added");
                continue;
            };
            each_column(m, &d, remove_sorted, remove_counts);
            *windows -= 1;
            if *windows == 0 {
                self.models.remove(&model);
            }
        }
    }
}

/// Pairs each column of `m` with the same column of `d`: `numbers` for the numeric
/// features and the score, `counts` for the categories and the label.
fn each_column(
    m: &mut ModelWindow,
    d: &ModelWindow,
    numbers: fn(&mut Column, &Column),
    counts: fn(&mut Column, &Column),
) {
    let numeric = m
        .num
        .iter_mut()
        .zip(&d.num)
        .chain([(&mut m.score, &d.score)]);
    for (c, x) in numeric {
        numbers(c, x);
    }
    let categorical = m
        .cat
        .iter_mut()
        .zip(&d.cat)
        .chain([(&mut m.label, &d.label)]);
    for (c, x) in categorical {
        counts(c, x);
    }
}

/// Merges the sorted values of `x` into those of `c`.
fn add_sorted(c: &mut Column, x: &Column) {
    c.nulls += x.nulls;
    if x.values.is_empty() {
        return;
    }
    let (a, b) = (&c.values, &x.values);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].total_cmp(&b[j]).is_le() {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    c.values = out;
}

/// Takes the sorted values of `x` (all of them held by `c`) out of those of `c`.
fn remove_sorted(c: &mut Column, x: &Column) {
    c.nulls = c.nulls.saturating_sub(x.nulls);
    let b = &x.values;
    let mut j = 0;
    c.values.retain(|v| {
        // Values of `x` below `v` that `c` did not hold (none, if `x` was added).
        while j < b.len() && b[j].total_cmp(v).is_lt() {
            debug_assert!(false, "a value taken out that was never added");
            j += 1;
        }
        if j < b.len() && b[j].total_cmp(v).is_eq() {
            j += 1;
            false
        } else {
            true
        }
    });
}

fn add_counts(c: &mut Column, x: &Column) {
    c.nulls += x.nulls;
    for (k, n) in &x.counts {
        match c.counts.get_mut(k) {
            Some(have) => *have += n,
            None => {
                c.counts.insert(k.clone(), *n);
            }
        }
    }
}

/// Subtracts the counts of `x`; a category whose count reaches 0 leaves, as it would
/// be absent from a reference built anew.
fn remove_counts(c: &mut Column, x: &Column) {
    c.nulls = c.nulls.saturating_sub(x.nulls);
    for (k, n) in &x.counts {
        if let Some(have) = c.counts.get_mut(k) {
            *have = have.saturating_sub(*n);
            if *have == 0 {
                c.counts.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::drift as st;
    use crate::tables::reference::Sample;
    use rand::{Rng, SeedableRng};

    /// Two numeric columns (one with missing values, negative zeros and repeats), one
    /// categorical column, label and score, for two models (one absent from some
    /// windows).
    fn window(rng: &mut rand::rngs::StdRng) -> Arc<WindowSample> {
        let mut w = WindowSample::default();
        for model in ["a", "b"] {
            if model == "b" && rng.random_bool(0.4) {
                continue;
            }
            let n = rng.random_range(0..40);
            let samples = (0..n)
                .map(|_| Sample {
                    key: rng.random(),
                    client: rng.random(),
                    num: vec![
                        Some(
                            rng.random_range(-3..4) as f64
                                * 0.5
                                * if rng.random_bool(0.1) { -0.0 } else { 1.0 },
                        ),
                        rng.random_bool(0.8)
                            .then(|| rng.random::<f64>() * 100.0 - 50.0),
                    ],
                    cat: vec![
                        rng.random_bool(0.9)
                            .then(|| ["x", "y", "z", "w"][rng.random_range(0..4)].to_owned()),
                    ],
                    label: Some(["0", "1", "2"][rng.random_range(0..3)].to_owned()),
                    score: rng.random_bool(0.95).then(|| rng.random::<f64>()),
                })
                .collect();
            w.models.insert(model.to_owned(), samples);
        }
        Arc::new(w)
    }

    fn digest(w: &WindowSample) -> BTreeMap<String, ModelWindow> {
        let mut out = BTreeMap::new();
        for (model, samples) in &w.models {
            let mut m = ModelWindow {
                num: vec![Column::default(), Column::default()],
                cat: vec![Column::default()],
                ..ModelWindow::default()
            };
            for s in samples {
                for (c, v) in m.num.iter_mut().zip(&s.num) {
                    super::super::push_number(c, *v);
                }
                super::super::push_category(&mut m.cat[0], s.cat[0].as_deref());
                super::super::push_category(&mut m.label, s.label.as_deref());
                super::super::push_number(&mut m.score, s.score);
            }
            for c in m.num.iter_mut().chain(std::iter::once(&mut m.score)) {
                c.values = st::finite_sorted(&c.values);
            }
            out.insert(model.clone(), m);
        }
        out
    }

    /// What gathering every sample of the windows and sorting once gives.
    fn built_anew(windows: &[Arc<WindowSample>]) -> Shape {
        let mut gathered: BTreeMap<String, (usize, ModelWindow)> = BTreeMap::new();
        for w in windows {
            for (model, d) in digest(w) {
                let (n, m) = gathered.entry(model).or_insert_with(|| {
                    (
                        0,
                        ModelWindow {
                            num: vec![Column::default(), Column::default()],
                            cat: vec![Column::default()],
                            ..ModelWindow::default()
                        },
                    )
                });
                *n += 1;
                let pairs = m
                    .num
                    .iter_mut()
                    .zip(&d.num)
                    .chain([(&mut m.score, &d.score)]);
                for (c, x) in pairs {
                    c.values.extend_from_slice(&x.values);
                    c.nulls += x.nulls;
                }
                let pairs = m
                    .cat
                    .iter_mut()
                    .zip(&d.cat)
                    .chain([(&mut m.label, &d.label)]);
                for (c, x) in pairs {
                    for (k, v) in &x.counts {
                        *c.counts.entry(k.clone()).or_default() += v;
                    }
                    c.nulls += x.nulls;
                }
            }
        }
        for (_, m) in gathered.values_mut() {
            for c in m.num.iter_mut().chain(std::iter::once(&mut m.score)) {
                c.values = st::finite_sorted(&c.values);
            }
        }
        shape(&Rolling {
            windows: Vec::new(),
            models: gathered,
        })
    }

    type Shape = Vec<(String, usize, Vec<Vec<u64>>, Vec<Vec<(String, u64)>>)>;

    fn shape(r: &Rolling) -> Shape {
        r.models
            .iter()
            .map(|(model, (n, m))| {
                let nums = m
                    .num
                    .iter()
                    .chain(std::iter::once(&m.score))
                    .map(|c| {
                        let mut v: Vec<u64> = c.values.iter().map(|x| x.to_bits()).collect();
                        v.push(c.nulls as u64);
                        v
                    })
                    .collect();
                let cats = m
                    .cat
                    .iter()
                    .chain(std::iter::once(&m.label))
                    .map(|c| {
                        let mut v: Vec<(String, u64)> =
                            c.counts.iter().map(|(k, n)| (k.clone(), *n)).collect();
                        v.push(("(nulls)".into(), c.nulls as u64));
                        v
                    })
                    .collect();
                (model.clone(), *n, nums, cats)
            })
            .collect()
    }

    #[test]
    fn a_reference_kept_from_window_to_window_equals_one_gathered_anew() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let all: Vec<Arc<WindowSample>> = (0..40).map(|_| window(&mut rng)).collect();
        let mut kept = Rolling::default();
        // Sliding by one, by two, standing still, then jumping (a restore).
        let mut spans: Vec<(usize, usize)> =
            (0..12usize).map(|s| (s.saturating_sub(5), s)).collect();
        spans.extend([
            (7, 12),
            (9, 14),
            (9, 14),
            (30, 36),
            (31, 37),
            (0, 0),
            (2, 8),
        ]);
        for (from, to) in spans {
            let earlier = &all[from..to];
            kept.update(earlier, digest);
            assert_eq!(shape(&kept), built_anew(earlier), "windows {from}..{to}");
        }
        // A category that leaves with its last window is gone, as when built anew.
        assert!(
            kept.models
                .values()
                .all(|(_, m)| m.cat[0].counts.values().all(|&n| n > 0))
        );
    }

    #[test]
    fn a_value_is_merged_in_total_order_and_taken_out_once() {
        let col = |v: &[f64]| Column {
            values: v.to_vec(),
            ..Column::default()
        };
        let mut c = col(&[-1.0, -0.0, 0.0, 2.0, 2.0]);
        add_sorted(&mut c, &col(&[-0.0, 1.0, 2.0]));
        let bits: Vec<u64> = c.values.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u64> = [-1.0, -0.0, -0.0, 0.0, 1.0, 2.0, 2.0, 2.0]
            .iter()
            .map(|x: &f64| x.to_bits())
            .collect();
        assert_eq!(bits, want);
        remove_sorted(&mut c, &col(&[-0.0, 2.0]));
        let bits: Vec<u64> = c.values.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u64> = [-1.0, -0.0, 0.0, 1.0, 2.0, 2.0]
            .iter()
            .map(|x: &f64| x.to_bits())
            .collect();
        assert_eq!(bits, want);
    }
}
