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

use burn::tensor::{Int, Tensor};

use crate::{Error, Gates, Result};

/// A model that maps a batch to a gated representation `[batch, seq, hidden]`:
/// what the KL importance proxies compare.
pub trait Represent<B> {
    /// The representation of `batch` with `gates` applied.
    fn represent(&self, batch: &B, gates: &Gates) -> Result<Tensor<3>>;
}

/// Fails with [`Error::TokenOutOfVocab`] when an id of `input_ids` is negative
/// or at least `vocab_size`: checked before an embedding lookup could go out
/// of bounds.
pub(crate) fn check_token_ids(input_ids: &Tensor<2, Int>, vocab_size: usize) -> Result<()> {
    let lo = input_ids.clone().min().into_scalar::<i64>();
    let hi = input_ids.clone().max().into_scalar::<i64>();
    if lo < 0 || hi >= vocab_size as i64 {
        let id = if lo < 0 { lo } else { hi };
        return Err(Error::TokenOutOfVocab { id, vocab_size });
    }
    Ok(())
}
