//! Evaluation: held-out losses of every column after every domain, and
//! writing a run's results.

use std::collections::BTreeMap;
use std::path::Path;

use super::domain::TokenizedDomain;
use super::objective::{Collate, ContinualModel};
use super::plot;
use super::results::ResultMatrix;
use crate::data::sampling::mix;
use crate::distributed::{Collective, agree};
use crate::error::{Error, Result};
use crate::importance::estimate::model_device;
use crate::importance::stability::GateStability;
use crate::io;

/// Masking of held-out sets is seeded by this, the batch and the column,
/// never by the method's seed: every method is evaluated on the same tokens.
const EVAL_SEED: u64 = 0x5eed_e7a1;

/// The columns of a run's results: `general` (when given), then the domains.
pub(crate) fn columns(general: bool, names: &[String]) -> Vec<String> {
    general
        .then(|| "general".to_string())
        .into_iter()
        .chain(names.iter().cloned())
        .collect()
}

/// Held-out loss on every column (general first, then every domain), on
/// the inference copy of the model (no dropout), with a fixed masking, in
/// batches of `batch_size`. `progress` hears of every batch.
pub(crate) fn evaluate<M, B>(
    collate: &dyn Collate<B>,
    batch_size: usize,
    model: &M,
    domains: &[TokenizedDomain],
    general: Option<&[Vec<u32>]>,
    collective: &dyn Collective,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>>
where
    M: ContinualModel<B>,
{
    let inner = model_device(model)?.inner();
    let valid = model.valid();
    let sets: Vec<&[Vec<u32>]> = general
        .into_iter()
        .chain(domains.iter().map(|d| d.held_out.as_slice()))
        .collect();
    let total: usize = sets.iter().map(|s| s.len().div_ceil(batch_size)).sum();
    let mut done = 0;
    progress(0, total);
    let (rank, size) = (collective.rank(), collective.size());
    // Per column, the sum of row-weighted losses and the rows; rank r
    // takes batches r, r + N, ...
    let mut sums = vec![0f64; 2 * sets.len()];
    let mut local = || -> Result<()> {
        for (col, rows) in sets.iter().enumerate() {
            for (b, chunk) in rows.chunks(batch_size).enumerate() {
                done += 1;
                if b % size == rank {
                    let seed = mix(EVAL_SEED, &[col as u64, b as u64]);
                    let batch = collate.collate(chunk, seed, &inner)?;
                    let loss = valid.loss(&batch, None)?.into_scalar::<f32>();
                    sums[2 * col] += f64::from(loss) * chunk.len() as f64;
                    sums[2 * col + 1] += chunk.len() as f64;
                }
                progress(done, total);
            }
        }
        Ok(())
    };
    let evaluated = local();
    agree(collective, "evaluating", evaluated)?;
    collective.all_reduce_sum_f64(&mut sums)?;
    Ok(sums
        .chunks(2)
        .map(|c| (c[0] / c[1].max(1.0)) as f32)
        .collect())
}

/// Writes `results.json` (the matrix and its summary), `results.csv`,
/// `results.md` and `results.svg` into the run folder `out`.
pub(crate) fn write_results(out: &Path, results: &ResultMatrix) -> Result<()> {
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "matrix": results,
        "summary": results.summary(),
    }))
    .map_err(|e| Error::Serialization {
        what: "results.json".into(),
        reason: e.to_string(),
    })?;
    io::write_atomic(&out.join("results.json"), &json)?;
    io::write_atomic(&out.join("results.csv"), results.to_csv().as_bytes())?;
    io::write_atomic(&out.join("results.md"), results.to_table().as_bytes())?;
    plot::write_matrix(results, &out.join("results.svg"))
}

/// The run folder's file of importance stability.
pub(crate) const STABILITY_FILE: &str = "importance-stability.json";

/// Records the split-half stability of the importance `label` (`general`
/// or a domain) in the run folder's `importance-stability.json`, an object
/// of every importance estimated so far (a resumed run estimates the same
/// again).
pub(crate) fn record_stability(
    out: &Path,
    label: &str,
    stability: Vec<GateStability>,
) -> Result<()> {
    let path = out.join(STABILITY_FILE);
    let mut all: BTreeMap<String, Vec<GateStability>> = match path.exists() {
        true => serde_json::from_slice(&io::read(&path)?).map_err(|e| Error::CorruptFile {
            path: path.clone(),
            reason: format!("not an importance-stability record ({e})"),
        })?,
        false => Default::default(),
    };
    all.insert(label.to_string(), stability);
    let text = serde_json::to_vec_pretty(&all).map_err(|e| Error::Serialization {
        what: "the importance stability".into(),
        reason: e.to_string(),
    })?;
    io::write_atomic(&path, &text)
}
