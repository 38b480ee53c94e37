//! The blocks of the gated BERT encoder.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};
use softmask_kernels::softmax;

use super::config::BertConfig;
use crate::error::Result;
use crate::model::gelu::gelu;
use crate::model::weights::{Init, Names, Weights};
use crate::model::{Dropout, DropoutConfig};

/// Word + position + token-type embeddings, LayerNorm, dropout (Hugging
/// Face's `embeddings`).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `word_embeddings`
    pub(crate) word_embeddings: Embedding,
    /// `position_embeddings`
    pub(crate) position_embeddings: Embedding,
    /// `token_type_embeddings`
    pub(crate) token_type_embeddings: Embedding,
    /// `LayerNorm`
    pub(crate) layer_norm: LayerNorm,
    pub(crate) dropout: Dropout,
    /// RoBERTa's `padding_idx`: positions count the non-padding tokens from
    /// `padding_idx + 1`, and padding sits at `padding_idx`. `None` for BERT
    /// (positions `0..seq`).
    #[module(skip)]
    pub(crate) padding_idx: Option<i64>,
}

impl BertEmbeddings {
    /// The block from `vb` (at `embeddings`), for `config`.
    pub(crate) fn load(vb: &Weights, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(BertEmbeddings {
            word_embeddings: vb.embedding("word_embeddings", config.vocab_size, h)?,
            position_embeddings: vb.embedding(
                "position_embeddings",
                config.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: vb.embedding(
                "token_type_embeddings",
                config.type_vocab_size,
                h,
            )?,
            layer_norm: vb.layer_norm("LayerNorm", h, config.layer_norm_eps)?,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init()?,
            padding_idx: config.is_roberta().then_some(config.pad_token_id as i64),
        })
    }

    /// Its tensors under the names `load` reads.
    pub(crate) fn save(&self, names: &mut Names) -> Result<()> {
        names.embedding("word_embeddings", &self.word_embeddings)?;
        names.embedding("position_embeddings", &self.position_embeddings)?;
        names.embedding("token_type_embeddings", &self.token_type_embeddings)?;
        names.layer_norm("LayerNorm", &self.layer_norm)
    }

    pub(crate) fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = match self.padding_idx {
            // transformers' create_position_ids_from_input_ids.
            Some(pad) => {
                let real = input_ids.clone().not_equal_elem(pad).int();
                real.clone().cumsum(1) * real + pad
            }
            None => Tensor::<1, Int>::arange(0..seq as i64, &device)
                .reshape([1, seq])
                .repeat_dim(0, batch),
        };
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// One post-LayerNorm encoder layer: multi-head self-attention, then a GELU
/// feed-forward block, each with a residual connection (Hugging Face's
/// `encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention.self.query`
    pub(crate) query: Linear,
    /// `attention.self.key`
    pub(crate) key: Linear,
    /// `attention.self.value`
    pub(crate) value: Linear,
    /// `attention.output.dense`
    pub(crate) attention_output: Linear,
    /// `attention.output.LayerNorm`
    pub(crate) attention_layer_norm: LayerNorm,
    /// `intermediate.dense`
    pub(crate) intermediate: Linear,
    /// `output.dense`
    pub(crate) output: Linear,
    /// `output.LayerNorm`
    pub(crate) output_layer_norm: LayerNorm,
    pub(crate) attention_dropout: Dropout,
    pub(crate) hidden_dropout: Dropout,
    pub(crate) heads: usize,
}

/// Per-layer gates: heads `[heads]`, intermediate `[intermediate]`, output `[hidden]`.
pub(crate) struct LayerGates {
    pub heads: Tensor<1>,
    pub intermediate: Tensor<1>,
    pub output: Tensor<1>,
}

impl BertLayer {
    /// The block from `vb` (at `encoder.layer.N`), for `config`.
    pub(crate) fn load(vb: &Weights, config: &BertConfig) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(BertLayer {
            query: vb.linear("attention.self.query", h, h)?,
            key: vb.linear("attention.self.key", h, h)?,
            value: vb.linear("attention.self.value", h, h)?,
            attention_output: vb.linear("attention.output.dense", h, h)?,
            attention_layer_norm: vb.layer_norm("attention.output.LayerNorm", h, eps)?,
            intermediate: vb.linear("intermediate.dense", h, i)?,
            output: vb.linear("output.dense", i, h)?,
            output_layer_norm: vb.layer_norm("output.LayerNorm", h, eps)?,
            attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init()?,
            hidden_dropout: DropoutConfig::new(config.hidden_dropout_prob).init()?,
            heads: config.num_attention_heads,
        })
    }

    /// Its tensors under the names `load` reads.
    pub(crate) fn save(&self, names: &mut Names) -> Result<()> {
        names.linear("attention.self.query", &self.query)?;
        names.linear("attention.self.key", &self.key)?;
        names.linear("attention.self.value", &self.value)?;
        names.linear("attention.output.dense", &self.attention_output)?;
        names.layer_norm("attention.output.LayerNorm", &self.attention_layer_norm)?;
        names.linear("intermediate.dense", &self.intermediate)?;
        names.linear("output.dense", &self.output)?;
        names.layer_norm("output.LayerNorm", &self.output_layer_norm)
    }

    /// `mask_bias` is `[batch, 1, 1, seq]`: 0 for real tokens, a large negative for padding.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        mask_bias: Tensor<4>,
        gates: Option<LayerGates>,
    ) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.heads;
        let head_dim = hidden / heads;
        // Dense layers on [batch * seq, features]: one matrix product each
        // (a 3-D Linear is a batched product whose weight gradient needs a
        // [batch, in, out] temporary).
        let x = x.reshape([batch * seq, hidden]);
        let split = |t: Tensor<2>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f32).sqrt())
            + mask_bias;
        let mut probs = self.attention_dropout.forward(softmax(scores, 3));
        if let Some(g) = &gates {
            probs = probs * g.heads.clone().reshape([1, heads, 1, 1]);
        }
        let context = probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch * seq, hidden]);
        let attended = self
            .hidden_dropout
            .forward(self.attention_output.forward(context));
        let attended = self.attention_layer_norm.forward(attended + x);

        let mut inter = self.intermediate.forward(attended.clone());
        if let Some(g) = &gates {
            inter = inter * g.intermediate.clone().unsqueeze::<2>();
        }
        let mut out = self.output.forward(gelu(inter));
        if let Some(g) = &gates {
            out = out * g.output.clone().unsqueeze::<2>();
        }
        self.output_layer_norm
            .forward(self.hidden_dropout.forward(out) + attended)
            .reshape([batch, seq, hidden])
    }
}

/// The masked-LM head: dense, GELU, LayerNorm, then the decoder tied to the
/// word embeddings, plus a bias (Hugging Face's `cls.predictions`).
#[derive(Module, Debug)]
pub struct BertMlmHead {
    /// `transform.dense`
    pub(crate) transform: Linear,
    /// `transform.LayerNorm`
    pub(crate) layer_norm: LayerNorm,
    /// `bias`
    pub(crate) bias: burn::module::Param<Tensor<1>>,
}

impl BertMlmHead {
    /// The block from `vb` (at `cls.predictions`), for `config`.
    pub(crate) fn load(vb: &Weights, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(BertMlmHead {
            transform: vb.linear("transform.dense", h, h)?,
            layer_norm: vb.layer_norm("transform.LayerNorm", h, config.layer_norm_eps)?,
            bias: vb.param("bias", [config.vocab_size], Init::Zeros)?,
        })
    }

    /// Its tensors under the names `load` reads.
    pub(crate) fn save(&self, names: &mut Names) -> Result<()> {
        names.linear("transform.dense", &self.transform)?;
        names.layer_norm("transform.LayerNorm", &self.layer_norm)?;
        names.param("bias", &self.bias)
    }

    /// Logits of `[positions, hidden]` rows: `[positions, vocab]`.
    pub(crate) fn forward(&self, hidden: Tensor<2>, word_embeddings: Tensor<2>) -> Tensor<2> {
        let t = self
            .layer_norm
            .forward(gelu(self.transform.forward(hidden)));
        let [vocab, _] = word_embeddings.dims();
        t.matmul(word_embeddings.transpose()) + self.bias.val().reshape([1, vocab])
    }
}
