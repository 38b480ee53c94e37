//! Optimizer: any burn optimizer with a soft-mask around its step.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};

use super::MaskPlan;
use super::state::load_checked;
use crate::error::{Error, Result};
use crate::gate::SoftMaskable;
use crate::importance::Importance;
use crate::mask::{GradientSoftMasker, UpdateSoftMasker};
use crate::params::ParamTable;

/// Which soft-mask a [`SoftMaskedOptimizer`] applies. Always explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskMode {
    /// Scale gradients by `1 - I` before the step (the notebook). Right for
    /// SGD, whose step is proportional to the gradient.
    ///
    /// With Adam or AdamW the scale `c = 1 - I` of a unit multiplies both
    /// moment estimates, `m` by `c` and `sqrt(v)` by `c`, so their ratio, the
    /// step direction and size, is unchanged: what cancels is the scale of
    /// the normalised step `m / sqrt(v)`. What remains is epsilon's share,
    /// `c·m / (c·sqrt(v) + eps)`, which shrinks the step only where
    /// `c·sqrt(v)` is comparable to `eps`, and AdamW's weight decay, which the
    /// mask does not touch. Measured on the notebook, every unit moves as far
    /// as without a mask (movement ratios 1.000), yet the trained weights
    /// differ from unmasked training by about 1e-2 through epsilon; a
    /// unit with `I = 1` (`c = 0`) is frozen only while its moments are zero.
    Gradient,
    /// Scale the step itself: `theta_old + (1 - I) * (theta_new - theta_old)`.
    /// Right for any optimizer, and the one to use with Adam or AdamW.
    Update,
}

#[derive(Debug, Clone)]
enum Masker {
    Gradient(GradientSoftMasker),
    Update(UpdateSoftMasker),
}

impl Masker {
    /// The masker of `mode` over `plan`.
    fn new(plan: MaskPlan, mode: MaskMode) -> Masker {
        match mode {
            MaskMode::Gradient => Masker::Gradient(GradientSoftMasker::from_plan(plan)),
            MaskMode::Update => Masker::Update(UpdateSoftMasker::from_plan(plan)),
        }
    }

    fn mode(&self) -> MaskMode {
        match self {
            Masker::Gradient(_) => MaskMode::Gradient,
            Masker::Update(_) => MaskMode::Update,
        }
    }

    fn into_plan(self) -> MaskPlan {
        match self {
            Masker::Gradient(m) => m.plan,
            Masker::Update(m) => m.plan,
        }
    }
}

/// Any burn optimizer with a soft-mask around its step.
///
/// # Example
///
/// ```
/// use burn::optim::{AdamConfig, GradientsParams};
/// use burn::tensor::Device;
/// use softmask::*;
///
/// let device = Device::default().autodiff();
/// let mut model = SoftMaskNetConfig::new().init(&device)?;
/// let importance = Importance::zeros(&model.gate_layout())?;
/// let adam = AdamConfig::new().with_epsilon(1e-8).init();
/// let mut optim = SoftMaskedOptimizer::new(adam, &importance, &model, MaskMode::Update)?;
///
/// let batch = LabelledBatch::from_ids(&[vec![1, 2, 3]], &[1.0], model.vocab_size(), &device)?;
/// let loss = binary_cross_entropy(model.forward(batch.input_ids.clone(), None)?, batch.labels)?;
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// optim.step(0.003, &mut model, grads)?;
/// # Ok::<(), softmask::Error>(())
/// ```
pub struct SoftMaskedOptimizer {
    optim: ModuleOptimizer,
    masker: Masker,
    /// The model's parameters, which a loaded state must fit.
    params: ParamTable,
}

impl SoftMaskedOptimizer {
    /// Wraps `optim` with the soft-mask of `importance` for `model`, in `mode`.
    pub fn new<M: Module + SoftMaskable>(
        optim: ModuleOptimizer,
        importance: &Importance,
        model: &M,
        mode: MaskMode,
    ) -> Result<SoftMaskedOptimizer> {
        Ok(SoftMaskedOptimizer {
            optim,
            masker: Masker::new(MaskPlan::new(importance, model)?, mode),
            params: ParamTable::of(model),
        })
    }

    /// The same optimizer, also damping every parameter no gate governs by a
    /// constant `c` in `[0, 1]` (see
    /// [`UpdateSoftMasker::with_ungoverned_damping`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for `c` outside `[0, 1]`.
    pub fn with_ungoverned_damping(self, c: f64) -> Result<SoftMaskedOptimizer> {
        let mode = self.masker.mode();
        let plan = self.masker.into_plan().with_ungoverned_damping(c)?;
        Ok(SoftMaskedOptimizer {
            optim: self.optim,
            masker: Masker::new(plan, mode),
            params: self.params,
        })
    }

    /// Replaces the wrapped optimizer's state with one saved by
    /// [`ModuleOptimizer::into_bytes`] (e.g. to resume a run), checked
    /// against the model this optimizer was built for as
    /// [`load_optimizer_state`](crate::mask::load_optimizer_state) does.
    ///
    /// # Errors
    ///
    /// [`Error::OptimizerState`](crate::Error::OptimizerState) naming the
    /// parameter when the bytes are not a state of this model and optimizer
    /// (unknown parameter ids, moments of another shape, non-finite values,
    /// a step count out of range, entries the optimizer does not take); the
    /// optimizer is then unchanged.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.optim = load_checked(&self.optim, bytes, &self.params)?;
        Ok(())
    }

    /// The mode in force.
    pub fn mode(&self) -> MaskMode {
        self.masker.mode()
    }

    /// One soft-masked step at learning rate `lr`, updating `model` in place.
    ///
    /// # Errors
    ///
    /// Before anything changes: [`Error::HyperParameter`] for a learning rate
    /// that is negative, NaN or infinite; [`Error::NonFinite`] for a NaN or
    /// infinite gradient; the masker's errors for another model.
    ///
    /// After the step, every parameter is checked (one sum each, one
    /// read-back): [`Error::NonFinite`] naming the parameters a step from
    /// finite inputs drove to NaN or infinity (an extreme learning rate, an
    /// optimizer hyper-parameter or state that overflows). The model then
    /// holds them: restore it from a checkpoint. A step that returns `Ok`
    /// leaves every parameter finite.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: &mut M,
        mut grads: GradientsParams,
    ) -> Result<()> {
        check_lr(lr)?;
        match &self.masker {
            Masker::Gradient(m) => {
                m.apply(model, &mut grads)?;
                replace_with(model, |m| self.optim.step(lr, m, grads));
            }
            Masker::Update(m) => m.step(&mut self.optim, lr, model, grads)?,
        }
        let bad = super::non_finite_params(model);
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::NonFinite {
                what: format!(
                    "parameters {} after an optimizer step at learning rate {lr} (the step \
                     overflowed; the model now holds them)",
                    bad.join(", ")
                ),
            })
        }
    }

    /// The wrapped optimizer (e.g. to save its state).
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }
}

/// Checks a learning rate a step takes: finite and at least 0.
pub(crate) fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::HyperParameter {
            name: "lr".into(),
            value: lr,
            expected: "a finite value of 0 or more".into(),
        })
    }
}

/// Replaces `*slot` by `f(*slot)` without a clone, so the optimizer owns the
/// only reference to each parameter and can update it in place. `f` must not
/// fail: every check runs before. Should it panic anyway, the process aborts
/// rather than leave `slot` moved out.
pub(crate) fn replace_with<M>(slot: &mut M, f: impl FnOnce(M) -> M) {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the value read out is written back before `slot` is used again;
    // if `f` unwinds, `guard` aborts before anything can observe the moved-out slot.
    unsafe {
        let old = std::ptr::read(slot);
        std::ptr::write(slot, f(old));
    }
    std::mem::forget(guard);
}

impl std::fmt::Debug for SoftMaskedOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftMaskedOptimizer")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}
