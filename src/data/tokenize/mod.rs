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

    /// Encodes every text of a corpus, in order.
    fn encode_corpus<S: AsRef<str>>(&self, corpus: &[S]) -> Result<Vec<Vec<u32>>>
    where
        Self: Sized,
    {
        corpus.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}
