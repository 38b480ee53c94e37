//! Dropout whose mask is drawn by a fast seeded generator.

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor, TensorData};

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
#[derive(Module, Debug)]
pub struct Dropout {
    prob: f64,
    training: Param<Flag>,
}

/// Masks smaller than this are filled on the calling thread.
const CHUNK: usize = 1 << 16;

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
        let mask = keep_mask(shape.num_elements(), 1.0 - self.prob, seed);
        input * Tensor::<D>::from_data(TensorData::new(mask, shape), &inner)
    }
}

/// `n` values, each `1 / keep` with probability `keep` and 0 otherwise.
///
/// Element `i` is decided by a counter-based hash of `(seed, i)` (two rounds of
/// murmur3's 32-bit finaliser), so any range can be filled on its own and the
/// loop vectorises; chunks are shared among threads without changing the result.
fn keep_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let scale = (1.0 / keep) as f32;
    let (k1, k2) = (seed as u32, (seed >> 32) as u32 ^ 0x9E37_79B9);
    let mut mask = vec![0f32; n];
    let fill = |start: usize, chunk: &mut [f32]| {
        for (j, v) in chunk.iter_mut().enumerate() {
            let r = fmix32(fmix32((start + j) as u32 ^ k1) ^ k2);
            *v = if r < threshold { scale } else { 0.0 };
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || n <= CHUNK {
        fill(0, &mut mask);
        return mask;
    }
    let per_thread = n.div_ceil(threads).div_ceil(CHUNK) * CHUNK;
    std::thread::scope(|s| {
        for (t, chunk) in mask.chunks_mut(per_thread).enumerate() {
            s.spawn(move || fill(t * per_thread, chunk));
        }
    });
    mask
}

/// murmur3's 32-bit finaliser: a bijective mix with full avalanche.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_has_the_right_values_rate_and_is_chunk_deterministic() {
        let n = 3 * CHUNK + 17;
        let m = keep_mask(n, 0.8, 42);
        assert_eq!(m, keep_mask(n, 0.8, 42));
        assert_ne!(m, keep_mask(n, 0.8, 43));
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.25));
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - 0.8).abs() < 0.005, "{kept}");
        // An element does not depend on how much follows it, nor on threads.
        assert_eq!(keep_mask(CHUNK, 0.8, 42), m[..CHUNK]);
        assert_eq!(keep_mask(CHUNK + 5, 0.8, 42), m[..CHUNK + 5]);
    }

    #[test]
    fn bad_probability_is_an_error() {
        assert!(DropoutConfig::new(1.0).init().is_err());
        assert!(DropoutConfig::new(-0.1).init().is_err());
        assert!(DropoutConfig::new(f64::NAN).init().is_err());
    }
}
