//! Masker: a soft-mask over a model's governed parameters, of either kind;
//! what the two kinds share (building the plan, ungoverned damping).

use std::marker::PhantomData;

use burn::module::Module;

use super::MaskPlan;
use crate::error::Result;
use crate::gate::SoftMaskable;
use crate::importance::Importance;

/// A soft-mask of `1 - importance` over every parameter a gate governs, of
/// kind `K`: [`Gradient`] ([`GradientSoftMasker`](crate::GradientSoftMasker))
/// or [`Update`] ([`UpdateSoftMasker`](crate::UpdateSoftMasker)).
#[derive(Debug, Clone)]
pub struct SoftMasker<K> {
    pub(super) plan: MaskPlan,
    kind: PhantomData<K>,
}

/// The gradient kind of [`SoftMasker`]: scales gradients before the step.
#[derive(Debug, Clone, Copy)]
pub struct Gradient;

/// The update kind of [`SoftMasker`]: scales the step itself.
#[derive(Debug, Clone, Copy)]
pub struct Update;

impl<K> SoftMasker<K> {
    pub(super) fn from_plan(plan: MaskPlan) -> SoftMasker<K> {
        SoftMasker {
            plan,
            kind: PhantomData,
        }
    }

    /// A masker for `model` with (normalised) `importance`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) when the importance
    /// does not fit the model's gates, [`Error::NonFinite`](crate::Error::NonFinite)
    /// or [`Error::InvalidConfig`](crate::Error::InvalidConfig) for values
    /// outside `[0, 1]`, shape errors when a governed parameter does not have
    /// the units its gate claims.
    pub fn new<M: Module + SoftMaskable>(importance: &Importance, model: &M) -> Result<Self> {
        MaskPlan::new(importance, model).map(Self::from_plan)
    }

    /// The same masker, also damping every parameter no gate governs (word
    /// embeddings, an LM head, LayerNorms) by a constant `c` in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for `c` outside `[0, 1]`.
    pub fn with_ungoverned_damping(self, c: f64) -> Result<Self> {
        self.plan.with_ungoverned_damping(c).map(Self::from_plan)
    }
}
