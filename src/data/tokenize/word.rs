//! The notebook's word-level vocabulary, built from a corpus.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::io;

/// What [`WordTokenizer`] does with a word that is not in its vocabulary.
///
/// The notebook silently maps such a word to id 0, a real word's id; this
/// crate never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnknownWords {
    /// Encoding fails with [`Error::UnknownWord`].
    Error,
    /// Encoding maps it to this token, which the vocabulary reserves. When built
    /// from a corpus, the token is appended after the corpus's words, so the
    /// corpus keeps the notebook's ids (if the corpus itself contains the token,
    /// its first-appearance id is used).
    Reserve(String),
}

/// The notebook's word-level tokenizer.
///
/// Words are the maximal runs of non-whitespace characters, exactly as Python's
/// `str.split()` finds them (Unicode whitespace plus the separators `\x1c`–`\x1f`).
/// Ids are given in order of first appearance in the corpus.
///
/// # Example
///
/// ```
/// use softmask::{Tokenizer, UnknownWords, WordTokenizer};
///
/// let corpus = ["the food is great", "the staff is super"];
/// let tok = WordTokenizer::from_corpus(&corpus, UnknownWords::Error);
/// assert_eq!(tok.encode("the staff is great")?, vec![0, 4, 2, 3]);
/// assert_eq!(tok.decode(&[0, 1])?, "the food");
/// assert!(tok.encode("the chef").is_err());
///
/// let tok = WordTokenizer::from_corpus(&corpus, UnknownWords::Reserve("[UNK]".into()));
/// assert_eq!(tok.encode("the chef")?, vec![0, 6]);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WordTokenizer {
    words: Vec<String>,
    ids: HashMap<String, u32>,
    unknown: Option<u32>,
}

/// The vocabulary file: JSON, words in id order.
#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: String,
    words: Vec<String>,
    unknown: Option<String>,
}

const VOCAB_FORMAT: &str = "softmask-word-vocabulary-v1";

/// Splits like Python's `str.split()` with no argument.
pub fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
        .filter(|w| !w.is_empty())
}

impl WordTokenizer {
    /// Builds the vocabulary from a corpus: ids in order of first appearance.
    pub fn from_corpus<S: AsRef<str>>(corpus: &[S], unknown: UnknownWords) -> WordTokenizer {
        let mut tok = WordTokenizer {
            words: Vec::new(),
            ids: HashMap::new(),
            unknown: None,
        };
        for text in corpus {
            for word in split_words(text.as_ref()) {
                tok.insert(word);
            }
        }
        if let UnknownWords::Reserve(token) = unknown {
            tok.unknown = Some(tok.insert(&token));
        }
        tok
    }

    fn insert(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word.to_string());
        self.ids.insert(word.to_string(), id);
        id
    }

    /// The id of a word, if the vocabulary holds it.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// The reserved unknown id, if any.
    pub fn unknown_id(&self) -> Option<u32> {
        self.unknown
    }

    /// The words, in id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Saves the vocabulary as JSON (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let file = VocabFile {
            format: VOCAB_FORMAT.to_string(),
            words: self.words.clone(),
            unknown: self.unknown.map(|id| self.words[id as usize].clone()),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::Serialization {
            what: "the vocabulary".into(),
            reason: e.to_string(),
        })?;
        io::write_atomic(path.as_ref(), &json)
    }

    /// Loads a vocabulary saved by [`save`](Self::save), checking it whole:
    /// a truncated or edited file is an [`Error::CorruptFile`].
    pub fn load(path: impl AsRef<Path>) -> Result<WordTokenizer> {
        let path = path.as_ref();
        let corrupt = |reason: String| Error::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = io::read(path)?;
        let file: VocabFile = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a vocabulary file ({e})")))?;
        if file.format != VOCAB_FORMAT {
            return Err(corrupt(format!(
                "format {:?}, expected {VOCAB_FORMAT:?}",
                file.format
            )));
        }
        let mut tok = WordTokenizer {
            words: Vec::with_capacity(file.words.len()),
            ids: HashMap::with_capacity(file.words.len()),
            unknown: None,
        };
        for (i, word) in file.words.iter().enumerate() {
            if word.is_empty() || split_words(word).ne(std::iter::once(word.as_str())) {
                return Err(corrupt(format!(
                    "entry {i} ({word:?}) is not a single word"
                )));
            }
            if tok.insert(word) as usize != i {
                return Err(corrupt(format!("word {word:?} appears twice")));
            }
        }
        if let Some(unk) = file.unknown {
            tok.unknown =
                Some(tok.id(&unk).ok_or_else(|| {
                    corrupt(format!("unknown token {unk:?} is not in the words"))
                })?);
        }
        Ok(tok)
    }
}

impl Tokenizer for WordTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        split_words(text)
            .map(|w| match (self.ids.get(w), self.unknown) {
                (Some(&id), _) => Ok(id),
                (None, Some(unk)) => Ok(unk),
                (None, None) => Err(Error::UnknownWord {
                    word: w.to_string(),
                }),
            })
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let words = ids
            .iter()
            .map(|&id| {
                self.words
                    .get(id as usize)
                    .map(String::as_str)
                    .ok_or(Error::TokenOutOfVocab {
                        id: i64::from(id),
                        vocab_size: self.words.len(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(words.join(" "))
    }

    fn vocab_size(&self) -> usize {
        self.words.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_appearance_order_and_repeats() {
        let tok = WordTokenizer::from_corpus(&["b a b", " c\ta "], UnknownWords::Error);
        assert_eq!(tok.words(), ["b", "a", "c"]);
        assert_eq!(
            tok.encode_corpus(&["a b c", ""]).unwrap(),
            vec![vec![1, 0, 2], vec![]]
        );
    }

    #[test]
    fn reserved_unknown_in_corpus_keeps_its_id() {
        let tok = WordTokenizer::from_corpus(&["x <unk> y"], UnknownWords::Reserve("<unk>".into()));
        assert_eq!(tok.unknown_id(), Some(1));
        assert_eq!(tok.vocab_size(), 3);
        assert_eq!(tok.encode("z").unwrap(), vec![1]);
    }

    #[test]
    fn decode_rejects_ids_past_the_vocabulary() {
        let tok = WordTokenizer::from_corpus(&["a b"], UnknownWords::Error);
        assert!(matches!(
            tok.decode(&[0, 2]),
            Err(Error::TokenOutOfVocab {
                id: 2,
                vocab_size: 2
            })
        ));
    }
}
