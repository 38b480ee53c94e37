//! Optimizer state: a saved optimizer state checked against the model and
//! optimizer it is loaded into, before burn sees it.
//!
//! burn's `ModuleOptimizer::from_bytes` trusts its input: a tensor without a
//! parameter id or a rank past 8 panics inside it; moments of another shape,
//! a NaN moment or a step count of 0 load and then turn the model into NaN at
//! the next step; a state of another model or optimizer is dropped without a
//! word. [`load_optimizer_state`] reads the bytes first and refuses each of
//! these with [`Error::OptimizerState`] naming the parameter.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, TensorData};
use burn_pack::{Reader, Scalar};

use crate::error::{Error, Result};
use crate::limits::MAX_OPTIMIZER_STEPS;
use crate::params::{ParamInfo, ParamTable};

fn refused(reason: String) -> Error {
    Error::OptimizerState { reason }
}

/// The parameter id a state entry `"{id}.{leaf}"` is filed under, and its leaf.
fn split_key(key: &str) -> Option<(u64, &str)> {
    let (id, leaf) = key.split_once('.')?;
    Some((id.parse().ok()?, leaf))
}

/// Every entry of a state (tensor names and scalar keys), by parameter id.
type Entries = BTreeMap<u64, BTreeSet<String>>;

/// Reads `bytes` as a burn optimizer state and checks every entry against
/// `params`; returns the entries by parameter.
fn check(bytes: &[u8], params: &ParamTable) -> Result<Entries> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| refused(format!("not a burn optimizer state ({e})")))?;
    let mut entries = Entries::new();
    let known = |key: &str, what: &str| -> Result<(u64, &ParamInfo)> {
        let (id, _) = split_key(key).ok_or_else(|| {
            refused(format!(
                "{what} {key:?} is not filed under a parameter id (\"<id>.<field>\")"
            ))
        })?;
        let info = params.params.get(&id).ok_or_else(|| {
            refused(format!(
                "{what} {key:?} belongs to parameter id {id}, which this model does not have \
                 (a state of another model or run?)"
            ))
        })?;
        Ok((id, info))
    };

    for (key, value) in reader.scalars() {
        let (id, info) = known(key, "scalar")?;
        let leaf = key.split_once('.').map_or("", |(_, l)| l);
        let name = params.name(id);
        let integer =
            match *value {
                Scalar::UInt(u) => Some(u),
                Scalar::Int(i) => Some(u64::try_from(i).map_err(|_| {
                    refused(format!("{leaf} of parameter {name} is negative ({i})"))
                })?),
                Scalar::Float(f) if !f.is_finite() => {
                    return Err(refused(format!("{leaf} of parameter {name} is {f}")));
                }
                Scalar::Float(_) | Scalar::Bool(_) => None,
            };
        if leaf == "__rank" && integer != Some(info.shape.len() as u64) {
            return Err(refused(format!(
                "the state of parameter {name} is of rank {value:?}, the parameter of rank {}",
                info.shape.len()
            )));
        }
        if leaf == "time" || leaf.ends_with(".time") {
            match integer {
                Some(t) if (1..=MAX_OPTIMIZER_STEPS).contains(&t) => {}
                _ => {
                    return Err(refused(format!(
                        "step count {value:?} of parameter {name} is outside 1..={MAX_OPTIMIZER_STEPS} \
                         (softmask::limits::MAX_OPTIMIZER_STEPS)"
                    )));
                }
            }
        }
        entries.entry(id).or_default().insert(key.clone());
    }
    for key in reader.metadata().keys() {
        let id: u64 = key
            .parse()
            .map_err(|_| refused(format!("metadata entry {key:?} names no parameter id")))?;
        if !params.params.contains_key(&id) {
            return Err(refused(format!(
                "metadata entry {key:?} belongs to parameter id {id}, which this model does not \
                 have (a state of another model or run?)"
            )));
        }
    }

    let tensors = reader
        .into_tensors()
        .map_err(|e| refused(format!("not a burn optimizer state ({e})")))?;
    for t in tensors {
        let (key, dtype, shape, param_id, bytes) = t
            .into_parts()
            .map_err(|e| refused(format!("unreadable tensor ({e})")))?;
        let Some(param_id) = param_id else {
            return Err(refused(format!("tensor {key:?} carries no parameter id")));
        };
        let (id, info) = known(&key, "tensor")?;
        let name = params.name(id);
        if id != param_id {
            return Err(refused(format!(
                "tensor {key:?} is named for parameter id {id} but carries id {param_id}"
            )));
        }
        let dims = shape.to_vec();
        if dims != info.shape {
            return Err(refused(format!(
                "tensor {key:?} of parameter {name} has shape {dims:?}, the parameter {:?}",
                info.shape
            )));
        }
        if dtype != info.dtype {
            return Err(refused(format!(
                "tensor {key:?} of parameter {name} is {dtype:?}, the parameter {:?}",
                info.dtype
            )));
        }
        let numel: usize = dims.iter().product();
        if numel.checked_mul(dtype.size()) != Some(bytes.len()) {
            return Err(refused(format!(
                "tensor {key:?} of parameter {name} holds {} bytes, not {numel} values of {dtype:?}",
                bytes.len()
            )));
        }
        let data = TensorData::from_bytes(bytes, dims, dtype);
        // Second moments are running means of squares.
        let second_moment = key.ends_with("moment_2");
        if let Some(v) = data
            .iter::<f64>()
            .find(|v| !v.is_finite() || (second_moment && *v < 0.0))
        {
            return Err(refused(format!(
                "tensor {key:?} of parameter {name} holds {v}{}",
                if v.is_finite() {
                    ", below 0 in a second moment"
                } else {
                    ""
                }
            )));
        }
        entries.entry(id).or_default().insert(key);
    }
    Ok(entries)
}

/// The entries of a state the crate itself wrote, by parameter id: names
/// only, its values are not read again.
fn keys(bytes: &[u8]) -> Result<Entries> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| refused(format!("the loaded state does not read back ({e})")))?;
    let mut entries = Entries::new();
    let names = reader.scalars().keys().map(String::as_str);
    for key in names.chain(reader.tensor_names()) {
        if let Some((id, _)) = split_key(key) {
            entries.entry(id).or_default().insert(key.to_string());
        }
    }
    Ok(entries)
}

/// Loads `bytes` (an optimizer state saved by `ModuleOptimizer::into_bytes`)
/// into a copy of `optim` once [`check`] accepts every entry, and makes sure
/// the optimizer took all of it.
pub(crate) fn load_checked(
    optim: &ModuleOptimizer,
    bytes: &[u8],
    params: &ParamTable,
) -> Result<ModuleOptimizer> {
    let given = check(bytes, params)?;
    let loaded = optim
        .clone()
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| refused(format!("not a burn optimizer state ({e:?})")))?;
    // burn drops a parameter's state it cannot rebuild (another optimizer's,
    // or one missing a field): saved again, it would be missing.
    let again = loaded
        .into_bytes()
        .map_err(|e| refused(format!("the loaded state cannot be saved again ({e:?})")))?;
    let kept = keys(&again)?;
    for (id, keys) in &given {
        let missing: Vec<&String> = match kept.get(id) {
            Some(k) => keys.difference(k).collect(),
            None => keys.iter().collect(),
        };
        if !missing.is_empty() {
            return Err(refused(format!(
                "the state of parameter {} does not fit this optimizer: it did not take {:?} \
                 (a state of another optimizer, or one missing a field?)",
                params.name(*id),
                missing
            )));
        }
    }
    Ok(loaded)
}

/// `optim` with the state in `bytes` (saved by `ModuleOptimizer::into_bytes`),
/// checked first against `model`, the model the optimizer steps.
///
/// Every tensor must carry the id of one of the model's parameters and have
/// that parameter's shape and dtype; every value must be finite, second
/// moments at least 0, step counts in `1..=`[`MAX_OPTIMIZER_STEPS`]; and the
/// optimizer must take the whole state (an SGD state is refused by AdamW,
/// not dropped).
///
/// # Errors
///
/// [`Error::OptimizerState`] naming the parameter and what is wrong; `optim`
/// is untouched (a loaded copy is returned).
///
/// # Example
///
/// ```
/// use burn::optim::{AdamConfig, GradientsParams};
/// use burn::tensor::Device;
/// use softmask::*;
/// use softmask::mask::load_optimizer_state;
///
/// let device = Device::default().autodiff();
/// let model = SoftMaskNetConfig::new().init(&device)?;
/// let mut optim = AdamConfig::new().init();
/// let batch = LabelledBatch::from_ids(&[vec![1, 2, 3]], &[1.0], model.vocab_size(), &device)?;
/// let loss = binary_cross_entropy(model.forward(batch.input_ids.clone(), None)?, batch.labels)?;
/// let model = optim.step(1e-3, model.clone(), GradientsParams::from_grads(loss.backward(), &model));
/// let saved = optim.into_bytes().map_err(|e| Error::InvalidConfig(format!("{e:?}")))?.to_vec();
///
/// // The same model takes it; a fresh model (other parameter ids) does not.
/// load_optimizer_state(&AdamConfig::new().init(), &saved, &model)?;
/// let other = SoftMaskNetConfig::new().init(&device)?;
/// let refused = load_optimizer_state(&AdamConfig::new().init(), &saved, &other);
/// assert!(matches!(refused, Err(Error::OptimizerState { .. })));
/// # Ok::<(), softmask::Error>(())
/// ```
pub fn load_optimizer_state<M: Module>(
    optim: &ModuleOptimizer,
    bytes: &[u8],
    model: &M,
) -> Result<ModuleOptimizer> {
    load_checked(optim, bytes, &ParamTable::of(model))
}
