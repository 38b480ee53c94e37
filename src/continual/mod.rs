//! Continual: pre-training through a sequence of domains, protecting what
//! the model knew (DAS, docs/method.md §3), with baselines, evaluation and resume.
//!
//! 1. [`domain`]: named corpora, split into training and held-out text, and
//!    cut into token chunks.
//! 2. [`objective`]: what a model needs for the loop ([`ContinualModel`]) and
//!    how rows become batches ([`Collate`]); [`SoftMaskBert`](crate::SoftMaskBert)
//!    implements both with MLM ([`MlmChunkCollate`]), the decoder
//!    ([`SoftMaskLlama`](crate::model::llama::SoftMaskLlama)) with the
//!    causal-LM loss ([`causal`], [`CausalChunkCollate`]).
//! 3. [`method`]: the presets (`ncl`, `dga`, `das`, `ewc`, the two controls)
//!    and every option, as one serialisable [`MethodConfig`].
//! 4. [`trainer`]: the fixed loop ([`ContinualTrainer`]), which calls
//!    [`apply`] (estimate, accumulate and apply importance), [`eval`]
//!    (held-out losses into [`results`]), [`checkpoint`] (save, check,
//!    restore) and the method's [`plugin`]s.
//! 5. [`plugin`]: a method's additions to the loop; [`contrastive`] (DAS's
//!    knowledge-integration term), [`ewc`] and [`kd`] (distillation to the
//!    model before the domain) are plugins. A new method is a
//!    new plugin file here.
//! 6. [`observe`]: read-only hooks, the JSONL log and progress bars; [`plot`]:
//!    pictures; [`knowledge`]: knowledge probes scored after every domain
//!    (a plugin that only reads the model).

pub mod apply;
pub mod causal;
pub mod checkpoint;
pub mod contrastive;
pub mod domain;
pub mod eval;
pub mod ewc;
pub mod kd;
pub mod knowledge;
pub mod method;
pub mod objective;
pub mod observe;
pub mod plot;
pub mod plugin;
pub mod results;
pub mod trainer;

pub use apply::applied_importance;
pub use causal::{CausalChunkCollate, ContinuationScorer};
pub use contrastive::ContrastivePlugin;
pub use contrastive::contrastive_loss;
pub use domain::{Domain, TokenizedDomain};
pub use ewc::{Ewc, EwcPlugin, FisherAccumulator};
pub use kd::KdPlugin;
pub use knowledge::{KnowledgeProbes, KnowledgeRow};
pub use method::{Control, GeneralProxy, MethodConfig, OptimizerKind, PRESETS};
pub use objective::{Collate, ContinualModel, MlmChunkCollate};
pub use observe::{JsonlLog, Observer, Progress, StepEvent};
pub use plugin::{DomainEnd, DomainStart, Plugin, RankShare};
pub use results::{ResultMatrix, Summary};
pub use trainer::{ContinualTrainer, Outcome};
