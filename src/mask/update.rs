//! Update soft-masking: `theta_old + (1 - I) * (theta_new - theta_old)` around any optimizer.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use super::MaskPlan;
use super::masker::{SoftMasker, Update};
use crate::error::{Error, Result};

/// Scales the *update* an optimizer makes to every governed parameter by
/// `1 - importance`: `theta = theta_old + (1 - I) * (theta_new - theta_old)`.
///
/// Unlike a gradient mask, Adam cannot cancel it, so this is the mode to use
/// with adaptive optimizers (see the [module docs](crate::mask)).
///
/// # Example
///
/// ```
/// use burn::optim::{AdamConfig, GradientsParams};
/// use burn::tensor::Device;
/// use softmask::*;
///
/// let device = Device::default().autodiff();
/// let model = SoftMaskNetConfig::new().init(&device)?;
/// let importance = Importance::zeros(&model.gate_layout())?;
/// let masker = UpdateSoftMasker::new(&importance, &model)?;
/// let mut optim = AdamConfig::new().init();
///
/// let batch = LabelledBatch::from_ids(&[vec![1, 2, 3]], &[1.0], model.vocab_size(), &device)?;
/// let loss = binary_cross_entropy(model.forward(batch.input_ids.clone(), None)?, batch.labels)?;
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let mut model = model;
/// masker.step(&mut optim, 0.003, &mut model, grads)?;
/// # Ok::<(), softmask::Error>(())
/// ```
pub type UpdateSoftMasker = SoftMasker<Update>;

/// The governed parameters' values before an optimizer step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    old: HashMap<ParamId, Tensor<1>>,
}

impl SoftMasker<Update> {
    /// Records the governed parameters before the optimizer step (no copy:
    /// tensors are shared until the optimizer writes new ones).
    pub fn snapshot<M: Module>(&self, model: &M) -> Snapshot {
        Snapshot {
            old: crate::params::flat(model, |id| self.plan.governs(id)),
        }
    }

    /// Pulls every governed parameter of `model` (after the step) back towards
    /// its `snapshot` value by `1 - I`, in place.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when `model` is not the instance this masker
    /// was built for, or `snapshot` was not taken from it (checked before
    /// anything changes).
    pub fn apply<M: Module>(&self, model: &mut M, snapshot: &Snapshot) -> Result<()> {
        self.plan.check_step(model, &GradientsParams::new())?;
        struct Covered<'a> {
            plan: &'a MaskPlan,
            snapshot: &'a Snapshot,
            missing: usize,
        }
        impl ModuleVisitor for Covered<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let fits = self
                    .snapshot
                    .old
                    .get(&param.id)
                    .is_some_and(|t| t.dims()[0] == param.shape().num_elements());
                if self.plan.governs(&param.id) && !fits {
                    self.missing += 1;
                }
            }
        }
        let mut covered = Covered {
            plan: &self.plan,
            snapshot,
            missing: 0,
        };
        model.visit(&mut covered);
        if covered.missing > 0 {
            return Err(Error::LayoutMismatch(format!(
                "the snapshot lacks {} governed parameter(s) of this model: take it from the same model",
                covered.missing
            )));
        }
        super::optimizer::replace_with(model, |m| self.pull(m, snapshot));
        Ok(())
    }

    /// [`apply`](Self::apply) for a snapshot known to cover the model.
    fn pull<M: Module>(&self, model: M, snapshot: &Snapshot) -> M {
        struct Pull<'a> {
            plan: &'a MaskPlan,
            snapshot: &'a Snapshot,
        }
        impl ModuleMapper for Pull<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let (Some(old), true) = (
                    self.snapshot.old.get(&param.id),
                    self.plan.governs(&param.id),
                ) else {
                    return param;
                };
                let id = param.id;
                param.map(|new| {
                    let dims = new.dims();
                    let Some(mask) = self.plan.mask::<D>(&id, dims) else {
                        return new;
                    };
                    let (autodiff, require_grad) = (new.is_autodiff(), new.is_require_grad());
                    let old = old.clone().reshape(dims);
                    let pulled = old.clone() + (new.inner() - old) * mask;
                    let pulled = if autodiff { pulled.autodiff() } else { pulled };
                    if require_grad {
                        pulled.require_grad()
                    } else {
                        pulled
                    }
                })
            }
        }
        model.map(&mut Pull {
            plan: &self.plan,
            snapshot,
        })
    }

    /// One optimizer step with the update mask: snapshot, `optim.step`, pull back.
    /// The model is updated in place.
    ///
    /// # Errors
    ///
    /// Checked before the step, the model and the optimizer then unchanged:
    /// [`Error::HyperParameter`](crate::Error::HyperParameter) for a
    /// negative, NaN or infinite `lr`, [`Error::LayoutMismatch`] when `model`
    /// is not the instance this masker was built for,
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) for a gradient of
    /// another shape than its parameter, [`Error::NonFinite`] when any
    /// gradient holds a NaN or infinity.
    pub fn step<M: Module>(
        &self,
        optim: &mut ModuleOptimizer,
        lr: f64,
        model: &mut M,
        grads: GradientsParams,
    ) -> Result<()> {
        super::optimizer::check_lr(lr)?;
        self.plan.check_step(model, &grads)?;
        let snapshot = self.snapshot(model);
        super::optimizer::replace_with(model, |m| self.pull(optim.step(lr, m, grads), &snapshot));
        Ok(())
    }
}
