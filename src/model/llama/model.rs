//! `SoftMaskLlama`: the gated Llama-family decoder, its gates and the
//! parameters they govern, loaded from a Hugging Face folder.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use softmask_kernels::log_softmax;

use super::config::LlamaConfig;
use super::layers::{LayerGates, LlamaLayer, rope_tables};
use crate::error::{Error, Result};
use crate::gate::{GateLayout, GateSpec, Gates, Governed, SoftMaskable};
use crate::io::{HostTensor, TensorFile, ints_to_host};
use crate::model::weights::{FileSource, Names, Weights};
use crate::model::{Dropout, DropoutConfig, check_token_ids};

/// A Llama-family decoder (Llama, Qwen2, Mistral without a sliding window)
/// with per-unit gates: `heads` `[layers, query heads]` scale each head's
/// attention before `o_proj`, `intermediate` `[layers, intermediate]` scale
/// `silu(gate) · up` before `down_proj`.
///
/// Governed parameters: a query head owns its `q_proj` rows (and bias) and
/// its `o_proj` input columns; a key/value head's `k_proj`/`v_proj` rows are
/// shared by the query heads of its group and damped by the largest
/// importance among them ([`Governed::shared`]); intermediate unit `j` owns
/// row `j` of `gate_proj` and `up_proj` and column `j` of `down_proj`.
/// Embeddings, norms and the LM head are ungoverned.
#[derive(Module, Debug)]
pub struct SoftMaskLlama {
    /// `model.embed_tokens`
    pub(crate) embed: Embedding,
    /// `model.layers`
    pub(crate) layers: Vec<LlamaLayer>,
    /// `model.norm`
    pub(crate) norm: RmsNorm,
    /// `lm_head`; `None` when tied to the embeddings.
    pub(crate) lm_head: Option<Linear>,
    /// Dropout on the residual stream in [`Represent`] passes only (the KL
    /// importance proxy compares two dropout passes; these models train
    /// without dropout).
    pub(crate) proxy_dropout: Dropout,
    #[module(skip)]
    pub(crate) config: LlamaConfig,
    /// Vocabulary entries per chunk of the head in the loss; `None` for
    /// about [`HEAD_CHUNK_BYTES`] of logits.
    #[module(skip)]
    pub(crate) head_chunk: Option<usize>,
}

/// The largest logits, in bytes, the causal-LM loss computes whole
/// (`[positions, vocab]` f32); past it the head runs a chunk of the
/// vocabulary at a time, each chunk about [`HEAD_CHUNK_BYTES`] of logits.
///
/// Chunking recomputes the logits once for the backward, which costs more
/// than it saves while the whole logits are small next to the model's
/// activations: on SmolLM2 at 8 x 128 (200 MB of logits) the chunked step
/// took 5.9 s against 4.0 s whole, with a higher peak, and at 8 x 512 (800
/// MB) 34 s against 25 s; the saved attention and MLP activations set the
/// peak there, not the head.
pub const HEAD_WHOLE_BYTES: usize = 1 << 30;

/// The logits of one chunk of the head, in bytes, when it runs in chunks.
pub const HEAD_CHUNK_BYTES: usize = 32 << 20;

/// Vocabulary entries per chunk of the head for `rows` positions.
fn head_chunk_columns(rows: usize) -> usize {
    (HEAD_CHUNK_BYTES / (rows.max(1) * std::mem::size_of::<f32>())).max(1)
}

/// The dropout rate of the KL proxy's passes, unless set otherwise.
pub const PROXY_DROPOUT: f64 = 0.1;

/// The model from `vb` (Hugging Face's `model.*` and `lm_head` names).
pub(super) fn build(config: &LlamaConfig, vb: &Weights) -> Result<SoftMaskLlama> {
    config.validate().map_err(Error::InvalidConfig)?;
    let (v, h) = (config.vocab_size, config.hidden_size);
    let m = vb.pp("model");
    let embed = m.embedding("embed_tokens", v, h)?;
    let layers = (0..config.num_hidden_layers)
        .map(|l| LlamaLayer::load(&m.pp(format!("layers.{l}")), config))
        .collect::<Result<Vec<_>>>()?;
    let norm = m.rms_norm("norm", h, config.rms_norm_eps)?;
    let lm_head = match config.tie_word_embeddings {
        true => None,
        false => Some(vb.linear_with("lm_head", h, v, false)?),
    };
    Ok(SoftMaskLlama {
        embed,
        layers,
        norm,
        lm_head,
        proxy_dropout: DropoutConfig::new(PROXY_DROPOUT).init()?,
        config: config.clone(),
        head_chunk: None,
    })
}

/// The tensors of every shard that the index at `index` (Hugging Face's
/// `{"weight_map": {tensor: shard file}}`) names, read once each.
fn load_shards(folder: &Path, index: &Path) -> Result<TensorFile> {
    let corrupt = |reason: String| Error::CorruptFile {
        path: index.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(&crate::io::read(index)?)
        .map_err(|e| corrupt(format!("not a safetensors index ({e})")))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| corrupt("no weight_map".into()))?;
    let mut shards = std::collections::BTreeSet::new();
    for (name, shard) in map {
        let shard = shard
            .as_str()
            .filter(|s| !s.is_empty() && Path::new(s).file_name() == Some(std::ffi::OsStr::new(s)))
            .ok_or_else(|| corrupt(format!("{name:?} names no shard file in the folder")))?;
        shards.insert(shard.to_string());
    }
    let mut merged = TensorFile::default();
    for shard in shards {
        let file = TensorFile::load(&folder.join(&shard))?;
        for (name, t) in file.tensors {
            if merged.tensors.insert(name.clone(), t).is_some() {
                return Err(corrupt(format!("tensor {name:?} is in two shards")));
            }
        }
        merged.skipped.extend(file.skipped);
    }
    Ok(merged)
}

/// A randomly initialised model for `config`.
pub(super) fn fresh(config: &LlamaConfig, device: &Device) -> Result<SoftMaskLlama> {
    build(config, &Weights::fresh(device))
}

impl SoftMaskLlama {
    /// Loads a Hugging Face folder: `config.json` and `model.safetensors`,
    /// or the shards `model.safetensors.index.json` names (F32, F16 or BF16
    /// tensors, read as f32).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a configuration softmask does not run,
    /// [`Error::CorruptFile`] for an index that does not parse or names a
    /// shard outside the folder or a tensor twice, [`Error::MissingTensor`]
    /// or [`Error::ShapeMismatch`] for weights that do not fit it.
    pub fn from_pretrained(folder: impl AsRef<Path>, device: &Device) -> Result<SoftMaskLlama> {
        let folder = folder.as_ref();
        let config = LlamaConfig::load(folder.join("config.json"))?;
        let single = folder.join("model.safetensors");
        let index = folder.join("model.safetensors.index.json");
        let (path, file) = if !single.exists() && index.exists() {
            let file = load_shards(folder, &index)?;
            (index, file)
        } else {
            let file = TensorFile::load(&single)?;
            (single, file)
        };
        build(
            &config,
            &Weights::new(FileSource { file, path: &path }, device),
        )
    }

    /// Saves a Hugging Face folder, `config.json` and `model.safetensors`
    /// (F32, Hugging Face names, the head omitted when tied), that
    /// [`from_pretrained`](Self::from_pretrained) and `transformers` load as
    /// the same model. Each file is written atomically; `dir` must exist.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a file cannot be written.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.config.save(dir.join("config.json"))?;
        TensorFile::from(self.named_tensors()?).save(&dir.join("model.safetensors"))
    }

    /// Every parameter copied to the host, by its Hugging Face name, in
    /// PyTorch layouts: what [`save_pretrained`](Self::save_pretrained) writes.
    ///
    /// # Errors
    ///
    /// [`Error::ReadBack`] when a tensor cannot be read back.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut tensors = BTreeMap::new();
        let mut names = Names::new(&mut tensors);
        let mut m = names.pp("model");
        m.embedding("embed_tokens", &self.embed)?;
        for (l, layer) in self.layers.iter().enumerate() {
            layer.save(&mut m.pp(format!("layers.{l}")))?;
        }
        m.param("norm.weight", &self.norm.gamma)?;
        if let Some(head) = &self.lm_head {
            names.linear("lm_head", head)?;
        }
        Ok(tensors)
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Next-token logits.
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, seq]` (mask 1 for real tokens,
    ///   0 for padding; `None` for none)
    /// - output: `[batch, seq, vocab]`
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for an empty batch or a mask of another shape,
    /// [`Error::TokenOutOfVocab`] for an id past the vocabulary, gate errors
    /// for gates of another layout.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
    ) -> Result<Tensor<3>> {
        let hidden = self.hidden(input_ids, attention_mask, gates)?;
        let [b, s, h] = hidden.dims();
        let flat = hidden.reshape([b * s, h]);
        let logits = self.head_logits(flat);
        Ok(logits.reshape([b, s, self.config.vocab_size]))
    }

    /// The head's logits of `[rows, hidden]` final hidden states: `[rows,
    /// vocab]`, through `lm_head` or the tied embeddings.
    pub(crate) fn head_logits(&self, rows: Tensor<2>) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.forward(rows),
            None => rows.matmul(self.embed.weight.val().transpose()),
        }
    }

    /// The same model with the KL proxy's dropout at `p` (default
    /// [`PROXY_DROPOUT`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `p` outside `[0, 1)`.
    pub fn with_proxy_dropout(mut self, p: f64) -> Result<SoftMaskLlama> {
        self.proxy_dropout = DropoutConfig::new(p).init()?;
        Ok(self)
    }

    /// The same model with the causal-LM loss computing the head's logits
    /// for `entries` of the vocabulary at a time, whatever their size
    /// (default: whole up to [`HEAD_WHOLE_BYTES`], past it chunks of about
    /// [`HEAD_CHUNK_BYTES`]). The loss and its gradients are the same up to
    /// rounding.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for 0 entries.
    pub fn with_head_chunk(mut self, entries: usize) -> Result<SoftMaskLlama> {
        if entries == 0 {
            return Err(Error::ZeroSize {
                what: "head chunk entries",
            });
        }
        self.head_chunk = Some(entries);
        Ok(self)
    }

    /// The final hidden states (after the last norm).
    ///
    /// # Shapes
    ///
    /// - output: `[batch, seq, hidden]`
    pub fn hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
    ) -> Result<Tensor<3>> {
        self.hidden_with(input_ids, attention_mask, gates, None)
    }

    /// [`hidden`](Self::hidden), with `dropout` on the residual stream after
    /// the embeddings and after every layer.
    pub(crate) fn hidden_with(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor<3>> {
        let [b, s] = input_ids.dims();
        if b == 0 || s == 0 {
            return Err(Error::BadBatch(format!("empty batch [{b}, {s}]")));
        }
        check_token_ids(&input_ids, self.config.vocab_size)?;
        if let Some(g) = gates {
            g.check(&self.gate_layout())?;
        }
        let device = input_ids.device();
        let mask = match attention_mask {
            Some(m) if m.dims() != [b, s] => {
                return Err(Error::BadBatch(format!(
                    "attention_mask {:?} must be [{b}, {s}]",
                    m.dims()
                )));
            }
            Some(m) => m.float(),
            None => Tensor::ones([b, s], &device),
        };
        // A query attends to real keys at its position or before.
        let causal: Vec<f32> = (0..s)
            .flat_map(|q| (0..s).map(move |k| if k <= q { 1.0 } else { 0.0 }))
            .collect();
        let causal = Tensor::<2>::from_data(TensorData::new(causal, [s, s]), &device);
        let allowed = causal.reshape([1, 1, s, s]) * mask.reshape([b, 1, 1, s]);
        let mask_bias = allowed.neg().add_scalar(1.0).mul_scalar(f32::MIN);
        let head_dim = self.config.head_dim();
        let rope = rope_tables(s, head_dim, self.config.theta(), &device);
        let drop = |x: Tensor<3>| match dropout {
            Some(d) => d.forward(x),
            None => x,
        };
        let mut x = drop(self.embed.forward(input_ids));
        for (l, layer) in self.layers.iter().enumerate() {
            // The gates were checked against the layout: every row exists.
            let layer_gates = gates.and_then(|g| {
                Some(LayerGates {
                    heads: g.layer(0, l)?,
                    intermediate: g.layer(1, l)?,
                })
            });
            x = drop(layer.forward(x, mask_bias.clone(), &rope, layer_gates));
        }
        Ok(self.norm.forward(x))
    }

    /// The greedy continuation of `prompt` by `tokens` tokens (the full
    /// sequence recomputed for each, fine for a few), without gates.
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward), for an empty prompt or ids past the
    /// vocabulary.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use softmask::model::llama::SoftMaskLlama;
    ///
    /// let model = SoftMaskLlama::from_gguf(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", &Device::default())?;
    /// let next = model.greedy(&[504, 3575, 282, 4649, 314], 1)?; // "The capital of France is"
    /// assert_eq!(next, [7042]); // " Paris"
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn greedy(&self, prompt: &[u32], tokens: usize) -> Result<Vec<u32>> {
        let device = self.embed.weight.val().device().inner();
        let model = self.valid();
        let mut ids: Vec<u32> = prompt.to_vec();
        let vocab = self.config.vocab_size;
        for _ in 0..tokens {
            let n = ids.len();
            let input = Tensor::<2, Int>::from_data(
                TensorData::new(
                    ids.iter().map(|&v| i64::from(v)).collect::<Vec<_>>(),
                    [1, n],
                ),
                &device,
            );
            let logits = model.forward(input, None, None)?;
            let last = crate::io::to_host(logits.slice([0..1, n - 1..n, 0..vocab]))?.values;
            let best = (0..last.len())
                .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                .unwrap_or(0);
            ids.push(best as u32);
        }
        Ok(ids[prompt.len()..].to_vec())
    }

    /// The mean next-token cross-entropy over the real tokens after the
    /// first (labels are the inputs shifted by one; padding ignored), as
    /// `transformers`' causal-LM loss with padding labelled -100.
    ///
    /// The head runs on the predicting positions only. Past
    /// [`HEAD_WHOLE_BYTES`] of logits (or with
    /// [`with_head_chunk`](Self::with_head_chunk)) it runs a chunk of the
    /// vocabulary at a time, its backward computed chunk by chunk with the
    /// forward: the `[positions, vocab]` logits never exist whole, forward or
    /// backward.
    ///
    /// # Shapes
    ///
    /// - output: `[1]`
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward); [`Error::BadBatch`] when no position
    /// has a next token.
    pub fn causal_lm_loss(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
    ) -> Result<Tensor<1>> {
        let (rows, targets) = self.predicting_hidden(input_ids, attention_mask, gates)?;
        Ok(self.head_loss(rows, targets))
    }

    /// The final hidden states of the positions that have a next real token,
    /// in order, with those next tokens.
    fn predicting_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
    ) -> Result<(Tensor<2>, Vec<i64>)> {
        let [b, s] = input_ids.dims();
        let device = input_ids.device();
        let mask_host: Vec<i64> = match &attention_mask {
            Some(m) => ints_to_host(m.clone())?,
            None => vec![1; b * s],
        };
        let ids_host = ints_to_host(input_ids.clone())?;
        // Position (r, t) predicts (r, t + 1) where that token is real.
        let (positions, targets): (Vec<i64>, Vec<i64>) = (0..b)
            .flat_map(|r| (0..s.saturating_sub(1)).map(move |t| (r, t)))
            .filter(|&(r, t)| mask_host.get(r * s + t + 1) == Some(&1))
            .map(|(r, t)| ((r * s + t) as i64, ids_host[r * s + t + 1]))
            .unzip();
        let n = positions.len();
        if n == 0 {
            return Err(Error::BadBatch(
                "no position has a next token to predict".into(),
            ));
        }
        let hidden = self.hidden(input_ids, attention_mask, gates)?;
        let h = self.config.hidden_size;
        let rows = hidden.reshape([b * s, h]).select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(positions, [n]), &device),
        );
        Ok((rows, targets))
    }

    /// The next-token logits of the positions that have a next real token,
    /// in order: what [`causal_lm_loss`](Self::causal_lm_loss) scores (here
    /// computed whole).
    ///
    /// # Shapes
    ///
    /// - output: `[predicting positions, vocab]`
    ///
    /// # Errors
    ///
    /// As [`causal_lm_loss`](Self::causal_lm_loss).
    pub fn predicting_logits(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        gates: Option<&Gates>,
    ) -> Result<Tensor<2>> {
        let (rows, _) = self.predicting_hidden(input_ids, attention_mask, gates)?;
        Ok(self.head_logits(rows))
    }

    /// The mean cross-entropy of the head's logits of `hidden` (`[n,
    /// hidden]`) against `targets` (`n` ids): whole up to
    /// [`HEAD_WHOLE_BYTES`] of logits, past it (or when
    /// [`with_head_chunk`](Self::with_head_chunk) asks) a chunk of the
    /// vocabulary at a time, so that the `[n, vocab]` logits never exist
    /// whole.
    ///
    /// The chunked path's first pass takes each row's log-sum-exp over the chunks (as
    /// flash attention combines its blocks). Under autodiff a second pass
    /// computes the gradient the loss sends to `hidden` and to the head
    /// weight, chunk by chunk, as Liger-Kernel's fused linear cross-entropy
    /// does: with `p = softmax(logits) / n`, `∂hidden = p · W - W[target] / n`
    /// and `∂W = pᵀ · hidden`, less `hidden / n` in each target's row. The
    /// returned loss is `L + (S - detach(S))` with `S = Σ hidden ⊙ ∂hidden +
    /// Σ W ⊙ ∂W`: its value is exactly `L` and its gradient exactly `L`'s,
    /// for any use of the loss downstream (only second derivatives are
    /// lost). What is not tracked (an evaluation, or a frozen head in an
    /// importance pass) gets no gradient computed.
    fn head_loss(&self, hidden: Tensor<2>, targets: Vec<i64>) -> Tensor<1> {
        let [n, h] = hidden.dims();
        let vocab = self.config.vocab_size;
        let device = hidden.device();
        let whole = n
            .saturating_mul(vocab)
            .saturating_mul(std::mem::size_of::<f32>());
        if self.head_chunk.is_none() && whole <= HEAD_WHOLE_BYTES {
            let logits = self.head_logits(hidden);
            let t = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
            return log_softmax(logits, 1)
                .gather(1, t)
                .mean()
                .neg()
                .reshape([1]);
        }
        // The head as [vocab, hidden]: the embedding table, or the
        // transpose of burn's [hidden, vocab] Linear weight.
        let weight = match &self.lm_head {
            Some(head) => head.weight.val().transpose(),
            None => self.embed.weight.val(),
        };
        let (track_hidden, track_weight) = (hidden.is_tracked(), weight.is_tracked());
        let (x, w) = (hidden.clone().detach(), weight.clone().detach());
        let step = self.head_chunk.unwrap_or_else(|| head_chunk_columns(n));
        let chunks: Vec<std::ops::Range<usize>> = (0..vocab)
            .step_by(step)
            .map(|v| v..(v + step).min(vocab))
            .collect();
        let logits = |c: &std::ops::Range<usize>| {
            x.clone()
                .matmul(w.clone().slice([c.clone(), 0..h]).transpose())
        };
        // Running max and sum of exp(logit - max) per row.
        let mut max: Option<Tensor<2>> = None;
        let mut sum = Tensor::<2>::zeros([n, 1], &device);
        for c in &chunks {
            let l = logits(c);
            let m = l.clone().max_dim(1);
            let (new_max, scaled) = match max {
                Some(old) => {
                    let new_max = old.clone().max_pair(m.clone());
                    (new_max.clone(), sum * (old - new_max).exp())
                }
                None => (m.clone(), sum),
            };
            sum = scaled + (l - new_max.clone()).exp().sum_dim(1);
            max = Some(new_max);
        }
        let lse = match max {
            Some(m) => m + sum.log(),
            None => Tensor::zeros([n, 1], &device),
        };
        let t = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &device);
        let w_target = w.clone().select(0, t.clone());
        let target_logit = (x.clone() * w_target.clone()).sum_dim(1);
        let loss = (lse.clone() - target_logit).mean().reshape([1]);
        if !(track_hidden || track_weight) {
            return loss;
        }
        let scale = 1.0 / n as f32;
        // p / n = exp(logit - lse - ln n).
        let lse_n = lse.add_scalar((n as f32).ln());
        let mut grad_hidden = w_target.mul_scalar(-scale);
        let mut grad_weight = Vec::new();
        for c in &chunks {
            let p = (logits(c) - lse_n.clone()).exp();
            if track_hidden {
                let wc = w.clone().slice([c.clone(), 0..h]);
                grad_hidden = grad_hidden + p.clone().matmul(wc);
            }
            if track_weight {
                grad_weight.push(p.transpose().matmul(x.clone()));
            }
        }
        let mut surrogate = Tensor::<1>::zeros([1], &device);
        if track_hidden {
            surrogate = surrogate + (hidden * grad_hidden).sum();
        }
        if track_weight {
            let grad_weight = Tensor::cat(grad_weight, 0).select_assign(
                0,
                t,
                x.mul_scalar(-scale),
                IndexingUpdateOp::Add,
            );
            surrogate = surrogate + (weight * grad_weight).sum();
        }
        loss + (surrogate.clone() - surrogate.detach())
    }
}

impl SoftMaskable for SoftMaskLlama {
    fn gate_layout(&self) -> GateLayout {
        let c = &self.config;
        GateLayout::new(vec![
            GateSpec::new("heads", c.num_hidden_layers, c.num_attention_heads),
            GateSpec::new("intermediate", c.num_hidden_layers, c.intermediate_size),
        ])
    }

    fn governed(&self) -> Vec<Governed> {
        let hd = self.config.head_dim();
        let group = self.config.num_attention_heads / self.config.kv_heads();
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            // burn's Linear weight is [in, out]: output rows are axis 1.
            out.push(Governed::blocks(0, l, layer.q.weight.id, 1, hd));
            out.push(Governed::blocks(0, l, layer.o.weight.id, 0, hd));
            for kv in [&layer.k, &layer.v] {
                out.push(Governed::shared(0, l, kv.weight.id, 1, hd, group));
                if let Some(b) = &kv.bias {
                    out.push(Governed::shared(0, l, b.id, 0, hd, group));
                }
            }
            if let Some(b) = &layer.q.bias {
                out.push(Governed::blocks(0, l, b.id, 0, hd));
            }
            out.push(Governed::neurons(1, l, layer.gate.weight.id, 1));
            out.push(Governed::neurons(1, l, layer.up.weight.id, 1));
            out.push(Governed::neurons(1, l, layer.down.weight.id, 0));
        }
        out
    }
}
