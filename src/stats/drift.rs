//! Drift statistics between a reference sample and a current one, as the peer tools
//! compute them: SciPy for the tests (`ks_2samp`, `chi2_contingency`, the two-proportion
//! Z-test, `wasserstein_distance`, `jensenshannon`) and Evidently's binning for PSI,
//! Jensen–Shannon and Hellinger. Checked against `scripts/drift_fixtures.py`
//! (`drift_fixtures.json`): statistics and p-values within 1e-9 relative.
//!
//! Written by hand: no Rust crate has SciPy's exact two-sample KS distribution.
//!
//! Edge cases (each a defined result, never NaN):
//! - NaN and ±∞ are left out of every numeric test (count them with [`missing_share`]);
//! - an empty sample (after that) gives `None`: no test;
//! - a constant column equal in both samples: KS statistic 0 and p = 1; distances 0;
//!   the normed Wasserstein divides by max(std(reference), 0.001), as Evidently does;
//! - category counts with one category in all (or none): χ² = 0, p = 1.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;

/// Result of a two-sample test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub statistic: f64,
    pub p_value: f64,
}

/// Which distribution the KS p-value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

/// Largest product of the sample sizes for which the exact KS p-value is computed; its
/// cost grows with that product (a window of 5,000 values against a reference of 900
/// took 2 ms per feature). SciPy's `auto` goes further (both sizes up to 10,000), R's
/// `ks.test` stops sooner (a product under 10,000); past 10⁶ pairs the asymptotic
/// p-value is within 0.5 % of the exact one for unequal sizes (SciPy, measured at
/// 898 × 5,000 and 3,000 × 4,000).
pub const KS_MAX_EXACT_PAIRS: usize = 1_000_000;

/// The finite values, sorted.
pub fn finite_sorted(x: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    sort_floats(&mut v);
    v
}

/// Sorts in `f64::total_cmp` order. Radix sort (`radsort`, linear time) from a few
/// hundred values on: every window sorts each numeric column, and `baseline compare`
/// sorts millions of values per column, where it is several times faster than a
/// comparison sort.
pub fn sort_floats(v: &mut [f64]) {
    if v.len() < 256 {
        v.sort_unstable_by(f64::total_cmp);
    } else {
        radsort::sort(v);
    }
}

/// Distinct values of a sorted sample.
pub fn distinct_sorted(v: &[f64]) -> usize {
    if v.is_empty() {
        return 0;
    }
    1 + v.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Share of values that are missing (NaN) or not finite; 0 for an empty column.
pub fn missing_share(x: &[f64], nulls: usize) -> f64 {
    let n = x.len() + nulls;
    if n == 0 {
        return 0.0;
    }
    let bad = nulls + x.iter().filter(|v| !v.is_finite()).count();
    bad as f64 / n as f64
}

/// Two-sample Kolmogorov–Smirnov test, two-sided, as `scipy.stats.ks_2samp`: D = sup
/// |F₁ − F₂| over both samples; the exact p-value (`method='exact'`: Hodges'
/// lattice-path count, in Viehmann's numerically stable form) when n₁·n₂ ≤
/// [`KS_MAX_EXACT_PAIRS`], else — or when the exact computation is not a probability —
/// the asymptotic one (`method='asymp'`), `kstwo.sf(D, round(n₁n₂/(n₁+n₂)))`.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<(Test, KsMethod)> {
    ks_2samp_sorted(&finite_sorted(a), &finite_sorted(b))
}

/// [`ks_2samp`] of samples that are finite and sorted already.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64]) -> Option<(Test, KsMethod)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    Some(ks_test(ks_statistic_sorted(a, b), a.len(), b.len()))
}

/// KS test of a sample `b` against a reference of `n_ref` values that `points` (a
/// quantile summary, see `baseline`) stands for: the statistic from the points, the
/// p-value for the real sizes (asymptotic when the points are fewer than the values).
pub fn ks_2samp_summary(points: &[f64], n_ref: u64, b: &[f64]) -> Option<(Test, KsMethod)> {
    if points.is_empty() || b.is_empty() {
        return None;
    }
    let d = ks_statistic_sorted(points, b);
    if n_ref as usize == points.len() {
        return Some(ks_test(d, points.len(), b.len()));
    }
    Some(ks_asymptotic(d, n_ref as usize, b.len()))
}

/// The p-value of statistic `d` for samples of n1 and n2 values, as `ks_2samp` picks it.
fn ks_test(d: f64, n1: usize, n2: usize) -> (Test, KsMethod) {
    let exact = (n1.saturating_mul(n2) <= KS_MAX_EXACT_PAIRS)
        .then(|| ks_exact(n1 as u64, n2 as u64, d))
        .flatten();
    if let Some((d, p)) = exact {
        return (
            Test {
                statistic: d,
                p_value: p,
            },
            KsMethod::Exact,
        );
    }
    ks_asymptotic(d, n1, n2)
}

fn ks_asymptotic(d: f64, n1: usize, n2: usize) -> (Test, KsMethod) {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    let p = kstwo_sf(en as u64, d).clamp(0.0, 1.0);
    (
        Test {
            statistic: d,
            p_value: p,
        },
        KsMethod::Asymptotic,
    )
}

/// sup |F₁ − F₂| of two sorted samples (both ECDFs right-continuous).
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    d
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The exact two-sided p-value with D rounded to the lattice (h / lcm), or None when
/// the computation does not give a probability (SciPy then falls back too).
fn ks_exact(n1: u64, n2: u64, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        prob_outside_band(n1, n2, g, h)
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// Equal sizes n: the share of lattice paths that leave the band |x − y| < h.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (nf, hf) = (n as f64, h as f64);
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let kf = k as f64;
        let mut p1 = 1.0;
        for j in 0..h {
            let jf = j as f64;
            p1 = (nf - kf * hf - jf) * p1 / (nf + kf * hf + jf + 1.0);
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// Unequal sizes: 1 − (paths from (0,0) to (m,n) that stay strictly inside
/// |x/m − y/n| < h/lcm) / C(m+n, n), computed column by column as a running
/// probability (Viehmann 2021) so that nothing overflows.
fn prob_outside_band(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let (m, n, mg, ng, h) = (m as i64, n as i64, mg as i64, ng as i64, h as i64);
    let ceil_div = |a: i64, b: i64| -> i64 { (a as f64 / b as f64).ceil() as i64 };
    let floor_div = |a: i64, b: i64| -> i64 { (a as f64 / b as f64).floor() as i64 };
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len = ((2 * maxj + 2).min(n + 1)) as usize;
    let mut a = vec![1.0f64; len];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j) / (fi + j);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[from..to] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// P(Dₙ ≥ d) for the two-sided one-sample KS statistic, as SciPy's `kstwo.sf`
/// (Simard & L'Ecuyer 2011: Ruben–Gambino at the ends, 2·Smirnov's one-sided tail for
/// large d, the Durbin matrix (Marsaglia–Tsang–Wang) or Pelz–Good in between). Where
/// SciPy uses Pomeranz's recursion (n ≤ 140) this uses the Durbin matrix, also exact.
pub fn kstwo_sf(n: u64, d: f64) -> f64 {
    if n == 0 || d.is_nan() {
        return f64::NAN;
    }
    if d >= 1.0 {
        return 0.0;
    }
    if d <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * d;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        // Ruben–Gambino: P(Dₙ ≤ d) = n!/nⁿ (2t − 1)ⁿ.
        let cdf = (ln_factorial_over_n_pow_n(n) + nf * (2.0 * t - 1.0).ln()).exp();
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - d).powf(nf)).clamp(0.0, 1.0);
    }
    if d >= 0.5 {
        return (2.0 * smirnov_sf(n, d)).clamp(0.0, 1.0);
    }
    let nxx = t * d;
    if n <= 140 {
        if nxx <= 4.0 {
            return (1.0 - durbin_cdf(n, d)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov_sf(n, d)).clamp(0.0, 1.0);
    }
    if nxx >= 370.0 {
        return 0.0;
    }
    if nxx >= 2.2 {
        return (2.0 * smirnov_sf(n, d)).clamp(0.0, 1.0);
    }
    let cdf = if nxx >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * d.powf(1.5) <= 1.4 {
        durbin_cdf(n, d)
    } else {
        pelz_good_cdf(n, d)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

/// ln(n! / nⁿ).
fn ln_factorial_over_n_pow_n(n: u64) -> f64 {
    let nf = n as f64;
    ln_gamma(nf + 1.0) - nf * nf.ln()
}

/// Smirnov's one-sided tail P(Dₙ⁺ ≥ d), Birnbaum–Tingey:
/// d Σ_{j=0}^{⌊n(1−d)⌋} C(n, j) (1 − d − j/n)^{n−j} (d + j/n)^{j−1}, summed in logs.
fn smirnov_sf(n: u64, d: f64) -> f64 {
    if d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let jmax = (nf * (1.0 - d)).floor() as u64;
    let ln_n_fact = ln_gamma(nf + 1.0);
    let mut terms: Vec<f64> = Vec::with_capacity(jmax as usize + 1);
    for j in 0..=jmax {
        let jf = j as f64;
        let rest = 1.0 - d - jf / nf;
        if rest <= 0.0 {
            continue;
        }
        let ln_binom = ln_n_fact - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0);
        terms.push(ln_binom + (nf - jf) * rest.ln() + (jf - 1.0) * (d + jf / nf).ln());
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return 0.0;
    }
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    (d.ln() + top + sum.ln()).exp()
}

/// P(Dₙ ≤ d) by the Durbin matrix, as Marsaglia, Tsang & Wang (2003) compute it: the
/// k-th diagonal element of Hⁿ times n!/nⁿ, with powers of two kept apart so that
/// nothing overflows.
fn durbin_cdf(n: u64, d: f64) -> f64 {
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    // v: first column; w: the 1/i! that fill the band.
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r + 1 - i];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let mul = |x: &[f64], y: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for i in 0..m {
            for l in 0..m {
                let xil = x[i * m + l];
                if xil == 0.0 {
                    continue;
                }
                let row = &y[l * m..(l + 1) * m];
                let o = &mut out[i * m..(i + 1) * m];
                for (oj, yj) in o.iter_mut().zip(row) {
                    *oj += xil * yj;
                }
            }
        }
        out
    };
    const E: i32 = 128;
    let big = 2f64.powi(E);
    let mut power = vec![0.0; m * m];
    for i in 0..m {
        power[i * m + i] = 1.0;
    }
    let (mut exp, mut hexp) = (0i64, 0i64);
    let mut nn = n;
    while nn > 0 {
        if nn % 2 == 1 {
            power = mul(&power, &hm);
            exp += hexp;
        }
        hm = mul(&hm, &hm);
        hexp *= 2;
        if hm[(k - 1) * m + k - 1].abs() > big {
            for x in &mut hm {
                *x /= big;
            }
            hexp += E as i64;
        }
        nn /= 2;
    }
    let mut p = power[(k - 1) * m + k - 1];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < 1.0 / big {
            p *= big;
            exp -= E as i64;
        }
    }
    p * 2f64.powi(exp.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
}

/// P(Dₙ ≤ d) by the Pelz–Good expansion in z = d√n (terms to n^{-3/2}).
fn pelz_good_cdf(n: u64, d: f64) -> f64 {
    use std::f64::consts::PI;
    let nf = n as f64;
    let z = nf.sqrt() * d;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let qlog = -pi2 / 8.0 / z2;
    if qlog < f64::MIN_POSITIVE.ln() {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi2 * pi2 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi2.powi(3) * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi2 * pi2 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let maxk = (16.0 * z / PI).ceil() as i64;
    let mut k = [0.0f64; 4];
    for kk in (1..=maxk).rev() {
        let mm = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (mm * mm, mm.powi(4), mm.powi(6));
        let qp = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (ki, c) in k.iter_mut().zip(coeffs) {
            *ki = *ki * qp + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let denom = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (ki, dn) in k.iter_mut().zip(denom) {
        *ki = *ki * q * sqrt2pi / dn;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut extra2, mut extra3) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let kf = kk as f64;
        let qp = q2.powf(kf * kf);
        extra2 += kf * kf * qp;
        let kspi = PI * kf;
        extra3 += (sqrt3z + kspi) * (sqrt3z - kspi) * kf * kf * qp;
    }
    k[2] += extra2 * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += extra3 * pi2 * sqrt2pi / (216.0 * z6);
    k.iter()
        .enumerate()
        .map(|(i, ki)| ki / nf.powf(i as f64 / 2.0))
        .sum()
}

/// χ² test of homogeneity of two count vectors over the same categories, as
/// `scipy.stats.chi2_contingency(table, correction=False)` on the 2 × k table (DESIGN.md:
/// no Yates correction, also for two categories). Categories empty in both are
/// dropped; a category seen in only one sample is fine (its expected count comes from
/// both). Fewer than two categories: statistic 0, p = 1. None when either sample is
/// empty.
pub fn chi2_homogeneity(reference: &[u64], current: &[u64]) -> Option<Test> {
    let pairs: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .filter(|(r, c)| **r + **c > 0)
        .map(|(&r, &c)| (r as f64, c as f64))
        .collect();
    let (nr, nc): (f64, f64) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (r, c)| (a + r, b + c));
    if nr == 0.0 || nc == 0.0 {
        return None;
    }
    if pairs.len() < 2 {
        return Some(Test {
            statistic: 0.0,
            p_value: 1.0,
        });
    }
    let total = nr + nc;
    let dof = (pairs.len() - 1) as f64;
    let mut stat = 0.0;
    for &(r, c) in &pairs {
        let col = r + c;
        for (obs, row) in [(r, nr), (c, nc)] {
            let exp = row * col / total;
            stat += (obs - exp) * (obs - exp) / exp;
        }
    }
    let p = ChiSquared::new(dof).ok()?.sf(stat);
    Some(Test {
        statistic: stat,
        p_value: p,
    })
}

/// Two-proportion Z-test (pooled), two-sided: z = (p₁ − p₂) / √(P(1−P)(1/n₁ + 1/n₂)).
/// A pooled share of 0 or 1 (both samples all one value): z = 0, p = 1. None when a
/// sample is empty.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Test> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    if pooled <= 0.0 || pooled >= 1.0 {
        return Some(Test {
            statistic: 0.0,
            p_value: 1.0,
        });
    }
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let p = 2.0 * Normal::new(0.0, 1.0).ok()?.sf(z.abs());
    Some(Test {
        statistic: z,
        p_value: p,
    })
}

/// Shares of the reference and the current sample per bin, as Evidently (0.7) bins a
/// numeric column: when the reference has more than 20 distinct values, equal-width
/// bins over both samples' range, as many as NumPy's Sturges rule gives for both
/// samples together (⌈range / (range / (log₂ n + 1))⌉, n = both sizes; 22 bins for two
/// samples of a million), with NumPy's edges (`linspace`) and bins `[eᵢ, eᵢ₊₁)`, the
/// last one closed; else one bin per distinct value of either sample.
pub fn binned_shares(reference: &[f64], current: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let r = finite_sorted(reference);
    binned_shares_sorted(&r, r.len() as u64, &finite_sorted(current))
}

/// [`binned_shares`] of samples that are finite and sorted already; `r` stands for
/// `n_ref` values (a baseline's quantile summary stands for all its rows, each point
/// for an equal share of them), which sets the number of bins.
pub fn binned_shares_sorted(r: &[f64], n_ref: u64, c: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    if r.is_empty() || c.is_empty() {
        return None;
    }
    let (rn, cn) = (r.len() as f64, c.len() as f64);
    if distinct_sorted(r) > 20 {
        let lo = r[0].min(c[0]);
        let hi = r[r.len() - 1].max(c[c.len() - 1]);
        let k = sturges_bins(lo, hi, n_ref.max(r.len() as u64) + c.len() as u64);
        // numpy.linspace(lo, hi, k + 1): i·step + lo, the last edge hi itself.
        let step = (hi - lo) / k as f64;
        let mut edges: Vec<f64> = (0..=k).map(|i| i as f64 * step + lo).collect();
        edges[k] = hi;
        let count = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; k];
            // Both sorted: walk the edges once.
            let mut from = 0;
            for (i, slot) in out.iter_mut().enumerate() {
                let to = if i + 1 == k {
                    v.len()
                } else {
                    from + v[from..].partition_point(|&x| x < edges[i + 1])
                };
                *slot = (to - from) as f64;
                from = to;
            }
            out
        };
        let (mut pr, mut pc) = (count(r), count(c));
        pr.iter_mut().for_each(|x| *x /= rn);
        pc.iter_mut().for_each(|x| *x /= cn);
        return Some((pr, pc));
    }
    let keys = distinct_union_sorted(r, c);
    let share = |v: &[f64], k: f64, n: f64| {
        let from = v.partition_point(|&x| x < k);
        let to = v.partition_point(|&x| x <= k);
        (to - from) as f64 / n
    };
    Some((
        keys.iter().map(|&k| share(r, k, rn)).collect(),
        keys.iter().map(|&k| share(c, k, cn)).collect(),
    ))
}

/// The distinct values of two sorted samples, sorted: one merge of the two (values
/// that compare equal, as 0.0 and −0.0 do, count once, as the first of them).
fn distinct_union_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let v = if j == b.len() || (i < a.len() && a[i].total_cmp(&b[j]).is_le()) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

/// NumPy's `histogram_bin_edges(bins="sturges")` bin count for `n` values over
/// `[lo, hi]`: width = range / (log₂ n + 1), bins = ⌈range / width⌉ (the same two
/// roundings as NumPy, so the count agrees at the edges of its steps too).
fn sturges_bins(lo: f64, hi: f64, n: u64) -> usize {
    let range = hi - lo;
    let width = range / ((n as f64).log2() + 1.0);
    if width > 0.0 {
        ((range / width).ceil() as usize).max(1)
    } else {
        1
    }
}

/// Shares of two count vectors over the same categories (each over its own total).
pub fn count_shares(reference: &[u64], current: &[u64]) -> (Vec<f64>, Vec<f64>) {
    let share = |v: &[u64]| {
        let n = v.iter().sum::<u64>().max(1) as f64;
        v.iter().map(|&x| x as f64 / n).collect()
    };
    (share(reference), share(current))
}

/// Population Stability Index Σ (pᵢ − qᵢ) ln(pᵢ / qᵢ) over bin shares, with empty
/// bins filled as Evidently does (0.0001, or a millionth of the smallest share when
/// that is smaller).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let fill = |p: &[f64]| -> Vec<f64> {
        let min = p
            .iter()
            .copied()
            .filter(|&x| x != 0.0)
            .fold(f64::INFINITY, f64::min);
        let v = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
        p.iter().map(|&x| if x == 0.0 { v } else { x }).collect()
    };
    let (p, q) = (fill(reference), fill(current));
    p.iter().zip(&q).map(|(p, q)| (p - q) * (p / q).ln()).sum()
}

/// Jensen–Shannon distance (natural log, SciPy's `jensenshannon`): √((KL(p‖m) +
/// KL(q‖m)) / 2), m = (p + q)/2, after normalising both to sum 1.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp <= 0.0 || sq <= 0.0 {
        return 0.0;
    }
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
    let js: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = (a + b) / 2.0;
            kl(a, m) + kl(b, m)
        })
        .sum::<f64>()
        / 2.0;
    js.max(0.0).sqrt()
}

/// Hellinger distance between two share vectors: ‖√p − √q‖₂ / √2 (0 to 1).
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    let s: f64 = p
        .iter()
        .zip(q)
        .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
        .sum();
    (s / 2.0).sqrt()
}

/// Benjamini–Hochberg adjusted p-values (`scipy.stats.false_discovery_control`,
/// method `bh`): q₍ᵢ₎ = min(1, minⱼ≥ᵢ m·p₍ⱼ₎/j) over the p-values sorted ascending,
/// returned in the input's order. Rejecting where q < α keeps the expected share of
/// false discoveries among the rejections at most α (independent or positively
/// dependent tests). NaN p-values stay NaN and are not counted in m.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len() as f64;
    let mut q = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        q[i] = running;
    }
    q
}

/// Wasserstein-1 distance between the two samples' empirical distributions, as
/// `scipy.stats.wasserstein_distance`: ∫ |F₁ − F₂| dx.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Option<f64> {
    wasserstein_sorted(&finite_sorted(reference), &finite_sorted(current))
}

/// [`wasserstein`] of samples that are finite and sorted already.
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // One walk through both samples in merged order: between a value and the next
    // larger one, the two empirical CDFs are the shares of each sample taken so far.
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut x = f64::NEG_INFINITY;
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let from_a = j == b.len() || (i < a.len() && a[i] <= b[j]);
        let next = if from_a { a[i] } else { b[j] };
        if i + j > 0 && next > x {
            total += (i as f64 / na - j as f64 / nb).abs() * (next - x);
        }
        if from_a {
            i += 1;
        } else {
            j += 1;
        }
        x = next;
    }
    Some(total)
}

/// Wasserstein-1 divided by the reference's standard deviation (population), at least
/// 0.001 — Evidently's `wasserstein` drift score.
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> Option<f64> {
    wasserstein_normed_sorted(&finite_sorted(reference), &finite_sorted(current))
}

/// [`wasserstein_normed`] of samples that are finite and sorted already.
pub fn wasserstein_normed_sorted(r: &[f64], c: &[f64]) -> Option<f64> {
    let w = wasserstein_sorted(r, c)?;
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let std = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    Some(w / std.max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::p_value_agrees;

    #[derive(serde::Deserialize)]
    struct Fixtures {
        ks: Vec<KsCase>,
        kstwo: Vec<KstwoCase>,
        distances: Vec<DistCase>,
        chi2: Vec<ChiCase>,
        z: Vec<ZCase>,
        fdr: Vec<FdrCase>,
    }
    #[derive(serde::Deserialize)]
    struct FdrCase {
        p: Vec<f64>,
        q: Vec<f64>,
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
    struct KstwoCase {
        n: u64,
        d: f64,
        sf: f64,
    }
    #[derive(serde::Deserialize)]
    struct DistCase {
        name: String,
        reference: Vec<f64>,
        current: Vec<f64>,
        psi: f64,
        js_distance: f64,
        hellinger: f64,
        wasserstein: f64,
        wasserstein_normed: f64,
    }
    #[derive(serde::Deserialize)]
    struct ChiCase {
        name: String,
        reference: Vec<u64>,
        current: Vec<u64>,
        statistic: f64,
        p: f64,
    }
    #[derive(serde::Deserialize)]
    struct ZCase {
        x1: u64,
        n1: u64,
        x2: u64,
        n2: u64,
        z: f64,
        p: f64,
    }

    fn fixtures() -> Fixtures {
        serde_json::from_str(include_str!("drift_fixtures.json")).expect("fixtures parse")
    }

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(1e-300) || (got - want).abs() < 1e-12
    }

    #[test]
    fn benjamini_hochberg_agrees_with_scipy() {
        let f: Fixtures = serde_json::from_str(include_str!("drift_fixtures.json")).unwrap();
        assert!(f.fdr.len() >= 3);
        for c in &f.fdr {
            let q = benjamini_hochberg(&c.p);
            for (a, b) in q.iter().zip(&c.q) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1e-300),
                    "{q:?} vs {:?}",
                    c.q
                );
            }
        }
        assert!(benjamini_hochberg(&[]).is_empty());
        let q = benjamini_hochberg(&[0.01, f64::NAN, 0.04]);
        assert!(q[1].is_nan() && q[0] == 0.02 && q[2] == 0.04, "{q:?}");
    }

    #[test]
    fn ks_2samp_agrees_with_scipy() {
        for c in fixtures().ks {
            let (t, method) = ks_2samp(&c.a, &c.b).expect("non-empty");
            assert!(
                close(t.statistic, c.statistic, 1e-9),
                "{}: D {} vs SciPy {}",
                c.name,
                t.statistic,
                c.statistic
            );
            assert!(
                p_value_agrees(t.p_value, c.p),
                "{} ({method:?}): p {} vs SciPy {}",
                c.name,
                t.p_value,
                c.p
            );
        }
    }

    #[test]
    fn kstwo_sf_agrees_with_scipy_in_every_regime() {
        for c in fixtures().kstwo {
            let got = kstwo_sf(c.n, c.d);
            assert!(
                p_value_agrees(got, c.sf),
                "n {} d {}: {got} vs SciPy {}",
                c.n,
                c.d,
                c.sf
            );
        }
    }

    #[test]
    fn distances_agree_with_scipy_and_evidently() {
        for c in fixtures().distances {
            let (p, q) = binned_shares(&c.reference, &c.current).unwrap();
            let checks = [
                ("psi", psi(&p, &q), c.psi),
                ("js", js_distance(&p, &q), c.js_distance),
                ("hellinger", hellinger(&p, &q), c.hellinger),
                (
                    "wasserstein",
                    wasserstein(&c.reference, &c.current).unwrap(),
                    c.wasserstein,
                ),
                (
                    "wasserstein_normed",
                    wasserstein_normed(&c.reference, &c.current).unwrap(),
                    c.wasserstein_normed,
                ),
            ];
            for (what, got, want) in checks {
                assert!(close(got, want, 1e-9), "{} {what}: {got} vs {want}", c.name);
            }
        }
    }

    #[derive(serde::Deserialize)]
    struct EvidentlyFixtures {
        evidently: String,
        numerical: Vec<EvidentlyNumerical>,
        categorical: Vec<EvidentlyCategorical>,
    }
    #[derive(serde::Deserialize)]
    struct EvidentlyNumerical {
        name: String,
        psi: f64,
        js_distance: f64,
        wasserstein_normed: f64,
        hellinger: f64,
    }
    #[derive(serde::Deserialize)]
    struct EvidentlyCategorical {
        name: String,
        reference: Vec<String>,
        current: Vec<String>,
        psi: f64,
        js_distance: f64,
        hellinger: f64,
    }

    /// Evidently's own functions (scripts/evidently_fixtures.py) on the same samples:
    /// catches a binning rule copied wrongly into drift_fixtures.py and here alike.
    /// Hellinger: Evidently's for categories; for numbers SciPy's Euclidean norm on
    /// Evidently's own bins (its numeric Hellinger bins otherwise).
    #[test]
    fn distances_agree_with_evidently_itself() {
        let e: EvidentlyFixtures =
            serde_json::from_str(include_str!("evidently_fixtures.json")).unwrap();
        assert!(e.evidently.starts_with("0.7"), "{}", e.evidently);
        let samples = fixtures().distances;
        assert_eq!(samples.len(), e.numerical.len());
        for (c, want) in samples.iter().zip(&e.numerical) {
            assert_eq!(c.name, want.name);
            let (p, q) = binned_shares(&c.reference, &c.current).unwrap();
            let w = wasserstein_normed(&c.reference, &c.current).unwrap();
            assert!(close(psi(&p, &q), want.psi, 1e-9), "{} psi", c.name);
            assert!(
                close(js_distance(&p, &q), want.js_distance, 1e-9),
                "{} js",
                c.name
            );
            assert!(close(w, want.wasserstein_normed, 1e-9), "{} w", c.name);
            assert!(
                close(hellinger(&p, &q), want.hellinger, 1e-9),
                "{} hellinger",
                c.name
            );
        }
        assert!(e.categorical.len() >= 3);
        for c in &e.categorical {
            fn count(v: &[String]) -> std::collections::BTreeMap<&str, u64> {
                let mut m = std::collections::BTreeMap::new();
                v.iter()
                    .for_each(|s| *m.entry(s.as_str()).or_default() += 1);
                m
            }
            let (r, k) = (count(&c.reference), count(&c.current));
            let keys: std::collections::BTreeSet<&str> =
                r.keys().chain(k.keys()).copied().collect();
            let a: Vec<u64> = keys.iter().map(|x| *r.get(x).unwrap_or(&0)).collect();
            let b: Vec<u64> = keys.iter().map(|x| *k.get(x).unwrap_or(&0)).collect();
            let (p, q) = count_shares(&a, &b);
            assert!(close(psi(&p, &q), c.psi, 1e-9), "{} psi", c.name);
            assert!(
                close(js_distance(&p, &q), c.js_distance, 1e-9),
                "{} js",
                c.name
            );
            assert!(
                close(hellinger(&p, &q), c.hellinger, 1e-9),
                "{} hellinger",
                c.name
            );
        }
    }

    #[test]
    fn chi2_and_z_agree_with_scipy() {
        let f = fixtures();
        for c in f.chi2 {
            let t = chi2_homogeneity(&c.reference, &c.current).unwrap();
            assert!(close(t.statistic, c.statistic, 1e-9), "{}: {t:?}", c.name);
            assert!(
                p_value_agrees(t.p_value, c.p),
                "{}: {t:?} vs {}",
                c.name,
                c.p
            );
        }
        for c in f.z {
            let t = two_proportion_z(c.x1, c.n1, c.x2, c.n2).unwrap();
            assert!(close(t.statistic, c.z, 1e-9), "{t:?} vs {}", c.z);
            assert!(p_value_agrees(t.p_value, c.p), "{t:?} vs {}", c.p);
        }
    }

    #[test]
    fn edge_cases_have_defined_results() {
        let nan = f64::NAN;
        assert!(ks_2samp(&[], &[1.0]).is_none());
        assert!(ks_2samp(&[nan, f64::INFINITY], &[1.0]).is_none());
        let (t, _) = ks_2samp(&[2.0; 5], &[2.0; 9]).unwrap();
        assert_eq!((t.statistic, t.p_value), (0.0, 1.0));
        let (t, _) = ks_2samp(&[1.0, nan, 2.0, f64::NEG_INFINITY], &[1.0, 2.0]).unwrap();
        assert_eq!((t.statistic, t.p_value), (0.0, 1.0));
        assert_eq!(missing_share(&[1.0, nan, f64::INFINITY, 2.0], 4), 0.75);
        assert_eq!(missing_share(&[], 0), 0.0);
        assert!(chi2_homogeneity(&[0, 0], &[1, 2]).is_none());
        assert_eq!(
            chi2_homogeneity(&[5, 0], &[7, 0]),
            Some(Test {
                statistic: 0.0,
                p_value: 1.0
            })
        );
        assert!(two_proportion_z(0, 0, 1, 2).is_none());
        assert_eq!(wasserstein_normed(&[3.0; 4], &[3.0; 2]), Some(0.0));
        assert!(wasserstein(&[nan], &[1.0]).is_none());
        assert!(binned_shares(&[], &[1.0]).is_none());
    }

    /// The merge gives what sorting the two samples together and dropping repeats
    /// gives, bit for bit (−0.0 and 0.0 included).
    #[test]
    fn distinct_union_is_the_sorted_deduplicated_concatenation() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pool = [-3.5, -1.0, -0.0, 0.0, 0.25, 1.0, 2.0, 16.0, 1e300];
        for _ in 0..500 {
            let mut sample = || -> Vec<f64> {
                let n = rng.random_range(0..40);
                let mut v: Vec<f64> = (0..n)
                    .map(|_| pool[rng.random_range(0..pool.len())])
                    .collect();
                v.sort_unstable_by(f64::total_cmp);
                v
            };
            let (a, b) = (sample(), sample());
            let mut want: Vec<f64> = a.iter().chain(&b).copied().collect();
            want.sort_unstable_by(f64::total_cmp);
            want.dedup();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
            assert_eq!(
                bits(&distinct_union_sorted(&a, &b)),
                bits(&want),
                "{a:?} {b:?}"
            );
        }
    }
}
