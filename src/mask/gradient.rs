//! Gradient soft-masking: scale governed gradients by `1 - I` before the optimizer step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::MaskPlan;
use super::masker::{Gradient, SoftMasker};
use crate::error::Result;

/// Multiplies, between `backward` and `optimizer.step`, the gradient of every
/// parameter a gate governs by `1 - importance` of the unit it feeds.
///
/// Right for SGD; with Adam or AdamW prefer [`UpdateSoftMasker`](crate::UpdateSoftMasker)
/// (see the [module docs](crate::mask)).
///
/// # Example
///
/// ```
/// use burn::optim::{GradientsParams, SgdConfig};
/// use burn::tensor::Device;
/// use softmask::*;
///
/// let device = Device::default().autodiff();
/// let model = SoftMaskNetConfig::new().init(&device)?;
/// let importance = Importance::zeros(&model.gate_layout())?; // e.g. from ImportanceEstimator
/// let masker = GradientSoftMasker::new(&importance, &model)?;
///
/// let batch = LabelledBatch::from_ids(&[vec![1, 2, 3]], &[1.0], model.vocab_size(), &device)?;
/// let loss = binary_cross_entropy(model.forward(batch.input_ids.clone(), None)?, batch.labels)?;
/// let mut grads = GradientsParams::from_grads(loss.backward(), &model);
/// masker.apply(&model, &mut grads)?;
/// let model = SgdConfig::new().init().step(0.1, model, grads);
/// # Ok::<(), softmask::Error>(())
/// ```
pub type GradientSoftMasker = SoftMasker<Gradient>;

impl SoftMasker<Gradient> {
    /// Masks the governed gradients in `grads`.
    ///
    /// # Errors
    ///
    /// Checked before anything changes, `grads` then left untouched:
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) when `model` is
    /// not the instance this masker was built for,
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) for a gradient of
    /// another shape than its parameter, [`Error::NonFinite`](crate::Error::NonFinite)
    /// when any gradient holds a NaN or infinity.
    pub fn apply<M: Module>(&self, model: &M, grads: &mut GradientsParams) -> Result<()> {
        self.plan.check_step(model, grads)?;
        struct Scale<'a> {
            plan: &'a MaskPlan,
            grads: &'a mut GradientsParams,
        }
        impl ModuleVisitor for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if !self.plan.governs(&param.id) {
                    return;
                }
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    let g = match self.plan.mask::<D>(&param.id, g.dims()) {
                        Some(m) => g * m,
                        None => g,
                    };
                    self.grads.register(param.id, g);
                }
            }
        }
        model.visit(&mut Scale {
            plan: &self.plan,
            grads,
        });
        Ok(())
    }
}
