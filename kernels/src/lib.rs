//! Fused kernels for softmask, as a burn backend extension.
//!
//! burn 0.22's Flex backend computes GELU and its backward one element at a
//! time with libm's `erff` on one thread; on a BERT step that is a quarter of
//! the time. This crate adds a [backend extension](burn::backend::backend_extension)
//! ([`FusedOps`]) whose Flex kernels run the same formula vectorised (AVX-512,
//! AVX2 or the baseline, picked at run time) and in parallel, with a custom
//! autodiff backward. Other backends keep burn's own operations, so every
//! function here works on any device.
//!
//! It is its own crate so that the build the README's commands make (the dev
//! profile, which optimises dependencies only) optimises these loops too.

#![deny(missing_docs)]

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
mod math;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;

/// Operations this crate fuses, as a burn backend extension: implemented
/// for Flex and for autodiff over it.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FusedOps: Backend {
    /// The exact (erf) GELU, `x/2 · (1 + erf(x/√2))`.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `grad · gelu'(x)`, with `gelu'(x) = Φ(x) + x φ(x)`.
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether `device` (with or without autodiff) runs [`FusedOps`].
pub fn fused_on(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == burn::tensor::Device::flex() {
        return true;
    }
    let _ = device;
    false
}

/// The exact (erf) GELU, `x · Φ(x)`, with an exact gradient on every backend.
///
/// On Flex it runs the fused kernels of [`FusedOps`]. Elsewhere it writes
/// GELU as `x/2 · (1 + erf(x/√2))`, which autodiff differentiates exactly
/// (burn 0.22's default GELU backward is the tanh approximation's derivative).
///
/// # Shapes
///
/// - input: `[..., any]`
/// - output: same as input
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
///
/// let x = Tensor::<1>::from_floats([-1.0, 0.0, 2.0], &Device::default());
/// let y = softmask_kernels::gelu(x).into_data().to_vec::<f32>().unwrap();
/// assert!((y[0] + 0.158_655_3).abs() < 1e-6);
/// assert_eq!(y[1], 0.0);
/// assert!((y[2] - 1.954_5).abs() < 1e-4);
/// ```
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_on(&x.device()) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()));
    }
    let cdf = x
        .clone()
        .mul_scalar(std::f32::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}
