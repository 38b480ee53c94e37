//! Objective: what the continual loop needs of a model and its batches.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::data::mlm::{MaskedTokens, MlmMasker};
use crate::data::sampling::mix;
use crate::error::{Error, Result};
use crate::gate::{Gates, Represent, SoftMaskable};
use crate::importance::estimate::model_device;
use crate::model::{BertBatch, SoftMaskBert};

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

    /// The logits the objective scores, one row per scored position (the
    /// labelled positions for MLM, every position with a next token for a
    /// causal LM), in an order fixed by the batch: what distillation to an
    /// earlier model ([`KdPlugin`](super::kd::KdPlugin)) compares.
    ///
    /// # Shapes
    ///
    /// - output: `[scored positions, vocab]`
    ///
    /// # Errors
    ///
    /// By default [`Error::InvalidConfig`]: a model joins `kd` by giving them.
    fn objective_logits(&self, _batch: &B) -> Result<Tensor<2>> {
        Err(Error::InvalidConfig(
            "this model gives no objective logits, which kd distils".into(),
        ))
    }

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

/// A boxed collate collates as the one inside (a trainer over any of several).
impl<B, C: Collate<B> + ?Sized> Collate<B> for Box<C> {
    fn collate(&self, rows: &[Vec<u32>], seed: u64, device: &Device) -> Result<B> {
        (**self).collate(rows, seed, device)
    }
}

/// Token chunks to MLM batches for [`SoftMaskBert`], the continual loop's
/// way from a domain's chunks to batches: rows padded to the longest, 15% of
/// the non-special tokens selected by an [`MlmMasker`] seeded per batch (80%
/// `[MASK]`, 10% random, 10% kept). Texts take
/// `softmask::model::bert::BertTextBatcher`, which masks with the same
/// [`MlmMasker`].
#[derive(Debug, Clone)]
pub struct MlmChunkCollate {
    mask_id: u32,
    pad_id: u32,
    vocab_size: usize,
    special_ids: Vec<u32>,
    probability: f64,
}

impl MlmChunkCollate {
    /// A collate for a model of `vocab_size` ids.
    ///
    /// # Errors
    ///
    /// As [`MlmMasker::new`]: an id out of the vocabulary is refused.
    pub fn new(
        mask_id: u32,
        pad_id: u32,
        vocab_size: usize,
        special_ids: Vec<u32>,
    ) -> Result<Self> {
        MlmMasker::new(mask_id, vocab_size, special_ids.clone(), 0)?;
        if pad_id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab {
                id: i64::from(pad_id),
                vocab_size,
            });
        }
        Ok(MlmChunkCollate {
            mask_id,
            pad_id,
            vocab_size,
            special_ids,
            probability: 0.15,
        })
    }
}

/// The random stream that picks the token of a batch where none was drawn.
const LABEL_ONE: u64 = 0x1abe1;

impl MlmChunkCollate {
    /// A batch in which no token was drawn (a single short chunk, or one
    /// made mostly of special tokens) would have no MLM loss; one eligible
    /// token, chosen from the seed, is then masked, so the batch counts.
    /// Batches with a label already are left exactly as drawn.
    fn label_one_if_none(
        &self,
        ids: &[Vec<u32>],
        attention: &[Vec<u32>],
        seed: u64,
        masked: &mut MaskedTokens,
    ) {
        if masked.labels.iter().flatten().any(|&l| l != -100) {
            return;
        }
        let eligible: Vec<(usize, usize)> = ids
            .iter()
            .zip(attention)
            .enumerate()
            .flat_map(|(r, (row, att))| {
                row.iter()
                    .zip(att)
                    .enumerate()
                    .filter(|(_, (id, a))| **a == 1 && !self.special_ids.contains(id))
                    .map(move |(c, _)| (r, c))
            })
            .collect();
        if eligible.is_empty() {
            return; // nothing can be labelled: the model refuses the batch
        }
        // A stream of its own, independent of the masking draw.
        let z = mix(seed, &[LABEL_ONE]);
        let (r, c) = eligible[(z % eligible.len() as u64) as usize];
        masked.labels[r][c] = i64::from(ids[r][c]);
        masked.input_ids[r][c] = self.mask_id;
    }
}

impl Collate<BertBatch> for MlmChunkCollate {
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
        let mut mlm = MlmMasker::new(
            self.mask_id,
            self.vocab_size,
            self.special_ids.clone(),
            seed,
        )?
        .with_probability(self.probability)?;
        let mut masked = mlm.mask(&ids, &attention)?;
        self.label_one_if_none(&ids, &attention, seed, &mut masked);
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

    /// The MLM logits at the labelled positions.
    fn objective_logits(&self, batch: &BertBatch) -> Result<Tensor<2>> {
        Ok(self.labelled_logits(batch, None)?.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(t: &Tensor<2, Int>) -> Vec<i64> {
        t.to_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    #[test]
    fn a_batch_where_no_token_was_drawn_gets_exactly_one() {
        let device = crate::device::cpu_device("flex").unwrap();
        let specials = vec![0, 101, 102, 103];
        let collate = MlmChunkCollate::new(103, 0, 300, specials.clone()).unwrap();
        // Three eligible tokens: the 15 % draw selects none for most seeds.
        let rows = vec![vec![101, 200, 201, 202, 102]];
        let (mut filled, mut drawn) = (0, 0);
        for seed in 0..40 {
            let plain = MlmMasker::new(103, 300, specials.clone(), seed)
                .unwrap()
                .mask(&rows, &[vec![1; 5]])
                .unwrap();
            let batch = collate.collate(&rows, seed, &device).unwrap();
            let labels = ints(batch.labels.as_ref().unwrap());
            let inputs = ints(&batch.input_ids);
            if plain.labels[0].iter().any(|&l| l != -100) {
                drawn += 1;
                assert_eq!(
                    labels, plain.labels[0],
                    "seed {seed}: a drawn batch is kept"
                );
                let plain_inputs: Vec<i64> =
                    plain.input_ids[0].iter().map(|&i| i64::from(i)).collect();
                assert_eq!(inputs, plain_inputs, "seed {seed}");
            } else {
                filled += 1;
                let set: Vec<usize> = (0..5).filter(|&i| labels[i] != -100).collect();
                assert_eq!(set.len(), 1, "seed {seed}: {labels:?}");
                let i = set[0];
                assert!((1..4).contains(&i), "seed {seed}: a special token labelled");
                assert_eq!(labels[i], i64::from(rows[0][i]));
                assert_eq!(inputs[i], 103);
            }
        }
        assert!(filled > 0 && drawn > 0, "filled {filled}, drawn {drawn}");
        // Nothing eligible: nothing is invented, and the model refuses the batch.
        let batch = collate.collate(&[vec![101, 102]], 1, &device).unwrap();
        assert!(
            ints(batch.labels.as_ref().unwrap())
                .iter()
                .all(|&l| l == -100)
        );
    }
}
