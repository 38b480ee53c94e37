//! Weights: building a model's blocks from named tensors (a checkpoint's, or
//! freshly drawn ones) and naming them back, as candle's `VarBuilder` does.
//!
//! Each block has a `load(weights, config)` that asks for its tensors by their
//! Hugging Face names (relative to the block's prefix, [`Weights::pp`]) and a
//! `save(names)` that gives them back under the same names, so the names sit
//! beside the fields they fill.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::error::Result;
use crate::io::{HostTensor, to_host};

/// How a parameter is drawn when no checkpoint gives it (Hugging Face's init).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init {
    /// Normal(0, 0.02).
    Normal,
    /// Zeros (biases).
    Zeros,
    /// Ones (LayerNorm scales).
    Ones,
}

/// Where a model's tensors come from: `name` is the full Hugging Face name
/// (without a model prefix such as `bert.`), `shape` the PyTorch shape.
pub(crate) trait Source {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor>;
}

/// Fresh parameters, drawn on the device in the order they are asked for.
pub(crate) struct Fresh {
    pub(crate) device: Device,
}

impl Source for Fresh {
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

/// Tensors from a safetensors file, by their full names (shapes and
/// finiteness checked).
pub(crate) struct FileSource<'a> {
    pub(crate) file: crate::io::TensorFile,
    pub(crate) path: &'a std::path::Path,
}

impl Source for FileSource<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<HostTensor> {
        self.file.take(name, shape, self.path)
    }
}

/// Named tensors for a model's blocks, under a prefix; cheap to clone.
#[derive(Clone)]
pub(crate) struct Weights<'a> {
    src: Rc<RefCell<dyn Source + 'a>>,
    prefix: String,
    device: Device,
}

impl<'a> Weights<'a> {
    /// Weights from `src`, as parameters on `device`.
    pub(crate) fn new(src: impl Source + 'a, device: &Device) -> Weights<'a> {
        Weights {
            src: Rc::new(RefCell::new(src)),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// Freshly drawn weights (Hugging Face's init) on `device`.
    pub(crate) fn fresh(device: &Device) -> Weights<'a> {
        Weights::new(
            Fresh {
                device: device.clone(),
            },
            device,
        )
    }

    /// The same weights under `prefix.name`.
    pub(crate) fn pp(&self, name: impl std::fmt::Display) -> Weights<'a> {
        Weights {
            src: self.src.clone(),
            prefix: join(&self.prefix, &name.to_string()),
            device: self.device.clone(),
        }
    }

    /// The tensor `name`, of PyTorch shape `shape`.
    fn host(&self, name: &str, shape: &[usize], init: Init) -> Result<HostTensor> {
        self.src
            .borrow_mut()
            .tensor(&join(&self.prefix, name), shape, init)
    }

    /// The parameter `name` of shape `shape`.
    pub(crate) fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<D>>> {
        Ok(param(self.host(name, &shape, init)?, &self.device))
    }

    /// A dense layer `name` (`weight` `[d_out, d_in]` in PyTorch's layout,
    /// `bias` `[d_out]`).
    pub(crate) fn linear(&self, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        self.linear_with(name, d_in, d_out, true)
    }

    /// A dense layer `name`, with a bias or without.
    pub(crate) fn linear_with(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear> {
        let vb = self.pp(name);
        let w = vb.host("weight", &[d_out, d_in], Init::Normal)?;
        let bias = match bias {
            true => Some(param(vb.host("bias", &[d_out], Init::Zeros)?, &self.device)),
            false => None,
        };
        Ok(Linear {
            weight: param(w.transposed(), &self.device),
            bias,
        })
    }

    /// An RMSNorm `name` (`weight` `[dim]`).
    pub(crate) fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<burn::nn::RmsNorm> {
        Ok(burn::nn::RmsNorm {
            gamma: self.pp(name).param("weight", [dim], Init::Ones)?,
            epsilon: eps,
        })
    }

    /// An embedding table `name` (`weight` `[rows, dim]`).
    pub(crate) fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding {
            weight: self.pp(name).param("weight", [rows, dim], Init::Normal)?,
        })
    }

    /// A LayerNorm `name` (`weight` and `bias` `[dim]`).
    pub(crate) fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let vb = self.pp(name);
        let mut ln = LayerNormConfig::new(dim)
            .with_epsilon(eps)
            .init(&self.device);
        ln.gamma = vb.param("weight", [dim], Init::Ones)?;
        ln.beta = Some(vb.param("bias", [dim], Init::Zeros)?);
        Ok(ln)
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A parameter of `t`'s values on `device`, tracked when the device is autodiff.
fn param<const D: usize>(t: HostTensor, device: &Device) -> Param<Tensor<D>> {
    let tensor = Tensor::<D>::from_data(TensorData::new(t.values, t.shape), device);
    let tensor = if device.is_autodiff() {
        tensor.require_grad()
    } else {
        tensor
    };
    Param::initialized(ParamId::new(), tensor)
}

/// A model's tensors by Hugging Face name, in PyTorch layouts, as the blocks'
/// `save` give them back.
pub(crate) struct Names<'a> {
    out: &'a mut BTreeMap<String, HostTensor>,
    prefix: String,
}

impl<'a> Names<'a> {
    /// Names into `out`.
    pub(crate) fn new(out: &'a mut BTreeMap<String, HostTensor>) -> Names<'a> {
        Names {
            out,
            prefix: String::new(),
        }
    }

    /// The same names under `prefix.name`.
    pub(crate) fn pp(&mut self, name: impl std::fmt::Display) -> Names<'_> {
        let prefix = join(&self.prefix, &name.to_string());
        Names {
            out: self.out,
            prefix,
        }
    }

    /// The parameter `name`.
    pub(crate) fn param<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) -> Result<()> {
        self.out.insert(join(&self.prefix, name), to_host(p.val())?);
        Ok(())
    }

    /// A dense layer `name`, its weight back in PyTorch's `[out, in]`.
    pub(crate) fn linear(&mut self, name: &str, l: &Linear) -> Result<()> {
        let full = join(&self.prefix, name);
        self.out.insert(
            format!("{full}.weight"),
            to_host(l.weight.val())?.transposed(),
        );
        if let Some(b) = &l.bias {
            self.out.insert(format!("{full}.bias"), to_host(b.val())?);
        }
        Ok(())
    }

    /// An embedding table `name`.
    pub(crate) fn embedding(&mut self, name: &str, e: &Embedding) -> Result<()> {
        self.pp(name).param("weight", &e.weight)
    }

    /// A LayerNorm `name`.
    pub(crate) fn layer_norm(&mut self, name: &str, ln: &LayerNorm) -> Result<()> {
        let mut n = self.pp(name);
        n.param("weight", &ln.gamma)?;
        if let Some(b) = &ln.beta {
            n.param("bias", b)?;
        }
        Ok(())
    }
}
