//! `LlamaConfig`: the fields of a Hugging Face `config.json` of a Llama-family
//! decoder (`model_type` llama, qwen2 or mistral).

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::model::SoftMaskLlama;
use crate::error::{Error, Result};
use crate::io;
use crate::limits::{MAX_LAYERS, MAX_TOKEN_ID, check_parameter_count};

/// A Llama-family decoder's configuration, as Hugging Face writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `mistral`.
    pub model_type: String,
    /// Token embeddings.
    pub vocab_size: usize,
    /// The residual width.
    pub hidden_size: usize,
    /// The SwiGLU width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); the query heads by default.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm's epsilon.
    #[serde(default = "rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE's base, at the top level (older files).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE's parameters (transformers 5: `rope_theta`, `rope_type`).
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Whether the LM head is the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// q/k/v/o biases (Llama's `attention_bias`; Qwen2 always has q/k/v ones).
    #[serde(default)]
    pub attention_bias: bool,
    /// Positions the model was trained for.
    #[serde(default = "positions")]
    pub max_position_embeddings: usize,
    /// A sliding attention window (Mistral, Qwen2 with `use_sliding_window`).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether Qwen2 uses its sliding window.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// The MLP's activation: only `silu` (SwiGLU) runs.
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// The width of a head when the file states it: it must be
    /// `hidden_size / num_attention_heads`.
    #[serde(default, rename = "head_dim")]
    pub head_dim_stated: Option<usize>,
    /// Biases in the MLP (Llama's `mlp_bias`): not implemented.
    #[serde(default)]
    pub mlp_bias: bool,
    /// RoPE scaling (transformers 4's name; `rope_parameters` in 5): only
    /// none or `default` runs.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

fn silu() -> String {
    "silu".into()
}

fn rms_eps() -> f64 {
    1e-6
}

fn positions() -> usize {
    2048
}

impl LlamaConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unreadable, [`Error::InvalidConfig`] naming the
    /// field that is missing, mistyped or out of range (see [`validate`](Self::validate)).
    pub fn load(path: impl AsRef<Path>) -> Result<LlamaConfig> {
        io::read_config(path.as_ref(), LlamaConfig::validate)
    }

    /// Writes a `config.json` that `transformers` loads (both RoPE spellings,
    /// the architecture's class), atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let class = match self.model_type.as_str() {
            "qwen2" => "Qwen2ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        };
        let value = serde_json::json!({
            "architectures": [class],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.kv_heads(),
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.theta(),
            "rope_parameters": {"rope_theta": self.theta(), "rope_type": "default"},
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "max_position_embeddings": self.max_position_embeddings,
            "use_sliding_window": false,
            "torch_dtype": "float32",
        });
        let text = serde_json::to_vec_pretty(&value).map_err(|e| Error::Serialization {
            what: "the decoder configuration".into(),
            reason: e.to_string(),
        })?;
        io::write_atomic(path.as_ref(), &text)
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Whether q/k/v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// RoPE's base.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }

    /// Checks every field; the message names it.
    ///
    /// # Errors
    ///
    /// A message naming the problem: an unknown `model_type`, an
    /// activation other than silu, MLP biases, scaled RoPE or a sliding
    /// window (not implemented), a stated `head_dim` other than the
    /// hidden size over the heads, zero sizes, heads that do not divide the
    /// hidden size or key/value heads that do not divide the heads, an odd
    /// head width (RoPE rotates pairs), theta not above 0, a vocabulary past
    /// the token ids, or more parameters than `MAX_PARAMETERS`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !["llama", "qwen2", "mistral"].contains(&self.model_type.as_str()) {
            return Err(format!(
                "model_type {:?}: softmask's decoder reads llama, qwen2 and mistral",
                self.model_type
            ));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "hidden_act {:?}: softmask's decoder runs SwiGLU with silu only",
                self.hidden_act
            ));
        }
        if self.mlp_bias {
            return Err("mlp_bias: biases in the MLP are not implemented".into());
        }
        // Scaled RoPE (llama3, yarn, linear, dynamic) changes every rotation;
        // running it unscaled would give another model, so it is refused.
        for (field, value) in [
            ("rope_scaling", &self.rope_scaling),
            ("rope_parameters", &self.rope_parameters),
        ] {
            let kind = value.as_ref().and_then(|v| {
                v.get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(serde_json::Value::as_str)
            });
            if let Some(kind) = kind.filter(|k| *k != "default") {
                return Err(format!(
                    "{field} has rope_type {kind:?}: scaled rotary embeddings are not \
                     implemented (only \"default\")"
                ));
            }
        }
        let windowed = match self.model_type.as_str() {
            "qwen2" => self.use_sliding_window,
            _ => self.sliding_window.is_some(),
        };
        if windowed {
            return Err(
                "a sliding attention window is not implemented: every layer attends to all \
                 earlier positions"
                    .into(),
            );
        }
        for (what, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(format!("{what} must be at least 1"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_key_value_heads {} does not divide num_attention_heads {}",
                self.kv_heads(),
                self.num_attention_heads
            ));
        }
        if let Some(stated) = self.head_dim_stated.filter(|&d| d != self.head_dim()) {
            return Err(format!(
                "head_dim {stated} is not hidden_size / num_attention_heads = {}: heads \
                 of another width are not implemented",
                self.head_dim()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "the head width {} is odd: RoPE rotates pairs",
                self.head_dim()
            ));
        }
        let theta = self.theta();
        if !(theta.is_finite() && theta > 0.0) {
            return Err(format!("rope_theta must be above 0, got {theta}"));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!(
                "rms_norm_eps must be above 0, got {}",
                self.rms_norm_eps
            ));
        }
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(format!(
                "num_hidden_layers {} is past MAX_LAYERS",
                self.num_hidden_layers
            ));
        }
        if self.vocab_size > MAX_TOKEN_ID as usize + 1 {
            return Err(format!(
                "vocab_size {} is past MAX_TOKEN_ID",
                self.vocab_size
            ));
        }
        let (v, h, i, l) = (
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        let kv = self.kv_heads() * self.head_dim();
        check_parameter_count(
            "the model",
            &[
                &[v, h],
                &[v, h],
                &[l, h, h, 2],
                &[l, h, kv, 2],
                &[l, h, i, 3],
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// A randomly initialised model (normal(0, 0.02) weights, zero biases,
    /// RMSNorm ones).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a configuration that does not validate.
    pub fn init(&self, device: &Device) -> Result<SoftMaskLlama> {
        super::model::fresh(self, device)
    }
}
