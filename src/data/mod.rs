//! Data: text to token ids to batches.
//!
//! 1. [`tokenize`]: text to ids ([`Tokenizer`](tokenize::Tokenizer)).
//! 2. [`group`]: ids to fixed-length chunks, a burn `Dataset`.
//! 3. [`batch`]: chunks to `[batch, seq]` tensors in a seeded order.
//! 4. [`mlm`]: masked-language-model inputs and labels.
//! 5. [`sampling`]: seeded streams and the index-addressable batch order of
//!    the continual loop.
//!
//! Beside them, [`probes`]: multiple-choice knowledge probes and their ids.

pub mod batch;
pub mod group;
pub mod mlm;
pub mod probes;
pub mod sampling;
pub mod tokenize;
