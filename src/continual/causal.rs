//! The causal-LM objective in the continual loop: token chunks to
//! [`CausalBatch`]es, and what the loop needs of [`SoftMaskLlama`].

use std::path::Path;

use burn::tensor::{Device, Tensor};

use super::objective::{Collate, ContinualModel};
use crate::error::Result;
use crate::gate::Gates;
use crate::importance::estimate::model_device;
use crate::model::llama::{CausalBatch, SoftMaskLlama};

/// Token chunks to [`CausalBatch`]es: rows padded at the end with `pad_id`;
/// the labels are the inputs shifted by one, padding ignored (see
/// [`SoftMaskLlama::causal_lm_loss`]). Nothing random.
#[derive(Debug, Clone)]
pub struct CausalChunkCollate {
    pad_id: u32,
    vocab_size: usize,
}

impl CausalChunkCollate {
    /// A collate padding with `pad_id` for a vocabulary of `vocab_size`.
    ///
    /// # Errors
    ///
    /// [`Error::TokenOutOfVocab`](crate::Error::TokenOutOfVocab) for a
    /// `pad_id` past the vocabulary.
    pub fn new(pad_id: u32, vocab_size: usize) -> Result<CausalChunkCollate> {
        if pad_id as usize >= vocab_size {
            return Err(crate::error::Error::TokenOutOfVocab {
                id: i64::from(pad_id),
                vocab_size,
            });
        }
        Ok(CausalChunkCollate { pad_id, vocab_size })
    }
}

impl Collate<CausalBatch> for CausalChunkCollate {
    fn collate(&self, rows: &[Vec<u32>], _seed: u64, device: &Device) -> Result<CausalBatch> {
        CausalBatch::from_rows(rows, self.pad_id, self.vocab_size, device)
    }
}

/// A model that scores continuations: for each `(context, continuation)`,
/// the summed log-probability of the continuation's tokens after the
/// context, what [`KnowledgeProbes`](super::knowledge::KnowledgeProbes)
/// compares between an item's choices.
pub trait ContinuationScorer {
    /// The scores, one per pair, in order.
    ///
    /// # Errors
    ///
    /// The model's errors for pairs it cannot score.
    fn continuation_logprobs(&self, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f32>>;
}

impl ContinuationScorer for SoftMaskLlama {
    fn continuation_logprobs(&self, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f32>> {
        SoftMaskLlama::continuation_logprobs(self, pairs)
    }
}

impl ContinualModel<CausalBatch> for SoftMaskLlama {
    /// The mean next-token cross-entropy over the real tokens.
    fn loss(&self, batch: &CausalBatch, gates: Option<&Gates>) -> Result<Tensor<1>> {
        self.causal_lm_loss(
            batch.input_ids.clone(),
            Some(batch.attention_mask.clone()),
            gates,
        )
    }

    /// The mean of the final hidden states over the real tokens.
    fn pooled(&self, batch: &CausalBatch, gates: Option<&Gates>) -> Result<Tensor<2>> {
        let hidden = self.hidden(
            batch.input_ids.clone(),
            Some(batch.attention_mask.clone()),
            gates,
        )?;
        let [b, s, h] = hidden.dims();
        let mask = batch.attention_mask.clone().float().reshape([b, s, 1]);
        let summed = (hidden * mask.clone()).sum_dim(1).reshape([b, h]);
        Ok(summed / mask.sum_dim(1).reshape([b, 1]).clamp_min(1.0))
    }

    /// The next-token logits of the positions with a next real token.
    fn objective_logits(&self, batch: &CausalBatch) -> Result<Tensor<2>> {
        self.predicting_logits(
            batch.input_ids.clone(),
            Some(batch.attention_mask.clone()),
            None,
        )
    }

    /// A Hugging Face folder ([`SoftMaskLlama::save_pretrained`]).
    fn save_weights(&self, dir: &Path) -> Result<()> {
        self.save_pretrained(dir)
    }

    /// The folder [`save_weights`](Self::save_weights) wrote, on this
    /// model's device, with this model's proxy dropout and head chunking.
    fn load_weights(&self, dir: &Path) -> Result<Self> {
        let mut loaded = SoftMaskLlama::from_pretrained(dir, &model_device(self)?)?;
        loaded.proxy_dropout = self.proxy_dropout.clone();
        loaded.head_chunk = self.head_chunk;
        Ok(loaded)
    }
}
