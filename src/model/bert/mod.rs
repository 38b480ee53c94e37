//! The gated BERT encoder: Hugging Face checkpoints, head / intermediate /
//! output gates, a tied masked-LM head.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use softmask::*;
//!
//! let device = Device::flex().autodiff();
//! let (model, config) = SoftMaskBert::from_pretrained("all-MiniLM-L6-v2", &device)?;
//! let layout = model.gate_layout(); // heads [6, 12], intermediate [6, 1536], output [6, 384]
//! # Ok::<(), softmask::Error>(())
//! ```

#[cfg(feature = "wordpiece")]
mod batcher;
mod checkpoint;
mod config;
mod layers;
mod model;

#[cfg(feature = "wordpiece")]
pub use batcher::BertTextBatcher;
pub use config::BertConfig;
pub use layers::{BertEmbeddings, BertLayer, BertMlmHead};
pub use model::{BertBatch, HeadMaskLayout, SoftMaskBert};
