//! Dropout whose mask is drawn by a fast seeded generator.

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor, TensorData};

use softmask_kernels::dropout_mask_from;

use crate::distributed::RowWindow;

use crate::error::{Error, Result};

/// Configuration of [`Dropout`].
#[derive(Config, Debug, PartialEq)]
pub struct DropoutConfig {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub prob: f64,
}

/// Inverted dropout, as burn's and PyTorch's: in training mode on an autodiff
/// device each element is zeroed with probability `prob` and the rest scaled by
/// `1 / (1 - prob)`; otherwise the identity.
///
/// burn's own dropout draws every element through a per-element sampler of a
/// cryptographic generator, which took about half of a wide forward pass. This
/// one takes a single seed from the device's generator (so `Device::seed` keeps
/// runs reproducible) and decides each element by a counter-based hash of the
/// seed and its index, in parallel; the result does not depend on the number
/// of threads. Sequences longer than 2³² elements repeat their pattern.
/// Inside a [`RowWindow`] (one rank's rows of a data-parallel batch), a
/// batch-major input (`[batch, ...]` or `[batch * seq, ...]`) takes the
/// mask those rows have in the whole batch.
#[derive(Module, Debug)]
pub struct Dropout {
    prob: f64,
    training: Param<Flag>,
}

impl DropoutConfig {
    /// The dropout module.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a probability outside `[0, 1)`.
    pub fn init(&self) -> Result<Dropout> {
        if !(0.0..1.0).contains(&self.prob) {
            return Err(Error::InvalidConfig(format!(
                "dropout must lie in [0, 1), got {}",
                self.prob
            )));
        }
        Ok(Dropout {
            prob: self.prob,
            training: Param::from_bool(true),
        })
    }
}

impl Dropout {
    /// Applies dropout.
    ///
    /// # Shapes
    ///
    /// - input: `[..., any]`
    /// - output: same as input
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let device = input.device();
        if !self.training.is_enabled() || !device.is_autodiff() || self.prob == 0.0 {
            return input;
        }
        let inner = device.inner();
        // Three uniform draws in [0, 1) give 24 random bits each.
        let seed = Tensor::<1>::random([3], Distribution::Default, &inner)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
            .iter()
            .fold(0u64, |acc, &v| {
                (acc << 24) ^ (f64::from(v) * 16_777_216.0) as u64
            });
        let shape = input.shape();
        let n = shape.num_elements();
        // A rank's rows of a larger batch take their part of its mask.
        let mask = dropout_mask_from(RowWindow::offset(n), n, 1.0 - self.prob, seed);
        input * Tensor::<D>::from_data(TensorData::new(mask, shape), &inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_probability_is_an_error() {
        assert!(DropoutConfig::new(1.0).init().is_err());
        assert!(DropoutConfig::new(-0.1).init().is_err());
        assert!(DropoutConfig::new(f64::NAN).init().is_err());
    }
}
