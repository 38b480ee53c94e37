//! Group: the notebook's `group_texts` as a burn [`Dataset`].

use burn::config::Config;
use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::limits::MAX_SEQ_LENGTH;

/// How a tokenized corpus is cut into training examples.
#[derive(Config, Debug, PartialEq)]
pub struct GroupConfig {
    /// Tokens per example (the notebook's `max_seq_length`, 50).
    pub max_seq_length: usize,
    /// Pad the last partial chunk with this id instead of dropping it. Without
    /// it, the remainder is dropped (the notebook) and a corpus shorter than one
    /// chunk is [`Error::CorpusTooShort`].
    #[config(default = "None")]
    pub pad_id: Option<u32>,
    /// Seed of the synthetic binary labels.
    #[config(default = 0)]
    pub seed: u64,
}

/// One training example: a chunk of `max_seq_length` ids and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The chunk's token ids.
    pub input_ids: Vec<u32>,
    /// How many leading ids are real tokens; the rest are padding.
    pub real_len: usize,
    /// The synthetic binary label, 0.0 or 1.0.
    pub label: f32,
}

/// The corpus concatenated and cut into equal chunks, as the notebook's
/// `group_texts` does, with seeded synthetic binary labels.
///
/// # Example
///
/// ```
/// use burn::data::dataset::Dataset;
/// use softmask::{GroupConfig, GroupedDataset};
///
/// let ids = vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]];
/// let data = GroupedDataset::new(&ids, &GroupConfig::new(3))?;
/// assert_eq!(data.len(), 2); // 7 tokens: two chunks of 3, the 7th dropped
/// assert_eq!(data.get(1)?.input_ids, vec![3, 4, 5]);
///
/// let padded = GroupedDataset::new(&ids, &GroupConfig::new(3).with_pad_id(Some(9)))?;
/// assert_eq!(padded.get(2)?.input_ids, vec![6, 9, 9]);
/// assert_eq!(padded.get(2)?.real_len, 1);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedDataset {
    examples: Vec<Example>,
    max_seq_length: usize,
}

impl GroupedDataset {
    /// Groups already tokenized texts.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for `max_seq_length` 0, [`Error::EmptyCorpus`] when the
    /// texts hold no token, [`Error::CorpusTooShort`] when they do not fill one
    /// chunk and no padding is configured, [`Error::InvalidConfig`] for a
    /// `max_seq_length` above [`MAX_SEQ_LENGTH`].
    pub fn new(texts: &[Vec<u32>], config: &GroupConfig) -> Result<GroupedDataset> {
        let len = config.max_seq_length;
        if len == 0 {
            return Err(Error::ZeroSize {
                what: "max_seq_length",
            });
        }
        if len > MAX_SEQ_LENGTH {
            return Err(Error::InvalidConfig(format!(
                "max_seq_length {len} is more than the limit of {MAX_SEQ_LENGTH} \
                 (softmask::limits::MAX_SEQ_LENGTH)"
            )));
        }
        let all: Vec<u32> = texts.iter().flatten().copied().collect();
        if all.is_empty() {
            return Err(Error::EmptyCorpus);
        }
        if all.len() < len && config.pad_id.is_none() {
            return Err(Error::CorpusTooShort {
                tokens: all.len(),
                max_seq_length: len,
            });
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let examples = all
            .chunks(len)
            .filter_map(|chunk| {
                let mut input_ids = chunk.to_vec();
                if chunk.len() < len {
                    input_ids.resize(len, config.pad_id?);
                }
                Some(Example {
                    input_ids,
                    real_len: chunk.len(),
                    label: if rng.random_bool(0.5) { 1.0 } else { 0.0 },
                })
            })
            .collect();
        Ok(GroupedDataset {
            examples,
            max_seq_length: len,
        })
    }

    /// Tokenizes a corpus with `tokenizer`, then groups it.
    pub fn from_texts<T: Tokenizer, S: AsRef<str>>(
        tokenizer: &T,
        corpus: &[S],
        config: &GroupConfig,
    ) -> Result<GroupedDataset> {
        Self::new(&tokenizer.encode_corpus(corpus)?, config)
    }

    /// Replaces the synthetic labels, one per example (e.g. labels from elsewhere).
    pub fn with_labels(mut self, labels: &[f32]) -> Result<GroupedDataset> {
        if labels.len() != self.examples.len() {
            return Err(Error::ShapeMismatch {
                what: "labels".into(),
                expected: format!("{} labels, one per example", self.examples.len()),
                actual: format!("{}", labels.len()),
            });
        }
        for (e, &l) in self.examples.iter_mut().zip(labels) {
            e.label = l;
        }
        Ok(self)
    }

    /// Tokens per example.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// All examples, in corpus order.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }
}

impl Dataset<Example, Error> for GroupedDataset {
    fn get(&self, index: usize) -> Result<Example> {
        self.examples
            .get(index)
            .cloned()
            .ok_or(Error::IndexOutOfRange {
                index,
                len: self.examples.len(),
            })
    }

    fn len(&self) -> usize {
        self.examples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_multiple_keeps_everything() {
        let d = GroupedDataset::new(&[vec![1, 2, 3, 4]], &GroupConfig::new(2)).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.examples().iter().all(|e| e.real_len == 2));
    }

    #[test]
    fn labels_are_seeded_and_binary() {
        let ids = vec![(0..400).collect::<Vec<u32>>()];
        let a = GroupedDataset::new(&ids, &GroupConfig::new(4).with_seed(3)).unwrap();
        let b = GroupedDataset::new(&ids, &GroupConfig::new(4).with_seed(3)).unwrap();
        let c = GroupedDataset::new(&ids, &GroupConfig::new(4).with_seed(4)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let ones = a.examples().iter().filter(|e| e.label == 1.0).count();
        assert!(
            a.examples()
                .iter()
                .all(|e| e.label == 0.0 || e.label == 1.0)
        );
        assert!((20..80).contains(&ones), "{ones} ones of 100");
    }

    #[test]
    fn short_corpus_padded_into_one_chunk() {
        let d =
            GroupedDataset::new(&[vec![7, 8]], &GroupConfig::new(5).with_pad_id(Some(0))).unwrap();
        assert_eq!(d.examples()[0].input_ids, vec![7, 8, 0, 0, 0]);
        assert_eq!(d.examples()[0].real_len, 2);
    }

    #[test]
    fn get_past_the_end_is_an_error() {
        let d = GroupedDataset::new(&[vec![1, 2]], &GroupConfig::new(2)).unwrap();
        assert!(matches!(
            d.get(1),
            Err(Error::IndexOutOfRange { index: 1, len: 1 })
        ));
    }
}
