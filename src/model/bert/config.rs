//! `BertConfig`: the fields of a Hugging Face BERT or RoBERTa `config.json`.

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::model::SoftMaskBert;
use crate::error::{Error, Result};
use crate::io;
use crate::limits::{MAX_LAYERS, MAX_TOKEN_ID, check_parameter_count};

/// Configuration of [`SoftMaskBert`](crate::SoftMaskBert), with the names and
/// meanings of a Hugging Face BERT or RoBERTa `config.json`.
///
/// RoBERTa (`model_type` `"roberta"`) is the same encoder with three
/// differences that follow from the field: position ids count the non-padding
/// tokens and start past `pad_token_id` (so the longest sequence is
/// `max_position_embeddings - pad_token_id - 1`), checkpoints name the encoder
/// `roberta.` and the MLM head `lm_head.` (`dense`, `layer_norm`, `bias`), and
/// there is usually one token type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// `"bert"` or `"roberta"`.
    #[serde(default = "bert")]
    pub model_type: String,
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block; `"gelu"` (exact, erf-based).
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// Dropout on embeddings and block outputs.
    #[serde(default = "point_one")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "point_one")]
    pub attention_probs_dropout_prob: f64,
    /// Length of the position table: the longest sequence the model takes.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` positions are supported.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn bert() -> String {
    "bert".into()
}
fn gelu() -> String {
    "gelu".into()
}
fn absolute() -> String {
    "absolute".into()
}
fn point_one() -> f64 {
    0.1
}
fn two() -> usize {
    2
}
fn layer_norm_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads and checks a Hugging Face `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unreadable, [`Error::InvalidConfig`] naming the field
    /// that is missing, mistyped or out of range.
    pub fn load(path: impl AsRef<Path>) -> Result<BertConfig> {
        io::read_config(path.as_ref(), BertConfig::validate)
    }

    /// Writes the configuration as `config.json` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let serialise = |e: serde_json::Error| Error::Serialization {
            what: "the BERT configuration".into(),
            reason: e.to_string(),
        };
        let mut value = serde_json::to_value(self).map_err(serialise)?;
        if let Some(map) = value.as_object_mut() {
            let class = match self.is_roberta() {
                true => "RobertaForMaskedLM",
                false => "BertForMaskedLM",
            };
            map.insert("architectures".into(), serde_json::json!([class]));
        }
        let text = serde_json::to_vec_pretty(&value).map_err(serialise)?;
        io::write_atomic(path.as_ref(), &text)
    }

    /// Checks sizes and supported options; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !["bert", "roberta"].contains(&self.model_type.as_str()) {
            return Err(format!(
                "model_type {:?}: softmask's encoder reads bert and roberta",
                self.model_type
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must lie in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(format!(
                "layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(format!(
                "num_hidden_layers {} is more than the limit of {MAX_LAYERS} \
                 (softmask::limits::MAX_LAYERS)",
                self.num_hidden_layers
            ));
        }
        if self.vocab_size > MAX_TOKEN_ID as usize + 1 {
            return Err(format!(
                "vocab_size {} is more than token ids can address ({}, \
                 softmask::limits::MAX_TOKEN_ID + 1)",
                self.vocab_size,
                MAX_TOKEN_ID as usize + 1
            ));
        }
        self.num_parameters().map_err(|e| e.to_string())?;
        if self.pad_token_id >= self.vocab_size {
            return Err(format!(
                "pad_token_id {} is not below vocab_size {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        if self.is_roberta() && self.pad_token_id + 1 >= self.max_position_embeddings {
            return Err(format!(
                "max_position_embeddings {} leaves no position past pad_token_id {} \
                 (RoBERTa's positions start at pad_token_id + 1)",
                self.max_position_embeddings, self.pad_token_id
            ));
        }
        Ok(())
    }

    /// Whether this is a RoBERTa (`model_type` `"roberta"`).
    pub fn is_roberta(&self) -> bool {
        self.model_type == "roberta"
    }

    /// The longest sequence the position table takes:
    /// `max_position_embeddings`, less `pad_token_id + 1` for RoBERTa.
    pub fn max_sequence(&self) -> usize {
        match self.is_roberta() {
            true => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
            false => self.max_position_embeddings,
        }
    }

    /// The number of parameters the model holds (the MLM head included),
    /// checked against [`MAX_PARAMETERS`](crate::limits::MAX_PARAMETERS)
    /// without overflow, before anything is allocated.
    pub fn num_parameters(&self) -> Result<usize> {
        let (h, i, l) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        check_parameter_count(
            "the model",
            &[
                // Embeddings: words, positions, token types, LayerNorm.
                &[self.vocab_size, h],
                &[self.max_position_embeddings, h],
                &[self.type_vocab_size, h],
                &[2, h],
                // Per layer: q, k, v, attention output (weights and biases),
                // two LayerNorms, intermediate and output dense layers.
                &[l, 4, h, h],
                &[l, 4, h],
                &[l, 4, h],
                &[l, h, i],
                &[l, i],
                &[l, i, h],
                &[l, h],
                // MLM head: transform, LayerNorm, decoder bias.
                &[h, h],
                &[3, h],
                &[self.vocab_size],
            ],
        )
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The same configuration with both dropouts set to `p` (0 for deterministic passes).
    pub fn with_dropout(mut self, p: f64) -> BertConfig {
        self.hidden_dropout_prob = p;
        self.attention_probs_dropout_prob = p;
        self
    }
}

impl BertConfig {
    /// A randomly initialised model (Hugging Face's init: normal(0, 0.02)
    /// weights, zero biases, LayerNorm ones and zeros).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a configuration that does not validate.
    pub fn init(&self, device: &Device) -> Result<SoftMaskBert> {
        super::checkpoint::fresh(self, device)
    }
}
