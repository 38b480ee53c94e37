//! Plugin: a method's additions to the fixed loop (Avalanche's strategy
//! plugins). DAS's contrastive term and EWC's penalty are plugins; a new
//! method (replay, distillation…) joins the same way, without a branch in the
//! loop.
//!
//! The loop calls every plugin, in order, at fixed points of each domain:
//!
//! 1. [`before_domain`](Plugin::before_domain), with the importance in force;
//! 2. for every training step, [`loss_term`](Plugin::loss_term), added to the
//!    objective's loss;
//! 3. [`after_domain`](Plugin::after_domain), after the domain's training and
//!    importance, before evaluation;
//! 4. [`save`](Plugin::save) into every checkpoint, and
//!    [`restore`](Plugin::restore) on resume.
//!
//! Observers ([`Observer`](super::Observer)) only read; plugins change training.

use std::ops::Range;
use std::path::Path;

use burn::tensor::{Device, Tensor};

use super::domain::TokenizedDomain;
use super::method::MethodConfig;
use super::objective::Collate;
use crate::data::sampling::{batch_rows, mix};
use crate::distributed::Collective;
use crate::error::Result;
use crate::importance::Importance;

/// What a plugin sees before a domain's first step (also when a run resumes
/// mid-domain).
#[derive(Debug)]
pub struct DomainStart<'a> {
    /// Index of the domain in the sequence.
    pub index: usize,
    /// The importance in force for this domain (chosen gates, control and
    /// strength applied); `None` before any importance exists or when the
    /// method masks nothing.
    pub applied: Option<&'a Importance>,
    /// The model's (autodiff) device.
    pub device: &'a Device,
}

/// What a plugin sees after a domain's training: the domain, and seeded
/// batches of it drawn as the loop's importance passes draw them.
pub struct DomainEnd<'a, B> {
    /// Index of the domain in the sequence.
    pub index: usize,
    /// The domain just trained.
    pub domain: &'a TokenizedDomain,
    /// The method's configuration.
    pub config: &'a MethodConfig,
    /// The model's (autodiff) device.
    pub device: &'a Device,
    pub(crate) collate: &'a dyn Collate<B>,
}

impl<B> DomainEnd<'_, B> {
    /// Batch `b` of a seeded pass over the domain's training chunks, of
    /// [`importance_batch`](MethodConfig::importance_batch) rows: the rows in
    /// the order drawn from `mix(seed, purpose)`, random choices (masking,
    /// dropout, also on the device) from `mix(seed, purpose ++ [b])`. Give
    /// each plugin's pass its own `purpose`.
    pub fn batch(&self, purpose: &[u64], b: usize) -> Result<B> {
        pass_batch(
            self.collate,
            &self.domain.train,
            self.config.importance_batch(),
            self.config.seed,
            purpose,
            b,
            self.device,
        )
    }
}

/// One rank's part of a data-parallel training step, for
/// [`Plugin::loss_term_shard`].
pub struct RankShare<'a, B> {
    /// The ranks.
    pub collective: &'a dyn Collective,
    /// This rank's rows of the whole batch.
    pub rows: Range<usize>,
    /// Rows in the whole batch.
    pub total_rows: usize,
    /// The batch of this rank's rows.
    pub batch: &'a B,
    /// The batch a term averaged like the objective runs on: this rank's
    /// rows, or, when they hold none of the objective's terms, a stand-in
    /// row of the batch (with [`weight`](Self::weight) 0), so that every
    /// rank draws the same random numbers as one process would.
    pub weighted: &'a B,
    /// This rank's share of the objective's terms in the whole batch.
    pub weight: f32,
}

/// Batch `b` of a seeded pass over `chunks` (see [`DomainEnd::batch`]).
pub(crate) fn pass_batch<B>(
    collate: &dyn Collate<B>,
    chunks: &[Vec<u32>],
    size: usize,
    seed: u64,
    purpose: &[u64],
    b: usize,
    device: &Device,
) -> Result<B> {
    let path: Vec<u64> = purpose.iter().copied().chain([b as u64]).collect();
    let batch_seed = mix(seed, &path);
    let rows = batch_rows(chunks, size, b, mix(seed, purpose));
    device.seed(batch_seed);
    collate.collate(&rows, batch_seed, device)
}

/// A method's additions to the continual loop, for models `M` with batches
/// `B`. Every hook has a default that does nothing.
///
/// # Example
///
/// A plugin that adds an L2 penalty on every parameter:
///
/// ```
/// use burn::module::{Module, ModuleVisitor, Param};
/// use burn::tensor::Tensor;
/// use softmask::continual::Plugin;
/// use softmask::Result;
///
/// struct L2(f64);
///
/// impl<M: Module, B> Plugin<M, B> for L2 {
///     fn name(&self) -> &str {
///         "l2"
///     }
///     fn loss_term(&mut self, model: &M, _batch: &B) -> Result<Option<Tensor<1>>> {
///         struct Sum(Option<Tensor<1>>);
///         impl ModuleVisitor for Sum {
///             fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
///                 let s = p.val().powi_scalar(2).sum();
///                 self.0 = Some(match self.0.take() { Some(a) => a + s, None => s });
///             }
///         }
///         let mut sum = Sum(None);
///         model.visit(&mut sum);
///         Ok(sum.0.map(|s| s.mul_scalar(self.0)))
///     }
/// }
/// ```
pub trait Plugin<M, B> {
    /// The plugin's name, for logs and errors.
    fn name(&self) -> &str;

    /// Before a domain's first step, and when a run resumes mid-domain.
    fn before_domain(&mut self, _start: &DomainStart<'_>) -> Result<()> {
        Ok(())
    }

    /// A term added to the objective's loss at every training step (after
    /// the loss of the terms of the plugins before it).
    ///
    /// # Shapes
    ///
    /// - output: `[1]`
    fn loss_term(&mut self, _model: &M, _batch: &B) -> Result<Option<Tensor<1>>> {
        Ok(None)
    }

    /// This rank's share of the term in a data-parallel step
    /// ([`ContinualTrainer::with_collective`](super::ContinualTrainer::with_collective)):
    /// a loss whose values, summed over the ranks, give the term's value on
    /// the whole batch, and whose gradients, summed, give its gradient.
    ///
    /// The default fits a term averaged like the objective (over its
    /// labelled tokens or predicted positions, as kd's) or one of the
    /// weights only (as EWC's): [`loss_term`](Self::loss_term) on
    /// [`RankShare::weighted`] times [`RankShare::weight`]. A term that
    /// couples rows (as DAS's contrastive term) overrides it.
    ///
    /// # Shapes
    ///
    /// - output: `[1]`
    fn loss_term_shard(
        &mut self,
        model: &M,
        share: &RankShare<'_, B>,
    ) -> Result<Option<Tensor<1>>> {
        Ok(self
            .loss_term(model, share.weighted)?
            .map(|t| t.mul_scalar(share.weight)))
    }

    /// After a domain's training and importance, before evaluation.
    fn after_domain(&mut self, _model: &M, _end: &DomainEnd<'_, B>) -> Result<()> {
        Ok(())
    }

    /// Writes the plugin's state into a checkpoint folder (atomically, file by
    /// file); returns whether it wrote anything.
    fn save(&self, _dir: &Path) -> Result<bool> {
        Ok(false)
    }

    /// Restores the state [`save`](Self::save) wrote into `dir`, on the
    /// gradient (non-autodiff) `device`.
    fn restore(&mut self, _dir: &Path, _device: &Device) -> Result<()> {
        Ok(())
    }
}
