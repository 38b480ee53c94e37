//! `SoftMaskNet`: the notebook's gated fully connected network.

use std::collections::BTreeMap;
use std::path::Path;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::batch::LabelledBatch;
use crate::error::{Error, Result};
use crate::gate::{GateLayout, GateSpec, Gates};
use crate::gate::{Governed, Represent, SoftMaskable};
use crate::io::{HostTensor, TensorFile, to_host};
use crate::limits::{MAX_LAYERS, MAX_TOKEN_ID, check_parameter_count};
use crate::model::{Dropout, DropoutConfig, check_token_ids};

/// Configuration of [`SoftMaskNet`]; the defaults are the notebook's.
#[derive(Config, Debug, PartialEq)]
pub struct SoftMaskNetConfig {
    /// Rows of the embedding table.
    #[config(default = 300)]
    pub vocab_size: usize,
    /// Embedding width.
    #[config(default = 50)]
    pub embed_dim: usize,
    /// Widths of the gated hidden layers, in order (`fc1`, `fc2`, …).
    #[config(default = "vec![30, 10]")]
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer's ReLU.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// The notebook's network: embedding, gated dense layers with ReLU and dropout,
/// and a head that averages over the sequence.
///
/// Each hidden layer `fc{i}` has a gate of shape `[1, width]` multiplied into
/// its output before the ReLU: `relu(fc(x) * gate)`.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use softmask::{Gates, SoftMaskNetConfig, SoftMaskable};
///
/// let device = Device::default();
/// let model = SoftMaskNetConfig::new().init(&device)?;
/// let ids = Tensor::<2, Int>::from_data([[1, 2, 3], [4, 5, 6]], &device);
///
/// let score = model.forward(ids.clone(), None)?; // sigmoid score, [batch, 1]
/// assert_eq!(score.dims(), [2, 1]);
///
/// let gates = Gates::ones(&model.gate_layout(), &device);
/// let repr = model.forward_representation(ids, Some(&gates))?; // [batch, seq, 10]
/// assert_eq!(repr.dims(), [2, 3, 10]);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct SoftMaskNet {
    word_embeddings: Embedding,
    hidden: Vec<Linear>,
    head: Linear,
    dropout: Dropout,
}

impl SoftMaskNetConfig {
    /// Initialises the network, PyTorch's initialisation (embedding `N(0, 1)`,
    /// dense weights and biases `U(-1/√fan_in, 1/√fan_in)`).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for a zero size or no hidden layer,
    /// [`Error::InvalidConfig`] for a dropout outside `[0, 1)`.
    pub fn init(&self, device: &Device) -> Result<SoftMaskNet> {
        if self.vocab_size == 0 {
            return Err(Error::ZeroSize { what: "vocab_size" });
        }
        if self.embed_dim == 0 {
            return Err(Error::ZeroSize { what: "embed_dim" });
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::ZeroSize {
                what: "every hidden layer width (and the number of hidden layers)",
            });
        }
        if self.hidden.len() > MAX_LAYERS {
            return Err(Error::InvalidConfig(format!(
                "{} hidden layers are more than the limit of {MAX_LAYERS} \
                 (softmask::limits::MAX_LAYERS)",
                self.hidden.len()
            )));
        }
        if self.vocab_size > MAX_TOKEN_ID as usize + 1 {
            return Err(Error::InvalidConfig(format!(
                "vocab_size {} is more than token ids can address ({}, \
                 softmask::limits::MAX_TOKEN_ID + 1)",
                self.vocab_size,
                MAX_TOKEN_ID as usize + 1
            )));
        }
        let widths: Vec<usize> = std::iter::once(self.embed_dim)
            .chain(self.hidden.iter().copied())
            .chain([1])
            .collect();
        let embedding = [self.vocab_size, self.embed_dim];
        let mut terms: Vec<&[usize]> = vec![&embedding];
        for w in widths.windows(2) {
            // Weight [d_in, d_out] and bias [d_out].
            terms.extend([w, &w[1..]]);
        }
        check_parameter_count("the model", &terms)?;
        let dropout = DropoutConfig::new(self.dropout).init()?;
        let mut d_in = self.embed_dim;
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for &d_out in &self.hidden {
            hidden.push(LinearConfig::new(d_in, d_out).init(device));
            d_in = d_out;
        }
        Ok(SoftMaskNet {
            word_embeddings: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            hidden,
            head: LinearConfig::new(d_in, 1).init(device),
            dropout,
        })
    }
}

impl SoftMaskNet {
    /// Rows of the embedding table.
    pub fn vocab_size(&self) -> usize {
        self.word_embeddings.weight.shape().dims::<2>()[0]
    }

    /// The representation after the last gated layer.
    ///
    /// # Arguments
    ///
    /// * `input_ids` - token ids, each in `[0, vocab_size)`.
    /// * `gates` - one `[1, width]` gate per hidden layer, or `None` for no gating.
    ///
    /// # Shapes
    ///
    /// - input_ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden.last()]`
    ///
    /// # Errors
    ///
    /// [`Error::TokenOutOfVocab`] for an id outside the table (checked before the
    /// forward pass), [`Error::BadBatch`] for an empty batch, shape errors for
    /// gates of another layout.
    pub fn forward_representation(
        &self,
        input_ids: Tensor<2, Int>,
        gates: Option<&Gates>,
    ) -> Result<Tensor<3>> {
        self.check_input(&input_ids, gates)?;
        let [batch, seq] = input_ids.dims();
        // Dense layers on [batch * seq, features]: one large matrix product per
        // layer instead of a batched one whose weight gradient needs a
        // [batch, in, out] temporary and a reduction.
        let embedded = self.word_embeddings.forward(input_ids);
        let [_, _, embed] = embedded.dims();
        let mut x = embedded.reshape([batch * seq, embed]);
        for (i, fc) in self.hidden.iter().enumerate() {
            let mut y = fc.forward(x);
            if let Some(g) = gates.and_then(|g| g.tensors().get(i)) {
                y = y * g.clone();
            }
            x = self.dropout.forward(relu(y));
        }
        let [_, width] = x.dims();
        Ok(x.reshape([batch, seq, width]))
    }

    /// The notebook's score: `sigmoid(mean_seq(head(representation)))`.
    ///
    /// # Shapes
    ///
    /// - input_ids: `[batch, seq]`
    /// - output: `[batch, 1]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, gates: Option<&Gates>) -> Result<Tensor<2>> {
        let x = self.forward_representation(input_ids, gates)?;
        let [batch, _, _] = x.dims();
        Ok(sigmoid(
            self.head.forward(x).mean_dim(1).reshape([batch, 1]),
        ))
    }

    fn check_input(&self, input_ids: &Tensor<2, Int>, gates: Option<&Gates>) -> Result<()> {
        let [batch, seq] = input_ids.dims();
        if batch == 0 || seq == 0 {
            return Err(Error::BadBatch(format!(
                "input ids of shape [{batch}, {seq}]"
            )));
        }
        check_token_ids(input_ids, self.vocab_size())?;
        if let Some(g) = gates {
            g.check(&self.gate_layout())?;
        }
        Ok(())
    }

    /// Saves the weights as safetensors with the notebook's PyTorch names and
    /// layouts (`word_embeddings.weight`, `fc1.weight` as `[out, in]`, `fc1.bias`,
    /// …, `head.weight`, `head.bias`), atomically.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        TensorFile::from(self.named_tensors()?).save(path.as_ref())
    }

    /// Every parameter copied to the host, by the notebook's PyTorch name, in
    /// PyTorch layouts: exactly what [`save_safetensors`](Self::save_safetensors)
    /// writes.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "word_embeddings.weight".into(),
            host(&self.word_embeddings.weight)?,
        );
        for (name, fc) in self.linears() {
            tensors.insert(format!("{name}.weight"), host(&fc.weight)?.transposed());
            if let Some(b) = &fc.bias {
                tensors.insert(format!("{name}.bias"), host(b)?);
            }
        }
        Ok(tensors)
    }

    /// Loads weights saved by [`save_safetensors`](Self::save_safetensors) or by
    /// PyTorch (`safetensors.torch.save_file(model.state_dict())` with the
    /// notebook's names). Parameter ids are kept, so optimizer state stays attached.
    ///
    /// All or nothing: on any error the model keeps its weights.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptFile`] for a file that is not valid safetensors,
    /// [`Error::MissingTensor`] and [`Error::ShapeMismatch`] for one that does
    /// not match this network, [`Error::NonFinite`] for NaN or infinite weights.
    pub fn load_safetensors(&mut self, path: impl AsRef<Path>) -> Result<()> {
        *self = self.clone().with_weights(path.as_ref())?;
        Ok(())
    }

    fn with_weights(self, path: &Path) -> Result<SoftMaskNet> {
        let mut file = TensorFile::load(path)?;
        let names: Vec<String> = self.linears().map(|(n, _)| n).collect();
        let emb = self.word_embeddings.weight.shape().dims::<2>();
        let word_embeddings = Embedding {
            weight: load(
                self.word_embeddings.weight,
                file.take("word_embeddings.weight", &emb, path)?,
            ),
        };
        let mut linears = Vec::with_capacity(names.len());
        for (name, fc) in names.iter().zip(self.hidden.into_iter().chain([self.head])) {
            let [d_in, d_out] = fc.weight.shape().dims::<2>();
            let weight = file.take(&format!("{name}.weight"), &[d_out, d_in], path)?;
            let bias = match fc.bias {
                Some(b) => Some(load(b, file.take(&format!("{name}.bias"), &[d_out], path)?)),
                None => None,
            };
            linears.push(Linear {
                weight: load(fc.weight, weight.transposed()),
                bias,
            });
        }
        let head = linears.pop().ok_or(Error::ZeroSize { what: "head" })?;
        Ok(SoftMaskNet {
            word_embeddings,
            hidden: linears,
            head,
            dropout: self.dropout,
        })
    }

    /// The dense layers with their PyTorch names: `fc1`, `fc2`, …, `head`.
    fn linears(&self) -> impl Iterator<Item = (String, &Linear)> {
        self.hidden
            .iter()
            .enumerate()
            .map(|(i, fc)| (format!("fc{}", i + 1), fc))
            .chain([("head".to_string(), &self.head)])
    }
}

/// A parameter's values on the host.
fn host<const D: usize>(param: &Param<Tensor<D>>) -> Result<HostTensor> {
    to_host(param.val())
}

/// A parameter with new values (same id, device and gradient requirement).
fn load<const D: usize>(param: Param<Tensor<D>>, t: HostTensor) -> Param<Tensor<D>> {
    param.map(|old| {
        let new = Tensor::<D>::from_data(TensorData::new(t.values, t.shape), &old.device());
        if old.is_require_grad() {
            new.require_grad()
        } else {
            new
        }
    })
}

impl SoftMaskable for SoftMaskNet {
    fn gate_layout(&self) -> GateLayout {
        GateLayout::new(
            self.hidden
                .iter()
                .enumerate()
                .map(|(i, fc)| {
                    GateSpec::new(format!("fc{}", i + 1), 1, fc.weight.shape().dims::<2>()[1])
                })
                .collect(),
        )
    }

    fn governed(&self) -> Vec<Governed> {
        self.hidden
            .iter()
            .enumerate()
            .flat_map(|(gate, fc)| {
                let weight = Governed::neurons(gate, 0, fc.weight.id, 1);
                let bias = fc
                    .bias
                    .as_ref()
                    .map(|b| Governed::neurons(gate, 0, b.id, 0));
                std::iter::once(weight).chain(bias)
            })
            .collect()
    }
}

impl Represent<LabelledBatch> for SoftMaskNet {
    fn represent(&self, batch: &LabelledBatch, gates: &Gates) -> Result<Tensor<3>> {
        self.forward_representation(batch.input_ids.clone(), Some(gates))
    }
}

/// PyTorch's `BCELoss` (mean reduction, logs clamped at -100).
///
/// # Shapes
///
/// - probs, targets: `[batch, 1]` (any equal shapes)
/// - output: `[1]`
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) when the shapes differ.
pub fn binary_cross_entropy(probs: Tensor<2>, targets: Tensor<2>) -> Result<Tensor<1>> {
    if probs.dims() != targets.dims() {
        return Err(crate::error::Error::ShapeMismatch {
            what: "binary cross-entropy targets".into(),
            expected: format!("{:?}, the shape of the probabilities", probs.dims()),
            actual: format!("{:?}", targets.dims()),
        });
    }
    let log_p = probs.clone().log().clamp_min(-100.0);
    let log_q = probs.neg().add_scalar(1.0).log().clamp_min(-100.0);
    let pos = targets.clone() * log_p;
    let neg = targets.neg().add_scalar(1.0) * log_q;
    Ok((pos + neg).mean().neg())
}
