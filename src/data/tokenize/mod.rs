//! Tokenize: text to token ids.
//!
//! [`Tokenizer`] is the small trait the rest of the pipeline needs;
//! [`WordTokenizer`] is the notebook's word-level vocabulary, built from a
//! corpus; `HfTokenizer` (feature `wordpiece`) loads a Hugging Face
//! `tokenizer.json` (WordPiece for BERT, byte-level BPE for decoder LLMs) or
//! rebuilds the byte-level BPE of a GGUF file.

mod eos;
#[cfg(feature = "wordpiece")]
mod gguf;
#[cfg(feature = "wordpiece")]
mod hf;
mod word;

pub use eos::EndOfText;
#[cfg(feature = "wordpiece")]
pub use hf::{EncodedBatch, HfTokenizer};
pub use word::{UnknownWords, WordTokenizer, split_words};

use crate::error::Result;

/// Turns text into token ids and back. Implement it to plug another tokenizer
/// (WordPiece, BPE…) into [`GroupedDataset`](crate::GroupedDataset).
pub trait Tokenizer {
    /// Encodes one text into token ids.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Decodes ids back into text.
    fn decode(&self, ids: &[u32]) -> Result<String>;

    /// Number of distinct ids this tokenizer produces: the smallest valid
    /// embedding table size.
    fn vocab_size(&self) -> usize;

    /// Checks that every id this tokenizer produces has a row in a model's
    /// embedding table of `model_vocab_size` (a model may have more rows,
    /// as Qwen2's padded tables do, never fewer).
    ///
    /// # Errors
    ///
    /// [`Error::VocabularyMismatch`](crate::Error::VocabularyMismatch) when
    /// the tokenizer has more ids than the model.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask::{Tokenizer, UnknownWords, WordTokenizer};
    ///
    /// let tok = WordTokenizer::from_corpus(&["a b c"], UnknownWords::Error);
    /// assert!(tok.check_vocabulary(tok.vocab_size()).is_ok());
    /// assert!(tok.check_vocabulary(tok.vocab_size() - 1).is_err());
    /// # Ok::<(), softmask::Error>(())
    /// ```
    fn check_vocabulary(&self, model_vocab_size: usize) -> Result<()> {
        match self.vocab_size() {
            n if n > model_vocab_size => Err(crate::error::Error::VocabularyMismatch {
                tokenizer: n,
                model: model_vocab_size,
            }),
            _ => Ok(()),
        }
    }

    /// Encodes every text of a corpus, in order.
    fn encode_corpus<S: AsRef<str>>(&self, corpus: &[S]) -> Result<Vec<Vec<u32>>>
    where
        Self: Sized,
    {
        corpus.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}
