//! Scoring continuations: the log-likelihood of given tokens after a
//! context, what knowledge probes compare between choices.

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use softmask_kernels::log_softmax;

use super::model::SoftMaskLlama;
use crate::error::{Error, Result};
use crate::io::to_host;

/// Rows scored in one forward pass.
const SCORE_BATCH: usize = 32;

impl SoftMaskLlama {
    /// For each `(context, continuation)`, the sum over the continuation's
    /// tokens of their log-probability after the context and the tokens
    /// before them (the lm-eval-harness log-likelihood), without gates or
    /// dropout; rows are padded and scored a batch at a time.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for an empty context or continuation,
    /// [`Error::TokenOutOfVocab`] for an id past the vocabulary.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use softmask::model::llama::LlamaConfig;
    ///
    /// let config: LlamaConfig = serde_json::from_str(
    ///     r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 8,
    ///         "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}"#,
    /// )?;
    /// let model = config.init(&Device::default())?;
    /// let scores = model.continuation_logprobs(&[(vec![1, 2], vec![3]), (vec![1, 2], vec![4, 5])])?;
    /// assert!(scores.iter().all(|s| *s < 0.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn continuation_logprobs(&self, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f32>> {
        let vocab = self.config.vocab_size;
        for (context, continuation) in pairs {
            if context.is_empty() || continuation.is_empty() {
                return Err(Error::BadBatch(
                    "a scored continuation needs a context and at least one token".into(),
                ));
            }
            if let Some(&id) = context
                .iter()
                .chain(continuation)
                .find(|&&id| id as usize >= vocab)
            {
                return Err(Error::TokenOutOfVocab {
                    id: i64::from(id),
                    vocab_size: vocab,
                });
            }
        }
        let model = self.valid();
        let device = self.embed.weight.val().device().inner();
        let mut scores = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(SCORE_BATCH) {
            let seq = chunk
                .iter()
                .map(|(c, t)| c.len() + t.len())
                .max()
                .unwrap_or(1);
            let b = chunk.len();
            let (mut ids, mut mask) = (Vec::with_capacity(b * seq), Vec::with_capacity(b * seq));
            // Position p predicts token p + 1: the continuation's tokens are
            // predicted from the context's last position on.
            let (mut positions, mut targets, mut owner) = (Vec::new(), Vec::new(), Vec::new());
            for (r, (context, continuation)) in chunk.iter().enumerate() {
                let row: Vec<i64> = context
                    .iter()
                    .chain(continuation)
                    .map(|&v| i64::from(v))
                    .collect();
                for (k, &t) in continuation.iter().enumerate() {
                    positions.push((r * seq + context.len() - 1 + k) as i64);
                    targets.push(i64::from(t));
                    owner.push(r);
                }
                mask.extend(std::iter::repeat_n(1i64, row.len()));
                mask.extend(std::iter::repeat_n(0i64, seq - row.len()));
                ids.extend(
                    row.iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, seq - row.len())),
                );
            }
            let hidden = model.hidden(
                Tensor::<2, Int>::from_data(TensorData::new(ids, [b, seq]), &device),
                Some(Tensor::<2, Int>::from_data(
                    TensorData::new(mask, [b, seq]),
                    &device,
                )),
                None,
            )?;
            let n = positions.len();
            let h = self.config.hidden_size;
            let rows = hidden.reshape([b * seq, h]).select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(positions, [n]), &device),
            );
            let logits = model.head_logits(rows);
            let t = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
            let picked = to_host(log_softmax(logits, 1).gather(1, t))?.values;
            let mut sums = vec![0f32; b];
            for (value, r) in picked.into_iter().zip(owner) {
                sums[r] += value;
            }
            scores.extend(sums);
        }
        Ok(scores)
    }
}
