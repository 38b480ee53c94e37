//! Objective: what the continual loop needs of a model and its batches.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::data::mlm::MlmCollator;
use crate::error::{Error, Result};
use crate::importance::estimate::model_device;
use crate::importance::gates::Gates;
use crate::mask::SoftMaskable;
use crate::model::{BertBatch, Represent, SoftMaskBert};

/// A model the continual loop can train: its gates ([`SoftMaskable`]), a
/// representation for the KL importance proxy ([`Represent`]), and the four
/// things this trait adds.
///
/// [`SoftMaskBert`] implements it with the MLM loss. A causal language model
/// implements `loss` as its next-token cross-entropy and `pooled` as the mean
/// of its last hidden states; nothing else in the loop changes.
pub trait ContinualModel<B>: Module + SoftMaskable + Represent<B> + Sized {
    /// The training objective on `batch` (e.g. the MLM loss), with optional gates.
    ///
    /// # Shapes
    ///
    /// - output: `[1]`
    fn loss(&self, batch: &B, gates: Option<&Gates>) -> Result<Tensor<1>>;

    /// A pooled representation of the batch's *original* tokens (no MLM
    /// corruption), with optional gates: what the contrastive term compares.
    ///
    /// # Shapes
    ///
    /// - output: `[batch, hidden]`
    fn pooled(&self, batch: &B, gates: Option<&Gates>) -> Result<Tensor<2>>;

    /// Writes the weights into the folder `dir` (atomically, file by file).
    fn save_weights(&self, dir: &Path) -> Result<()>;

    /// A model of the same structure with the weights [`save_weights`](Self::save_weights)
    /// wrote into `dir`. The loop gives it this model's parameter ids, so an
    /// optimizer's state still applies.
    fn load_weights(&self, dir: &Path) -> Result<Self>;
}

/// Turns rows of token ids (one chunk each) into a batch.
pub trait Collate<B> {
    /// A batch of `rows`, with its random choices (e.g. MLM masking) drawn from `seed`.
    fn collate(&self, rows: &[Vec<u32>], seed: u64, device: &Device) -> Result<B>;
}

/// MLM batches for [`SoftMaskBert`]: rows padded to the longest, 15% of the
/// non-special tokens selected (80% `[MASK]`, 10% random, 10% kept).
#[derive(Debug, Clone)]
pub struct BertMlmCollate {
    mask_id: u32,
    pad_id: u32,
    vocab_size: usize,
    special_ids: Vec<u32>,
    probability: f64,
}

impl BertMlmCollate {
    /// A collator for a model of `vocab_size` ids.
    ///
    /// # Errors
    ///
    /// As [`MlmCollator::new`]: an id out of the vocabulary is refused.
    pub fn new(
        mask_id: u32,
        pad_id: u32,
        vocab_size: usize,
        special_ids: Vec<u32>,
    ) -> Result<Self> {
        MlmCollator::new(mask_id, vocab_size, special_ids.clone(), 0)?;
        if pad_id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab {
                id: i64::from(pad_id),
                vocab_size,
            });
        }
        Ok(BertMlmCollate {
            mask_id,
            pad_id,
            vocab_size,
            special_ids,
            probability: 0.15,
        })
    }
}

impl Collate<BertBatch> for BertMlmCollate {
    fn collate(&self, rows: &[Vec<u32>], seed: u64, device: &Device) -> Result<BertBatch> {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.resize(seq, self.pad_id);
                r
            })
            .collect();
        let attention: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| (0..seq).map(|i| u32::from(i < r.len())).collect())
            .collect();
        let mut mlm = MlmCollator::new(
            self.mask_id,
            self.vocab_size,
            self.special_ids.clone(),
            seed,
        )?
        .with_probability(self.probability)?;
        let masked = mlm.mask(&ids, &attention)?;
        BertBatch::from_rows(
            &masked.input_ids,
            &attention,
            None,
            Some(&masked.labels),
            self.vocab_size,
            device,
        )
    }
}

/// The original ids of an MLM batch: the label where one is set, the input elsewhere.
fn original_ids(batch: &BertBatch) -> Tensor<2, Int> {
    match &batch.labels {
        Some(labels) => {
            let selected = labels.clone().not_equal_elem(-100);
            batch.input_ids.clone().mask_where(selected, labels.clone())
        }
        None => batch.input_ids.clone(),
    }
}

impl ContinualModel<BertBatch> for SoftMaskBert {
    fn loss(&self, batch: &BertBatch, gates: Option<&Gates>) -> Result<Tensor<1>> {
        self.mlm_loss(batch, gates)
    }

    fn pooled(&self, batch: &BertBatch, gates: Option<&Gates>) -> Result<Tensor<2>> {
        let original = BertBatch {
            input_ids: original_ids(batch),
            labels: None,
            ..batch.clone()
        };
        let hidden = self.forward(&original, gates)?;
        let [b, s, _] = hidden.dims();
        let mask = batch.attention_mask.clone().float().reshape([b, s, 1]);
        let summed = (hidden * mask.clone()).sum_dim(1);
        let [_, _, h] = summed.dims();
        Ok(summed.reshape([b, h]) / mask.sum_dim(1).reshape([b, 1]).clamp_min(1.0))
    }

    /// A Hugging Face checkpoint folder ([`SoftMaskBert::save_pretrained`]).
    fn save_weights(&self, dir: &Path) -> Result<()> {
        self.save_pretrained(dir)
    }

    /// Reads `model.safetensors` with this model's configuration and head layout.
    fn load_weights(&self, dir: &Path) -> Result<Self> {
        Ok(SoftMaskBert::from_safetensors(
            self.config(),
            dir.join("model.safetensors"),
            &model_device(self)?,
        )?
        .with_head_layout(self.head_layout()))
    }
}
