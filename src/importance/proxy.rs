//! Proxy losses whose gate gradients define importance.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::gate::Gates;
use crate::gate::Represent;
use crate::model::{BertBatch, SoftMaskBert};

/// A scalar loss of a model under gates, for one batch: its gradient with
/// respect to the gates is the raw importance.
///
/// Any closure `Fn(&M, &Gates, &B) -> Result<Tensor<1>>` is a proxy, so a caller
/// can supply the MLM loss or anything else.
pub trait ImportanceProxy<M, B> {
    /// The loss, a one-element tensor on the model's (autodiff) device.
    fn loss(&self, model: &M, gates: &Gates, batch: &B) -> Result<Tensor<1>>;
}

impl<M, B, F> ImportanceProxy<M, B> for F
where
    F: Fn(&M, &Gates, &B) -> Result<Tensor<1>>,
{
    fn loss(&self, model: &M, gates: &Gates, batch: &B) -> Result<Tensor<1>> {
        self(model, gates, batch)
    }
}

/// The notebook's proxy: KL divergence between the representation of another
/// model (the "duplicate", the student) and the model's own (the teacher), with
/// the same gates applied in both passes.
///
/// `KL = sum(softmax(t) * (log_softmax(t) - log_softmax(s))) / batch`, softmax over
/// the sequence axis (dim 1), temperature 1: exactly the notebook's
/// `DistillKL(1)(duplicate_outputs, outputs)`.
///
/// The duplicate's parameters are frozen when the proxy is made: no gradient is
/// computed for them.
#[derive(Debug, Clone)]
pub struct KlToModel<M> {
    other: M,
}

impl<M: Module> KlToModel<M> {
    /// KL to `other`, a separately initialised model of the same gate layout.
    pub fn new(other: M) -> KlToModel<M> {
        KlToModel {
            other: frozen(&other),
        }
    }
}

impl<M, B> ImportanceProxy<M, B> for KlToModel<M>
where
    M: Represent<B>,
{
    fn loss(&self, model: &M, gates: &Gates, batch: &B) -> Result<Tensor<1>> {
        let teacher = model.represent(batch, gates)?;
        let student = self.other.represent(batch, gates)?;
        kl_over_sequence(student, teacher)
    }
}

/// The research code's "robustness" proxy: KL between two passes of the same
/// model that differ only by dropout noise.
///
/// The model must be in training mode on an autodiff device with dropout
/// above 0; otherwise both passes agree, the loss is 0 and every gradient is
/// zero (which normalises to importance 0 everywhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct KlToDropoutCopy;

impl<M, B> ImportanceProxy<M, B> for KlToDropoutCopy
where
    M: Represent<B>,
{
    fn loss(&self, model: &M, gates: &Gates, batch: &B) -> Result<Tensor<1>> {
        let teacher = model.represent(batch, gates)?;
        let student = model.represent(batch, gates)?;
        kl_over_sequence(student, teacher)
    }
}

/// `sum(softmax(teacher) * (log_softmax(teacher) - log_softmax(student))) / batch`,
/// softmax over dim 1, as `F.kl_div(log_softmax(s, 1), softmax(t, 1), reduction="sum") / batch`.
///
/// # Shapes
///
/// - student, teacher: `[batch, seq, hidden]`
/// - output: `[1]`
pub fn kl_over_sequence(student: Tensor<3>, teacher: Tensor<3>) -> Result<Tensor<1>> {
    if student.dims() != teacher.dims() {
        return Err(Error::ShapeMismatch {
            what: "KL student and teacher representations".into(),
            expected: format!("{:?}", teacher.dims()),
            actual: format!("{:?}", student.dims()),
        });
    }
    let batch = student.dims()[0];
    let log_t = log_softmax_dim1(teacher);
    let p_t = log_t.clone().exp();
    let log_s = log_softmax_dim1(student);
    Ok((p_t * (log_t - log_s)).sum().div_scalar(batch as f32))
}

/// `log_softmax(x, 1)` as `x - max - log(sum(exp(x - max)))`: fewer passes than
/// burn's over a non-contiguous axis. The max is held constant for the
/// gradient, which is exact (its contributions cancel).
fn log_softmax_dim1(x: Tensor<3>) -> Tensor<3> {
    let shifted = x.clone() - x.detach().max_dim(1);
    let log_sum = shifted.clone().exp().sum_dim(1).log();
    shifted - log_sum
}

/// A copy of `model` whose parameters require no gradient, so a backward pass
/// computes gate gradients only.
///
/// Every parameter is materialised first: burn parameters initialise lazily and
/// clones share that state, so freezing a clone of a never-used model would
/// otherwise also freeze the original.
pub fn frozen<M: Module>(model: &M) -> M {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
    model.clone().no_grad()
}

/// The MLM loss as an importance proxy (ContinualLM's proxy after a domain).
#[derive(Debug, Clone, Copy, Default)]
pub struct MlmLoss;

impl ImportanceProxy<SoftMaskBert, BertBatch> for MlmLoss {
    fn loss(&self, model: &SoftMaskBert, gates: &Gates, batch: &BertBatch) -> Result<Tensor<1>> {
        model.mlm_loss(batch, Some(gates))
    }
}
