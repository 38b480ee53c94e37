//! Soft-masking for continual pre-training of language models, on burn.
//!
//! Keep pre-training a model on new domains without erasing what it already
//! knew: estimate how important every unit (neuron, attention head) is, then
//! damp the training of the important ones (DGA, arXiv 2301.08986; DAS,
//! arXiv 2302.03241).
//!
//! The pipeline, one module per stage:
//!
//! 1. [`data`]: text to ids ([`Tokenizer`], [`WordTokenizer`]), fixed-length
//!    chunks ([`GroupedDataset`]), seeded `[batch, seq]` batches
//!    ([`TokenBatch`]) and MLM masking ([`MlmCollator`]).
//! 2. [`model`]: networks with per-unit gates ([`SoftMaskNet`], [`SoftMaskBert`];
//!    any model via [`SoftMaskable`]).
//! 3. [`importance`]: gate gradients of a proxy loss into [`Importance`]
//!    ([`ImportanceEstimator`]).
//! 4. [`mask`]: scale gradients ([`GradientSoftMasker`]) or updates
//!    ([`UpdateSoftMasker`]) by `1 - I`, around any burn optimizer
//!    ([`SoftMaskedOptimizer`]).
//!
//! 5. [`continual`]: the loop over a sequence of domains, with baselines,
//!    evaluation, checkpoints and resume ([`continual::ContinualTrainer`]).
//!
//! [`io`] holds atomic writes and host copies, [`limits`] the bounds every
//! size from a user or file is checked against.
//!
//! Nothing assumes a backend: tensors and modules carry none in burn 0.22, and
//! the device picks it at run time. The cargo features `flex` and `ndarray`
//! (both on by default) build burn's Flex and NdArray CPU backends.
//!
//! ```
//! use burn::optim::{AdamConfig, GradientsParams};
//! use burn::tensor::Device;
//! use softmask::*;
//!
//! let device = Device::default().autodiff();
//! let corpus = ["the food is always great here", "the staff is super and the food great"];
//! let tokenizer = WordTokenizer::from_corpus(&corpus, UnknownWords::Error);
//! let data = GroupedDataset::from_texts(&tokenizer, &corpus, &GroupConfig::new(4))?;
//!
//! let config = SoftMaskNetConfig::new().with_vocab_size(tokenizer.vocab_size());
//! let mut model = config.init(&device)?;
//! let proxy = KlToModel::new(config.init(&device)?);
//! let mut estimator =
//!     ImportanceEstimator::new(model.gate_layout(), Accumulation::PerBatch, GradientSign::Signed)?;
//! for batch in data.batches(2, Shuffle::Seeded(0), tokenizer.vocab_size(), &device)? {
//!     estimator.step(&model, &batch?, &proxy)?;
//! }
//! let importance = estimator.finish(Normalization::Reference)?;
//!
//! let mut optim = SoftMaskedOptimizer::new(AdamConfig::new().init(), &importance, &model, MaskMode::Update)?;
//! for batch in data.batches(2, Shuffle::Seeded(1), tokenizer.vocab_size(), &device)? {
//!     let batch = batch?;
//!     let loss = binary_cross_entropy(model.forward(batch.input_ids, None)?, batch.labels)?;
//!     let grads = GradientsParams::from_grads(loss.backward(), &model);
//!     optim.step(0.003, &mut model, grads)?;
//! }
//! # Ok::<(), softmask::Error>(())
//! ```
#![deny(missing_docs)]

pub mod continual;
pub mod data;
pub mod device;
mod error;
pub mod gate;
pub mod importance;
pub mod io;
pub mod limits;
pub mod mask;
pub mod model;
mod params;

pub use data::batch::{Batches, Shuffle, TokenBatch, TokenBatcher};
pub use data::group::{Example, GroupConfig, GroupedDataset};
pub use data::mlm::{MaskedTokens, MlmCollator};
#[cfg(feature = "wordpiece")]
pub use data::tokenize::{EncodedBatch, WordPieceTokenizer};
pub use data::tokenize::{Tokenizer, UnknownWords, WordTokenizer, split_words};
pub use device::{cpu_device, cpu_devices, open_device};
pub use error::{Error, Result};
pub use gate::{GateLayout, GateSpec, Gates, Governed, Represent, SoftMaskable, TokenCount};
pub use importance::estimate::{Accumulation, GradientSign, ImportanceEstimator};
pub use importance::proxy::{
    ImportanceProxy, KlToDropoutCopy, KlToModel, MlmLoss, frozen, kl_over_sequence,
};
pub use importance::{GateImportance, Importance, Normalization};
pub use mask::{
    GradientSoftMasker, MaskMode, Snapshot, SoftMaskedOptimizer, UpdateSoftMasker, unit_movement,
};
#[cfg(feature = "wordpiece")]
pub use model::bert::BertBatcher;
pub use model::{
    BertBatch, BertConfig, Dropout, DropoutConfig, HeadMaskLayout, SoftMaskBert, SoftMaskNet,
    SoftMaskNetConfig, binary_cross_entropy, check_token_ids, gelu,
};
