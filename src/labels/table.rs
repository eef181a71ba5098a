//! The `performance` and `class_performance` tables: per series (model ×
//! `model_version`), the `labels.window` of prediction time before the window's end,
//! with the labels that arrived by then, beside the reference (the `labels.reference`
//! before it, every version of the model; the baseline's held-out values when that has
//! too few labels) and the baseline's held-out values.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::score::{Tally, drop_p};
use super::{Inner, Labels, MINUTE};
use crate::tables::{DerivedTable, WindowTable};
use crate::window::ClosedWindow;

/// Labelled records of a class the realised reference needs before it is used rather
/// than the baseline's.
const MIN_REFERENCE: u64 = 30;

/// The two tables over `labels`.
pub fn tables(labels: &Arc<Labels>) -> Vec<Arc<dyn WindowTable>> {
    let l = labels.clone();
    let overall = DerivedTable::shared("performance", performance_schema(), move |w| {
        let inner = l.lock();
        performance_rows(&inner, w)
    });
    let l = labels.clone();
    let per_class = DerivedTable::shared("class_performance", class_schema(), move |w| {
        let inner = l.lock();
        class_rows(&inner, w)
    });
    vec![overall, per_class]
}

fn ts_field(name: &str) -> Field {
    Field::new(name, crate::decode::ts_type(), false)
}

pub fn performance_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, true),
        ts_field("window_start"),
        ts_field("window_end"),
        u("predictions"),
        u("labelled"),
        f("share_labelled"),
        f("accuracy"),
        f("macro_f1"),
        f("log_loss"),
        f("calibration_error"),
        f("estimated_accuracy"),
        f("mean_confidence"),
        f("estimated_accuracy_labelled"),
        f("confidence_gap"),
        f("reference_confidence_gap"),
        Field::new("reference_version", DataType::Utf8, true),
        u("reference_labelled"),
        f("reference_accuracy"),
        f("accuracy_drop"),
        f("accuracy_p"),
        f("baseline_accuracy"),
    ]))
}

pub fn class_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("class", DataType::Utf8, false),
        ts_field("window_start"),
        ts_field("window_end"),
        u("classes"),
        u("support"),
        u("predicted"),
        f("recall"),
        f("precision"),
        f("f1"),
        f("estimated_recall"),
        Field::new("reference_source", DataType::Utf8, true),
        u("reference_support"),
        f("reference_recall"),
        f("reference_precision"),
        f("recall_drop"),
        f("recall_p"),
        f("recall_p_adjusted"),
        f("precision_drop"),
        f("precision_p"),
        f("precision_p_adjusted"),
        Field::new("baseline_support", DataType::UInt64, true),
        f("baseline_recall"),
        f("baseline_precision"),
        f("baseline_f1"),
    ]))
}

/// One series' tally over a window's span, and its model's reference.
struct Row<'a> {
    model: usize,
    version: &'a str,
    current: Tally,
    reference: Tally,
    reference_version: Option<&'a str>,
    start: i64,
    end: i64,
}

/// The span's rows, one per series with predictions in it, in series order.
fn spans<'a>(inner: &'a Inner, w: &ClosedWindow) -> Vec<Row<'a>> {
    let span = inner.config.window.as_millis() as i64;
    let reference = inner.config.reference.as_millis() as i64;
    // Tallies are per minute: a row covers whole minutes, up to the window's end
    // rounded down to one.
    let end = w.end_ms.div_euclid(MINUTE).saturating_mul(MINUTE);
    let start = end.saturating_sub(span);
    let (from, to) = (start.div_euclid(MINUTE), end.div_euclid(MINUTE));
    let ref_from = start.saturating_sub(reference).div_euclid(MINUTE);
    let mut current: Vec<Option<Tally>> = vec![None; inner.series.len()];
    let mut refs: Vec<Option<Tally>> = vec![None; inner.models.len()];
    // Predictions per series in the reference span: its main version.
    let mut ref_counts = vec![0u64; inner.series.len()];
    for (&(s, minute), t) in &inner.tallies {
        let s = s as usize;
        if minute >= to || minute < ref_from {
            continue;
        }
        let slot = if minute >= from {
            &mut current[s]
        } else {
            ref_counts[s] += t.predictions;
            &mut refs[inner.series[s].0]
        };
        slot.get_or_insert_with(|| Tally::new(t.classes())).add(t);
    }
    let mut rows = Vec::new();
    for (s, cur) in current.into_iter().enumerate() {
        let Some(cur) = cur else { continue };
        let (model, version) = (&inner.series[s].0, inner.series[s].1.as_str());
        let k = inner.models[*model].classes.len();
        let reference_version = (0..inner.series.len())
            .filter(|&o| inner.series[o].0 == *model && ref_counts[o] > 0)
            .max_by_key(|&o| (ref_counts[o], std::cmp::Reverse(o)))
            .map(|o| inner.series[o].1.as_str());
        rows.push(Row {
            model: *model,
            version,
            current: cur,
            reference: refs[*model].clone().unwrap_or_else(|| Tally::new(k)),
            reference_version,
            start,
            end,
        });
    }
    rows
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn performance_rows(inner: &Inner, w: &ClosedWindow) -> Result<RecordBatch, String> {
    let rows = spans(inner, w);
    let col_f = |f: &dyn Fn(&Row) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let col_u = |f: &dyn Fn(&Row) -> u64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<UInt64Array>())
    };
    let drop = |r: &Row| Some(r.reference.accuracy()? - r.current.accuracy()?);
    let held_out_bins = |r: &Row| -> &[(u64, f64, u64)] {
        inner.models[r.model]
            .baseline
            .as_ref()
            .map_or(&[], |b| b.bins.as_slice())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| Some(inner.models[r.model].name.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| version(r.version))
                .collect::<StringArray>(),
        ),
        ts_col(rows.iter().map(|r| r.start)),
        ts_col(rows.iter().map(|r| r.end)),
        col_u(&|r| r.current.predictions),
        col_u(&|r| r.current.labelled),
        col_f(&|r| {
            (r.current.predictions > 0)
                .then(|| r.current.labelled as f64 / r.current.predictions as f64)
        }),
        col_f(&|r| r.current.accuracy()),
        col_f(&|r| r.current.macro_f1()),
        col_f(&|r| r.current.log_loss()),
        col_f(&|r| r.current.calibration_error()),
        col_f(&|r| {
            r.current
                .calibrated_accuracy(&r.reference, held_out_bins(r))
        }),
        col_f(&|r| r.current.estimated_accuracy()),
        col_f(&|r| {
            r.current
                .calibrated_accuracy_labelled(&r.reference, held_out_bins(r))
        }),
        col_f(&|r| r.current.confidence_gap()),
        col_f(&|r| r.reference.confidence_gap()),
        Arc::new(
            rows.iter()
                .map(|r| r.reference_version.and_then(version))
                .collect::<StringArray>(),
        ),
        col_u(&|r| r.reference.labelled),
        col_f(&|r| r.reference.accuracy()),
        col_f(&drop),
        col_f(&|r| {
            drop_p(
                r.current.correct(),
                r.current.labelled,
                r.reference.correct(),
                r.reference.labelled,
            )
        }),
        col_f(&|r| inner.models[r.model].baseline.as_ref().map(|b| b.accuracy)),
    ];
    RecordBatch::try_new(performance_schema(), columns).map_err(|e| e.to_string())
}

/// One class of one row, with the reference it is compared with.
struct ClassRow<'a> {
    row: &'a Row<'a>,
    class: usize,
    /// (source, support, true positives, predicted) of the reference.
    reference: Option<(&'static str, u64, u64, u64)>,
    baseline: Option<&'a crate::baseline::ClassHeldOut>,
}

fn class_rows(inner: &Inner, w: &ClosedWindow) -> Result<RecordBatch, String> {
    let rows = spans(inner, w);
    let mut out: Vec<ClassRow> = Vec::new();
    for row in &rows {
        let model = &inner.models[row.model];
        for (c, name) in model.classes.iter().enumerate() {
            let baseline = model.baseline.as_ref().and_then(|b| b.classes.get(name));
            let r = &row.reference;
            let reference = if r.support(c) >= MIN_REFERENCE {
                Some(("realised", r.support(c), r.tp(c), r.predicted(c)))
            } else {
                baseline.map(|b| {
                    let tp = (b.recall * b.support as f64).round() as u64;
                    let predicted = match b.precision {
                        Some(p) if p > 0.0 => (tp as f64 / p).round() as u64,
                        _ => 0,
                    };
                    ("baseline", b.support, tp, predicted)
                })
            };
            out.push(ClassRow {
                row,
                class: c,
                reference,
                baseline,
            });
        }
    }
    let k = |c: &ClassRow| inner.models[c.row.model].classes.len() as f64;
    let col_f = |f: &dyn Fn(&ClassRow) -> Option<f64>| -> ArrayRef {
        Arc::new(out.iter().map(f).collect::<Float64Array>())
    };
    let col_u = |f: &dyn Fn(&ClassRow) -> u64| -> ArrayRef {
        Arc::new(out.iter().map(f).collect::<UInt64Array>())
    };
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let ref_recall = |c: &ClassRow| c.reference.and_then(|(_, s, tp, _)| ratio(tp, s));
    let ref_precision = |c: &ClassRow| c.reference.and_then(|(_, _, tp, p)| ratio(tp, p));
    let recall_p = |c: &ClassRow| {
        let (_, s, tp, _) = c.reference?;
        let cur = &c.row.current;
        drop_p(cur.tp(c.class), cur.support(c.class), tp, s)
    };
    let precision_p = |c: &ClassRow| {
        let (_, _, tp, p) = c.reference?;
        let cur = &c.row.current;
        drop_p(cur.tp(c.class), cur.predicted(c.class), tp, p)
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            out.iter()
                .map(|c| Some(inner.models[c.row.model].name.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            out.iter()
                .map(|c| version(c.row.version))
                .collect::<StringArray>(),
        ),
        Arc::new(
            out.iter()
                .map(|c| Some(inner.models[c.row.model].classes[c.class].as_str()))
                .collect::<StringArray>(),
        ),
        ts_col(out.iter().map(|c| c.row.start)),
        ts_col(out.iter().map(|c| c.row.end)),
        col_u(&|c| k(c) as u64),
        col_u(&|c| c.row.current.support(c.class)),
        col_u(&|c| c.row.current.predicted(c.class)),
        col_f(&|c| c.row.current.recall(c.class)),
        col_f(&|c| c.row.current.precision(c.class)),
        col_f(&|c| c.row.current.f1(c.class)),
        col_f(&|c| c.row.current.estimated_recall(c.class)),
        Arc::new(
            out.iter()
                .map(|c| c.reference.map(|r| r.0))
                .collect::<StringArray>(),
        ),
        col_u(&|c| c.reference.map_or(0, |r| r.1)),
        col_f(&ref_recall),
        col_f(&ref_precision),
        col_f(&|c| Some(ref_recall(c)? - c.row.current.recall(c.class)?)),
        col_f(&recall_p),
        col_f(&|c| Some((recall_p(c)? * k(c)).min(1.0))),
        col_f(&|c| Some(ref_precision(c)? - c.row.current.precision(c.class)?)),
        col_f(&precision_p),
        col_f(&|c| Some((precision_p(c)? * k(c)).min(1.0))),
        Arc::new(
            out.iter()
                .map(|c| c.baseline.map(|b| b.support))
                .collect::<UInt64Array>(),
        ),
        col_f(&|c| c.baseline.map(|b| b.recall)),
        col_f(&|c| c.baseline.and_then(|b| b.precision)),
        col_f(&|c| c.baseline.and_then(|b| b.f1)),
    ];
    RecordBatch::try_new(class_schema(), columns).map_err(|e| e.to_string())
}

fn ts_col(v: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v.collect::<Vec<_>>()).with_timezone("UTC"))
}
