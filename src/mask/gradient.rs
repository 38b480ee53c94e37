//! Gradient soft-masking: scale governed gradients by `1 - I` before the optimizer step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::MaskPlan;
use crate::error::Result;
use crate::gate::SoftMaskable;
use crate::importance::Importance;

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
/// let batch = TokenBatch::from_ids(&[vec![1, 2, 3]], &[1.0], model.vocab_size(), &device)?;
/// let loss = binary_cross_entropy(model.forward(batch.input_ids.clone(), None)?, batch.labels)?;
/// let mut grads = GradientsParams::from_grads(loss.backward(), &model);
/// masker.apply(&model, &mut grads)?;
/// let model = SgdConfig::new().init().step(0.1, model, grads);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GradientSoftMasker {
    plan: MaskPlan,
}

impl GradientSoftMasker {
    /// A masker for `model` with (normalised) `importance`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) when the importance
    /// does not fit the model's gates, [`Error::NonFinite`](crate::Error::NonFinite)
    /// or [`Error::InvalidConfig`](crate::Error::InvalidConfig) for values
    /// outside `[0, 1]`, shape errors when a governed parameter does not have
    /// the units its gate claims.
    pub fn new<M: Module + SoftMaskable>(
        importance: &Importance,
        model: &M,
    ) -> Result<GradientSoftMasker> {
        Ok(GradientSoftMasker {
            plan: MaskPlan::new(importance, model)?,
        })
    }

    /// The same masker, also damping every parameter no gate governs (word
    /// embeddings, an LM head, LayerNorms) by a constant `c` in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for `c` outside `[0, 1]`.
    pub fn with_ungoverned_damping(self, c: f64) -> Result<GradientSoftMasker> {
        Ok(GradientSoftMasker {
            plan: self.plan.with_ungoverned_damping(c)?,
        })
    }

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
