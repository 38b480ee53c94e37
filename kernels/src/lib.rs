//! Fused kernels for softmask, as a burn backend extension.
//!
//! burn 0.22's Flex backend computes GELU and its backward one element at a
//! time with libm's `erff` on one thread; under autodiff burn splits softmax
//! and log-softmax into five tracked operations with five backwards; its
//! AdamW makes about fifteen passes over every parameter. On a BERT step
//! those were about half of the time outside the matrix products. This crate
//! adds a [backend extension](burn::backend::backend_extension)
//! ([`FusedOps`]) whose Flex kernels run each as one pass, vectorised
//! (AVX-512, AVX2 with FMA or the baseline, picked at run time) and in
//! parallel, with custom autodiff backwards:
//!
//! - [`gelu`], [`softmax`], [`log_softmax`]: tensors in, tensors out, on any
//!   device (burn's own operations where the kernels do not apply);
//! - [`FusedAdamW`]: a burn optimizer with burn's AdamW state;
//! - [`dropout_mask`] and [`dropout_mask_from`]: softmask's counter-based dropout mask, whole or a range of it.
//!
//! It is its own crate so that the build the README's commands make (the dev
//! profile, which optimises dependencies only) optimises these loops too.

#![deny(missing_docs)]
// Without Flex the kernels have no backend to run on and every function
// falls back to burn's operations: the kernel code is built but unused.
#![cfg_attr(
    not(feature = "flex"),
    allow(dead_code, unused_imports, unused_variables)
)]

mod adamw;
mod autodiff;
mod dropout;
#[cfg(feature = "flex")]
mod flex;
mod math;
pub mod reference;

pub use adamw::{FusedAdamW, FusedAdamWConfig, InvalidHyperParameter};
pub use dropout::{dropout_mask, dropout_mask_from};

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::activation;
use burn::tensor::{DType, Tensor};

/// Operations this crate fuses, as a burn backend extension: implemented
/// for Flex and for autodiff over it.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FusedOps: Backend {
    /// The exact (erf) GELU, `x/2 · (1 + erf(x/√2))`.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `grad · gelu'(x)`, with `gelu'(x) = Φ(x) + x φ(x)`.
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax along the last dimension.
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax's backward from its output `y`: `y · (grad - Σ y·grad)`.
    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Log-softmax along the last dimension.
    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Log-softmax's backward from its output `y`: `grad - e^y · Σ grad`.
    fn fused_log_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// One AdamW step: the updated parameter and first and second moments.
    /// `hyper` is `[lr, beta_1, beta_2, epsilon, weight_decay, time]`, `time`
    /// counting from 1 at the first step.
    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: [f64; 6],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether `x` runs [`FusedOps`]: an `f32` tensor, not empty, on a device
/// (with or without autodiff) that implements them.
fn fused_for<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    if x.device() == burn::tensor::Device::flex()
        && x.dtype() == DType::F32
        && x.shape().num_elements() > 0
    {
        return true;
    }
    let _ = x;
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
/// let y = softmask_kernels::gelu(x).into_data().try_to_vec::<f32>().unwrap();
/// assert!((y[0] + 0.158_655_3).abs() < 1e-6);
/// assert_eq!(y[1], 0.0);
/// assert!((y[2] - 1.954_5).abs() < 1e-4);
/// ```
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_for(&x) {
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

/// Softmax along `dim`: fused (one pass forward, one backward) on Flex along
/// the last dimension, burn's [`activation::softmax`] otherwise.
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
/// let x = Tensor::<2>::from_floats([[0.0, 0.0], [0.0, f32::MIN]], &Device::default());
/// let y = softmask_kernels::softmax(x, 1).into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(y, [0.5, 0.5, 1.0, 0.0]);
/// ```
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 == D && fused_for(&x) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_softmax(x.into_dispatch()));
    }
    activation::softmax(x, dim)
}

/// Log-softmax along `dim`: fused on Flex along the last dimension, burn's
/// [`activation::log_softmax`] otherwise.
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
/// let x = Tensor::<1>::from_floats([1.0, 1.0], &Device::default());
/// let y = softmask_kernels::log_softmax(x, 0).into_data().try_to_vec::<f32>().unwrap();
/// assert!((y[0] + std::f32::consts::LN_2).abs() < 1e-6);
/// ```
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 == D && fused_for(&x) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_log_softmax(x.into_dispatch()));
    }
    activation::log_softmax(x, dim)
}
