//! How far each gated unit's parameters moved between two versions of a model.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::gate::SoftMaskable;
use crate::io::to_host;

/// Per gate (row-major `rows × units`, in layout order), the L2 norm of the
/// change of all parameter entries each unit owns, from `before` to `after`.
///
/// The diagnostic for soft-masking: with a working mask, units of high
/// importance move less. `after` must be `before` trained further (same
/// parameter ids).
pub fn unit_movement<M: Module + SoftMaskable>(before: &M, after: &M) -> Result<Vec<Vec<f32>>> {
    let governed = after.governed();
    let layout = after.gate_layout();
    layout.validate()?;
    let ids: Vec<ParamId> = governed.iter().map(|g| g.param).collect();
    let (old, new) = (host_values(before, &ids)?, host_values(after, &ids)?);
    let mut sq: Vec<Vec<f64>> = layout
        .specs()
        .iter()
        .map(|s| vec![0.0; s.numel()])
        .collect();
    for g in governed {
        let spec = layout.specs().get(g.gate).ok_or_else(|| {
            Error::LayoutMismatch(format!("governed gate {} is not in the layout", g.gate))
        })?;
        let (Some((shape, a)), Some((_, b))) = (old.get(&g.param), new.get(&g.param)) else {
            return Err(Error::LayoutMismatch(format!(
                "parameter {} is not in both models",
                g.param
            )));
        };
        let stride: usize = shape.iter().skip(g.axis + 1).product();
        let dim = *shape.get(g.axis).ok_or_else(|| {
            Error::LayoutMismatch(format!("parameter {} has no axis {}", g.param, g.axis))
        })?;
        if dim != spec.units * g.span {
            return Err(Error::ShapeMismatch {
                what: format!("parameter {} governed by {:?}", g.param, spec.name),
                expected: format!("{} entries on axis {}", spec.units * g.span, g.axis),
                actual: format!("{shape:?}"),
            });
        }
        let out = &mut sq[g.gate][g.row * spec.units..(g.row + 1) * spec.units];
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let unit = (i / stride) % dim / g.span;
            out[unit] += (f64::from(*y) - f64::from(*x)).powi(2);
        }
    }
    Ok(sq
        .into_iter()
        .map(|v| v.into_iter().map(|s| s.sqrt() as f32).collect())
        .collect())
}

type HostParams = HashMap<ParamId, (Vec<usize>, Vec<f32>)>;

fn host_values<M: Module>(model: &M, ids: &[ParamId]) -> Result<HostParams> {
    struct Read<'a> {
        ids: &'a [ParamId],
        out: HostParams,
        failed: Option<String>,
    }
    impl ModuleVisitor for Read<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.ids.contains(&param.id) {
                return;
            }
            match to_host(param.val()) {
                Ok(t) => {
                    self.out.insert(param.id, (t.shape, t.values));
                }
                Err(e) => self.failed = Some(e.to_string()),
            }
        }
    }
    let mut read = Read {
        ids,
        out: HashMap::new(),
        failed: None,
    };
    model.visit(&mut read);
    match read.failed {
        Some(e) => Err(Error::InvalidConfig(e)),
        None => Ok(read.out),
    }
}
