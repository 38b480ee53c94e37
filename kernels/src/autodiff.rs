//! [`FusedOps`] under autodiff: each forward runs the inner backend's kernel
//! and records one backward step that runs its fused backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

use crate::FusedOps;

/// A fused operation with its fused backward.
trait Kernel: Send + std::fmt::Debug + 'static {
    /// Whether the backward reads the forward's output (else its input).
    const FROM_OUTPUT: bool;
    fn forward<B: FusedOps>(x: FloatTensor<B>) -> FloatTensor<B>;
    fn backward<B: FusedOps>(saved: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B>;
}

#[derive(Debug)]
struct Gelu;
impl Kernel for Gelu {
    const FROM_OUTPUT: bool = false;
    fn forward<B: FusedOps>(x: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_gelu(x)
    }
    fn backward<B: FusedOps>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_gelu_backward(x, grad)
    }
}

#[derive(Debug)]
struct Softmax;
impl Kernel for Softmax {
    const FROM_OUTPUT: bool = true;
    fn forward<B: FusedOps>(x: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_softmax(x)
    }
    fn backward<B: FusedOps>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_softmax_backward(y, grad)
    }
}

#[derive(Debug)]
struct LogSoftmax;
impl Kernel for LogSoftmax {
    const FROM_OUTPUT: bool = true;
    fn forward<B: FusedOps>(x: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_log_softmax(x)
    }
    fn backward<B: FusedOps>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_log_softmax_backward(y, grad)
    }
}

/// The backward step of kernel `K`.
#[derive(Debug)]
struct Step<K>(K);

impl<B: Backend + FusedOps, K: Kernel> Backward<B, 1> for Step<K> {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            K::backward::<B>(saved, grad)
        });
    }
}

fn tracked<B: Backend + FusedOps, C: CheckpointStrategy, K: Kernel>(
    kernel: K,
    x: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let guard = x.node();
    let x = x.into_primitive();
    match Step(kernel)
        .prepare::<C>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = K::forward::<B>(x.clone());
            let saved = if K::FROM_OUTPUT { y.clone() } else { x };
            prep.finish(saved, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(K::forward::<B>(x)),
    }
}

/// An operation's result as a constant of the graph: recorded with its
/// inputs as parents and no backward (no second derivatives).
fn constant<B: Backend, C: CheckpointStrategy, const N: usize>(
    guards: [NodeGuard; N],
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct Constant;

    impl<B: Backend, const N: usize> Backward<B, N> for Constant {
        type State = ();

        fn backward(self, _: Ops<(), N>, _: &mut Gradients, _: &mut Checkpointer) {}
    }

    match Constant.prepare::<C>(guards).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// A backward kernel `f(a, b)` called on autodiff tensors.
fn constant_of<B: Backend, C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    f: impl FnOnce(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let guards = [a.node(), b.node()];
    constant::<B, C, 2>(guards, f(a.into_primitive(), b.into_primitive()))
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C, _>(Gelu, x)
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        constant_of::<B, C>(x, grad, B::fused_gelu_backward)
    }

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C, _>(Softmax, x)
    }

    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        constant_of::<B, C>(y, grad, B::fused_softmax_backward)
    }

    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C, _>(LogSoftmax, x)
    }

    fn fused_log_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        constant_of::<B, C>(y, grad, B::fused_log_softmax_backward)
    }

    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: [f64; 6],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let guards = || [param.node(), grad.node(), moment_1.node(), moment_2.node()];
        let (gp, gm, gv) = (guards(), guards(), guards());
        let (p, m, v) = B::fused_adamw(
            param.into_primitive(),
            grad.into_primitive(),
            moment_1.into_primitive(),
            moment_2.into_primitive(),
            hyper,
        );
        (
            constant::<B, C, 4>(gp, p),
            constant::<B, C, 4>(gm, m),
            constant::<B, C, 4>(gv, v),
        )
    }
}
