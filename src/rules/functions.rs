//! Drift statistics as SQL functions, so a rule can compare any two samples it builds:
//! each takes two arrays of numbers (for example two `array_agg(...)`) and returns a
//! double, null when either array is null or has no finite value.
//!
//! | function | value |
//! |---|---|
//! | `ks_stat(a, b)` | two-sample KS statistic D |
//! | `ks_pvalue(a, b)` | its p-value (exact or asymptotic, as SciPy's `ks_2samp`) |
//! | `psi(a, b)` | PSI of b against a, on Evidently's bins |
//! | `js_distance(a, b)` | Jensen–Shannon distance, same bins |
//! | `hellinger(a, b)` | Hellinger distance, same bins |
//! | `wasserstein(a, b)` | Wasserstein-1 distance |
//! | `wasserstein_normed(a, b)` | Wasserstein-1 / max(std(a), 0.001) |

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::stats::drift as st;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    KsStat,
    KsPValue,
    Psi,
    JsDistance,
    Hellinger,
    Wasserstein,
    WassersteinNormed,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DriftFunction {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

/// Every drift function, to register with a rule's session.
pub fn drift_functions() -> Vec<ScalarUDF> {
    [
        ("ks_stat", Kind::KsStat),
        ("ks_pvalue", Kind::KsPValue),
        ("psi", Kind::Psi),
        ("js_distance", Kind::JsDistance),
        ("hellinger", Kind::Hellinger),
        ("wasserstein", Kind::Wasserstein),
        ("wasserstein_normed", Kind::WassersteinNormed),
    ]
    .into_iter()
    .map(|(name, kind)| {
        ScalarUDF::new_from_impl(DriftFunction {
            name,
            kind,
            signature: Signature::any(2, Volatility::Immutable),
        })
    })
    .collect()
}

impl DriftFunction {
    fn compute(&self, a: &[f64], b: &[f64]) -> Option<f64> {
        let binned = || st::binned_shares(a, b);
        match self.kind {
            Kind::KsStat => st::ks_2samp(a, b).map(|(t, _)| t.statistic),
            Kind::KsPValue => st::ks_2samp(a, b).map(|(t, _)| t.p_value),
            Kind::Psi => binned().map(|(p, q)| st::psi(&p, &q)),
            Kind::JsDistance => binned().map(|(p, q)| st::js_distance(&p, &q)),
            Kind::Hellinger => binned().map(|(p, q)| st::hellinger(&p, &q)),
            Kind::Wasserstein => st::wasserstein(a, b),
            Kind::WassersteinNormed => st::wasserstein_normed(a, b),
        }
    }
}

/// Row `row` of a list column as numbers (nulls left out), or None for a null list.
fn numbers(list: &ArrayRef, row: usize) -> Result<Option<Vec<f64>>> {
    let values = match list.data_type() {
        DataType::List(_) => {
            let l = list.as_list::<i32>();
            if l.is_null(row) {
                return Ok(None);
            }
            l.value(row)
        }
        DataType::LargeList(_) => {
            let l = list.as_list::<i64>();
            if l.is_null(row) {
                return Ok(None);
            }
            l.value(row)
        }
        DataType::Null => return Ok(None),
        other => return exec_err!("expected an array of numbers, got {other}"),
    };
    let values = cast(&values, &DataType::Float64)?;
    let v = values.as_primitive::<Float64Type>();
    Ok(Some(v.iter().flatten().collect()))
}

impl ScalarUDFImpl for DriftFunction {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for t in arg_types {
            if !matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::Null
            ) {
                return exec_err!(
                    "{}(a, b) takes two arrays of numbers (for example array_agg(x)), got {t}",
                    self.name
                );
            }
        }
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [a, b] = arrays.as_slice() else {
            return exec_err!("{} takes two arguments", self.name);
        };
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            out.push(match (numbers(a, row)?, numbers(b, row)?) {
                (Some(x), Some(y)) => self.compute(&x, &y).filter(|v| !v.is_nan()),
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Fixtures {
        ks: Vec<KsCase>,
        distances: Vec<DistCase>,
    }
    #[derive(serde::Deserialize)]
    struct KsCase {
        name: String,
        a: Vec<f64>,
        b: Vec<f64>,
        statistic: f64,
        p: f64,
    }
    #[derive(serde::Deserialize)]
    struct DistCase {
        name: String,
        reference: Vec<f64>,
        current: Vec<f64>,
        psi: f64,
        wasserstein_normed: f64,
    }

    fn array(v: &[f64]) -> String {
        let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
        format!("make_array({})", items.join(", "))
    }

    async fn one(ctx: &SessionContext, sql: &str) -> Option<f64> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let col = batches[0].column(0).as_primitive::<Float64Type>();
        (!col.is_null(0)).then(|| col.value(0))
    }

    /// The SQL functions give SciPy's values on the small fixtures (the statistics
    /// themselves are tested in `stats::drift`).
    #[tokio::test]
    async fn sql_functions_agree_with_scipy() {
        let f: Fixtures =
            serde_json::from_str(include_str!("../stats/drift_fixtures.json")).unwrap();
        let ctx = SessionContext::new();
        for udf in drift_functions() {
            ctx.register_udf(udf);
        }
        for c in f.ks.iter().filter(|c| c.a.len() + c.b.len() < 200) {
            let (a, b) = (array(&c.a), array(&c.b));
            let d = one(&ctx, &format!("SELECT ks_stat({a}, {b})"))
                .await
                .unwrap();
            let p = one(&ctx, &format!("SELECT ks_pvalue({a}, {b})"))
                .await
                .unwrap();
            assert!((d - c.statistic).abs() < 1e-9, "{}: {d}", c.name);
            assert!(
                crate::stats::p_value_agrees(p, c.p),
                "{}: {p} vs {}",
                c.name,
                c.p
            );
        }
        let c = f
            .distances
            .iter()
            .find(|c| c.reference.len() <= 500)
            .unwrap();
        let (a, b) = (array(&c.reference), array(&c.current));
        let psi = one(&ctx, &format!("SELECT psi({a}, {b})")).await.unwrap();
        assert!(
            (psi - c.psi).abs() < 1e-9 * c.psi.abs().max(1.0),
            "{}",
            c.name
        );
        let w = one(&ctx, &format!("SELECT wasserstein_normed({a}, {b})"))
            .await
            .unwrap();
        assert!((w - c.wasserstein_normed).abs() < 1e-9, "{}", c.name);
        // Null and empty arrays: null, not an error.
        assert_eq!(
            one(&ctx, "SELECT ks_stat(NULL, make_array(1.0))").await,
            None
        );
        // Not an array: a clear error at planning.
        let err = ctx
            .sql("SELECT psi(1.0, 2.0)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("two arrays of numbers"), "{err}");
    }
}
