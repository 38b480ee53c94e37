//! [`FusedOps`] on Flex: contiguous `f32` tensors run the vectorised loops of
//! [`math`](crate::math) in parallel chunks; other dtypes use Flex's own ops.

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

use crate::FusedOps;
use crate::math;

/// Elements per parallel task: big enough to amortise scheduling, small
/// enough to balance a [1024, 1536] activation over many cores.
const CHUNK: usize = 1 << 14;

impl FusedOps for Flex {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        }
        let x = contiguous(x);
        let Some(src) = x.as_slice::<f32>() else {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        };
        let mut out = vec![0.0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| math::gelu_slice(s, o));
        from_vec(out, &x)
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32
            || grad.dtype() != DType::F32
            || x.layout().shape() != grad.layout().shape()
        {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        }
        let x = contiguous(x);
        let mut grad = contiguous(grad);
        let Some(xs) = x.as_slice::<f32>() else {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        };
        // The incoming gradient is usually this step's alone: overwrite it.
        if grad.layout().contiguous_offsets() == Some((0, xs.len()))
            && let Some(dy) = grad.try_storage_mut::<f32>()
        {
            backward_in_place(xs, &mut dy[..xs.len()]);
            return grad;
        }
        let Some(dy) = grad.as_slice::<f32>() else {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        };
        let mut out = dy.to_vec();
        backward_in_place(xs, &mut out);
        from_vec(out, &x)
    }
}

fn backward_in_place(xs: &[f32], dy: &mut [f32]) {
    dy.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(d, s)| math::gelu_backward_slice(s, d));
}

/// `t` itself when its elements are contiguous, else a contiguous copy.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// A contiguous tensor of `like`'s shape holding `data`.
fn from_vec(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    let shape = like.layout().shape().clone();
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        DType::F32,
    )
}
