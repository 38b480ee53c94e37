//! The blocks of the gated BERT encoder.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};
use softmask_kernels::softmax;

use crate::model::Dropout;
use crate::model::gelu::gelu;

/// Word + position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub(crate) word_embeddings: Embedding,
    pub(crate) position_embeddings: Embedding,
    pub(crate) token_type_embeddings: Embedding,
    pub(crate) layer_norm: LayerNorm,
    pub(crate) dropout: Dropout,
}

impl BertEmbeddings {
    pub(crate) fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .repeat_dim(0, batch);
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// One post-LayerNorm encoder layer: multi-head self-attention, then a GELU
/// feed-forward block, each with a residual connection.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_output: Linear,
    pub(crate) attention_layer_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
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
/// word embeddings, plus a bias.
#[derive(Module, Debug)]
pub struct BertMlmHead {
    pub(crate) transform: Linear,
    pub(crate) layer_norm: LayerNorm,
    pub(crate) bias: burn::module::Param<Tensor<1>>,
}

impl BertMlmHead {
    /// Logits of `[positions, hidden]` rows: `[positions, vocab]`.
    pub(crate) fn forward(&self, hidden: Tensor<2>, word_embeddings: Tensor<2>) -> Tensor<2> {
        let t = self
            .layer_norm
            .forward(gelu(self.transform.forward(hidden)));
        let [vocab, _] = word_embeddings.dims();
        t.matmul(word_embeddings.transpose()) + self.bias.val().reshape([1, vocab])
    }
}
