//! Apply: the loop's importance, estimated before the first domain and after
//! each, accumulated over the saved estimates, and applied through the
//! method's control, chosen gates and strength.

use std::path::Path;

use super::method::{Control, GeneralProxy, MethodConfig};
use super::objective::{Collate, ContinualModel};
use super::plugin::pass_batch;
use crate::data::sampling::mix;
use crate::data::sampling::stream::IMPORTANCE;
use crate::distributed::{Collective, agree};
use crate::error::{Error, Result};
use crate::gate::{GateLayout, Gates, TokenCount};
use crate::importance::Importance;
use crate::importance::estimate::{ImportanceEstimator, model_device};
use crate::importance::proxy::KlToDropoutCopy;
use crate::importance::stability::GateStability;

/// The importance a method applies: the chosen gates of the accumulated
/// importance, through the control, times the strength.
///
/// # Example
///
/// ```
/// use softmask::continual::{MethodConfig, applied_importance};
/// use softmask::{GateLayout, GateSpec, Importance};
///
/// let layout = GateLayout::new(vec![GateSpec::new("heads", 1, 2), GateSpec::new("intermediate", 1, 2)]);
/// let acc = Importance::new(&layout, vec![vec![0.5, 1.0], vec![1.0, 0.0]])?;
/// let dga = MethodConfig::preset("dga")?; // heads only, strength 1
/// let applied = applied_importance(&dga, &acc)?;
/// assert_eq!(applied.gates()[0].values, [0.5, 1.0]);
/// assert_eq!(applied.gates()[1].values, [0.0, 0.0]);
/// # Ok::<(), softmask::Error>(())
/// ```
pub fn applied_importance(config: &MethodConfig, accumulated: &Importance) -> Result<Importance> {
    let layout = accumulated.layout();
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(layout.len());
    let controlled = match config.control {
        Control::None => accumulated.clone(),
        Control::Permuted => accumulated.permuted(mix(config.seed, &[0xc0])),
        Control::Uniform => accumulated.row_means(),
    };
    for g in controlled.gates() {
        let chosen = config
            .masked_gates
            .as_ref()
            .is_none_or(|names| names.contains(&g.name));
        let s = if chosen { config.strength as f32 } else { 0.0 };
        values.push(g.values.iter().map(|v| v * s).collect());
    }
    Importance::new(&layout, values)
}

/// The importance in force for a domain: the method's [`applied_importance`]
/// of `accumulated`, or `None` before any importance exists or when the
/// method masks nothing.
pub(crate) fn in_force(
    config: &MethodConfig,
    accumulated: Option<&Importance>,
) -> Result<Option<Importance>> {
    match accumulated {
        Some(acc) if config.masks() => applied_importance(config, acc).map(Some),
        _ => Ok(None),
    }
}

/// The element-wise max of the saved (normalised) importances `names` in `dir`.
pub(crate) fn accumulated(dir: &Path, names: &[String]) -> Result<Option<Importance>> {
    if names.is_empty() {
        return Ok(None);
    }
    let all = names
        .iter()
        .map(|n| Importance::load(dir.join(n)))
        .collect::<Result<Vec<_>>>()?;
    Importance::max(&all).map(Some)
}

/// Refuses a method that masks a gate the model does not have.
pub(crate) fn check_gates(config: &MethodConfig, layout: &GateLayout) -> Result<()> {
    let gates: Vec<&str> = layout.specs().iter().map(|s| s.name.as_str()).collect();
    for name in config.masked_gates.iter().flatten() {
        if !gates.contains(&name.as_str()) {
            return Err(Error::InvalidConfig(format!(
                "method {:?}: masked_gates names the gate {name:?}, which the model does not \
                 have; its gates are {gates:?}",
                config.name
            )));
        }
    }
    Ok(())
}

/// Normalised importance over `importance_batches` batches of `chunks`:
/// for the general importance (`domain` `None`) KL between two dropout
/// passes, or the objective as proxy with [`GeneralProxy::CorpusLoss`];
/// the objective as proxy after training domain `domain`; with its
/// split-half stability (none for one batch). `progress` hears of every
/// batch.
pub(crate) fn estimate<M, B>(
    config: &MethodConfig,
    collate: &dyn Collate<B>,
    model: &M,
    chunks: &[Vec<u32>],
    domain: Option<usize>,
    collective: &dyn Collective,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Importance, Option<Vec<GateStability>>)>
where
    M: ContinualModel<B>,
    B: TokenCount,
{
    let c = config;
    let device = &model_device(model)?;
    let mut est = ImportanceEstimator::new(model.gate_layout(), c.accumulation, c.sign)?;
    if collective.size() > 1 {
        est = est.deferred();
    }
    let purpose = domain.map_or(0, |t| t as u64 + 1);
    progress(0, c.importance_batches);
    let (rank, size) = (collective.rank(), collective.size());
    let mut local = || -> Result<()> {
        for b in 0..c.importance_batches {
            if b % size != rank {
                est.skip();
                progress(b + 1, c.importance_batches);
                continue;
            }
            let batch = pass_batch(
                collate,
                chunks,
                c.importance_batch(),
                c.seed,
                &[IMPORTANCE, purpose],
                b,
                device,
            )?;
            if domain.is_none() && c.general_proxy == GeneralProxy::DropoutKl {
                est.step(model, &batch, &KlToDropoutCopy)?;
            } else {
                let proxy = |m: &M, g: &Gates, b: &B| m.loss(b, Some(g));
                est.step(model, &batch, &proxy)?;
            }
            progress(b + 1, c.importance_batches);
        }
        Ok(())
    };
    let done = local();
    agree(collective, "estimating importance", done)?;
    est.reduce(collective)?;
    Ok((
        est.finish(c.normalization)?,
        est.split_half(c.normalization)?,
    ))
}
