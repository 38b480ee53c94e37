//! Loading `SoftMaskLlama` from a GGUF file (llama.cpp's `llama`
//! architecture): the configuration from the metadata, the tensors
//! dequantized and renamed to Hugging Face's, and the query and key rows
//! that llama.cpp permutes for interleaved rotary pairs put back in the
//! rotate-half layout.

use std::path::Path;

use burn::tensor::Device;

use super::config::LlamaConfig;
use super::model::{SoftMaskLlama, build};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufValue};
use crate::io::HostTensor;
use crate::model::weights::{Init, Source, Weights};

impl LlamaConfig {
    /// The configuration a GGUF file of architecture `llama` describes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for another architecture, a missing or
    /// malformed key (named), or a configuration that does not validate.
    pub fn from_gguf(file: &GgufFile) -> Result<LlamaConfig> {
        let arch = file.get("general.architecture").and_then(GgufValue::as_str);
        if arch != Some("llama") {
            return Err(Error::InvalidConfig(format!(
                "GGUF architecture {arch:?}: softmask's decoder reads \"llama\" files"
            )));
        }
        let key = |k: &str| {
            file.get(&format!("llama.{k}"))
                .ok_or_else(|| Error::InvalidConfig(format!("the GGUF file has no llama.{k}")))
        };
        let size = |k: &str| -> Result<usize> {
            key(k)?
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| Error::InvalidConfig(format!("llama.{k} is not a size")))
        };
        let real = |k: &str| -> Result<f64> {
            key(k)?
                .as_f64()
                .ok_or_else(|| Error::InvalidConfig(format!("llama.{k} is not a number")))
        };
        let vocab_size = file
            .get("tokenizer.ggml.tokens")
            .and_then(GgufValue::as_array)
            .map(<[GgufValue]>::len)
            .or_else(|| file.tensor_info("token_embd.weight").map(|t| t.shape[0]))
            .ok_or_else(|| Error::InvalidConfig("the GGUF file gives no vocabulary size".into()))?;
        let heads = size("attention.head_count")?;
        // llama.cpp states scaled RoPE as rope.scaling.type, or for Llama 3.1
        // as a rope_freqs tensor; either is refused by validate.
        let scaling = match file
            .get("llama.rope.scaling.type")
            .and_then(GgufValue::as_str)
        {
            Some(kind) => Some(serde_json::json!({ "rope_type": kind })),
            None if file.tensor_info("rope_freqs.weight").is_some() => {
                Some(serde_json::json!({ "rope_type": "llama3" }))
            }
            None => None,
        };
        let config = LlamaConfig {
            model_type: "llama".into(),
            vocab_size,
            hidden_size: size("embedding_length")?,
            intermediate_size: size("feed_forward_length")?,
            num_hidden_layers: size("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(size("attention.head_count_kv").unwrap_or(heads)),
            rms_norm_eps: real("attention.layer_norm_rms_epsilon")?,
            rope_theta: Some(real("rope.freq_base").unwrap_or(10000.0)),
            rope_parameters: None,
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            attention_bias: false,
            max_position_embeddings: size("context_length").unwrap_or(2048),
            sliding_window: None,
            use_sliding_window: false,
            hidden_act: "silu".into(),
            // Optional, but a malformed one is refused like any other key.
            head_dim_stated: match file.get("llama.attention.key_length") {
                Some(_) => Some(size("attention.key_length")?),
                None => None,
            },
            mlp_bias: false,
            rope_scaling: scaling,
        };
        config.validate().map_err(Error::InvalidConfig)?;
        Ok(config)
    }
}

/// llama.cpp's name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        let (layer, part) = rest.split_once('.')?;
        let part = match part {
            "input_layernorm.weight" => "attn_norm.weight".to_string(),
            "post_attention_layernorm.weight" => "ffn_norm.weight".to_string(),
            p => {
                let (module, leaf) = p.rsplit_once('.')?;
                let module = match module {
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.o_proj" => "attn_output",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    _ => return None,
                };
                format!("{module}.{leaf}")
            }
        };
        return Some(format!("blk.{layer}.{part}"));
    }
    Some(
        match hf {
            "model.embed_tokens.weight" => "token_embd.weight",
            "model.norm.weight" => "output_norm.weight",
            "lm_head.weight" => "output.weight",
            _ => return None,
        }
        .to_string(),
    )
}

/// Undoes llama.cpp's permutation of query/key rows for `heads` heads: its
/// row `(h, d, t)` is Hugging Face's row `(h, t, d)` (`t` the half of the
/// rotary pair, `d` the index within it).
fn unpermute(t: HostTensor, heads: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols: usize = t.shape[1..].iter().product();
    let dim = rows / heads / 2;
    let mut values = vec![0.0; t.values.len()];
    for h in 0..heads {
        for d in 0..dim {
            for half in 0..2 {
                let from = h * 2 * dim + d * 2 + half;
                let to = h * 2 * dim + half * dim + d;
                values[to * cols..(to + 1) * cols]
                    .copy_from_slice(&t.values[from * cols..(from + 1) * cols]);
            }
        }
    }
    HostTensor {
        shape: t.shape,
        values,
    }
}

/// Tensors of a GGUF file, by Hugging Face name, dequantized to f32.
struct GgufSource<'a> {
    file: &'a GgufFile,
    path: &'a Path,
    heads: usize,
    kv_heads: usize,
}

impl Source for GgufSource<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<HostTensor> {
        let missing = || Error::MissingTensor {
            name: name.to_string(),
            path: self.path.to_path_buf(),
        };
        let gguf = gguf_name(name).ok_or_else(missing)?;
        if self.file.tensor_info(&gguf).is_none() {
            return Err(Error::MissingTensor {
                name: gguf,
                path: self.path.to_path_buf(),
            });
        }
        let t = self.file.read(&gguf)?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                what: format!("tensor {gguf:?} in {}", self.path.display()),
                expected: format!("{shape:?}"),
                actual: format!("{:?}", t.shape),
            });
        }
        if let Some(v) = t.values.iter().find(|v| !v.is_finite()) {
            return Err(Error::CorruptFile {
                path: self.path.to_path_buf(),
                reason: format!("tensor {gguf:?} holds {v}"),
            });
        }
        Ok(if gguf.contains(".attn_q.") {
            unpermute(t, self.heads)
        } else if gguf.contains(".attn_k.") {
            unpermute(t, self.kv_heads)
        } else {
            t
        })
    }
}

impl SoftMaskLlama {
    /// Loads a GGUF file of architecture `llama` (SmolLM2, Llama 2 and 3…):
    /// its configuration from the metadata, every tensor dequantized to f32
    /// (see [`crate::gguf`]), the query and key rows put back in Hugging
    /// Face's rotate-half layout. The LM head is tied when the file has no
    /// `output.weight`.
    ///
    /// # Errors
    ///
    /// As [`GgufFile::open`] and [`LlamaConfig::from_gguf`];
    /// [`Error::MissingTensor`], [`Error::ShapeMismatch`] or
    /// [`Error::CorruptFile`] for tensors that do not fit the configuration.
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<SoftMaskLlama> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let src = GgufSource {
            file: &file,
            path,
            heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
        };
        build(&config, &Weights::new(src, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpps() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            (
                "model.layers.3.self_attn.q_proj.weight",
                "blk.3.attn_q.weight",
            ),
            (
                "model.layers.0.self_attn.o_proj.weight",
                "blk.0.attn_output.weight",
            ),
            (
                "model.layers.12.mlp.down_proj.weight",
                "blk.12.ffn_down.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary.weight"), None);
    }

    #[test]
    fn unpermuting_puts_each_rotary_half_together() {
        // One head of 4 rows (pairs interleaved: d0t0 d0t1 d1t0 d1t1), 1 column.
        let t = HostTensor {
            shape: vec![4, 1],
            values: vec![0.0, 10.0, 1.0, 11.0],
        };
        assert_eq!(unpermute(t, 1).values, [0.0, 1.0, 10.0, 11.0]);
    }
}
