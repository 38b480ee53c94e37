//! Model: networks whose units carry gates.
//!
//! [`SoftMaskNet`] is the notebook's network; [`SoftMaskBert`] a gated BERT
//! encoder whose blocks build themselves from Hugging Face names. A new model
//! goes here, in a folder of its own like `bert/`, and joins the pipeline by
//! implementing the ground floor's contract ([`crate::gate`]: its gates, the
//! parameters they govern, a representation for the KL proxies) and, for the
//! continual loop, [`ContinualModel`](crate::continual::ContinualModel).

pub mod bert;
mod dropout;
mod gelu;
pub mod llama;
mod mlp;
mod weights;

pub use bert::{BertBatch, BertConfig, HeadMaskLayout, SoftMaskBert};
pub use dropout::{Dropout, DropoutConfig};
pub use gelu::gelu;
pub use mlp::{SoftMaskNet, SoftMaskNetConfig, binary_cross_entropy};

use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};

/// Fails with [`Error::TokenOutOfVocab`] when an id of `input_ids` is negative
/// or at least `vocab_size`: call it in your own model's forward before an
/// embedding lookup, which panics on an id out of bounds.
///
/// Two reductions and two read-backs, whatever the batch size.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use softmask::{Error, check_token_ids};
///
/// let ids = Tensor::<2, Int>::from_ints([[1, 2], [3, 7]], &Device::default());
/// assert!(check_token_ids(&ids, 8).is_ok());
/// assert!(matches!(
///     check_token_ids(&ids, 7),
///     Err(Error::TokenOutOfVocab { id: 7, vocab_size: 7 })
/// ));
/// ```
pub fn check_token_ids(input_ids: &Tensor<2, Int>, vocab_size: usize) -> Result<()> {
    if input_ids.dims().contains(&0) {
        return Ok(());
    }
    let lo = input_ids.clone().min().into_scalar::<i64>();
    let hi = input_ids.clone().max().into_scalar::<i64>();
    if lo < 0 || hi >= i64::try_from(vocab_size).unwrap_or(i64::MAX) {
        let id = if lo < 0 { lo } else { hi };
        return Err(Error::TokenOutOfVocab { id, vocab_size });
    }
    Ok(())
}
