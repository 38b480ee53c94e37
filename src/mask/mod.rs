//! Mask: soft-masking the training of the units that importance protects.
//!
//! A model tells the crate its gates and which parameters each gate governs
//! ([`SoftMaskable`]); from that and an [`Importance`], one mechanism masks the
//! gradients ([`GradientSoftMasker`]) or the updates ([`UpdateSoftMasker`]) of
//! any model, and [`SoftMaskedOptimizer`] puts either around a burn optimizer.
//!
//! # Which to use
//!
//! - **SGD** (with or without momentum): [`GradientSoftMasker`] scales each
//!   step by `1 - I` as the method intends.
//! - **Adam, AdamW** and other optimizers that divide by a running gradient
//!   scale: use [`UpdateSoftMasker`]. A constant gradient scale cancels in
//!   Adam's ratio of moments, so a gradient mask barely changes the update
//!   (the example `continual_pretrain` measures it on the notebook).

mod gradient;
mod masker;
mod movement;
mod optimizer;
mod state;
mod update;

pub use gradient::GradientSoftMasker;
pub use masker::{Gradient, SoftMasker, Update};
pub use movement::unit_movement;
pub use optimizer::{MaskMode, SoftMaskedOptimizer};
pub(crate) use state::load_checked;
pub use state::load_optimizer_state;
pub use update::{Snapshot, UpdateSoftMasker};

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::gate::{GateLayout, SoftMaskable};
use crate::importance::Importance;

/// The names of `probes` (one-element sums) that are NaN or infinite: one
/// concatenation and a single read-back for all of them.
fn non_finite_sums(probes: Vec<(String, Tensor<1>)>) -> Vec<String> {
    if probes.is_empty() {
        return Vec::new();
    }
    let (names, sums): (Vec<String>, Vec<Tensor<1>>) = probes.into_iter().unzip();
    let values = Tensor::cat(sums, 0).into_data();
    match values.iter::<f32>().collect::<Vec<f32>>() {
        v if v.len() == names.len() => names
            .into_iter()
            .zip(v)
            .filter(|(_, v)| !v.is_finite())
            .map(|(n, _)| n)
            .collect(),
        _ => names,
    }
}

/// The paths of `model`'s float parameters that hold a NaN or an infinity
/// (or whose sum overflows f32): one sum per parameter, one read-back.
pub(crate) fn non_finite_params<M: Module>(model: &M) -> Vec<String> {
    struct Probe {
        path: Vec<String>,
        probes: Vec<(String, Tensor<1>)>,
    }
    impl ModuleVisitor for Probe {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let sum = param.val().inner().sum();
            self.probes.push((self.path.join("."), sum));
        }
    }
    let mut p = Probe {
        path: Vec::new(),
        probes: Vec::new(),
    };
    model.visit(&mut p);
    non_finite_sums(p.probes)
}

/// Per governed parameter, its `1 - I` vectors along their axes, on the
/// gradient (non-autodiff) device.
#[derive(Debug, Clone)]
pub(crate) struct MaskPlan {
    masks: HashMap<ParamId, Vec<(usize, Tensor<1>)>>,
    /// `1 - c` for the parameters no gate governs, when they are damped by `c`.
    ungoverned: Option<f32>,
    device: Device,
}

/// Shapes and device of a model's float parameters.
struct Shapes {
    shapes: HashMap<ParamId, Vec<usize>>,
    device: Option<Device>,
}

impl ModuleVisitor for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.shapes
            .insert(param.id, param.shape().dims::<D>().to_vec());
        if self.device.is_none() {
            self.device = Some(param.val().device().inner());
        }
    }
}

impl MaskPlan {
    pub(crate) fn new<M: Module + SoftMaskable>(
        importance: &Importance,
        model: &M,
    ) -> Result<MaskPlan> {
        let layout: GateLayout = model.gate_layout();
        layout.validate()?;
        importance.check_layout(&layout)?;
        importance.check_finite()?;
        for g in importance.gates() {
            if let Some((i, v)) = g
                .values
                .iter()
                .enumerate()
                .find(|(_, v)| !(0.0..=1.0).contains(*v))
            {
                return Err(Error::InvalidConfig(format!(
                    "importance of gate {:?}, unit {i} is {v}: masks need normalised importance in [0, 1]",
                    g.name
                )));
            }
        }
        let mut visitor = Shapes {
            shapes: HashMap::new(),
            device: None,
        };
        model.visit(&mut visitor);
        let device = visitor
            .device
            .ok_or_else(|| Error::InvalidConfig("the model has no parameters".into()))?;
        let mut masks: HashMap<ParamId, Vec<(usize, Tensor<1>)>> = HashMap::new();
        for gov in model.governed() {
            let spec = layout.specs().get(gov.gate).ok_or_else(|| {
                Error::LayoutMismatch(format!(
                    "a governed parameter names gate {}, the model has {}",
                    gov.gate,
                    layout.len()
                ))
            })?;
            let imp = &importance.gates()[gov.gate];
            if gov.row >= spec.rows
                || gov.span == 0
                || gov.group == 0
                || !spec.units.is_multiple_of(gov.group)
            {
                return Err(Error::LayoutMismatch(format!(
                    "gate {:?}: governed row {} of {} with span {} and groups of {} (of {} units)",
                    spec.name, gov.row, spec.rows, gov.span, gov.group, spec.units
                )));
            }
            let shape = visitor.shapes.get(&gov.param).ok_or_else(|| {
                Error::LayoutMismatch(format!(
                    "gate {:?} governs parameter {}, which the model does not have",
                    spec.name, gov.param
                ))
            })?;
            let blocks = spec.units / gov.group;
            if shape.get(gov.axis) != Some(&(blocks * gov.span)) {
                return Err(Error::ShapeMismatch {
                    what: format!("parameter {} governed by gate {:?}", gov.param, spec.name),
                    expected: format!(
                        "axis {} of size {blocks} blocks x {} span",
                        gov.axis, gov.span
                    ),
                    actual: format!("{shape:?}"),
                });
            }
            let row = imp.row(gov.row).ok_or_else(|| {
                Error::LayoutMismatch(format!("gate {:?} has no row {}", spec.name, gov.row))
            })?;
            // A block shared by a group of units is damped by the most
            // protective importance among them (the largest).
            let values: Vec<f32> = row
                .chunks(gov.group)
                .map(|g| g.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                .flat_map(|i| std::iter::repeat_n(1.0 - i, gov.span))
                .collect();
            let n = values.len();
            let mask = Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
            masks.entry(gov.param).or_default().push((gov.axis, mask));
        }
        Ok(MaskPlan {
            masks,
            ungoverned: None,
            device,
        })
    }

    /// The same plan, with every parameter no gate governs damped by `c`
    /// (its gradient or update scaled by `1 - c`).
    pub(crate) fn with_ungoverned_damping(mut self, c: f64) -> Result<MaskPlan> {
        if !(0.0..=1.0).contains(&c) {
            return Err(Error::InvalidConfig(format!(
                "ungoverned damping must lie in [0, 1], got {c}"
            )));
        }
        self.ungoverned = (c > 0.0).then_some(1.0 - c as f32);
        Ok(self)
    }

    /// Whether `id` is masked: governed by a gate, or damped as ungoverned.
    pub(crate) fn governs(&self, id: &ParamId) -> bool {
        self.ungoverned.is_some() || self.masks.contains_key(id)
    }

    /// The mask of a masked parameter of shape `dims`, broadcastable to it.
    pub(crate) fn mask<const D: usize>(&self, id: &ParamId, dims: [usize; D]) -> Option<Tensor<D>> {
        let Some(parts) = self.masks.get(id) else {
            return self
                .ungoverned
                .map(|keep| Tensor::<D>::ones([1; D], &self.device).mul_scalar(keep));
        };
        parts
            .iter()
            .map(|(axis, m)| {
                let mut shape = [1usize; D];
                shape[*axis] = dims[*axis];
                m.clone().reshape(shape)
            })
            .reduce(|a, b| a * b)
    }

    /// Checks everything an optimizer step could fail on, before anything
    /// changes, so that no bad input reaches the step:
    ///
    /// - `model` is the instance this plan was built for (every governed
    ///   parameter id is present), else [`Error::LayoutMismatch`];
    /// - every gradient has its parameter's rank and shape, else
    ///   [`Error::ShapeMismatch`];
    /// - every gradient, governed or not, is finite, else [`Error::NonFinite`].
    ///
    /// One reduction per gradient and a single read-back.
    pub(crate) fn check_step<M: Module>(
        &self,
        model: &M,
        grads: &burn::optim::GradientsParams,
    ) -> Result<()> {
        struct Check<'a> {
            plan: &'a MaskPlan,
            grads: &'a burn::optim::GradientsParams,
            governed_present: usize,
            probes: Vec<(String, Tensor<1>)>,
            bad_shape: Option<Error>,
            path: Vec<String>,
        }
        impl ModuleVisitor for Check<'_> {
            fn enter_module(&mut self, name: &str, _container: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if self.plan.masks.contains_key(&param.id) {
                    self.governed_present += 1;
                }
                // burn's container panics on a gradient of another rank; caught
                // here, outside any step, and turned into a typed error.
                let id = param.id;
                let grads = self.grads;
                let got =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get::<D>(id)));
                let g = match got {
                    Ok(Some(g)) => g,
                    Ok(None) => return,
                    Err(_) => {
                        self.bad_shape.get_or_insert_with(|| Error::ShapeMismatch {
                            what: format!("gradient of {}", self.path.join(".")),
                            expected: format!("a rank-{D} tensor like its parameter"),
                            actual: "a tensor of another rank".into(),
                        });
                        return;
                    }
                };
                let dims = param.shape().dims::<D>();
                if g.dims() != dims {
                    self.bad_shape.get_or_insert_with(|| Error::ShapeMismatch {
                        what: format!("gradient of {}", self.path.join(".")),
                        expected: format!("{dims:?}, the parameter's shape"),
                        actual: format!("{:?}", g.dims()),
                    });
                    return;
                }
                // The sum is NaN or ±inf when any element is (and when finite
                // elements overflow f32, a gradient worth refusing too).
                self.probes.push((self.path.join("."), g.sum()));
            }
        }
        let mut check = Check {
            plan: self,
            grads,
            governed_present: 0,
            probes: Vec::new(),
            bad_shape: None,
            path: Vec::new(),
        };
        model.visit(&mut check);
        if check.governed_present < self.masks.len() {
            return Err(Error::LayoutMismatch(format!(
                "{} of the {} parameters this soft-mask governs are not in the model: \
                 it was built for another model instance (parameter ids differ); \
                 build the masker from the model you step",
                self.masks.len() - check.governed_present,
                self.masks.len()
            )));
        }
        if let Some(e) = check.bad_shape.take() {
            return Err(e);
        }
        let non_finite = non_finite_sums(check.probes);
        if non_finite.is_empty() {
            return Ok(());
        }
        Err(Error::NonFinite {
            what: format!("gradient of {}", non_finite.join(", ")),
        })
    }
}
