//! Building `SoftMaskBert` from a config, from Hugging Face files, and saving it back.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::layers::{BertEmbeddings, BertLayer, BertMlmHead};
use super::{BertConfig, HeadMaskLayout, SoftMaskBert};
use crate::error::{Error, Result};
use crate::io::{HostTensor, TensorFile, to_host};
use crate::model::DropoutConfig;

/// Where parameters come from while building.
trait Source {
    /// A tensor of PyTorch shape `shape` named `name` (without prefix).
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor>;
}

/// How a parameter is initialised when it is not loaded (Hugging Face's BERT init).
#[derive(Clone, Copy)]
enum Init {
    Normal,
    Zeros,
    Ones,
}

/// Fresh parameters, drawn on the device.
struct Fresh<'a> {
    device: &'a Device,
}

impl Source for Fresh<'_> {
    fn tensor(&mut self, _name: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        let values = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal => {
                to_host(Tensor::<1>::random(
                    [n],
                    Distribution::Normal(0.0, 0.02),
                    &self.device.clone().inner(),
                ))?
                .values
            }
        };
        Ok(HostTensor {
            shape: shape.to_vec(),
            values,
        })
    }
}

/// Parameters from a checkpoint, with an optional `bert.` prefix; the MLM head
/// falls back to fresh ones when the file has none.
struct Checkpoint<'a> {
    file: TensorFile,
    path: &'a Path,
    prefix: &'static str,
    fresh: Fresh<'a>,
    head_missing: bool,
}

impl Source for Checkpoint<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        if name.starts_with("cls.") {
            if self.head_missing {
                return self.fresh.tensor(name, shape, init);
            }
            return self.file.take(name, shape, self.path);
        }
        let full = format!("{}{name}", self.prefix);
        // Old checkpoints name LayerNorm parameters gamma and beta.
        if !self.file.tensors.contains_key(&full) && name.contains("LayerNorm.") {
            let old = full
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            if self.file.tensors.contains_key(&old) {
                return self.file.take(&old, shape, self.path);
            }
        }
        self.file.take(&full, shape, self.path)
    }
}

fn param<const D: usize>(t: HostTensor, device: &Device) -> Param<Tensor<D>> {
    let tensor = Tensor::<D>::from_data(TensorData::new(t.values, t.shape), device);
    let tensor = if device.is_autodiff() {
        tensor.require_grad()
    } else {
        tensor
    };
    Param::initialized(ParamId::new(), tensor)
}

fn build(config: &BertConfig, src: &mut dyn Source, device: &Device) -> Result<SoftMaskBert> {
    if let Err(e) = config.validate() {
        return Err(Error::InvalidConfig(e));
    }
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let embedding = |src: &mut dyn Source, name: &str, rows: usize| -> Result<Embedding> {
        Ok(Embedding {
            weight: param(src.tensor(name, &[rows, h], Init::Normal)?, device),
        })
    };
    let linear = |src: &mut dyn Source, name: &str, d_in: usize, d_out: usize| -> Result<Linear> {
        let w = src.tensor(&format!("{name}.weight"), &[d_out, d_in], Init::Normal)?;
        let b = src.tensor(&format!("{name}.bias"), &[d_out], Init::Zeros)?;
        Ok(Linear {
            weight: param(w.transposed(), device),
            bias: Some(param(b, device)),
        })
    };
    let layer_norm = |src: &mut dyn Source, name: &str| -> Result<LayerNorm> {
        let mut ln = LayerNormConfig::new(h)
            .with_epsilon(config.layer_norm_eps)
            .init(device);
        ln.gamma = param(
            src.tensor(&format!("{name}.weight"), &[h], Init::Ones)?,
            device,
        );
        ln.beta = Some(param(
            src.tensor(&format!("{name}.bias"), &[h], Init::Zeros)?,
            device,
        ));
        Ok(ln)
    };
    let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
    let embeddings = BertEmbeddings {
        word_embeddings: embedding(src, "embeddings.word_embeddings.weight", config.vocab_size)?,
        position_embeddings: embedding(
            src,
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings,
        )?,
        token_type_embeddings: embedding(
            src,
            "embeddings.token_type_embeddings.weight",
            config.type_vocab_size,
        )?,
        layer_norm: layer_norm(src, "embeddings.LayerNorm")?,
        dropout: hidden_dropout()?,
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        layers.push(BertLayer {
            query: linear(src, &format!("{p}.attention.self.query"), h, h)?,
            key: linear(src, &format!("{p}.attention.self.key"), h, h)?,
            value: linear(src, &format!("{p}.attention.self.value"), h, h)?,
            attention_output: linear(src, &format!("{p}.attention.output.dense"), h, h)?,
            attention_layer_norm: layer_norm(src, &format!("{p}.attention.output.LayerNorm"))?,
            intermediate: linear(src, &format!("{p}.intermediate.dense"), h, i)?,
            output: linear(src, &format!("{p}.output.dense"), i, h)?,
            output_layer_norm: layer_norm(src, &format!("{p}.output.LayerNorm"))?,
            attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init()?,
            hidden_dropout: hidden_dropout()?,
            heads: config.num_attention_heads,
        });
    }
    let mlm = BertMlmHead {
        transform: linear(src, "cls.predictions.transform.dense", h, h)?,
        layer_norm: layer_norm(src, "cls.predictions.transform.LayerNorm")?,
        bias: param(
            src.tensor("cls.predictions.bias", &[config.vocab_size], Init::Zeros)?,
            device,
        ),
    };
    Ok(SoftMaskBert {
        embeddings,
        layers,
        mlm,
        config: config.clone(),
        head_layout: HeadMaskLayout::default(),
    })
}

impl BertConfig {
    /// A randomly initialised model (Hugging Face's init: normal(0, 0.02)
    /// weights, zero biases, LayerNorm ones and zeros).
    pub fn init(&self, device: &Device) -> Result<SoftMaskBert> {
        build(self, &mut Fresh { device }, device)
    }
}

impl SoftMaskBert {
    /// Loads a Hugging Face BERT checkpoint folder: `config.json` and
    /// `model.safetensors` of a `BertModel` or `BertForMaskedLM`, with or
    /// without the `bert.` prefix. Without an MLM head, one is initialised;
    /// the decoder is always tied to the word embeddings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad config, [`Error::CorruptFile`] for an
    /// unreadable checkpoint, [`Error::MissingTensor`] or
    /// [`Error::ShapeMismatch`] for one that disagrees with its config.
    pub fn from_pretrained(
        folder: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(SoftMaskBert, BertConfig)> {
        let folder = folder.as_ref();
        let config = BertConfig::load(folder.join("config.json"))?;
        let model = Self::from_safetensors(&config, folder.join("model.safetensors"), device)?;
        Ok((model, config))
    }

    /// Loads weights in Hugging Face names from a safetensors file, for `config`.
    pub fn from_safetensors(
        config: &BertConfig,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<SoftMaskBert> {
        let path = path.as_ref();
        let file = TensorFile::load(path)?;
        let prefix = if file
            .tensors
            .contains_key("bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let head_missing = !file
            .tensors
            .contains_key("cls.predictions.transform.dense.weight");
        let mut src = Checkpoint {
            file,
            path,
            prefix,
            fresh: Fresh { device },
            head_missing,
        };
        build(config, &mut src, device)
    }

    /// Saves a Hugging Face checkpoint folder, `config.json` and
    /// `model.safetensors`, that [`from_pretrained`](Self::from_pretrained)
    /// (and `transformers`' `BertForMaskedLM.from_pretrained`) loads. Each
    /// file is written atomically; `dir` must exist.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.config.save(dir.join("config.json"))?;
        self.save_safetensors(dir.join("model.safetensors"))
    }

    /// Saves the weights as a `BertForMaskedLM` safetensors file in Hugging
    /// Face names (`bert.` prefix, PyTorch `[out, in]` layouts, decoder tied so
    /// not stored), atomically.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        TensorFile::from(self.named_tensors()?).save(path.as_ref())
    }

    /// Every parameter copied to the host, by its Hugging Face
    /// `BertForMaskedLM` name, in PyTorch layouts (dense weights `[out, in]`):
    /// exactly what [`save_safetensors`](Self::save_safetensors) writes.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut tensors = BTreeMap::new();
        let mut put = |name: String, t: HostTensor| {
            tensors.insert(name, t);
        };
        let e = &self.embeddings;
        put(
            "bert.embeddings.word_embeddings.weight".into(),
            to_host(e.word_embeddings.weight.val())?,
        );
        put(
            "bert.embeddings.position_embeddings.weight".into(),
            to_host(e.position_embeddings.weight.val())?,
        );
        put(
            "bert.embeddings.token_type_embeddings.weight".into(),
            to_host(e.token_type_embeddings.weight.val())?,
        );
        let mut linears: Vec<(String, &Linear)> = Vec::new();
        let mut norms: Vec<(String, &LayerNorm)> =
            vec![("bert.embeddings.LayerNorm".into(), &e.layer_norm)];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("bert.encoder.layer.{l}");
            norms.extend([
                (
                    format!("{p}.attention.output.LayerNorm"),
                    &layer.attention_layer_norm,
                ),
                (format!("{p}.output.LayerNorm"), &layer.output_layer_norm),
            ]);
            linears.extend([
                (format!("{p}.attention.self.query"), &layer.query),
                (format!("{p}.attention.self.key"), &layer.key),
                (format!("{p}.attention.self.value"), &layer.value),
                (
                    format!("{p}.attention.output.dense"),
                    &layer.attention_output,
                ),
                (format!("{p}.intermediate.dense"), &layer.intermediate),
                (format!("{p}.output.dense"), &layer.output),
            ]);
        }
        norms.push((
            "cls.predictions.transform.LayerNorm".into(),
            &self.mlm.layer_norm,
        ));
        linears.push((
            "cls.predictions.transform.dense".into(),
            &self.mlm.transform,
        ));
        for (name, ln) in norms {
            put(format!("{name}.weight"), to_host(ln.gamma.val())?);
            if let Some(b) = &ln.beta {
                put(format!("{name}.bias"), to_host(b.val())?);
            }
        }
        for (name, lin) in linears {
            put(
                format!("{name}.weight"),
                to_host(lin.weight.val())?.transposed(),
            );
            if let Some(b) = &lin.bias {
                put(format!("{name}.bias"), to_host(b.val())?);
            }
        }
        put("cls.predictions.bias".into(), to_host(self.mlm.bias.val())?);
        Ok(tensors)
    }

    /// The same model with every dropout (embeddings, attention
    /// probabilities, block outputs) set to `p`: 0 for deterministic passes
    /// that keep autodiff, which burn's `valid()` drops.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `p` outside `[0, 1)`.
    pub fn with_dropout(mut self, p: f64) -> Result<SoftMaskBert> {
        let dropout = DropoutConfig::new(p).init()?;
        self.config = self.config.with_dropout(p);
        self.embeddings.dropout = dropout.clone();
        for layer in &mut self.layers {
            layer.attention_dropout = dropout.clone();
            layer.hidden_dropout = dropout.clone();
        }
        Ok(self)
    }
}
