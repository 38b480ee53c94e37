//! [`FusedOps`] on Flex: `f32` tensors run the vectorised loops of
//! [`math`](crate::math) in parallel chunks; other float dtypes are computed
//! in `f32` and cast back.

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Bytes, DType, FloatDType};
use rayon::prelude::*;

use crate::FusedOps;
use crate::math;

/// Elements per parallel task: big enough to amortise scheduling, small
/// enough to balance a [1024, 1536] activation over many cores.
const CHUNK: usize = 1 << 14;

impl FusedOps for Flex {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map(x, 1, math::gelu_slice)
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        backward(x, grad, 1, math::gelu_backward_slice)
    }

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let n = last_dim(&x);
        map(x, n, math::softmax_rows)
    }

    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let n = last_dim(&y);
        backward(y, grad, n, math::softmax_backward_rows)
    }

    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let n = last_dim(&x);
        map(x, n, math::log_softmax_rows)
    }

    fn fused_log_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let n = last_dim(&y);
        backward(y, grad, n, math::log_softmax_backward_rows)
    }

    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: [f64; 6],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [lr, beta_1, beta_2, epsilon, weight_decay, time] = hyper;
        let (beta_1, beta_2) = (beta_1 as f32, beta_2 as f32);
        let time = time as i32;
        let h = math::AdamWScalars {
            lr: lr as f32,
            beta_1,
            beta_2,
            epsilon: epsilon as f32,
            decay: (1.0 - lr * weight_decay) as f32,
            correction_1: 1.0 - beta_1.powi(time),
            correction_2: 1.0 - beta_2.powi(time),
        };
        let (mut p, dtype) = owned(param);
        let (g, _) = as_f32(grad);
        let (mut m, _) = owned(moment_1);
        let (mut v, _) = owned(moment_2);
        let len = p.layout().num_elements();
        let same = [&g, &m, &v]
            .iter()
            .all(|t| t.layout().num_elements() == len);
        if same
            && let Some(gs) = g.as_slice::<f32>()
            && let (Some(ps), Some(ms), Some(vs)) = (
                p.try_storage_mut::<f32>(),
                m.try_storage_mut::<f32>(),
                v.try_storage_mut::<f32>(),
            )
        {
            let (ps, ms, vs) = (&mut ps[..len], &mut ms[..len], &mut vs[..len]);
            if len <= CHUNK {
                math::adamw_slice(ps, gs, ms, vs, h);
            } else {
                (
                    ps.par_chunks_mut(CHUNK),
                    gs.par_chunks(CHUNK),
                    ms.par_chunks_mut(CHUNK),
                    vs.par_chunks_mut(CHUNK),
                )
                    .into_par_iter()
                    .for_each(|(p, g, m, v)| math::adamw_slice(p, g, m, v, h));
            }
        }
        (restore(p, dtype), restore(m, dtype), restore(v, dtype))
    }
}

/// `t` as a contiguous `f32` tensor at offset 0 that owns its buffer, with
/// the dtype to cast the result back to.
fn owned(t: FlexTensor) -> (FlexTensor, DType) {
    let (t, dtype) = as_f32(t);
    let len = t.layout().num_elements();
    if t.is_unique() && t.layout().contiguous_offsets() == Some((0, len)) {
        return (t, dtype);
    }
    let copy = t.as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default();
    (from_vec(copy, &t), dtype)
}

fn last_dim(t: &FlexTensor) -> usize {
    t.layout().shape().iter().last().copied().unwrap_or(1)
}

/// Elements per parallel task: whole rows of `n > 0`, at least one. Tensors
/// no larger run on the calling thread.
fn rows_per_task(n: usize) -> usize {
    (CHUNK / n).max(1) * n
}

/// `f(x, out, n)` over rows of `n` elements into a new tensor.
fn map(x: FlexTensor, n: usize, f: fn(&[f32], &mut [f32], usize)) -> FlexTensor {
    let (x, dtype) = as_f32(x);
    let len = x.layout().num_elements();
    // An empty tensor (which every zero-length row makes) has nothing to do.
    if len == 0 {
        return restore(x, dtype);
    }
    let Some(src) = x.as_slice::<f32>() else {
        return restore(x, dtype);
    };
    let mut out = vec![0.0f32; len];
    let task = rows_per_task(n);
    if len <= task {
        f(src, &mut out, n);
    } else {
        out.par_chunks_mut(task)
            .zip(src.par_chunks(task))
            .for_each(|(o, s)| f(s, o, n));
    }
    restore(from_vec(out, &x), dtype)
}

/// `f(saved, grad, n)` over rows of `n` elements, in `grad`'s buffer when it
/// owns one, else in a copy.
fn backward(
    saved: FlexTensor,
    grad: FlexTensor,
    n: usize,
    f: fn(&[f32], &mut [f32], usize),
) -> FlexTensor {
    let (saved, _) = as_f32(saved);
    let (mut grad, dtype) = as_f32(grad);
    let len = saved.layout().num_elements();
    if len == 0 || saved.layout().shape() != grad.layout().shape() {
        return restore(grad, dtype);
    }
    let Some(xs) = saved.as_slice::<f32>() else {
        return restore(grad, dtype);
    };
    let task = rows_per_task(n);
    let run = |dy: &mut [f32]| {
        if len <= task {
            f(xs, dy, n);
        } else {
            dy.par_chunks_mut(task)
                .zip(xs.par_chunks(task))
                .for_each(|(d, s)| f(s, d, n));
        }
    };
    if grad.layout().contiguous_offsets() == Some((0, len))
        && let Some(dy) = grad.try_storage_mut::<f32>()
    {
        run(&mut dy[..len]);
        return restore(grad, dtype);
    }
    let Some(dy) = grad.as_slice::<f32>() else {
        return restore(grad, dtype);
    };
    let mut out = dy.to_vec();
    run(&mut out);
    restore(from_vec(out, &saved), dtype)
}

/// `t` as a contiguous `f32` tensor, with the dtype to cast the result back to.
fn as_f32(t: FlexTensor) -> (FlexTensor, DType) {
    let dtype = t.dtype();
    let t = if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    let t = if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    };
    (t, dtype)
}

/// `t` cast back to `dtype` where that is not `f32`.
fn restore(t: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F64 => Flex::float_cast(t, FloatDType::F64),
        DType::F16 => Flex::float_cast(t, FloatDType::F16),
        DType::BF16 => Flex::float_cast(t, FloatDType::BF16),
        _ => t,
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
