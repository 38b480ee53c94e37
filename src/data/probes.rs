//! Knowledge probes: multiple-choice items (a prompt, its choices, the index
//! of the answer) read from JSON Lines, and their token ids for scoring each
//! choice by its log-likelihood after the prompt (the lm-eval-harness
//! convention).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::limits::MAX_PROBE_CHOICES;

/// One multiple-choice item: `{"id": "capital-001", "category": "capitals",
/// "prompt": "The capital of France is", "choices": [" Paris", " Lyon"],
/// "answer": 0}` (`category` optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeItem {
    /// A name unique in its set.
    pub id: String,
    /// A group to report by; empty when the file gives none.
    #[serde(default)]
    pub category: String,
    /// The text the choices continue.
    pub prompt: String,
    /// The continuations, each scored after the prompt (a leading space
    /// belongs to the choice).
    pub choices: Vec<String>,
    /// The index of the right choice.
    pub answer: usize,
}

/// A checked set of [`ProbeItem`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    items: Vec<ProbeItem>,
}

/// An item as token ids: the context and each choice's continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedProbe {
    /// The prompt's ids.
    pub context: Vec<u32>,
    /// Each choice's ids after the context.
    pub choices: Vec<Vec<u32>>,
    /// The index of the right choice.
    pub answer: usize,
}

impl ProbeSet {
    /// A set of `items`, checked: at least one, unique ids, a non-empty
    /// prompt, 2 to [`MAX_PROBE_CHOICES`] distinct non-empty choices, the
    /// answer among them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the item and what is wrong with it.
    ///
    /// # Example
    ///
    /// ```
    /// use softmask::data::probes::{ProbeItem, ProbeSet};
    ///
    /// let item = ProbeItem {
    ///     id: "capital-1".into(),
    ///     category: "capitals".into(),
    ///     prompt: "The capital of France is".into(),
    ///     choices: vec![" Paris".into(), " Lyon".into()],
    ///     answer: 0,
    /// };
    /// assert_eq!(ProbeSet::new(vec![item.clone()])?.items().len(), 1);
    /// assert!(ProbeSet::new(vec![ProbeItem { answer: 2, ..item }]).is_err());
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn new(items: Vec<ProbeItem>) -> Result<ProbeSet> {
        check_set(&items).map_err(Error::InvalidConfig)?;
        Ok(ProbeSet { items })
    }

    /// Reads a JSON Lines file of [`ProbeItem`]s (blank lines skipped).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when unreadable, [`Error::CorruptFile`] naming the line
    /// that is not an item or whose item does not check (see [`new`](Self::new)).
    pub fn from_jsonl(path: impl AsRef<Path>) -> Result<ProbeSet> {
        let path = path.as_ref();
        let bytes = crate::io::read(path)?;
        let corrupt = |reason: String| Error::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(format!("not UTF-8 ({e})")))?;
        let mut items = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let item: ProbeItem = serde_json::from_str(line)
                .map_err(|e| corrupt(format!("line {}: not a probe item ({e})", n + 1)))?;
            check_item(&item).map_err(|e| corrupt(format!("line {}: {e}", n + 1)))?;
            items.push(item);
        }
        // Each item was checked on its line; what is left is the set's.
        check_ids(&items).map_err(corrupt)?;
        Ok(ProbeSet { items })
    }

    /// The items, in file order.
    pub fn items(&self) -> &[ProbeItem] {
        &self.items
    }

    /// Every item as ids: the context is the prompt's encoding; a choice's
    /// continuation is what the encoding of prompt + choice adds after the
    /// context's ids.
    ///
    /// # Errors
    ///
    /// The tokenizer's errors; [`Error::InvalidConfig`] for an item whose
    /// prompt or a choice encodes to no ids, or whose prompt's ids do not
    /// begin those of prompt + choice (a tokenizer that appends a token, such
    /// as BERT's `[SEP]`, or one that merges across the boundary): such a
    /// choice cannot be scored as a continuation.
    pub fn tokenize(&self, tokenizer: &impl Tokenizer) -> Result<Vec<TokenizedProbe>> {
        self.items
            .iter()
            .map(|item| {
                let context = tokenizer.encode(&item.prompt)?;
                let empty = |what: &str| {
                    Error::InvalidConfig(format!(
                        "probe item {:?}: its {what} encodes to no tokens",
                        item.id
                    ))
                };
                if context.is_empty() {
                    return Err(empty("prompt"));
                }
                let choices = item
                    .choices
                    .iter()
                    .map(|choice| {
                        let whole = tokenizer.encode(&format!("{}{choice}", item.prompt))?;
                        match whole.strip_prefix(context.as_slice()) {
                            Some([]) => Err(empty("choice")),
                            Some(tail) => Ok(tail.to_vec()),
                            None => Err(Error::InvalidConfig(format!(
                                "probe item {:?}: the ids of its prompt do not begin those of \
                                 prompt + {choice:?} (the tokenizer adds a token after the \
                                 text, or merges across the boundary: end prompts without a \
                                 space and start choices with one)",
                                item.id
                            ))),
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(TokenizedProbe {
                    context,
                    choices,
                    answer: item.answer,
                })
            })
            .collect()
    }
}

/// What is wrong with a set of `items`, if anything: none, an item that
/// does not check, an id twice.
fn check_set(items: &[ProbeItem]) -> std::result::Result<(), String> {
    for item in items {
        check_item(item).map_err(|e| format!("probe item {:?}: {e}", item.id))?;
    }
    check_ids(items)
}

/// What is wrong with the set beyond its items, if anything: none, or an id
/// twice.
fn check_ids(items: &[ProbeItem]) -> std::result::Result<(), String> {
    if items.is_empty() {
        return Err("a probe set needs items".into());
    }
    let mut ids = std::collections::BTreeSet::new();
    match items.iter().find(|item| !ids.insert(item.id.as_str())) {
        Some(item) => Err(format!("probe item id {:?} appears twice", item.id)),
        None => Ok(()),
    }
}

/// What is wrong with `item` on its own, if anything.
fn check_item(item: &ProbeItem) -> std::result::Result<(), String> {
    if item.id.is_empty() {
        return Err("an empty id".into());
    }
    if item.prompt.is_empty() {
        return Err("an empty prompt".into());
    }
    let n = item.choices.len();
    if !(2..=MAX_PROBE_CHOICES).contains(&n) {
        return Err(format!(
            "{n} choices; an item has 2 to {MAX_PROBE_CHOICES} (softmask::limits::MAX_PROBE_CHOICES)"
        ));
    }
    if item.choices.iter().any(String::is_empty) {
        return Err("an empty choice".into());
    }
    let distinct: std::collections::BTreeSet<&String> = item.choices.iter().collect();
    if distinct.len() != n {
        return Err("two choices are the same".into());
    }
    if item.answer >= n {
        return Err(format!(
            "answer {} is not one of its {n} choices",
            item.answer
        ));
    }
    Ok(())
}
