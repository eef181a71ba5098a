//! Pure statistics: no I/O, no Arrow, each function checked against SciPy with values
//! from `scripts/stats_fixtures.py` (`src/stats/fixtures.json`).

pub mod drift;

use statrs::distribution::{ContinuousCDF, Normal};

use crate::stable_hash::Fnv;

/// Linear-interpolated quantile of sorted values (NumPy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// Coverage cell of a record: its quartile bin (by `edges`) of each numeric feature
/// (missing: a bin of its own) × its category ids (`u32::MAX`: missing or unseen).
/// Client statistics and baselines count cells with it.
pub fn grid_cell(edges: &[[f64; 3]], num: &[f64], cat: &[u32]) -> u64 {
    let mut h = Fnv::default();
    for (j, &x) in num.iter().enumerate() {
        let bin = if x.is_nan() {
            4u8
        } else {
            edges[j].iter().filter(|&&e| x > e).count() as u8
        };
        h.write_u8(bin);
    }
    for &c in cat {
        h.write_u32(c);
    }
    h.finish()
}

/// Shapiro–Wilk test of normality, Royston's algorithm (AS R94, 1995) as SciPy's
/// `scipy.stats.shapiro` computes it: returns (W, p-value).
///
/// W = (Σ aᵢ x₍ᵢ₎)² / Σ (xᵢ − x̄)², with the coefficients aᵢ from Royston's polynomial
/// approximations around the expected normal order statistics
/// mᵢ = Φ⁻¹((i − 3/8) / (n + 1/4)). The p-value is exact for n = 3 and from Royston's
/// normalising transformation of log(1 − W) for 4 ≤ n (documented accurate for n ≤ 5000).
///
/// Errors: fewer than 3 values, a non-finite value, or all values equal (W undefined).
pub fn shapiro_wilk(values: &[f64]) -> Result<(f64, f64), &'static str> {
    shapiro_wilk_with(values, &royston_coefficients)
}

/// [`shapiro_wilk`] with the coefficients for n from `coefficients` (a cache: they
/// depend on n only, and cost n/2 normal quantiles).
pub fn shapiro_wilk_with(
    values: &[f64],
    coefficients: &dyn Fn(usize) -> Vec<f64>,
) -> Result<(f64, f64), &'static str> {
    let n = values.len();
    if n < 3 {
        return Err("at least 3 values are needed");
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err("values must be finite");
    }
    let mut x = values.to_vec();
    x.sort_unstable_by(f64::total_cmp);
    if x[n - 1] - x[0] <= f64::EPSILON * x[0].abs().max(x[n - 1].abs()).max(1e-300) {
        return Err("all values are equal");
    }
    let a = coefficients(n);
    // W does not change with scale: values up to f64's largest would overflow the sums
    // of squares below (∞/∞ is NaN, which `min` would turn into 1).
    let scale = x[0].abs().max(x[n - 1].abs());
    x.iter_mut().for_each(|v| *v /= scale);
    // Centre first: Σ(x − x̄)² and Σ aᵢ x₍ᵢ₎ are unchanged by a shift, and smaller
    // numbers lose less precision.
    let mean = x.iter().sum::<f64>() / n as f64;
    let ssq: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    let half = n / 2;
    let num: f64 = (0..half).map(|i| a[i] * (x[n - 1 - i] - x[i])).sum();
    let w = (num * num / ssq).min(1.0);
    Ok((w, royston_p(w, n)))
}

/// Royston's coefficients a₁ ≥ a₂ ≥ … for the upper half (a₍ₙ₊₁₋ᵢ₎ = −aᵢ).
pub fn royston_coefficients(n: usize) -> Vec<f64> {
    const C1: [f64; 6] = [0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056];
    const C2: [f64; 6] = [0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633];
    let half = n / 2;
    if n == 3 {
        return vec![std::f64::consts::FRAC_1_SQRT_2];
    }
    let std_normal = Normal::new(0.0, 1.0).expect("valid normal");
    let an = n as f64;
    // mᵢ for the lower half (negative), i = 1..=half.
    let m: Vec<f64> = (1..=half)
        .map(|i| std_normal.inverse_cdf((i as f64 - 0.375) / (an + 0.25)))
        .collect();
    let summ2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
    let ssumm2 = summ2.sqrt();
    let rsn = 1.0 / an.sqrt();
    let a1 = poly(&C1, rsn) - m[0] / ssumm2;
    let mut a = vec![0.0; half];
    a[0] = a1;
    let (first, fac) = if n > 5 {
        let a2 = -m[1] / ssumm2 + poly(&C2, rsn);
        a[1] = a2;
        let fac = ((summ2 - 2.0 * m[0] * m[0] - 2.0 * m[1] * m[1])
            / (1.0 - 2.0 * a1 * a1 - 2.0 * a2 * a2))
            .sqrt();
        (2, fac)
    } else {
        let fac = ((summ2 - 2.0 * m[0] * m[0]) / (1.0 - 2.0 * a1 * a1)).sqrt();
        (1, fac)
    };
    for i in first..half {
        a[i] = -m[i] / fac;
    }
    a
}

/// Royston's p-value for W with n values.
fn royston_p(w: f64, n: usize) -> f64 {
    const G: [f64; 2] = [-2.273, 0.459];
    const C3: [f64; 4] = [0.544, -0.39978, 0.025054, -6.714e-4];
    const C4: [f64; 4] = [1.3822, -0.77857, 0.062767, -0.0020322];
    const C5: [f64; 4] = [-1.5861, -0.31082, -0.083751, 0.0038915];
    const C6: [f64; 3] = [-0.4803, -0.082676, 0.0030302];
    let an = n as f64;
    if n == 3 {
        // Exact: 6/π (asin √W − π/3).
        let pw = 6.0 / std::f64::consts::PI * (w.sqrt().asin() - std::f64::consts::PI / 3.0);
        return pw.max(0.0);
    }
    let w1 = 1.0 - w;
    if w1 <= 0.0 {
        return 1.0;
    }
    let mut y = w1.ln();
    let (m, s) = if n <= 11 {
        let gamma = poly(&G, an);
        if y >= gamma {
            return 1e-99;
        }
        y = -(gamma - y).ln();
        (poly(&C3, an), poly(&C4, an).exp())
    } else {
        let xx = an.ln();
        (poly(&C5, xx), poly(&C6, xx).exp())
    };
    let std_normal = Normal::new(0.0, 1.0).expect("valid normal");
    std_normal.sf((y - m) / s)
}

/// c₀ + c₁x + c₂x² + …
fn poly(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &ci| acc * x + ci)
}

/// Equal-width bins of a classifier's top probability (calibration error, confidence
/// calibration).
pub const CONFIDENCE_BINS: usize = 10;

/// The bin of a confidence: the number of inner edges (0.1, …, 0.9, as `numpy.linspace`
/// computes them) below it, like `numpy.searchsorted(edges, conf)` in
/// `sklearn.calibration.calibration_curve`.
pub fn confidence_bin(conf: f64) -> usize {
    (1..CONFIDENCE_BINS)
        .filter(|&i| i as f64 * 0.1 < conf)
        .count()
}

/// How closely the tests hold the KS, χ² and Z p-values to SciPy's: relative to the
/// value, at every magnitude (SciPy's reach 1e-40, where an absolute bound would accept
/// any tiny number). docs/drift.md states this precision.
#[cfg(test)]
pub(crate) const P_VALUE_REL: f64 = 1e-9;

/// The same for Shapiro–Wilk's p-value, Royston's normalising transformation of W:
/// it agrees with SciPy's `shapiro` within 2.6e-7 relative on the fixtures.
#[cfg(test)]
pub(crate) const SHAPIRO_P_REL: f64 = 1e-6;

/// `got` agrees with SciPy's `want` within [`P_VALUE_REL`] of `want` (exactly, when
/// SciPy's is 0).
#[cfg(test)]
pub(crate) fn p_value_agrees(got: f64, want: f64) -> bool {
    (got - want).abs() <= P_VALUE_REL * want.abs()
}

/// Shannon entropy in bits of a distribution given by counts; 0 for no counts.
pub fn entropy_bits(counts: impl IntoIterator<Item = u64>) -> f64 {
    // Sorted: the sum is the same whatever order a map hands the counts in.
    let mut counts: Vec<u64> = counts.into_iter().filter(|&c| c > 0).collect();
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    -counts
        .iter()
        .map(|&c| {
            let p = c as f64 / t;
            p * p.log2()
        })
        .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Fixtures {
        shapiro: Vec<ShapiroCase>,
        entropy: Vec<EntropyCase>,
    }
    #[derive(serde::Deserialize)]
    struct ShapiroCase {
        name: String,
        x: Vec<f64>,
        w: f64,
        p: f64,
    }
    #[derive(serde::Deserialize)]
    struct EntropyCase {
        counts: Vec<u64>,
        bits: f64,
    }

    fn fixtures() -> Fixtures {
        serde_json::from_str(include_str!("fixtures.json")).expect("fixtures.json parses")
    }

    #[test]
    fn shapiro_wilk_agrees_with_scipy() {
        for c in fixtures().shapiro {
            let (w, p) = shapiro_wilk(&c.x).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert!(
                (w - c.w).abs() <= 1e-9 * c.w,
                "{}: W {w} vs SciPy {}",
                c.name,
                c.w
            );
            // Three values with W at its minimum of 3/4: the p-value is 0, and both
            // SciPy's and this one are the rounding error of asin(√W) − π/3.
            let at_minimum = c.x.len() == 3 && (c.w - 0.75).abs() < 1e-12;
            if at_minimum {
                assert!(p < 1e-15 && c.p < 1e-15, "{}: p {p} vs {}", c.name, c.p);
                continue;
            }
            assert!(
                (p - c.p).abs() <= SHAPIRO_P_REL * c.p,
                "{}: p {p} vs SciPy {}",
                c.name,
                c.p
            );
        }
    }

    #[test]
    fn shapiro_wilk_is_scipys_at_any_scale() {
        // SciPy's W is the same for a sample times 10²⁰⁰ (its squares overflow f64 when
        // summed unscaled).
        for c in fixtures().shapiro {
            let big: Vec<f64> = c.x.iter().map(|v| v * 1e200).collect();
            let (w, _) = shapiro_wilk(&big).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert!(
                (w - c.w).abs() <= 1e-9 * c.w,
                "{}: W {w} vs SciPy {}",
                c.name,
                c.w
            );
        }
    }

    #[test]
    fn shapiro_wilk_edge_cases_are_errors() {
        assert!(shapiro_wilk(&[1.0, 2.0]).is_err());
        assert!(shapiro_wilk(&[3.0, 3.0, 3.0, 3.0]).is_err());
        assert!(shapiro_wilk(&[1.0, f64::NAN, 2.0]).is_err());
        assert!(shapiro_wilk(&[1.0, f64::INFINITY, 2.0]).is_err());
    }

    #[test]
    fn entropy_agrees_with_scipy() {
        for c in fixtures().entropy {
            let bits = entropy_bits(c.counts.iter().copied());
            assert!(
                (bits - c.bits).abs() < 1e-12,
                "{:?}: {bits} vs {}",
                c.counts,
                c.bits
            );
        }
    }
}
