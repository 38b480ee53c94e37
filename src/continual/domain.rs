//! Domain: a named corpus, its training texts and its held-out texts.

use std::path::Path;

use crate::data::group::{GroupConfig, GroupedDataset};
use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::io;

/// Every `HELD_OUT_EVERY`-th document of a corpus read from files is held out.
pub const HELD_OUT_EVERY: usize = 10;

/// A named corpus: training texts and held-out texts (documents).
///
/// # Example
///
/// ```
/// use softmask::continual::Domain;
///
/// let docs: Vec<String> = (0..20).map(|i| format!("document number {i}")).collect();
/// let d = Domain::from_documents("news", docs)?;
/// assert_eq!((d.train.len(), d.held_out.len()), (18, 2));
/// assert_eq!(d.held_out[0], "document number 9");
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// The domain's name: a label in results, logs and file names.
    pub name: String,
    /// Training documents.
    pub train: Vec<String>,
    /// Held-out documents, for evaluation only.
    pub held_out: Vec<String>,
}

impl Domain {
    /// A domain from its parts, checked: a name of letters, digits, `-`, `_`
    /// or `.`, and at least one non-blank document on each side.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the domain and what is missing.
    pub fn new(
        name: impl Into<String>,
        train: Vec<String>,
        held_out: Vec<String>,
    ) -> Result<Domain> {
        let name = name.into();
        check_name(&name)?;
        for (side, docs) in [("training", &train), ("held-out", &held_out)] {
            if docs.iter().all(|d| d.trim().is_empty()) {
                return Err(Error::InvalidConfig(format!(
                    "domain {name:?} has no {side} text"
                )));
            }
        }
        Ok(Domain {
            name,
            train,
            held_out,
        })
    }

    /// A domain from documents: every [`HELD_OUT_EVERY`]-th (the 10th, 20th…)
    /// is held out, the rest train, so both sides sample the whole corpus.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for fewer than [`HELD_OUT_EVERY`] non-blank
    /// documents or a bad name.
    pub fn from_documents(name: impl Into<String>, documents: Vec<String>) -> Result<Domain> {
        let name = name.into();
        let docs: Vec<String> = documents
            .into_iter()
            .filter(|d| !d.trim().is_empty())
            .collect();
        if docs.len() < HELD_OUT_EVERY {
            return Err(Error::InvalidConfig(format!(
                "domain {name:?} has {} documents; at least {HELD_OUT_EVERY} are needed \
                 to hold one out",
                docs.len()
            )));
        }
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for (i, d) in docs.into_iter().enumerate() {
            if (i + 1) % HELD_OUT_EVERY == 0 {
                held_out.push(d);
            } else {
                train.push(d);
            }
        }
        Domain::new(name, train, held_out)
    }

    /// A domain from a text file, or a folder of `.txt` files (read in name
    /// order): documents are paragraphs, separated by blank lines.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for an unreadable path, [`Error::InvalidConfig`] for a
    /// file that is not UTF-8, a folder without `.txt` files, or too few
    /// documents.
    pub fn from_path(name: impl Into<String>, path: impl AsRef<Path>) -> Result<Domain> {
        let name = name.into();
        let path = path.as_ref();
        let files = if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let mut files = Vec::new();
            for e in entries {
                let e = e.map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "txt") && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(Error::InvalidConfig(format!(
                    "domain {name:?}: folder {} holds no .txt file",
                    path.display()
                )));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut documents = Vec::new();
        for f in files {
            let text = String::from_utf8(io::read(&f)?).map_err(|_| {
                Error::InvalidConfig(format!(
                    "domain {name:?}: {} is not UTF-8 text",
                    f.display()
                ))
            })?;
            documents.extend(paragraphs(&text));
        }
        Domain::from_documents(name, documents)
    }

    /// The domain as token chunks of `seq_len` (Hugging Face's `group_texts`:
    /// documents encoded with their special tokens, concatenated, cut into
    /// chunks; the last partial chunk is dropped).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the domain when a side does not fill
    /// `min_chunks` chunks, and the tokenizer's errors.
    pub fn tokenize<T: Tokenizer>(
        &self,
        tokenizer: &T,
        seq_len: usize,
        min_chunks: usize,
    ) -> Result<TokenizedDomain> {
        let chunks = |side: &str, docs: &[String]| -> Result<Vec<Vec<u32>>> {
            let too_short = |tokens: usize| {
                Error::InvalidConfig(format!(
                    "domain {:?}: its {side} text has {tokens} tokens, fewer than \
                     {min_chunks} chunk(s) of {seq_len}",
                    self.name
                ))
            };
            let data = GroupedDataset::from_texts(tokenizer, docs, &GroupConfig::new(seq_len))
                .map_err(|e| match e {
                    Error::CorpusTooShort { tokens, .. } => too_short(tokens),
                    Error::EmptyCorpus => too_short(0),
                    e => e,
                })?;
            let rows: Vec<Vec<u32>> = data
                .examples()
                .iter()
                .map(|e| e.input_ids.clone())
                .collect();
            if rows.len() < min_chunks {
                return Err(too_short(rows.len() * seq_len));
            }
            Ok(rows)
        };
        Ok(TokenizedDomain {
            name: self.name.clone(),
            train: chunks("training", &self.train)?,
            held_out: chunks("held-out", &self.held_out)?,
        })
    }
}

/// A domain as token chunks, ready for a [`Collate`](super::Collate).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedDomain {
    /// The domain's name.
    pub name: String,
    /// Training chunks.
    pub train: Vec<Vec<u32>>,
    /// Held-out chunks.
    pub held_out: Vec<Vec<u32>>,
}

/// Paragraphs of a text: runs of non-blank lines, joined by spaces.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines().chain([""]) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line.trim());
        }
    }
    out
}

/// A domain name must be usable as a file name and a CSV column.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "domain name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_on_blank_lines() {
        assert_eq!(
            paragraphs("a b\nc\n\n  \nd\n\n\ne"),
            vec!["a b c".to_string(), "d".into(), "e".into()]
        );
    }

    #[test]
    fn bad_names_and_empty_sides_are_refused() {
        for name in ["", "a/b", ".hidden", "with space"] {
            assert!(
                Domain::new(name, vec!["x".into()], vec!["y".into()]).is_err(),
                "{name}"
            );
        }
        let err = Domain::new("d", vec![" ".into()], vec!["y".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: domain \"d\" has no training text"
        );
        let err = Domain::from_documents("d", vec!["x".into(); 9]).unwrap_err();
        assert!(err.to_string().contains("has 9 documents"), "{err}");
    }
}
