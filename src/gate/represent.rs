//! Represent: the gated representation the KL importance proxies compare.

use burn::tensor::Tensor;

use super::gates::Gates;
use crate::error::Result;

/// A model that maps a batch to a gated representation `[batch, seq, hidden]`:
/// what the KL importance proxies compare.
pub trait Represent<B> {
    /// The representation of `batch` with `gates` applied.
    fn represent(&self, batch: &B, gates: &Gates) -> Result<Tensor<3>>;
}
