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

/// `e^x` for `x ≤ 88`; inputs below -87.3 give about 1e-38 instead of a
/// subnormal or zero.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
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
    y * scale
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

/// Defines `$name(x, dst)` that sets `dst[i] = $f(x[i], dst[i])`, compiled
/// for AVX-512, for AVX2 with FMA, and for the baseline, and runs the widest
/// the CPU has.
macro_rules! elementwise {
    ($(#[$doc:meta])* $name:ident => $f:ident) => {
        $(#[$doc])*
        pub(crate) fn $name(x: &[f32], dst: &mut [f32]) {
            #[inline(always)]
            fn body<const FMA: bool>(x: &[f32], dst: &mut [f32]) {
                let x = &x[..dst.len()];
                for (d, &x) in dst.iter_mut().zip(x) {
                    *d = $f::<FMA>(x, *d);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512(x: &[f32], dst: &mut [f32]) {
                    body::<true>(x, dst)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(x: &[f32], dst: &mut [f32]) {
                    body::<true>(x, dst)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512(x, dst) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2(x, dst) };
                }
                body::<false>(x, dst)
            }
            #[cfg(target_arch = "aarch64")]
            {
                body::<true>(x, dst)
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            {
                body::<false>(x, dst)
            }
        }
    };
}

#[inline(always)]
fn gelu_into<const FMA: bool>(x: f32, _: f32) -> f32 {
    gelu::<FMA>(x)
}

elementwise!(
    /// `dst[i] = gelu(x[i])`.
    gelu_slice => gelu_into
);
elementwise!(
    /// `dy[i] = dy[i] · gelu'(x[i])`, in place.
    gelu_backward_slice => gelu_backward
);

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // Taylor series, converges well for |x| ≤ 3.
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

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
        assert!(exp::<true>(-200.0) < 1e-37);
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
            gelu_slice(&xs, &mut out);
            for i in 0..n {
                let want = f64::from(xs[i]) * 0.5 * (1.0 + erf64(f64::from(xs[i]) / 2f64.sqrt()));
                assert!((f64::from(out[i]) - want).abs() < 1e-6, "gelu({})", xs[i]);
            }
            out.copy_from_slice(&dys[..n]);
            gelu_backward_slice(&xs, &mut out);
            for i in 0..n {
                let x = f64::from(xs[i]);
                let cdf = 0.5 * (1.0 + erf64(x / 2f64.sqrt()));
                let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let want = f64::from(dys[i]) * (cdf + x * pdf);
                assert!((f64::from(out[i]) - want).abs() < 2e-6, "gelu'({x})");
            }
        }
    }
}
