//! Model: networks whose units carry gates.
//!
//! [`SoftMaskNet`] is the notebook's network; [`SoftMaskBert`] a gated BERT encoder. Any other model joins the pipeline
//! by implementing [`SoftMaskable`](crate::SoftMaskable) (its gates and the
//! parameters they govern) and, for the KL proxies, [`Represent`].

pub mod bert;
mod dropout;
mod mlp;

pub use bert::{BertBatch, BertConfig, HeadMaskLayout, MlmLoss, SoftMaskBert};
pub use dropout::{Dropout, DropoutConfig};
pub use mlp::{SoftMaskNet, SoftMaskNetConfig};

use burn::tensor::Tensor;

use crate::{Gates, Result};

/// A model that maps a batch to a gated representation `[batch, seq, hidden]`:
/// what the KL importance proxies compare.
pub trait Represent<B> {
    /// The representation of `batch` with `gates` applied.
    fn represent(&self, batch: &B, gates: &Gates) -> Result<Tensor<3>>;
}
