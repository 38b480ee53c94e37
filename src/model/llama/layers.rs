//! The blocks of the gated Llama-family decoder: RoPE, grouped-query causal
//! attention, the SwiGLU MLP, the decoder layer.

use burn::module::Module;
use burn::nn::{Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use softmask_kernels::softmax;

use super::config::LlamaConfig;
use crate::error::Result;
use crate::model::weights::{Names, Weights};

/// RoPE in Hugging Face's rotate-half layout: `cos` and `sin` of
/// `position · θ^(-2j/d)`, each `[seq, head_dim]` (the half repeated).
pub(crate) fn rope_tables(
    seq: usize,
    head_dim: usize,
    theta: f64,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let half = head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|j| (1.0 / theta.powf((2 * j) as f64 / head_dim as f64)) as f32)
        .collect();
    let mut cos = Vec::with_capacity(seq * head_dim);
    let mut sin = Vec::with_capacity(seq * head_dim);
    for p in 0..seq {
        for _ in 0..2 {
            for &f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [seq, head_dim]), device),
        Tensor::from_data(TensorData::new(sin, [seq, head_dim]), device),
    )
}

/// `x · cos + rotate_half(x) · sin` for `x` `[batch, heads, seq, head_dim]`.
fn rotate(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let first = x.clone().slice([0..b, 0..h, 0..s, 0..half]);
    let second = x.clone().slice([0..b, 0..h, 0..s, half..d]);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos.clone().unsqueeze::<4>() + rotated * sin.clone().unsqueeze::<4>()
}

/// One pre-norm decoder layer (Hugging Face's `model.layers.N`).
#[derive(Module, Debug)]
pub struct LlamaLayer {
    /// `input_layernorm`
    pub(crate) input_norm: RmsNorm,
    /// `self_attn.q_proj`
    pub(crate) q: Linear,
    /// `self_attn.k_proj`
    pub(crate) k: Linear,
    /// `self_attn.v_proj`
    pub(crate) v: Linear,
    /// `self_attn.o_proj`
    pub(crate) o: Linear,
    /// `post_attention_layernorm`
    pub(crate) post_norm: RmsNorm,
    /// `mlp.gate_proj`
    pub(crate) gate: Linear,
    /// `mlp.up_proj`
    pub(crate) up: Linear,
    /// `mlp.down_proj`
    pub(crate) down: Linear,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
}

/// One layer's gates: heads `[heads]`, intermediate `[intermediate]`.
pub(crate) struct LayerGates {
    pub heads: Tensor<1>,
    pub intermediate: Tensor<1>,
}

impl LlamaLayer {
    /// The block from `vb` (at `model.layers.N`), for `config`.
    pub(crate) fn load(vb: &Weights, config: &LlamaConfig) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.rms_norm_eps,
        );
        let kv = config.kv_heads() * config.head_dim();
        let bias = config.qkv_bias();
        Ok(LlamaLayer {
            input_norm: vb.rms_norm("input_layernorm", h, eps)?,
            q: vb.linear_with("self_attn.q_proj", h, h, bias)?,
            k: vb.linear_with("self_attn.k_proj", h, kv, bias)?,
            v: vb.linear_with("self_attn.v_proj", h, kv, bias)?,
            o: vb.linear_with("self_attn.o_proj", h, h, config.attention_bias)?,
            post_norm: vb.rms_norm("post_attention_layernorm", h, eps)?,
            gate: vb.linear_with("mlp.gate_proj", h, i, false)?,
            up: vb.linear_with("mlp.up_proj", h, i, false)?,
            down: vb.linear_with("mlp.down_proj", i, h, false)?,
            heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
        })
    }

    /// Its tensors under the names `load` reads.
    pub(crate) fn save(&self, names: &mut Names) -> Result<()> {
        names.param("input_layernorm.weight", &self.input_norm.gamma)?;
        names.linear("self_attn.q_proj", &self.q)?;
        names.linear("self_attn.k_proj", &self.k)?;
        names.linear("self_attn.v_proj", &self.v)?;
        names.linear("self_attn.o_proj", &self.o)?;
        names.param("post_attention_layernorm.weight", &self.post_norm.gamma)?;
        names.linear("mlp.gate_proj", &self.gate)?;
        names.linear("mlp.up_proj", &self.up)?;
        names.linear("mlp.down_proj", &self.down)
    }

    /// `x` `[batch, seq, hidden]`; `mask_bias` `[batch, 1, seq, seq]` (0
    /// where a query may attend, a large negative elsewhere).
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        mask_bias: Tensor<4>,
        rope: &(Tensor<2>, Tensor<2>),
        gates: Option<LayerGates>,
    ) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let (heads, kv_heads) = (self.heads, self.kv_heads);
        let head_dim = hidden / heads;
        let group = heads / kv_heads;
        let normed = self
            .input_norm
            .forward(x.clone())
            .reshape([batch * seq, hidden]);
        let split = |t: Tensor<2>, n: usize| t.reshape([batch, seq, n, head_dim]).swap_dims(1, 2);
        let q = rotate(
            split(self.q.forward(normed.clone()), heads),
            &rope.0,
            &rope.1,
        );
        let k = rotate(
            split(self.k.forward(normed.clone()), kv_heads),
            &rope.0,
            &rope.1,
        );
        let v = split(self.v.forward(normed), kv_heads);
        // Each key/value head serves `group` consecutive query heads.
        let repeat = |t: Tensor<4>| {
            t.unsqueeze_dim::<5>(2)
                .repeat_dim(2, group)
                .reshape([batch, heads, seq, head_dim])
        };
        let (k, v) = (repeat(k), repeat(v));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f32).sqrt())
            + mask_bias;
        let mut probs = softmax(scores, 3);
        if let Some(g) = &gates {
            probs = probs * g.heads.clone().reshape([1, heads, 1, 1]);
        }
        let context = probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch * seq, hidden]);
        let x = x + self.o.forward(context).reshape([batch, seq, hidden]);

        let normed = self
            .post_norm
            .forward(x.clone())
            .reshape([batch * seq, hidden]);
        let mut act = silu(self.gate.forward(normed.clone())) * self.up.forward(normed);
        if let Some(g) = &gates {
            act = act * g.intermediate.clone().unsqueeze::<2>();
        }
        x + self.down.forward(act).reshape([batch, seq, hidden])
    }
}
