//! `BertTextBatcher`: texts to a `BertBatch`, as a burn `Batcher`.

use std::sync::Mutex;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;

use super::BertBatch;
use crate::data::mlm::MlmMasker;
use crate::data::tokenize::{HfTokenizer, Tokenizer};
use crate::error::{Error, Result};

/// Tokenizes texts into a [`BertBatch`]: special tokens, truncation to the
/// tokenizer's `max_length`, padding to the longest text, attention mask and
/// token types; with an [`MlmMasker`], also the MLM inputs and labels.
///
/// Implements burn's `Batcher<String, Result<BertBatch>>`, so it plugs into a
/// burn `DataLoader` over a dataset of texts.
#[derive(Debug)]
pub struct BertTextBatcher {
    tokenizer: HfTokenizer,
    vocab_size: usize,
    mlm: Option<Mutex<MlmMasker>>,
}

impl BertTextBatcher {
    /// A batcher for a model with `vocab_size` word embeddings.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when the tokenizer produces more ids than the
    /// model's vocabulary holds.
    pub fn new(tokenizer: HfTokenizer, vocab_size: usize) -> Result<BertTextBatcher> {
        if tokenizer.vocab_size() > vocab_size {
            return Err(Error::LayoutMismatch(format!(
                "the tokenizer has {} ids, the model's vocabulary {vocab_size}",
                tokenizer.vocab_size()
            )));
        }
        Ok(BertTextBatcher {
            tokenizer,
            vocab_size,
            mlm: None,
        })
    }

    /// Also select tokens for MLM with `masker` (seeded; one draw per batch, in order).
    pub fn with_mlm(mut self, masker: MlmMasker) -> BertTextBatcher {
        self.mlm = Some(Mutex::new(masker));
        self
    }

    /// Tokenizes and batches `texts`.
    pub fn batch_texts<S: AsRef<str>>(&self, texts: &[S], device: &Device) -> Result<BertBatch> {
        let e = self.tokenizer.encode_batch(texts)?;
        let (ids, labels) = match &self.mlm {
            Some(mlm) => {
                let mut masker = mlm.lock().map_err(|_| {
                    Error::InvalidConfig("the MLM masker was poisoned by a panic".into())
                })?;
                let masked = masker.mask(&e.input_ids, &e.attention_mask)?;
                (masked.input_ids, Some(masked.labels))
            }
            None => (e.input_ids, None),
        };
        BertBatch::from_rows(
            &ids,
            &e.attention_mask,
            Some(&e.token_type_ids),
            labels.as_deref(),
            self.vocab_size,
            device,
        )
    }
}

impl Batcher<String, Result<BertBatch>> for BertTextBatcher {
    fn batch(&self, items: Vec<String>, device: &Device) -> Result<BertBatch> {
        self.batch_texts(&items, device)
    }
}
