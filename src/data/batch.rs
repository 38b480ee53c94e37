//! Batch: examples into `[batch, seq]` tensors, in a seeded, reproducible order.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::group::{Example, GroupedDataset};
use crate::error::{Error, Result};
use crate::limits::MAX_TOKEN_ID;

/// A batch of examples on a device.
#[derive(Debug, Clone)]
pub struct LabelledBatch {
    /// Token ids, `[batch, seq]`.
    pub input_ids: Tensor<2, Int>,
    /// Labels, `[batch, 1]`, as the notebook's `BCELoss` expects.
    pub labels: Tensor<2>,
    /// Real (non-padding) tokens in the batch: the token count `N` of importance.
    pub real_tokens: usize,
}

impl LabelledBatch {
    /// Builds a batch from raw ids (`[batch][seq]`) and labels, checking that
    /// the batch is non-empty and rectangular and every id is below
    /// `vocab_size`. All tokens count as real.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for an empty or ragged batch or a label count that
    /// differs from the rows, [`Error::TokenOutOfVocab`] for an id at or above
    /// `vocab_size` (or above [`MAX_TOKEN_ID`]).
    pub fn from_ids(
        ids: &[Vec<u32>],
        labels: &[f32],
        vocab_size: usize,
        device: &Device,
    ) -> Result<LabelledBatch> {
        if ids.len() != labels.len() {
            return Err(Error::BadBatch(format!(
                "{} rows of ids but {} labels",
                ids.len(),
                labels.len()
            )));
        }
        let examples: Vec<Example> = ids
            .iter()
            .zip(labels)
            .map(|(ids, &label)| Example {
                input_ids: ids.clone(),
                real_len: ids.len(),
                label,
            })
            .collect();
        LabelledBatcher::new(vocab_size).batch_examples(&examples, device)
    }

    /// Batch size and sequence length.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// Fails with [`Error::TokenOutOfVocab`] for the first id at or above
/// `vocab_size`, or above [`MAX_TOKEN_ID`] whatever the vocabulary: checked
/// on the host, before any tensor is made.
pub(crate) fn check_ids<'a>(
    ids: impl IntoIterator<Item = &'a u32>,
    vocab_size: usize,
) -> Result<()> {
    let bound = id_bound(vocab_size);
    match ids.into_iter().find(|&&id| id as usize >= bound) {
        Some(&id) => Err(Error::TokenOutOfVocab {
            id: i64::from(id),
            vocab_size: bound,
        }),
        None => Ok(()),
    }
}

/// The exclusive upper bound of valid ids for `vocab_size`: the vocabulary,
/// capped at [`MAX_TOKEN_ID`]` + 1`.
pub(crate) fn id_bound(vocab_size: usize) -> usize {
    vocab_size.min(MAX_TOKEN_ID as usize + 1)
}

/// Stacks [`Example`]s into a [`LabelledBatch`], checking ids against the
/// vocabulary on the host, before any tensor is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelledBatcher {
    vocab_size: usize,
}

impl LabelledBatcher {
    /// A batcher that rejects ids at or above `vocab_size`.
    pub fn new(vocab_size: usize) -> LabelledBatcher {
        LabelledBatcher { vocab_size }
    }

    /// Stacks examples into a batch.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for no examples or examples of different lengths,
    /// [`Error::TokenOutOfVocab`] for an id past the vocabulary.
    pub fn batch_examples(&self, items: &[Example], device: &Device) -> Result<LabelledBatch> {
        let first = items
            .first()
            .ok_or_else(|| Error::BadBatch("no examples".into()))?;
        let seq = first.input_ids.len();
        if seq == 0 {
            return Err(Error::BadBatch("examples of length 0".into()));
        }
        let mut ids = Vec::with_capacity(items.len() * seq);
        let mut labels = Vec::with_capacity(items.len());
        let mut real_tokens = 0;
        for (i, e) in items.iter().enumerate() {
            if e.input_ids.len() != seq {
                return Err(Error::BadBatch(format!(
                    "example {i} has {} tokens, example 0 has {seq}",
                    e.input_ids.len()
                )));
            }
            check_ids(&e.input_ids, self.vocab_size)?;
            ids.extend(e.input_ids.iter().map(|&id| i64::from(id)));
            labels.push(e.label);
            real_tokens += e.real_len.min(seq);
        }
        let b = items.len();
        Ok(LabelledBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, [b, seq]), device),
            labels: Tensor::from_data(TensorData::new(labels, [b, 1]), device),
            real_tokens,
        })
    }
}

impl Batcher<Example, Result<LabelledBatch>> for LabelledBatcher {
    fn batch(&self, items: Vec<Example>, device: &Device) -> Result<LabelledBatch> {
        self.batch_examples(&items, device)
    }
}

/// The order in which [`GroupedDataset::batches`] visits examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    /// Corpus order.
    None,
    /// A permutation drawn from this seed. For a new order each epoch, mix the
    /// epoch into the seed (e.g. `seed + epoch`).
    Seeded(u64),
}

/// An iterator over the batches of one pass through a [`GroupedDataset`].
pub struct Batches<'a> {
    dataset: &'a GroupedDataset,
    batcher: LabelledBatcher,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    device: Device,
}

impl GroupedDataset {
    /// One pass over the dataset in batches of `batch_size` (the last may be
    /// smaller, as PyTorch's `DataLoader` keeps it), ids checked against
    /// `vocab_size`.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask::{GroupConfig, GroupedDataset, Shuffle};
    ///
    /// let ids = vec![(0..10).collect::<Vec<u32>>()];
    /// let data = GroupedDataset::new(&ids, &GroupConfig::new(2))?;
    /// let device = burn::tensor::Device::default();
    /// let batches: Vec<_> = data
    ///     .batches(2, Shuffle::Seeded(1), 10, &device)?
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(batches.len(), 3);
    /// assert_eq!(batches[2].dims(), [1, 2]);
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle: Shuffle,
        vocab_size: usize,
        device: &Device,
    ) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::ZeroSize { what: "batch_size" });
        }
        let mut order: Vec<usize> = (0..self.examples().len()).collect();
        if let Shuffle::Seeded(seed) = shuffle {
            order.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        Ok(Batches {
            dataset: self,
            batcher: LabelledBatcher::new(vocab_size),
            order,
            batch_size,
            next: 0,
            device: device.clone(),
        })
    }
}

impl Batches<'_> {
    /// The example indices of each batch, in order.
    pub fn plan(&self) -> Vec<Vec<usize>> {
        self.order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<LabelledBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let idx = self
            .order
            .get(self.next..)?
            .chunks(self.batch_size)
            .next()?;
        self.next += idx.len();
        let examples: Vec<Example> = idx
            .iter()
            .map(|&i| self.dataset.examples()[i].clone())
            .collect();
        Some(self.batcher.batch_examples(&examples, &self.device))
    }
}

impl crate::gate::TokenCount for LabelledBatch {
    fn token_count(&self) -> usize {
        self.real_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::group::GroupConfig;

    #[test]
    fn seeded_order_is_a_reproducible_permutation() {
        let ids = vec![(0..40).collect::<Vec<u32>>()];
        let d = GroupedDataset::new(&ids, &GroupConfig::new(4)).unwrap();
        let dev = Device::default();
        let a = d.batches(3, Shuffle::Seeded(5), 40, &dev).unwrap().plan();
        let b = d.batches(3, Shuffle::Seeded(5), 40, &dev).unwrap().plan();
        assert_eq!(a, b);
        let mut all: Vec<usize> = a.concat();
        assert_ne!(all, (0..10).collect::<Vec<_>>());
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    }

    #[test]
    fn batch_values_follow_the_plan() {
        let ids = vec![(0..6).collect::<Vec<u32>>()];
        let d = GroupedDataset::new(&ids, &GroupConfig::new(2)).unwrap();
        let dev = Device::default();
        let batches = d.batches(2, Shuffle::None, 6, &dev).unwrap();
        let got: Vec<Vec<i64>> = batches
            .map(|b| {
                b.unwrap()
                    .input_ids
                    .into_data()
                    .convert::<i64>()
                    .try_to_vec()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, vec![vec![0, 1, 2, 3], vec![4, 5]]);
    }
}
