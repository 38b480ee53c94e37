//! Checkpoint: atomic checkpoint folders of a continual run, and finding the
//! last complete one to resume from.
//!
//! A checkpoint is written into `checkpoints/.partial-<pid>`, every file
//! synced, the manifest last, and only then renamed to
//! `checkpoints/<domain>-<step>`: a folder under a final name is always
//! complete, and a crash leaves at most a partial folder that resume ignores.

use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::ewc::EWC_FILE;
use super::kd::KD_TEACHER;
use super::method::MethodConfig;
use super::objective::ContinualModel;
use super::plugin::Plugin;
use super::results::ResultMatrix;
use crate::error::{Error, Result};
use crate::gate::GateLayout;
use crate::importance::Importance;
use crate::io;
use crate::mask::load_checked;
use crate::params::{self, ParamTable};

/// The manifest's format tag.
pub const FORMAT: &str = "softmask-continual-v1";

/// What a run is: a checkpoint of another identity is refused on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// Every option of the method.
    pub config: MethodConfig,
    /// The domains, in order, with a fingerprint of their token chunks.
    pub domains: Vec<(String, u64)>,
    /// A fingerprint of the general held-out chunks, if any.
    pub general: Option<u64>,
    /// A fingerprint of the general training corpus, when the method uses
    /// one (replay, `das-oracle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_train: Option<u64>,
    /// The model's gates.
    pub layout: GateLayout,
    /// The shape of every parameter of the model, in visiting order.
    pub shapes: Vec<Vec<usize>>,
}

/// Where a run stands: the next step to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Index of the domain being (or next to be) trained.
    pub domain: usize,
    /// Steps of that domain already taken.
    pub step: usize,
}

/// The manifest of a checkpoint: identity, position, and the run's small state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The run this checkpoint belongs to.
    pub identity: RunIdentity,
    /// The next step.
    pub position: Position,
    /// Saved importance files (under the run's `importance/`), in the order estimated.
    pub importances: Vec<String>,
    /// The results so far.
    pub results: ResultMatrix,
    /// Whether the folder holds an optimizer state (`optimizer.bin`, mid-domain only).
    pub optimizer: bool,
    /// Whether the folder holds the plugins' state (EWC's anchors,
    /// `ewc.safetensors`, the only plugin with state so far).
    pub ewc: bool,
    /// The model's parameter ids, in visiting order: the keys of the
    /// optimizer state and the EWC anchors, given back to the loaded model.
    pub param_ids: Vec<u64>,
}

/// The checkpoints folder of a run.
pub(crate) fn folder(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// The importance folder of a run: every estimate, saved once.
pub(crate) fn importance_dir(out: &Path) -> PathBuf {
    out.join("importance")
}

/// The final name of a checkpoint at `position`.
fn name(position: Position) -> String {
    format!("{:03}-{:07}", position.domain, position.step)
}

/// A fresh partial folder for a checkpoint; the caller fills it, then calls [`commit`].
pub(crate) fn begin(out: &Path) -> Result<PathBuf> {
    let dir = folder(out).join(format!(".partial-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Writes the manifest into the partial folder, renames it into place, and
/// removes the checkpoints before it.
pub(crate) fn commit(out: &Path, partial: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Serialization {
        what: "the checkpoint manifest".into(),
        reason: e.to_string(),
    })?;
    io::write_atomic(&partial.join("manifest.json"), &json)?;
    let target = folder(out).join(name(manifest.position));
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|source| Error::Io {
            path: target.clone(),
            source,
        })?;
    }
    std::fs::rename(partial, &target).map_err(|source| Error::Io {
        path: target.clone(),
        source,
    })?;
    if let Ok(f) = std::fs::File::open(folder(out)) {
        let _ = f.sync_all();
    }
    for (_, old) in complete(out)? {
        if old != target {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    Ok(target)
}

/// Removes the partial folders a killed writer left behind (one run writes
/// into a run folder at a time).
pub(crate) fn clear_partial(out: &Path) {
    if let Ok(entries) = std::fs::read_dir(folder(out)) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".partial-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Complete checkpoints (final names), oldest first.
fn complete(out: &Path) -> Result<Vec<(Position, PathBuf)>> {
    let dir = folder(out);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut found = Vec::new();
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let Some((d, s)) = n.split_once('-') else {
            continue;
        };
        if let (Ok(domain), Ok(step)) = (d.parse(), s.parse()) {
            found.push((Position { domain, step }, e.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The last complete checkpoint of the run in `out`, with its folder.
///
/// # Errors
///
/// [`Error::CorruptFile`] for a manifest that does not parse or is of another
/// format, [`Error::Io`] when the folder cannot be read.
pub(crate) fn latest(out: &Path) -> Result<Option<(Manifest, PathBuf)>> {
    let Some((_, dir)) = complete(out)?.pop() else {
        return Ok(None);
    };
    let path = dir.join("manifest.json");
    let manifest: Manifest =
        serde_json::from_slice(&io::read(&path)?).map_err(|e| Error::CorruptFile {
            path: path.clone(),
            reason: format!("not a checkpoint manifest ({e})"),
        })?;
    if manifest.format != FORMAT {
        return Err(Error::CorruptFile {
            path,
            reason: format!("format {:?}, expected {FORMAT:?}", manifest.format),
        });
    }
    // The results go on being extended and summarised: they must fit the run.
    let names: Vec<&String> = manifest.identity.domains.iter().map(|(n, _)| n).collect();
    let results = &manifest.results;
    let consistent = results.check().map_err(|e| e.to_string()).and_then(|()| {
        if results.domains.iter().collect::<Vec<_>>() != names {
            Err("its results name other domains than its identity".to_string())
        } else if results.after.len() != manifest.position.domain {
            Err(format!(
                "{} result rows for {} finished domains",
                results.after.len(),
                manifest.position.domain
            ))
        } else {
            Ok(())
        }
    });
    if let Err(reason) = consistent {
        return Err(Error::CorruptFile { path, reason });
    }
    Ok(Some((manifest, dir)))
}

/// A stable 64-bit fingerprint (FNV-1a) of token chunks.
pub(crate) fn fingerprint(chunks: &[Vec<u32>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u32| {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for c in chunks {
        eat(c.len() as u32);
        c.iter().for_each(|&v| eat(v));
    }
    h
}

/// Checks the run folder `out`: a fresh run needs it empty of runs; resume
/// needs a checkpoint of the same identity (or none, then starts afresh).
pub(crate) fn prepare(
    out: &Path,
    identity: &RunIdentity,
    resume: bool,
) -> Result<Option<(Manifest, PathBuf)>> {
    let last = latest(out)?;
    if resume {
        clear_partial(out);
    }
    match (last, resume) {
        (Some((manifest, dir)), true) => {
            if manifest.identity != *identity {
                return Err(describe_mismatch(&manifest.identity, identity, &dir));
            }
            Ok(Some((manifest, dir)))
        }
        (Some((_, dir)), false) => Err(Error::InvalidConfig(format!(
            "the output folder {} already holds a run (checkpoint {}): resume it, or \
             choose another folder",
            out.display(),
            dir.display()
        ))),
        (None, _) => {
            if out.join("results.json").exists() {
                return Err(Error::InvalidConfig(format!(
                    "the output folder {} holds the results of another run",
                    out.display()
                )));
            }
            std::fs::create_dir_all(out).map_err(|source| Error::Io {
                path: out.to_path_buf(),
                source,
            })?;
            Ok(None)
        }
    }
}

/// The latest checkpoint of `out`, checked against `identity`, without
/// changing the folder: what ranks other than 0 resume from, once rank 0
/// has prepared it.
pub(crate) fn found(out: &Path, identity: &RunIdentity) -> Result<Option<(Manifest, PathBuf)>> {
    match latest(out)? {
        Some((manifest, dir)) if manifest.identity != *identity => {
            Err(describe_mismatch(&manifest.identity, identity, &dir))
        }
        found => Ok(found),
    }
}

/// A typed error naming what differs between a checkpoint and this run.
fn describe_mismatch(saved: &RunIdentity, now: &RunIdentity, dir: &Path) -> Error {
    let at = dir.display();
    if saved.layout != now.layout || saved.shapes != now.shapes {
        return Error::LayoutMismatch(format!(
            "checkpoint {at} is of another model (gates {} vs {})",
            saved.layout, now.layout
        ));
    }
    if saved.config != now.config {
        return Error::InvalidConfig(format!(
            "checkpoint {at} was written with another method configuration ({:?}); \
             resume with the same options",
            saved.config.name
        ));
    }
    Error::InvalidConfig(format!(
        "checkpoint {at} was written for other domains or data ({:?})",
        saved.domains.iter().map(|(n, _)| n).collect::<Vec<_>>()
    ))
}

/// Refuses a checkpoint whose position the run never reaches or never
/// checkpoints at, or whose optional parts disagree with its position.
pub(crate) fn check_position(
    config: &MethodConfig,
    manifest: &Manifest,
    dir: &Path,
    domains: usize,
) -> Result<()> {
    let c = config;
    let Position { domain, step } = manifest.position;
    let refuse = |reason: String| {
        Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            reason,
        })
    };
    let n = domains;
    let steps = c.steps_per_domain;
    if domain > n || (domain == n && step > 0) || step >= steps {
        return refuse(format!(
            "its position (domain {domain}, step {step}) is outside the run of {n} \
             domain(s) of {steps} steps"
        ));
    }
    if step > 0 && (c.checkpoint_every == 0 || !step.is_multiple_of(c.checkpoint_every)) {
        return refuse(format!(
            "its position (domain {domain}, step {step}) is not one this run checkpoints at \
             (every {} steps, and at the end of each domain)",
            c.checkpoint_every
        ));
    }
    if manifest.optimizer != (step > 0) {
        return refuse(format!(
            "at step {step} of a domain it {} an optimizer state; the run saves one \
             exactly in mid-domain checkpoints",
            if manifest.optimizer { "holds" } else { "lacks" }
        ));
    }
    let ewc = c.ewc_lambda > 0.0 && domain > 0;
    if manifest.ewc != ewc {
        return refuse(format!(
            "it {} EWC anchors, which this run {} after {domain} finished domain(s)",
            if manifest.ewc { "holds" } else { "lacks" },
            if ewc { "has" } else { "does not have" }
        ));
    }
    Ok(())
}

/// Refuses a checkpoint whose importance files (in `importance_dir`) are not
/// the ones this run has estimated by its position, or are not of `layout`.
pub(crate) fn check_importances(
    config: &MethodConfig,
    manifest: &Manifest,
    dir: &Path,
    importance_dir: &Path,
    domain_names: &[String],
    layout: &GateLayout,
) -> Result<()> {
    let c = config;
    let Position { domain, step } = manifest.position;
    let mut expected = Vec::new();
    if c.general_importance && (domain > 0 || step > 0) {
        expected.push("general.safetensors".to_string());
    }
    if c.domain_importance {
        for name in &domain_names[..domain.min(domain_names.len())] {
            expected.push(format!("domain-{name}.safetensors"));
        }
    }
    let refuse = |reason: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    if manifest.importances != expected {
        return Err(refuse(format!(
            "it lists the importance files {:?}; at domain {domain}, step {step} this run \
             has estimated {expected:?}",
            manifest.importances
        )));
    }
    for name in &expected {
        Importance::load(importance_dir.join(name))
            .and_then(|imp| imp.check_layout(layout))
            .map_err(|e| refuse(format!("its importance {name}: {e}")))?;
    }
    Ok(())
}

/// The state of a run between steps, besides the model and the plugins:
/// what a checkpoint holds.
pub(crate) struct RunState {
    /// The next step.
    pub(crate) position: Position,
    /// The saved importance files, in the order estimated.
    pub(crate) importances: Vec<String>,
    /// The results so far.
    pub(crate) results: ResultMatrix,
    /// The optimizer's state to write into the next checkpoint (mid-domain
    /// only; cleared once written).
    pub(crate) optimizer: Option<Vec<u8>>,
}

/// Writes a checkpoint of `model`, `state` and the plugins' state into the
/// run folder `out`, atomically; returns its folder.
pub(crate) fn save<M: ContinualModel<B>, B>(
    out: &Path,
    model: &M,
    identity: &RunIdentity,
    state: &RunState,
    plugins: &[Box<dyn Plugin<M, B>>],
) -> Result<PathBuf> {
    let partial = begin(out)?;
    model.save_weights(&partial)?;
    if let Some(bytes) = &state.optimizer {
        io::write_atomic(&partial.join(OPTIMIZER_FILE), bytes)?;
    }
    let mut plugin_state = false;
    for p in plugins {
        plugin_state |= p.save(&partial)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        identity: identity.clone(),
        position: state.position,
        importances: state.importances.clone(),
        results: state.results.clone(),
        optimizer: state.optimizer.is_some(),
        ewc: plugin_state,
        param_ids: params::ids(model).iter().map(ParamId::val).collect(),
    };
    commit(out, &partial, &manifest)
}

/// The checkpoint file of the optimizer's state.
const OPTIMIZER_FILE: &str = "optimizer.bin";

/// The model, run state, optimizer (with its state, mid-domain) and
/// plugins' state of the checkpoint `dir` (with `manifest`), each checked
/// against the run before anything of it changes: the position
/// ([`check_position`]), the weights' shapes, the importance files
/// ([`check_importances`]) and the optimizer state (against the loaded model
/// and `config`'s optimizer, once: the loop steps with the optimizer returned).
pub(crate) fn restore<M: ContinualModel<B>, B>(
    config: &MethodConfig,
    out: &Path,
    domain_names: &[String],
    model: M,
    (manifest, dir): (Manifest, PathBuf),
    device: &Device,
    plugins: &mut [Box<dyn Plugin<M, B>>],
) -> Result<(M, RunState, Option<ModuleOptimizer>)> {
    let dir = dir.as_path();
    check_position(config, &manifest, dir, domain_names.len())?;
    // The checkpoint's parameter ids, so that its optimizer state and EWC
    // anchors (keyed by id) apply to the loaded model.
    let ids: Vec<ParamId> = manifest
        .param_ids
        .iter()
        .map(|&i| ParamId::from(i))
        .collect();
    if ids.len() != manifest.identity.shapes.len() {
        return Err(Error::CorruptFile {
            path: dir.join("manifest.json"),
            reason: "parameter ids and shapes disagree".into(),
        });
    }
    let loaded = params::with_ids(model.load_weights(dir)?, &ids);
    if params::shapes(&loaded) != manifest.identity.shapes {
        return Err(Error::LayoutMismatch(format!(
            "the weights in {} do not have the model's shapes",
            dir.display()
        )));
    }
    check_importances(
        config,
        &manifest,
        dir,
        &importance_dir(out),
        domain_names,
        &loaded.gate_layout(),
    )?;
    let optimizer = if manifest.optimizer {
        let bytes = io::read(&dir.join(OPTIMIZER_FILE))?;
        let optim = load_checked(&config.optimizer.init()?, &bytes, &ParamTable::of(&loaded))
            .map_err(|e| Error::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("its {OPTIMIZER_FILE}: {e}"),
            })?;
        Some(optim)
    } else {
        None
    };
    // The plugins' state the manifest promises must be there: EWC's anchors,
    // and kd's teacher in a mid-domain checkpoint.
    let missing = |what: &str| Error::Checkpoint {
        path: dir.to_path_buf(),
        reason: format!("it lacks {what}"),
    };
    if manifest.ewc && !dir.join(EWC_FILE).is_file() {
        return Err(missing(&format!("EWC's anchors ({EWC_FILE})")));
    }
    if config.kd_lambda > 0.0 && manifest.position.step > 0 && !dir.join(KD_TEACHER).is_dir() {
        return Err(missing(&format!("kd's teacher ({KD_TEACHER}/)")));
    }
    let inner = device.clone().inner();
    for p in plugins.iter_mut() {
        p.restore(dir, &inner)?;
    }
    Ok((
        loaded,
        RunState {
            position: manifest.position,
            importances: manifest.importances,
            results: manifest.results,
            optimizer: None,
        },
        optimizer,
    ))
}
