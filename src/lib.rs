//! Soft-masking for continual pre-training of language models, on burn.
#![deny(missing_docs)]

pub mod batch;
mod error;
pub mod group;
mod io;
pub mod tokenize;

pub use batch::{Batches, Shuffle, TokenBatch, TokenBatcher};
pub use error::{Error, Result};
pub use group::{Example, GroupConfig, GroupedDataset};
pub use tokenize::{Tokenizer, UnknownWords, WordTokenizer, split_words};
