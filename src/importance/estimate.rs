//! Estimate: importance from gate gradients of a proxy loss.

use burn::module::Module;
use burn::tensor::Device;

use super::stability::{GateStability, spearman};
use crate::distributed::Collective;
use crate::error::{Error, Result};
use crate::gate::{GateLayout, Gates, SoftMaskable, TokenCount};
use crate::importance::proxy::{ImportanceProxy, frozen};
use crate::importance::{Importance, Normalization};
use crate::io::to_host;

/// How per-batch gate gradients are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accumulation {
    /// The notebook and the research code: the gate's gradient is never zeroed,
    /// so after batch `t` it holds the sum of batches `1..=t`, and that running
    /// sum is what gets added. Early batches weigh more. Reproduces the notebook.
    Cumulative,
    /// The paper: the plain sum of per-batch gradients.
    PerBatch,
}

/// Whether gradients are used as they are or by magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSign {
    /// As computed (the notebook).
    Signed,
    /// The absolute value of each batch's gate gradient (the paper takes it per
    /// example; with batch size 1 the two agree).
    Absolute,
}

/// Accumulates gate gradients of a proxy loss over batches into [`Importance`].
///
/// Each step builds gates of ones that require a gradient, runs the proxy on a
/// copy of the model whose parameters need no gradient (only gate gradients
/// are computed), and adds the gate gradients. [`raw`](Self::raw) divides by
/// the token count; [`finish`](Self::finish) also normalises.
///
/// # Example
///
/// ```
/// use burn::tensor::Device;
/// use softmask::*;
///
/// let device = Device::default().autodiff();
/// let model = SoftMaskNetConfig::new().with_dropout(0.0).init(&device)?;
/// let duplicate = SoftMaskNetConfig::new().with_dropout(0.0).init(&device)?;
/// let proxy = KlToModel::new(duplicate);
///
/// let ids = [vec![1, 2, 3, 4], vec![5, 6, 7, 8]];
/// let batch = LabelledBatch::from_ids(&ids, &[0.0, 1.0], model.vocab_size(), &device)?;
/// let mut estimator = ImportanceEstimator::new(
///     model.gate_layout(), Accumulation::Cumulative, GradientSign::Signed)?;
/// estimator.step(&model, &batch, &proxy)?;
/// let importance = estimator.finish(Normalization::Reference)?;
///
/// assert_eq!(importance.gates()[0].values.len(), 30);
/// assert!(importance.gates()[1].values.iter().all(|v| (0.0..1.0).contains(v)));
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImportanceEstimator {
    layout: GateLayout,
    accumulation: Accumulation,
    sign: GradientSign,
    running: Vec<Vec<f32>>,
    total: Vec<Vec<f32>>,
    tokens: usize,
    /// Per-batch gradients (with the sign option) of the even- and the
    /// odd-numbered batches, for [`split_half`](Self::split_half).
    halves: [Vec<Vec<f32>>; 2],
    batches: usize,
    /// With [`deferred`](Self::deferred): each batch's gradients by number,
    /// added in order by [`reduce`](Self::reduce).
    deferred: Option<Vec<(usize, Vec<Vec<f32>>)>>,
    /// Batches already added when [`deferred`](Self::deferred) was called.
    deferred_from: usize,
}

impl ImportanceEstimator {
    /// An estimator for a model with these gates. The options are explicit:
    /// `Cumulative` + `Signed` reproduces the notebook, `PerBatch` + `Absolute`
    /// follows the DAS paper.
    pub fn new(
        layout: GateLayout,
        accumulation: Accumulation,
        sign: GradientSign,
    ) -> Result<ImportanceEstimator> {
        layout.validate()?;
        let zeros: Vec<Vec<f32>> = layout
            .specs()
            .iter()
            .map(|s| vec![0.0; s.numel()])
            .collect();
        Ok(ImportanceEstimator {
            layout,
            accumulation,
            sign,
            running: zeros.clone(),
            total: zeros.clone(),
            tokens: 0,
            halves: [zeros.clone(), zeros],
            batches: 0,
            deferred: None,
            deferred_from: 0,
        })
    }

    /// Adds one batch. Returns the proxy loss.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the model is not on an autodiff device,
    /// [`Error::LayoutMismatch`] when its gates are not the estimator's,
    /// [`Error::MissingGradient`] when the loss does not depend on a gate,
    /// [`Error::NonFinite`] for a NaN or infinite gate gradient. On error
    /// nothing has been accumulated.
    pub fn step<M, B, P>(&mut self, model: &M, batch: &B, proxy: &P) -> Result<f32>
    where
        M: Module + SoftMaskable,
        B: TokenCount,
        P: ImportanceProxy<M, B>,
    {
        let layout = model.gate_layout();
        if layout != self.layout {
            return Err(Error::LayoutMismatch(format!(
                "the model's gates {layout} are not the estimator's {}",
                self.layout
            )));
        }
        let device = model_device(model)?;
        if !device.is_autodiff() {
            return Err(Error::InvalidConfig(
                "importance needs gate gradients: put the model on an autodiff device \
                 (e.g. Device::flex().autodiff())"
                    .into(),
            ));
        }
        let gates = Gates::ones(&self.layout, &device).require_grad();
        let loss = proxy.loss(&frozen(model), &gates, batch)?;
        if loss.dims() != [1] {
            return Err(Error::ShapeMismatch {
                what: "proxy loss".into(),
                expected: "[1]".into(),
                actual: format!("{:?}", loss.dims()),
            });
        }
        if !loss.is_tracked() {
            return Err(Error::MissingGradient(
                "the proxy loss does not depend on the gates".into(),
            ));
        }
        let grads = loss.backward();
        let mut batch_grads = Vec::with_capacity(self.layout.len());
        for (gate, spec) in gates.tensors().iter().zip(self.layout.specs()) {
            let g = gate.grad(&grads).ok_or_else(|| {
                Error::MissingGradient(format!(
                    "gate {:?}: the proxy loss does not depend on it",
                    spec.name
                ))
            })?;
            let values = to_host(g)?.values;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("gradient of gate {:?}", spec.name),
                });
            }
            batch_grads.push(values);
        }
        match &mut self.deferred {
            Some(kept) => kept.push((self.batches, batch_grads)),
            None => self.add(self.batches, &batch_grads),
        }
        self.tokens += batch.token_count();
        self.batches += 1;
        Ok(loss.into_scalar::<f32>())
    }

    /// Adds batch number `index`'s gate gradients.
    fn add(&mut self, index: usize, batch_grads: &[Vec<f32>]) {
        let half = &mut self.halves[index % 2];
        for (((g, run), tot), h) in batch_grads
            .iter()
            .zip(&mut self.running)
            .zip(&mut self.total)
            .zip(half.iter_mut())
        {
            for (((&g, r), t), h) in g
                .iter()
                .zip(run.iter_mut())
                .zip(tot.iter_mut())
                .zip(h.iter_mut())
            {
                let g = match self.sign {
                    GradientSign::Signed => g,
                    GradientSign::Absolute => g.abs(),
                };
                *h += g;
                match self.accumulation {
                    Accumulation::Cumulative => {
                        *r += g;
                        *t += *r;
                    }
                    Accumulation::PerBatch => *t += g,
                }
            }
        }
    }

    /// Keeps every batch's gate gradients until [`reduce`](Self::reduce),
    /// which adds them in batch order: what a data-parallel estimate needs
    /// to equal one process's bit for bit (the sums run in the same order).
    /// Costs a copy of the gates per batch.
    pub fn deferred(mut self) -> Self {
        self.deferred = Some(Vec::new());
        self.deferred_from = self.batches;
        self
    }

    /// Counts a batch that another rank of a data-parallel run estimates
    /// (rank `r` of `N` takes batches `r`, `r + N`, ...): this rank adds
    /// nothing for it, but the batches after it keep their numbers. Call
    /// [`reduce`](Self::reduce) after the last batch.
    pub fn skip(&mut self) {
        self.batches += 1;
    }

    /// Gathers the batches of every rank (each taken by one rank, the others
    /// [`skip`](Self::skip)ping it) and adds them in batch order, with the
    /// token counts: the importance of N ranks is then that of one process
    /// over all the batches, bit for bit. Needs [`deferred`](Self::deferred)
    /// from the start; without it, and on one rank, nothing to do.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for several ranks without
    /// [`deferred`](Self::deferred), or with it called after the first
    /// step; [`Error::Distributed`] when the transport fails.
    pub fn reduce(&mut self, c: &dyn Collective) -> Result<()> {
        if self.deferred.is_some() && self.deferred_from > 0 {
            return Err(Error::InvalidConfig(format!(
                "deferred() came after {} batches, which were added on this rank alone: call \
                 it before the first step",
                self.deferred_from
            )));
        }
        let Some(kept) = self.deferred.take() else {
            if c.size() == 1 {
                return Ok(());
            }
            return Err(Error::InvalidConfig(
                "a data-parallel importance estimate keeps its batches: call deferred() \
                 before the first step"
                    .into(),
            ));
        };
        let sizes: Vec<usize> = self.layout.specs().iter().map(|s| s.numel()).collect();
        let n: usize = sizes.iter().sum();
        let mut all = vec![0f32; self.batches * n];
        for (index, grads) in &kept {
            let mut at = index * n;
            for g in grads {
                all[at..at + g.len()].copy_from_slice(g);
                at += g.len();
            }
        }
        // Each slot is one rank's values plus zeros: the sum is exact.
        c.all_reduce_sum(&mut all)?;
        let mut tokens = [self.tokens as f64];
        c.all_reduce_sum_f64(&mut tokens)?;
        self.tokens = tokens[0] as usize;
        for index in 0..self.batches {
            let mut at = index * n;
            let grads: Vec<Vec<f32>> = sizes
                .iter()
                .map(|&len| {
                    at += len;
                    all[at - len..at].to_vec()
                })
                .collect();
            self.add(index, &grads);
        }
        Ok(())
    }

    /// The split-half stability of what has been accumulated: per gate and
    /// row (layer), the Spearman rank correlation between the importance of
    /// the even-numbered and of the odd-numbered batches, each half summed
    /// per batch (with the sign option) and normalised per row as
    /// `normalization` does, so the ranks compared are the ones the mask
    /// would apply. `None` before two batches.
    ///
    /// # Errors
    ///
    /// [`Error::NonFinite`] should a half not normalise (it cannot from
    /// finite gradients).
    pub fn split_half(&self, normalization: Normalization) -> Result<Option<Vec<GateStability>>> {
        if self.batches < 2 {
            return Ok(None);
        }
        let half = |h: &Vec<Vec<f32>>| -> Result<Importance> {
            Importance::new(&self.layout, h.clone())?.normalized(normalization)
        };
        let (even, odd) = (half(&self.halves[0])?, half(&self.halves[1])?);
        Ok(Some(
            self.layout
                .specs()
                .iter()
                .zip(even.gates().iter().zip(odd.gates()))
                .map(|(spec, (a, b))| GateStability {
                    name: spec.name.clone(),
                    rows: (0..spec.rows)
                        .map(|r| {
                            let row = r * spec.units..(r + 1) * spec.units;
                            spearman(&a.values[row.clone()], &b.values[row])
                        })
                        .collect(),
                })
                .collect(),
        ))
    }

    /// Tokens seen so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The accumulated gradients divided by the token count, not normalised.
    pub fn raw(&self) -> Result<Importance> {
        if self.tokens == 0 {
            return Err(Error::InvalidConfig(
                "importance of no tokens: call step first".into(),
            ));
        }
        let n = self.tokens as f32;
        let values = self
            .total
            .iter()
            .map(|t| t.iter().map(|v| v / n).collect())
            .collect();
        let imp = Importance::new(&self.layout, values)?;
        imp.check_finite()?;
        Ok(imp)
    }

    /// [`raw`](Self::raw), normalised per row.
    pub fn finish(&self, normalization: Normalization) -> Result<Importance> {
        self.raw()?.normalized(normalization)
    }
}

/// The device of a model's parameters.
pub(crate) fn model_device<M: Module>(model: &M) -> Result<Device> {
    model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidConfig("the model has no parameters".into()))
}
