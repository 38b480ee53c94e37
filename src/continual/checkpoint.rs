//! Checkpoint: atomic checkpoint folders of a continual run, and finding the
//! last complete one to resume from.
//!
//! A checkpoint is written into `checkpoints/.partial-<pid>`, every file
//! synced, the manifest last, and only then renamed to
//! `checkpoints/<domain>-<step>`: a folder under a final name is always
//! complete, and a crash leaves at most a partial folder that resume ignores.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::ResultMatrix;
use super::method::MethodConfig;
use crate::error::{Error, Result};
use crate::importance::gates::GateLayout;
use crate::io;

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
    /// Whether the folder holds EWC anchors (`ewc.safetensors`).
    pub ewc: bool,
    /// The model's parameter ids, in visiting order: the keys of the
    /// optimizer state and the EWC anchors, given back to the loaded model.
    pub param_ids: Vec<u64>,
}

/// The checkpoints folder of a run.
pub(crate) fn folder(out: &Path) -> PathBuf {
    out.join("checkpoints")
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
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::InvalidConfig(format!("manifest cannot be written: {e}")))?;
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
