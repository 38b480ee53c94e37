//! Dropout masks from a counter-based hash.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// `n` values, each `1 / keep` with probability `keep` and 0 otherwise: an
/// inverted-dropout mask.
///
/// Element `i` is decided by a counter-based hash of `(seed, i)` (two rounds
/// of murmur3's 32-bit finaliser), so any range can be filled on its own and
/// the loop vectorises; chunks are shared among threads without changing the
/// result. Sequences longer than 2³² elements repeat their pattern.
///
/// # Example
///
/// ```
/// let mask = softmask_kernels::dropout_mask(1000, 0.75, 7);
/// assert!(mask.iter().all(|&v| v == 0.0 || v == 4.0 / 3.0));
/// assert_eq!(mask, softmask_kernels::dropout_mask(1000, 0.75, 7));
/// ```
pub fn dropout_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    dropout_mask_from(0, n, keep, seed)
}

/// Elements `first..first + n` of [`dropout_mask`]`(first + n, keep, seed)`,
/// without drawing the ones before: a slice of rows of a larger tensor's
/// mask (what one rank of a data-parallel run needs for its rows).
///
/// # Example
///
/// ```
/// let whole = softmask_kernels::dropout_mask(300, 0.9, 3);
/// assert_eq!(softmask_kernels::dropout_mask_from(100, 200, 0.9, 3), whole[100..]);
/// ```
pub fn dropout_mask_from(first: usize, n: usize, keep: f64, seed: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let scale = (1.0 / keep) as f32;
    let (k1, k2) = (seed as u32, (seed >> 32) as u32 ^ 0x9E37_79B9);
    let fill = |c: usize, chunk: &mut [f32]| {
        let start = first + c * CHUNK;
        for (j, v) in chunk.iter_mut().enumerate() {
            let r = fmix32(fmix32((start + j) as u32 ^ k1) ^ k2);
            *v = if r < threshold { scale } else { 0.0 };
        }
    };
    let mut mask = vec![0f32; n];
    if n <= CHUNK {
        // One chunk: no hand-off to the thread pool.
        fill(0, &mut mask);
    } else {
        mask.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| fill(c, chunk));
    }
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
        let m = dropout_mask(n, 0.8, 42);
        assert_eq!(m, dropout_mask(n, 0.8, 42));
        assert_ne!(m, dropout_mask(n, 0.8, 43));
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.25));
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - 0.8).abs() < 0.005, "{kept}");
        // An element does not depend on how much follows it, nor on threads.
        assert_eq!(dropout_mask(CHUNK, 0.8, 42), m[..CHUNK]);
        assert_eq!(dropout_mask(CHUNK + 5, 0.8, 42), m[..CHUNK + 5]);
        // The first elements of seed 42 (pins the hash: masks, hence
        // training runs, stay as they were).
        let first: Vec<bool> = m[..12].iter().map(|&v| v > 0.0).collect();
        assert_eq!(first, FIRST_OF_SEED_42);
    }

    const FIRST_OF_SEED_42: [bool; 12] = [
        true, true, true, true, true, true, false, true, true, true, true, true,
    ];
}
