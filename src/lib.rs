//! Soft-masking for continual pre-training of language models, on burn.
//!
//! Keep pre-training a model on new domains without erasing what it already
//! knew: estimate how important every unit (neuron, attention head) is, then
//! damp the training of the important ones (DGA, arXiv 2301.08986; DAS,
//! arXiv 2302.03241).
//!
//! # Architecture
//!
//! The layout is the pipeline, in floors; a module uses only the floors
//! below it.
//!
//! 0. [`gate`], the ground floor: the contract a model implements to be
//!    soft-masked ([`GateLayout`], [`Gates`], [`SoftMaskable`] with
//!    [`Governed`], [`TokenCount`], [`Represent`]). Beside it the utilities
//!    every floor may use: [`error`](Error), [`limits`], [`io`], [`device`],
//!    [`gguf`] (llama.cpp's model files, dequantized on demand) and
//!    [`distributed`] (data parallelism: the [`distributed::Collective`]
//!    seam, MPI with the feature `mpi`).
//! 1. [`data`]: text to ids ([`Tokenizer`], [`WordTokenizer`]), fixed-length
//!    chunks ([`GroupedDataset`]), seeded batches ([`LabelledBatch`]), MLM
//!    masking ([`MlmMasker`]), the seeded batch order
//!    ([`data::sampling`]) and knowledge probes ([`data::probes`]).
//! 2. [`model`]: networks with per-unit gates ([`SoftMaskNet`],
//!    [`SoftMaskBert`] for BERT and RoBERTa, [`model::llama::SoftMaskLlama`]
//!    for Llama-family decoders), each block building itself from named
//!    weights.
//! 3. [`importance`]: gate gradients of a proxy loss into [`Importance`]
//!    ([`ImportanceEstimator`]), and how stable it is
//!    ([`importance::stability`]).
//! 4. [`mask`]: scale gradients ([`GradientSoftMasker`]) or updates
//!    ([`UpdateSoftMasker`]) by `1 - I`, around any burn optimizer
//!    ([`SoftMaskedOptimizer`]), whose saved states are checked before they load.
//! 5. [`continual`]: the fixed loop over a sequence of domains
//!    ([`continual::ContinualTrainer`]), with evaluation, checkpoints and resume.
//!
//! Where new things go:
//!
//! - **a model**: a folder under `model/` (as `model/bert/` and
//!   `model/llama/`), implementing
//!   [`SoftMaskable`] and [`Represent`], and for the loop
//!   [`continual::ContinualModel`] with a [`continual::Collate`] for its
//!   batches; its blocks load with `model::weights` as BERT's do;
//! - **a method** of the continual loop: a preset in `continual/method.rs`
//!   and, if it changes training, a [`continual::Plugin`] in its own file of
//!   `continual/` (as `contrastive.rs`, `ewc.rs` and `kd.rs`); an evaluation
//!   that needs the model is a plugin that only reads it (as `knowledge.rs`);
//! - **an observer** (logs, dashboards): a [`continual::Observer`]; observers
//!   only read.
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
pub mod distributed;
mod error;
pub mod gate;
pub mod gguf;
pub mod importance;
pub mod io;
pub mod limits;
pub mod mask;
pub mod model;
mod params;

pub use data::batch::{Batches, LabelledBatch, LabelledBatcher, Shuffle};
pub use data::group::{Example, GroupConfig, GroupedDataset};
pub use data::mlm::{MaskedTokens, MlmMasker};
#[cfg(feature = "wordpiece")]
pub use data::tokenize::{EncodedBatch, HfTokenizer};
pub use data::tokenize::{EndOfText, Tokenizer, UnknownWords, WordTokenizer, split_words};
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
pub use model::bert::BertTextBatcher;
pub use model::{
    BertBatch, BertConfig, Dropout, DropoutConfig, HeadMaskLayout, SoftMaskBert, SoftMaskNet,
    SoftMaskNetConfig, binary_cross_entropy, check_token_ids, gelu,
};
