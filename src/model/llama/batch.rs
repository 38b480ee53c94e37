//! `CausalBatch`: token rows padded to the longest, for a decoder.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::model::SoftMaskLlama;
use std::ops::Range;

use crate::distributed::{Shard, count_per_row, take_rows};
use crate::error::{Error, Result};
use crate::gate::Gates;
use crate::gate::{Represent, TokenCount};

/// A batch for a causal language model: ids padded at the end with `pad_id`,
/// and the mask of real tokens.
#[derive(Debug, Clone)]
pub struct CausalBatch {
    /// Token ids, `[batch, seq]`.
    pub input_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding, `[batch, seq]`.
    pub attention_mask: Tensor<2, Int>,
    /// Real tokens in the batch.
    pub real_tokens: usize,
}

impl CausalBatch {
    /// Rows of ids (each at least one token), padded with `pad_id` to the
    /// longest, for a vocabulary of `vocab_size`.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for no rows or an empty row,
    /// [`Error::TokenOutOfVocab`] for an id (or `pad_id`) past the vocabulary.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use softmask::model::llama::CausalBatch;
    ///
    /// let b = CausalBatch::from_rows(&[vec![5, 6, 7], vec![8]], 0, 10, &Device::default())?;
    /// assert_eq!((b.input_ids.dims(), b.real_tokens), ([2, 3], 4));
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn from_rows(
        rows: &[Vec<u32>],
        pad_id: u32,
        vocab_size: usize,
        device: &Device,
    ) -> Result<CausalBatch> {
        if rows.is_empty() || rows.iter().any(Vec::is_empty) {
            return Err(Error::BadBatch(
                "a causal batch needs rows of at least one token".into(),
            ));
        }
        if let Some(&id) = rows
            .iter()
            .flatten()
            .chain([&pad_id])
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(Error::TokenOutOfVocab {
                id: i64::from(id),
                vocab_size,
            });
        }
        let seq = rows.iter().map(Vec::len).max().unwrap_or(1);
        let b = rows.len();
        let mut ids = Vec::with_capacity(b * seq);
        let mut mask = Vec::with_capacity(b * seq);
        for row in rows {
            ids.extend(row.iter().map(|&v| i64::from(v)));
            ids.extend(std::iter::repeat_n(i64::from(pad_id), seq - row.len()));
            mask.extend(std::iter::repeat_n(1i64, row.len()));
            mask.extend(std::iter::repeat_n(0i64, seq - row.len()));
        }
        Ok(CausalBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, [b, seq]), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [b, seq]), device),
            real_tokens: rows.iter().map(Vec::len).sum(),
        })
    }
}

impl TokenCount for CausalBatch {
    fn token_count(&self) -> usize {
        self.real_tokens
    }
}

/// Rows of a collated batch, for data-parallel training; the causal-LM
/// objective averages over the positions whose next token is real.
impl Shard for CausalBatch {
    fn rows(&self) -> usize {
        self.input_ids.dims()[0]
    }

    fn shard(&self, rows: Range<usize>) -> Result<CausalBatch> {
        let attention_mask = take_rows(&self.attention_mask, &rows)?;
        Ok(CausalBatch {
            input_ids: take_rows(&self.input_ids, &rows)?,
            real_tokens: count_per_row(&attention_mask, 0, |m| m == 1)?.iter().sum(),
            attention_mask,
        })
    }

    /// Position `t` predicts token `t + 1` where that one is real.
    fn row_terms(&self) -> Result<Vec<usize>> {
        count_per_row(&self.attention_mask, 1, |m| m == 1)
    }
}

/// The final hidden states with the proxy's dropout on the residual stream:
/// what the KL proxy compares.
impl Represent<CausalBatch> for SoftMaskLlama {
    fn represent(&self, batch: &CausalBatch, gates: &Gates) -> Result<Tensor<3>> {
        self.hidden_with(
            batch.input_ids.clone(),
            Some(batch.attention_mask.clone()),
            Some(gates),
            Some(&self.proxy_dropout),
        )
    }
}
