//! A Hugging Face `tokenizers` pipeline (WordPiece for BERT, byte-level BPE
//! for decoder LLMs) from a `tokenizer.json` or a GGUF file.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};

/// A batch of encoded texts, padded to its longest row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Token ids, `[batch][seq]`, with `[CLS]`/`[SEP]` and padding.
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens (special tokens included), 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
    /// Segment ids.
    pub token_type_ids: Vec<Vec<u32>>,
    /// 1 for special tokens and padding: never chosen for MLM.
    pub special_tokens_mask: Vec<Vec<u32>>,
}

/// A Hugging Face tokenizer (a `tokenizer.json`: WordPiece for BERT,
/// byte-level BPE for Llama-family models; or one built from a GGUF file's
/// vocabulary, [`from_gguf`](Self::from_gguf)), as a [`Tokenizer`] and as a
/// batch encoder with special tokens, truncation, padding and attention masks.
#[derive(Clone)]
pub struct HfTokenizer {
    plain: tokenizers::Tokenizer,
    batched: tokenizers::Tokenizer,
    max_length: usize,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl HfTokenizer {
    /// Loads `tokenizer.json`; batches are truncated to `max_length` tokens
    /// (special tokens included) and padded to their longest row.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unreadable, [`Error::CorruptFile`] when it does not
    /// parse, [`Error::ZeroSize`] for `max_length` 0.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<HfTokenizer> {
        let path = path.as_ref();
        if max_length == 0 {
            return Err(Error::ZeroSize { what: "max_length" });
        }
        let bytes = crate::io::read(path)?;
        let plain = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!("not a tokenizer.json ({e})"),
        })?;
        HfTokenizer::new(plain, max_length)
    }

    /// Wraps `plain`, whose own padding and truncation are replaced.
    pub(super) fn new(mut plain: tokenizers::Tokenizer, max_length: usize) -> Result<HfTokenizer> {
        if max_length == 0 {
            return Err(Error::ZeroSize { what: "max_length" });
        }
        let pad = plain.get_padding().cloned();
        plain.with_padding(None);
        plain
            .with_truncation(None)
            .map_err(|e| Error::InvalidConfig(format!("tokenizer: {e}")))?;
        let mut batched = plain.clone();
        let pad_id = pad.as_ref().map_or(0, |p| p.pad_id);
        let pad_token = pad
            .as_ref()
            .map_or_else(|| "[PAD]".to_string(), |p| p.pad_token.clone());
        batched.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        batched
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| Error::InvalidConfig(format!("tokenizer: {e}")))?;
        Ok(HfTokenizer {
            plain,
            batched,
            max_length,
        })
    }

    /// Writes the tokenizer as a `tokenizer.json` (atomically) that
    /// [`from_file`](Self::from_file) and `transformers` load with the same
    /// ids for every text; one built from a GGUF file becomes an ordinary
    /// `tokenizer.json` this way. Padding and truncation are left out.
    ///
    /// # Errors
    ///
    /// [`Error::Serialization`] when it does not serialise, [`Error::Io`]
    /// when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = self
            .plain
            .to_string(true)
            .map_err(|e| Error::Serialization {
                what: "the tokenizer".into(),
                reason: e.to_string(),
            })?;
        crate::io::write_atomic(path.as_ref(), text.as_bytes())
    }

    /// Encodes a batch: special tokens, truncation to `max_length`, padding
    /// to the longest row, attention and special-token masks.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch> {
        if texts.is_empty() {
            return Err(Error::BadBatch("no texts to encode".into()));
        }
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let enc = self
            .batched
            .encode_batch(inputs, true)
            .map_err(|e| Error::InvalidConfig(format!("tokenizer: {e}")))?;
        Ok(EncodedBatch {
            input_ids: enc.iter().map(|e| e.get_ids().to_vec()).collect(),
            attention_mask: enc
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
            token_type_ids: enc.iter().map(|e| e.get_type_ids().to_vec()).collect(),
            special_tokens_mask: enc
                .iter()
                .map(|e| e.get_special_tokens_mask().to_vec())
                .collect(),
        })
    }

    /// The id of a token (e.g. `"[MASK]"`), if the vocabulary holds it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.plain.token_to_id(token)
    }

    /// Ids of the added special tokens (`[PAD]`, `[CLS]`, `[SEP]`, `[MASK]`, `[UNK]`…), ascending.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .plain
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl Tokenizer for HfTokenizer {
    /// Encodes with special tokens, without truncation or padding.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.plain
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::InvalidConfig(format!("tokenizer: {e}")))
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
            return Err(Error::TokenOutOfVocab {
                id: i64::from(id),
                vocab_size: self.vocab_size(),
            });
        }
        self.plain
            .decode(ids, true)
            .map_err(|e| Error::InvalidConfig(format!("tokenizer: {e}")))
    }

    fn vocab_size(&self) -> usize {
        self.plain.get_vocab_size(true)
    }
}
