//! Building `SoftMaskBert` from a config, from Hugging Face files, and saving it back.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

use super::layers::{BertEmbeddings, BertLayer, BertMlmHead};
use super::{BertConfig, HeadMaskLayout, SoftMaskBert};
use crate::error::{Error, Result};
use crate::io::{HostTensor, TensorFile};
use crate::model::DropoutConfig;
use crate::model::weights::{Fresh, Init, Names, Source, Weights};

/// RoBERTa's name for the MLM-head parameter BERT calls `name`
/// (`cls.predictions.transform.dense.weight` is `lm_head.dense.weight`, and
/// so on); `None` for a name outside the head.
fn roberta_head(name: &str) -> Option<String> {
    let rest = name.strip_prefix("cls.predictions.")?;
    let rest = match rest.strip_prefix("transform.") {
        Some(t) => t.replacen("LayerNorm.", "layer_norm.", 1),
        None => rest.to_string(),
    };
    Some(format!("lm_head.{rest}"))
}

/// Parameters from a checkpoint, with an optional `bert.` (or `roberta.`)
/// prefix; the MLM head falls back to fresh ones when the file has none.
struct Checkpoint<'a> {
    file: TensorFile,
    path: &'a Path,
    prefix: &'static str,
    roberta: bool,
    fresh: Fresh,
    head_missing: bool,
}

impl Source for Checkpoint<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        if name.starts_with("cls.") {
            if self.head_missing {
                return self.fresh.tensor(name, shape, init);
            }
            let stored = match self.roberta {
                true => roberta_head(name).unwrap_or_else(|| name.to_string()),
                false => name.to_string(),
            };
            return self.file.take(&stored, shape, self.path);
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

/// The model from `vb`: Hugging Face's `embeddings`, `encoder.layer.N` and
/// `cls.predictions`, in that order (the order fresh weights are drawn in).
fn build(config: &BertConfig, vb: &Weights) -> Result<SoftMaskBert> {
    if let Err(e) = config.validate() {
        return Err(Error::InvalidConfig(e));
    }
    let embeddings = BertEmbeddings::load(&vb.pp("embeddings"), config)?;
    let layers = (0..config.num_hidden_layers)
        .map(|l| BertLayer::load(&vb.pp(format!("encoder.layer.{l}")), config))
        .collect::<Result<Vec<_>>>()?;
    let mlm = BertMlmHead::load(&vb.pp("cls.predictions"), config)?;
    Ok(SoftMaskBert {
        embeddings,
        layers,
        mlm,
        config: config.clone(),
        head_layout: HeadMaskLayout::default(),
    })
}

/// A randomly initialised model for `config` (Hugging Face's init).
pub(super) fn fresh(config: &BertConfig, device: &Device) -> Result<SoftMaskBert> {
    build(config, &Weights::fresh(device))
}

impl SoftMaskBert {
    /// Loads a Hugging Face BERT or RoBERTa checkpoint folder: `config.json`
    /// and `model.safetensors` of a `BertModel`, `BertForMaskedLM`,
    /// `RobertaModel` or `RobertaForMaskedLM`, with or without the `bert.`
    /// (`roberta.`) prefix. Without an MLM head, one is initialised; the
    /// decoder is always tied to the word embeddings.
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
        let roberta = config.is_roberta();
        let (prefix, head) = match roberta {
            true => ("roberta.", "lm_head.dense.weight"),
            false => ("bert.", "cls.predictions.transform.dense.weight"),
        };
        let prefix = match file
            .tensors
            .contains_key(&format!("{prefix}embeddings.word_embeddings.weight"))
        {
            true => prefix,
            false => "",
        };
        let head_missing = !file.tensors.contains_key(head);
        let src = Checkpoint {
            file,
            path,
            prefix,
            roberta,
            fresh: Fresh {
                device: device.clone(),
            },
            head_missing,
        };
        build(config, &Weights::new(src, device))
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

    /// Saves the weights as a `BertForMaskedLM` (`RobertaForMaskedLM`)
    /// safetensors file in Hugging Face names (`bert.` or `roberta.` prefix,
    /// PyTorch `[out, in]` layouts, decoder tied so not stored), atomically.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        TensorFile::from(self.named_tensors()?).save(path.as_ref())
    }

    /// Every parameter copied to the host, by its Hugging Face
    /// `BertForMaskedLM` (`RobertaForMaskedLM`) name, in PyTorch layouts
    /// (dense weights `[out, in]`): exactly what
    /// [`save_safetensors`](Self::save_safetensors) writes.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut tensors = BTreeMap::new();
        let mut names = Names::new(&mut tensors);
        let encoder = match self.config.is_roberta() {
            true => "roberta",
            false => "bert",
        };
        self.embeddings
            .save(&mut names.pp(format!("{encoder}.embeddings")))?;
        for (l, layer) in self.layers.iter().enumerate() {
            layer.save(&mut names.pp(format!("{encoder}.encoder.layer.{l}")))?;
        }
        self.mlm.save(&mut names.pp("cls.predictions"))?;
        if self.config.is_roberta() {
            tensors = tensors
                .into_iter()
                .map(|(name, t)| (roberta_head(&name).unwrap_or(name), t))
                .collect();
        }
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
