//! Reference math in `f64`, the yardstick the kernels (and softmask's own
//! tests of them) are checked against.

/// `erf(x)` by its Taylor series, accurate to `f64` rounding for `|x| ≤ 3`
/// (slow: for tests, not for kernels).
///
/// # Example
///
/// ```
/// use softmask_kernels::reference::erf;
///
/// assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
/// assert_eq!(erf(0.0), 0.0);
/// ```
pub fn erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}
