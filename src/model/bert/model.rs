//! `SoftMaskBert`: a BERT encoder with head, intermediate and output gates.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use softmask_kernels::log_softmax;

use super::BertConfig;
use super::layers::{BertEmbeddings, BertLayer, BertMlmHead, LayerGates};
use std::ops::Range;

use crate::distributed::{Shard, count_per_row, take_rows};
use crate::error::{Error, Result};
use crate::gate::TokenCount;
use crate::gate::{GateLayout, GateSpec, Gates};
use crate::gate::{Governed, Represent, SoftMaskable};
use crate::model::check_token_ids;

/// A batch for the transformer: ids, padding mask, token types, MLM labels.
#[derive(Debug, Clone)]
pub struct BertBatch {
    /// Token ids, `[batch, seq]`.
    pub input_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding, `[batch, seq]`.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids, `[batch, seq]`.
    pub token_type_ids: Tensor<2, Int>,
    /// MLM targets, `[batch, seq]`: the original id where a token was
    /// selected, -100 elsewhere. `None` when the batch is not for MLM.
    pub labels: Option<Tensor<2, Int>>,
    /// Non-padding tokens in the batch.
    pub real_tokens: usize,
}

impl BertBatch {
    /// A batch from host rows, checked: non-empty, rectangular, ids below
    /// `vocab_size`, a 0/1 attention mask.
    pub fn from_rows(
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<u32>],
        token_type_ids: Option<&[Vec<u32>]>,
        labels: Option<&[Vec<i64>]>,
        vocab_size: usize,
        device: &Device,
    ) -> Result<BertBatch> {
        let batch = input_ids.len();
        let seq = input_ids.first().map_or(0, Vec::len);
        if batch == 0 || seq == 0 {
            return Err(Error::BadBatch(format!("empty batch [{batch}, {seq}]")));
        }
        let rect = |what: &str, rows: usize, lens: &mut dyn Iterator<Item = usize>| -> Result<()> {
            let all: Vec<usize> = lens.collect();
            if rows != batch || all.iter().any(|&l| l != seq) {
                return Err(Error::BadBatch(format!(
                    "{what} is not [{batch}, {seq}] like input_ids"
                )));
            }
            Ok(())
        };
        rect("input_ids", batch, &mut input_ids.iter().map(Vec::len))?;
        rect(
            "attention_mask",
            attention_mask.len(),
            &mut attention_mask.iter().map(Vec::len),
        )?;
        if let Some(t) = token_type_ids {
            rect("token_type_ids", t.len(), &mut t.iter().map(Vec::len))?;
        }
        if let Some(l) = labels {
            rect("labels", l.len(), &mut l.iter().map(Vec::len))?;
        }
        crate::data::batch::check_ids(input_ids.iter().flatten(), vocab_size)?;
        if attention_mask.iter().flatten().any(|&m| m > 1) {
            return Err(Error::BadBatch(
                "attention_mask holds values other than 0 and 1".into(),
            ));
        }
        if let Some(t) = token_type_ids {
            crate::data::batch::check_ids(t.iter().flatten(), usize::MAX)?;
        }
        let bound = crate::data::batch::id_bound(vocab_size) as i64;
        if let Some(l) = labels
            && let Some(&bad) = l
                .iter()
                .flatten()
                .find(|&&v| v != -100 && !(0..bound).contains(&v))
        {
            return Err(Error::TokenOutOfVocab {
                id: bad,
                vocab_size: bound as usize,
            });
        }
        let ints = |rows: &[Vec<u32>]| -> Tensor<2, Int> {
            let v: Vec<i64> = rows.iter().flatten().map(|&x| i64::from(x)).collect();
            Tensor::from_data(TensorData::new(v, [batch, seq]), device)
        };
        Ok(BertBatch {
            input_ids: ints(input_ids),
            attention_mask: ints(attention_mask),
            token_type_ids: match token_type_ids {
                Some(t) => ints(t),
                None => Tensor::zeros([batch, seq], device),
            },
            labels: labels.map(|l| {
                let v: Vec<i64> = l.iter().flatten().copied().collect();
                Tensor::from_data(TensorData::new(v, [batch, seq]), device)
            }),
            real_tokens: attention_mask.iter().flatten().filter(|&&m| m == 1).count(),
        })
    }
}

impl TokenCount for BertBatch {
    fn token_count(&self) -> usize {
        self.real_tokens
    }
}

/// Rows of a collated batch, for data-parallel training; the MLM
/// objective averages over the labelled tokens.
impl Shard for BertBatch {
    fn rows(&self) -> usize {
        self.input_ids.dims()[0]
    }

    fn shard(&self, rows: Range<usize>) -> Result<BertBatch> {
        let attention_mask = take_rows(&self.attention_mask, &rows)?;
        Ok(BertBatch {
            input_ids: take_rows(&self.input_ids, &rows)?,
            token_type_ids: take_rows(&self.token_type_ids, &rows)?,
            labels: self
                .labels
                .as_ref()
                .map(|l| take_rows(l, &rows))
                .transpose()?,
            real_tokens: count_per_row(&attention_mask, 0, |m| m == 1)?.iter().sum(),
            attention_mask,
        })
    }

    fn row_terms(&self) -> Result<Vec<usize>> {
        match &self.labels {
            Some(labels) => count_per_row(labels, 0, |l| l != -100),
            None => Ok(vec![0; self.rows()]),
        }
    }
}

/// Which parameters a head gate governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadMaskLayout {
    /// What a head owns: the output rows (PyTorch layout) of query, key and
    /// value and their biases, and the input columns of the attention output
    /// dense layer; that layer's bias is not masked.
    #[default]
    Semantic,
    /// The research code's layout, for parity with it: query, key and value
    /// weights masked along *input* features, biases along outputs, and the
    /// attention output dense weight and bias along their positions.
    Reference,
}

/// A BERT encoder (post-LayerNorm, GELU) with optional gates and a tied MLM head.
///
/// Three gates per layer, stacked over layers: `heads` `[layers, heads]`
/// multiplies each head's attention probabilities, `intermediate`
/// `[layers, intermediate]` the intermediate dense output (before GELU), and
/// `output` `[layers, hidden]` the output dense result (before the residual).
/// Load a Hugging Face checkpoint with [`SoftMaskBert::from_pretrained`].
#[derive(Module, Debug)]
pub struct SoftMaskBert {
    pub(crate) embeddings: BertEmbeddings,
    pub(crate) layers: Vec<BertLayer>,
    pub(crate) mlm: BertMlmHead,
    #[module(skip)]
    pub(crate) config: BertConfig,
    #[module(skip)]
    pub(crate) head_layout: HeadMaskLayout,
}

impl SoftMaskBert {
    /// Layers, heads, intermediate and hidden sizes.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        let l0 = &self.layers[0];
        let [hidden, inter] = l0.intermediate.weight.shape().dims::<2>();
        (self.layers.len(), l0.heads, inter, hidden)
    }

    /// Rows of the word embedding table.
    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// The same model, masking heads in `layout` wherever it is soft-masked
    /// through [`SoftMaskable`] (the maskers, the continual loop).
    pub fn with_head_layout(mut self, layout: HeadMaskLayout) -> SoftMaskBert {
        self.head_layout = layout;
        self
    }

    /// The head layout in force (see [`with_head_layout`](Self::with_head_layout)).
    pub fn head_layout(&self) -> HeadMaskLayout {
        self.head_layout
    }

    /// The configuration the model was built with (dropout as last set by
    /// [`with_dropout`](Self::with_dropout)).
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state.
    ///
    /// # Shapes
    ///
    /// - batch.input_ids, attention_mask, token_type_ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for an empty batch or mismatched shapes,
    /// [`Error::SequenceTooLong`] past the position table,
    /// [`Error::TokenOutOfVocab`], and shape errors for gates of another layout.
    pub fn forward(&self, batch: &BertBatch, gates: Option<&Gates>) -> Result<Tensor<3>> {
        let [b, s] = batch.input_ids.dims();
        if b == 0 || s == 0 {
            return Err(Error::BadBatch(format!("empty batch [{b}, {s}]")));
        }
        if s > self.config.max_sequence() {
            return Err(Error::SequenceTooLong {
                len: s,
                max: self.config.max_sequence(),
            });
        }
        if batch.attention_mask.dims() != [b, s] || batch.token_type_ids.dims() != [b, s] {
            return Err(Error::BadBatch(format!(
                "attention_mask {:?} and token_type_ids {:?} must be [{b}, {s}]",
                batch.attention_mask.dims(),
                batch.token_type_ids.dims()
            )));
        }
        check_token_ids(&batch.input_ids, self.config.vocab_size)?;
        let types = self.config.type_vocab_size;
        if let Err(Error::TokenOutOfVocab { id, .. }) =
            check_token_ids(&batch.token_type_ids, types)
        {
            return Err(Error::BadBatch(format!(
                "token_type_ids hold {id}, the model has {types} token types"
            )));
        }
        if let Some(g) = gates {
            g.check(&self.gate_layout())?;
        }
        let mask_bias = batch
            .attention_mask
            .clone()
            .float()
            .neg()
            .add_scalar(1.0)
            .mul_scalar(f32::MIN)
            .reshape([b, 1, 1, s]);
        let mut x = self
            .embeddings
            .forward(batch.input_ids.clone(), batch.token_type_ids.clone());
        for (l, layer) in self.layers.iter().enumerate() {
            // The gates were checked against the layout: every row exists.
            let layer_gates = gates.and_then(|g| {
                Some(LayerGates {
                    heads: g.layer(0, l)?,
                    intermediate: g.layer(1, l)?,
                    output: g.layer(2, l)?,
                })
            });
            x = layer.forward(x, mask_bias.clone(), layer_gates);
        }
        Ok(x)
    }

    /// MLM logits over the vocabulary.
    ///
    /// # Shapes
    ///
    /// - hidden: `[batch, seq, hidden]`
    /// - output: `[batch, seq, vocab]`
    pub fn mlm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, s, h] = hidden.dims();
        let logits = self.mlm.forward(
            hidden.reshape([b * s, h]),
            self.embeddings.word_embeddings.weight.val(),
        );
        let [_, vocab] = logits.dims();
        logits.reshape([b, s, vocab])
    }

    /// Mean cross-entropy of the MLM logits over the positions whose label is
    /// not -100 (as Hugging Face's `BertForMaskedLM`).
    ///
    /// The MLM head runs on the labelled positions only (about 15% of the
    /// tokens); Hugging Face computes logits for every position and ignores
    /// most of them. [`mlm_logits`](Self::mlm_logits) gives every position.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] when the batch has no labels or no labelled position.
    pub fn mlm_loss(&self, batch: &BertBatch, gates: Option<&Gates>) -> Result<Tensor<1>> {
        let (logits, targets) = self.labelled_logits(batch, gates)?;
        let n = targets.len();
        let device = logits.device();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
        Ok(log_softmax(logits, 1).gather(1, targets).mean().neg())
    }

    /// The MLM logits at the labelled positions (label not -100), in
    /// order, with their labels: what [`mlm_loss`](Self::mlm_loss) scores.
    ///
    /// # Shapes
    ///
    /// - output: `[labelled positions, vocab]`
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] when the batch has no labels or no labelled position.
    pub fn labelled_logits(
        &self,
        batch: &BertBatch,
        gates: Option<&Gates>,
    ) -> Result<(Tensor<2>, Vec<i64>)> {
        let labels = batch
            .labels
            .clone()
            .ok_or_else(|| Error::BadBatch("the batch has no MLM labels".into()))?;
        let hidden = self.forward(batch, gates)?;
        let [b, s, h] = hidden.dims();
        let device = hidden.device();
        let flat = labels
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| Error::BadBatch(format!("labels cannot be read: {e:?}")))?;
        let (positions, targets): (Vec<i64>, Vec<i64>) = flat
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l != -100)
            .map(|(i, &l)| (i as i64, l))
            .unzip();
        let n = positions.len();
        if n == 0 {
            return Err(Error::BadBatch("no position is labelled for MLM".into()));
        }
        let rows = hidden.reshape([b * s, h]).select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(positions, [n]), &device),
        );
        let logits = self
            .mlm
            .forward(rows, self.embeddings.word_embeddings.weight.val());
        Ok((logits, targets))
    }

    /// The parameters each gate governs, with the head layout of your choice
    /// (the [`SoftMaskable`] impl uses the model's [`head_layout`](Self::head_layout)).
    pub fn governed_with(&self, layout: HeadMaskLayout) -> Vec<Governed> {
        let (_, heads, _, hidden) = self.dims();
        let head_dim = hidden / heads;
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let bias = |lin: &burn::nn::Linear| lin.bias.as_ref().map(|b| b.id);
            // burn's Linear weight is [in, out]: axis 1 = outputs (PyTorch rows), axis 0 = inputs.
            let qkv_weight_axis = match layout {
                HeadMaskLayout::Semantic => 1,
                HeadMaskLayout::Reference => 0,
            };
            for lin in [&layer.query, &layer.key, &layer.value] {
                out.push(Governed::blocks(
                    0,
                    l,
                    lin.weight.id,
                    qkv_weight_axis,
                    head_dim,
                ));
                out.extend(bias(lin).map(|id| Governed::blocks(0, l, id, 0, head_dim)));
            }
            out.push(Governed::blocks(
                0,
                l,
                layer.attention_output.weight.id,
                0,
                head_dim,
            ));
            if layout == HeadMaskLayout::Reference {
                out.extend(
                    bias(&layer.attention_output).map(|id| Governed::blocks(0, l, id, 0, head_dim)),
                );
            }
            out.push(Governed::neurons(1, l, layer.intermediate.weight.id, 1));
            out.extend(bias(&layer.intermediate).map(|id| Governed::neurons(1, l, id, 0)));
            out.push(Governed::neurons(2, l, layer.output.weight.id, 1));
            out.extend(bias(&layer.output).map(|id| Governed::neurons(2, l, id, 0)));
        }
        out
    }
}

impl SoftMaskable for SoftMaskBert {
    fn gate_layout(&self) -> GateLayout {
        let (layers, heads, inter, hidden) = self.dims();
        GateLayout::new(vec![
            GateSpec::new("heads", layers, heads),
            GateSpec::new("intermediate", layers, inter),
            GateSpec::new("output", layers, hidden),
        ])
    }

    /// The governed parameters in the model's head layout
    /// ([`HeadMaskLayout::Semantic`] unless set by
    /// [`with_head_layout`](SoftMaskBert::with_head_layout)).
    fn governed(&self) -> Vec<Governed> {
        self.governed_with(self.head_layout)
    }
}

impl Represent<BertBatch> for SoftMaskBert {
    fn represent(&self, batch: &BertBatch, gates: &Gates) -> Result<Tensor<3>> {
        self.forward(batch, Some(gates))
    }
}
