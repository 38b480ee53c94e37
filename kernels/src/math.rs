//! Branch-free `f32` math that the compiler vectorises, and the loops that run
//! it over slices with the widest instructions the CPU has.
//!
//! `erf` is the Abramowitz–Stegun 7.1.26 form PyTorch's vectorised CPU kernels
//! use (absolute error ≤ 1.5e-7), so GELU here agrees with PyTorch's to the
//! last bits where libm's `erff` does not. `exp` is Cody–Waite range reduction
//! with Cephes' degree-6 polynomial (≤ 1 ulp on the range GELU needs).

/// `a · b + c`, fused where the instruction set has FMA.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` for `x ≤ 88`; 0 below -87.3 (where `e^x` is subnormal), so
/// `e^-∞ = 0`.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x0 = x;
    let x = x.clamp(-87.3, 88.0);
    let k = x * LOG2E + ROUND;
    let n = k - ROUND;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, x));
    let mut p = 1.987_569_1e-4;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5);
    let y = madd::<FMA>(p * r, r, r) + 1.0;
    // n is an integer in [-126, 127] and k's low mantissa bits hold it
    // (k = 1.5 · 2^23 + n exactly): 2^n by its exponent bits.
    let biased = k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    if x0 < -87.3 { 0.0 } else { y * scale }
}

/// `erf(x)`, absolute error ≤ 1.5e-7 in exact arithmetic (Abramowitz–Stegun
/// 7.1.26), under 4e-7 in `f32`.
#[inline(always)]
pub(crate) fn erf<const FMA: bool>(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    let a = x.abs();
    let t = 1.0 / madd::<FMA>(P, a, 1.0);
    let mut r = 1.061_405_4;
    r = madd::<FMA>(r, t, -1.453_152);
    r = madd::<FMA>(r, t, 1.421_413_8);
    r = madd::<FMA>(r, t, -0.284_496_74);
    r = madd::<FMA>(r, t, 0.254_829_6);
    let e = 1.0 - r * t * exp::<FMA>(-(a * a));
    e.copysign(x)
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `x · Φ(x)`: `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub(crate) fn gelu<const FMA: bool>(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf::<FMA>(x * SQRT_HALF))
}

/// `dy · (Φ(x) + x φ(x))`.
#[inline(always)]
pub(crate) fn gelu_backward<const FMA: bool>(x: f32, dy: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf::<FMA>(x * SQRT_HALF));
    let pdf = INV_SQRT_2PI * exp::<FMA>(-0.5 * x * x);
    dy * madd::<FMA>(x, pdf, cdf)
}

/// Defines `$name(args)` that runs `$body::<FMA>(args)` compiled for
/// AVX-512, for AVX2 with FMA, and for the baseline: the widest the CPU has.
macro_rules! multiversion {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
                $body::<false>($($arg),*)
            }
            #[cfg(target_arch = "aarch64")]
            {
                $body::<true>($($arg),*)
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            {
                $body::<false>($($arg),*)
            }
        }
    };
}

/// Lanes of the reductions: independent accumulators the compiler keeps in
/// one vector register.
const LANES: usize = 16;

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    rest.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// `Σ f(x[i], y[i])` over `x.len()` elements.
#[inline(always)]
fn sum_of(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let y = &y[..x.len()];
    let mut acc = [0.0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (c, d) in xc.zip(yc) {
        for ((a, &u), &v) in acc.iter_mut().zip(c).zip(d) {
            *a += f(u, v);
        }
    }
    let tail: f32 = xr.iter().zip(yr).map(|(&u, &v)| f(u, v)).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn gelu_body<const FMA: bool>(x: &[f32], dst: &mut [f32], _: usize) {
    for (d, &x) in dst.iter_mut().zip(x) {
        *d = gelu::<FMA>(x);
    }
}

#[inline(always)]
fn gelu_backward_body<const FMA: bool>(x: &[f32], dy: &mut [f32], _: usize) {
    for (d, &x) in dy.iter_mut().zip(x) {
        *d = gelu_backward::<FMA>(x, *d);
    }
}

#[inline(always)]
fn softmax_body<const FMA: bool>(x: &[f32], y: &mut [f32], n: usize) {
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let m = max(x);
        for (o, &v) in y.iter_mut().zip(x) {
            *o = exp::<FMA>(v - m);
        }
        let inv = 1.0 / sum_of(y, y, |v, _| v);
        for o in y.iter_mut() {
            *o *= inv;
        }
    }
}

#[inline(always)]
fn log_softmax_body<const FMA: bool>(x: &[f32], y: &mut [f32], n: usize) {
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let m = max(x);
        let lse = m + sum_of(x, x, |v, _| exp::<FMA>(v - m)).ln();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v - lse;
        }
    }
}

#[inline(always)]
fn softmax_backward_body<const FMA: bool>(y: &[f32], dy: &mut [f32], n: usize) {
    for (y, dy) in y.chunks_exact(n).zip(dy.chunks_exact_mut(n)) {
        let dot = sum_of(y, dy, |a, b| a * b);
        for (d, &v) in dy.iter_mut().zip(y) {
            *d = v * (*d - dot);
        }
    }
}

#[inline(always)]
fn log_softmax_backward_body<const FMA: bool>(y: &[f32], dy: &mut [f32], n: usize) {
    for (y, dy) in y.chunks_exact(n).zip(dy.chunks_exact_mut(n)) {
        let total = sum_of(dy, dy, |a, _| a);
        for (d, &v) in dy.iter_mut().zip(y) {
            *d = madd::<FMA>(-exp::<FMA>(v), total, *d);
        }
    }
}

multiversion!(
    /// `dst[i] = gelu(x[i])` (the row length, for the row kernels'
    /// signature, is unused).
    gelu_slice(x: &[f32], dst: &mut [f32], n: usize) => gelu_body
);
multiversion!(
    /// `dy[i] = dy[i] · gelu'(x[i])`, in place (the row length is unused).
    gelu_backward_slice(x: &[f32], dy: &mut [f32], n: usize) => gelu_backward_body
);

multiversion!(
    /// Softmax of each row of `n` elements: `y = e^(x - max) / Σ e^(x - max)`.
    softmax_rows(x: &[f32], y: &mut [f32], n: usize) => softmax_body
);
multiversion!(
    /// Log-softmax of each row of `n` elements: `y = x - max - ln Σ e^(x - max)`.
    log_softmax_rows(x: &[f32], y: &mut [f32], n: usize) => log_softmax_body
);
multiversion!(
    /// Softmax's backward from its output, in place: `dy ← y · (dy - Σ y·dy)`.
    softmax_backward_rows(y: &[f32], dy: &mut [f32], n: usize) => softmax_backward_body
);
multiversion!(
    /// Log-softmax's backward from its output, in place: `dy ← dy - e^y · Σ dy`.
    log_softmax_backward_rows(y: &[f32], dy: &mut [f32], n: usize) => log_softmax_backward_body
);

/// The scalars of one AdamW step, in `f32` as burn's AdamW computes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWScalars {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// `1 - lr · weight_decay`.
    pub decay: f32,
    /// `1 - beta_1^t`.
    pub correction_1: f32,
    /// `1 - beta_2^t`.
    pub correction_2: f32,
}

#[inline(always)]
fn adamw_body<const FMA: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    h: AdamWScalars,
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let gi = g[i];
        let mi = h.beta_1 * m[i] + (1.0 - h.beta_1) * gi;
        let vi = h.beta_2 * v[i] + (1.0 - h.beta_2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        let delta = (mi / h.correction_1) / ((vi / h.correction_2).sqrt() + h.epsilon);
        p[i] = p[i] * h.decay - delta * h.lr;
    }
}

multiversion!(
    /// One AdamW step over a chunk, in place: moments first, then the
    /// decayed parameter minus `lr ·` the bias-corrected update.
    adamw_slice(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWScalars) => adamw_body
);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::reference::erf as erf64;

    #[test]
    fn exp_is_within_two_ulps_on_gelus_range() {
        for i in -8000..=800 {
            let x = i as f32 / 100.0;
            for got in [exp::<true>(x), exp::<false>(x)] {
                let want = f64::from(x).exp();
                let ulp = f64::from(f32::EPSILON) * want;
                assert!(
                    (f64::from(got) - want).abs() <= 2.0 * ulp,
                    "exp({x}) = {got}, want {want}"
                );
            }
        }
        assert_eq!(exp::<true>(0.0), 1.0);
        assert_eq!(exp::<true>(-200.0), 0.0);
        assert_eq!(exp::<false>(f32::NEG_INFINITY), 0.0);
        assert!(exp::<true>(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_the_approximations_bound() {
        for i in -300..=300 {
            let x = i as f32 / 100.0;
            let want = erf64(f64::from(x));
            for got in [erf::<true>(x), erf::<false>(x)] {
                assert!(
                    (f64::from(got) - want).abs() < 4e-7,
                    "erf({x}) = {got}, want {want}"
                );
            }
        }
        assert_eq!(erf::<true>(0.0), 0.0);
        assert_eq!(erf::<true>(10.0), 1.0);
        assert_eq!(erf::<true>(-10.0), -1.0);
    }

    #[test]
    fn slices_match_the_scalar_forms_at_every_length() {
        let xs: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) / 4.0).collect();
        let dys: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 / 10.0).collect();
        for n in [0, 1, 15, 16, 17, 37] {
            let mut out = vec![0.0; n];
            gelu_slice(&xs, &mut out, 1);
            for i in 0..n {
                let want = f64::from(xs[i]) * 0.5 * (1.0 + erf64(f64::from(xs[i]) / 2f64.sqrt()));
                assert!((f64::from(out[i]) - want).abs() < 1e-6, "gelu({})", xs[i]);
            }
            out.copy_from_slice(&dys[..n]);
            gelu_backward_slice(&xs, &mut out, 1);
            for i in 0..n {
                let x = f64::from(xs[i]);
                let cdf = 0.5 * (1.0 + erf64(x / 2f64.sqrt()));
                let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let want = f64::from(dys[i]) * (cdf + x * pdf);
                assert!((f64::from(out[i]) - want).abs() < 2e-6, "gelu'({x})");
            }
        }
    }

    /// Rows in f64 for the row kernels' tests.
    fn softmax64(x: &[f32]) -> Vec<f64> {
        let m = x
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn row_kernels_match_f64_softmax_and_its_derivatives() {
        for n in [1, 5, 16, 37] {
            let rows = 3;
            let x: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919) % 23) as f32 / 3.0 - 4.0)
                .collect();
            let dy: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 104_729) % 11) as f32 / 5.0 - 1.0)
                .collect();
            let mut y = vec![0.0; rows * n];
            let mut ly = vec![0.0; rows * n];
            softmax_rows(&x, &mut y, n);
            log_softmax_rows(&x, &mut ly, n);
            let mut dx = dy.clone();
            softmax_backward_rows(&y, &mut dx, n);
            let mut ldx = dy.clone();
            log_softmax_backward_rows(&ly, &mut ldx, n);
            for r in 0..rows {
                let row = r * n..(r + 1) * n;
                let p = softmax64(&x[row.clone()]);
                let g: Vec<f64> = dy[row.clone()].iter().map(|&v| f64::from(v)).collect();
                let dot: f64 = p.iter().zip(&g).map(|(a, b)| a * b).sum();
                let total: f64 = g.iter().sum();
                for (j, i) in row.enumerate() {
                    assert!((f64::from(y[i]) - p[j]).abs() < 1e-6, "softmax n={n}");
                    assert!(
                        (f64::from(ly[i]) - p[j].ln()).abs() < 2e-6,
                        "log_softmax n={n}"
                    );
                    assert!(
                        (f64::from(dx[i]) - p[j] * (g[j] - dot)).abs() < 2e-6,
                        "softmax' n={n}"
                    );
                    assert!(
                        (f64::from(ldx[i]) - (g[j] - p[j] * total)).abs() < 2e-6,
                        "log_softmax' n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_gives_zero_where_the_input_is_minus_infinity_or_f32_min() {
        let x = [1.0, f32::NEG_INFINITY, 2.0, f32::MIN];
        let mut y = [9.0; 4];
        softmax_rows(&x, &mut y, 4);
        assert_eq!((y[1], y[3]), (0.0, 0.0));
        assert!((y[0] + y[2] - 1.0).abs() < 1e-7);
    }
}
