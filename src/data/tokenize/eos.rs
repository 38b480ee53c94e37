//! End of text: a tokenizer that closes every text with an end-of-text id,
//! so documents joined into chunks stay apart (a decoder's pre-training data).

use super::Tokenizer;
use crate::error::Result;

/// Any [`Tokenizer`] whose every encoded text ends with `eos`: grouped into
/// chunks, documents are joined with the end-of-text token, as decoder LLMs
/// are pre-trained.
///
/// # Example
///
/// ```
/// use softmask::{EndOfText, Tokenizer, UnknownWords, WordTokenizer};
///
/// let words = WordTokenizer::from_corpus(&["a b </s>"], UnknownWords::Error);
/// let eos = words.encode("</s>")?[0];
/// let tok = EndOfText::new(words, eos);
/// assert_eq!(tok.encode("a b")?.last(), Some(&eos));
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EndOfText<T> {
    inner: T,
    eos: u32,
}

impl<T> EndOfText<T> {
    /// `inner`, closing every text with `eos`.
    pub fn new(inner: T, eos: u32) -> EndOfText<T> {
        EndOfText { inner, eos }
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Tokenizer> Tokenizer for EndOfText<T> {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.inner.encode(text)?;
        ids.push(self.eos);
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids)
    }

    fn vocab_size(&self) -> usize {
        self.inner.vocab_size().max(self.eos as usize + 1)
    }
}
