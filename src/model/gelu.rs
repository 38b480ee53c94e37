//! GELU with an exact gradient on every backend.

use burn::tensor::Tensor;

/// The exact (erf) GELU, `x · Φ(x)`, whose gradient is exact on every backend.
///
/// burn 0.22's `activation::gelu` computes the exact forward everywhere, but
/// its default backward is the derivative of the *tanh approximation*; Flex
/// overrides it with the exact derivative, NdArray (and any backend that
/// keeps the default) does not. The two derivatives part by up to about 1e-3
/// for inputs near ±2, which trained checkpoints reach, so every gradient
/// through a feed-forward block (training and importance) would differ from
/// PyTorch's. On Flex this runs the fused, vectorised kernels of
/// [`softmask_kernels`] (the same erf as PyTorch's CPU kernels); elsewhere it
/// writes GELU as `x/2 · (1 + erf(x/√2))`, which autodiff differentiates
/// exactly.
///
/// # Shapes
///
/// - input: `[..., any]`
/// - output: same as input
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    softmask_kernels::gelu(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// d/dx gelu(x) = Φ(x) + x φ(x), computed in f64.
    fn exact_derivative(x: f64) -> f64 {
        let phi = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
        cdf + x * phi
    }

    use softmask_kernels::reference::erf;

    #[test]
    fn gradient_is_the_exact_derivative_on_every_device() {
        let xs = [-3.0f32, -2.0, -1.2, -0.5, 0.0, 0.7, 1.9, 2.0, 2.5];
        for (name, device) in crate::device::cpu_devices() {
            let device = device.autodiff();
            let x = Tensor::<1>::from_floats(xs, &device).require_grad();
            let grads = gelu(x.clone()).sum().backward();
            let got = crate::io::to_host(x.grad(&grads).unwrap()).unwrap().values;
            for (&x, g) in xs.iter().zip(got) {
                let want = exact_derivative(f64::from(x));
                assert!(
                    (f64::from(g) - want).abs() < 2e-6,
                    "{name}: gelu'({x}) = {g}, exact {want}"
                );
            }
        }
    }
}
