//! MLM: masked-language-model inputs and labels, seeded.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};

/// Model inputs and labels for the masked-LM loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedTokens {
    /// The ids with the selected tokens replaced, `[batch][seq]`.
    pub input_ids: Vec<Vec<u32>>,
    /// The original id at selected positions, -100 elsewhere, `[batch][seq]`.
    pub labels: Vec<Vec<i64>>,
}

/// Chooses tokens for the masked-LM loss, as BERT and Hugging Face's
/// `DataCollatorForLanguageModeling` do: each real, non-special token is
/// selected with probability 0.15; of the selected, 80% become the mask
/// token, 10% a random token, 10% stay. Labels hold the original id at
/// selected positions and -100 elsewhere. Seeded: the same seed gives the same
/// choices.
///
/// # Example
///
/// ```
/// use softmask::MlmMasker;
///
/// let mut mlm = MlmMasker::new(103, 30522, vec![0, 101, 102, 103], 7)?;
/// let ids = vec![vec![101, 2000, 2001, 2002, 102, 0]];
/// let mask = vec![vec![1, 1, 1, 1, 1, 0]];
/// let masked = mlm.mask(&ids, &mask)?;
/// // Specials and padding are never selected.
/// let labels = &masked.labels[0];
/// assert_eq!((labels[0], labels[4], labels[5]), (-100, -100, -100));
/// assert_eq!(masked.input_ids[0][0], 101);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug)]
pub struct MlmMasker {
    mask_id: u32,
    vocab_size: usize,
    special_ids: Vec<u32>,
    probability: f64,
    rng: StdRng,
}

impl MlmMasker {
    /// A masker with the standard 15% selection.
    ///
    /// # Errors
    ///
    /// [`Error::TokenOutOfVocab`] when the mask id is outside the vocabulary.
    pub fn new(
        mask_id: u32,
        vocab_size: usize,
        special_ids: Vec<u32>,
        seed: u64,
    ) -> Result<MlmMasker> {
        if mask_id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab {
                id: i64::from(mask_id),
                vocab_size,
            });
        }
        Ok(MlmMasker {
            mask_id,
            vocab_size,
            special_ids,
            probability: 0.15,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Another selection probability, in `(0, 1]`.
    pub fn with_probability(mut self, probability: f64) -> Result<MlmMasker> {
        if !(probability > 0.0 && probability <= 1.0) {
            return Err(Error::InvalidConfig(format!(
                "MLM probability must lie in (0, 1], got {probability}"
            )));
        }
        self.probability = probability;
        Ok(self)
    }

    /// Masks a batch.
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] when the attention mask does not match the ids.
    pub fn mask(
        &mut self,
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<u32>],
    ) -> Result<MaskedTokens> {
        if input_ids.len() != attention_mask.len()
            || input_ids
                .iter()
                .zip(attention_mask)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err(Error::BadBatch(
                "attention_mask does not match input_ids".into(),
            ));
        }
        let mut inputs = input_ids.to_vec();
        let mut labels: Vec<Vec<i64>> = input_ids.iter().map(|r| vec![-100; r.len()]).collect();
        for ((row, mask), lab) in inputs.iter_mut().zip(attention_mask).zip(&mut labels) {
            for ((id, &m), l) in row.iter_mut().zip(mask).zip(lab.iter_mut()) {
                if m == 0
                    || self.special_ids.contains(id)
                    || !self.rng.random_bool(self.probability)
                {
                    continue;
                }
                *l = i64::from(*id);
                let r: f64 = self.rng.random();
                if r < 0.8 {
                    *id = self.mask_id;
                } else if r < 0.9 {
                    *id = self.rng.random_range(0..self.vocab_size as u32);
                }
            }
        }
        Ok(MaskedTokens {
            input_ids: inputs,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_labels_and_seeding() {
        let ids: Vec<Vec<u32>> = (0..200)
            .map(|r| {
                (0..100)
                    .map(|c| 1000 + ((r * 100 + c) % 500) as u32)
                    .collect()
            })
            .collect();
        let mask: Vec<Vec<u32>> = ids.iter().map(|r| r.iter().map(|_| 1).collect()).collect();
        let mut a = MlmMasker::new(3, 2000, vec![0, 1, 2, 3], 5).unwrap();
        let MaskedTokens {
            input_ids: inputs,
            labels,
        } = a.mask(&ids, &mask).unwrap();
        let again = MlmMasker::new(3, 2000, vec![0, 1, 2, 3], 5)
            .unwrap()
            .mask(&ids, &mask)
            .unwrap();
        assert_eq!(inputs, again.input_ids);
        let total = 20_000.0f64;
        let (mut selected, mut masked, mut kept) = (0.0f64, 0.0f64, 0.0f64);
        for ((i, l), o) in inputs
            .iter()
            .flatten()
            .zip(labels.iter().flatten())
            .zip(ids.iter().flatten())
        {
            if *l == -100 {
                assert_eq!(i, o, "unselected tokens are unchanged");
                continue;
            }
            assert_eq!(*l, i64::from(*o), "labels hold the original id");
            selected += 1.0;
            if *i == 3 {
                masked += 1.0;
            } else if i == o {
                kept += 1.0;
            }
        }
        assert!(
            (selected / total - 0.15).abs() < 0.01,
            "{}",
            selected / total
        );
        assert!(
            (masked / selected - 0.8).abs() < 0.03,
            "{}",
            masked / selected
        );
        assert!((kept / selected - 0.1).abs() < 0.03, "{}", kept / selected);
    }

    #[test]
    fn bad_inputs() {
        assert!(MlmMasker::new(10, 10, vec![], 0).is_err());
        let m = MlmMasker::new(1, 10, vec![], 0).unwrap();
        assert!(m.with_probability(0.0).is_err());
        let mut m = MlmMasker::new(1, 10, vec![], 0).unwrap();
        assert!(m.mask(&[vec![1, 2]], &[vec![1]]).is_err());
    }
}
