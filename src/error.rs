//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `softmask`, each variant naming the problem.
///
/// Inputs are checked at the crate's boundary, before burn sees them, so a bad
/// corpus, id, shape or file gives one of these instead of a panic deep in a kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The corpus holds no tokens at all.
    #[error("empty corpus: it holds no tokens")]
    EmptyCorpus,

    /// The corpus is shorter than one chunk and padding was not asked for.
    #[error(
        "corpus too short: {tokens} tokens do not fill one chunk of {max_seq_length} \
         (ask for padding to keep a short corpus)"
    )]
    CorpusTooShort {
        /// Tokens in the whole corpus.
        tokens: usize,
        /// The requested chunk length.
        max_seq_length: usize,
    },

    /// A size that must be positive is zero (`max_seq_length`, `batch_size`, a layer width…).
    #[error("{what} must be at least 1, got 0")]
    ZeroSize {
        /// Which size.
        what: &'static str,
    },

    /// A configuration value is out of its valid range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A word that the vocabulary does not hold, with no unknown id to fall back on.
    #[error("unknown word {word:?}: not in the vocabulary, and no unknown token is reserved")]
    UnknownWord {
        /// The word.
        word: String,
    },

    /// A token id at or above the vocabulary size (or negative).
    #[error("token id {id} is outside the vocabulary of {vocab_size} entries")]
    TokenOutOfVocab {
        /// The offending id.
        id: i64,
        /// The vocabulary (embedding table) size.
        vocab_size: usize,
    },

    /// A tokenizer that produces ids the model's embedding table lacks.
    #[error(
        "the tokenizer has {tokenizer} ids, more than the model's vocabulary of {model}: \
         it is not the model's tokenizer"
    )]
    VocabularyMismatch {
        /// Ids the tokenizer produces.
        tokenizer: usize,
        /// Rows of the model's embedding table.
        model: usize,
    },

    /// A sequence longer than the model's position table.
    #[error("sequence of {len} tokens is longer than the {max} positions the model has")]
    SequenceTooLong {
        /// The sequence length.
        len: usize,
        /// The position table size.
        max: usize,
    },

    /// A tensor or list has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// What was checked.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        actual: String,
    },

    /// Importance (or gates) laid out for another model.
    #[error("layout mismatch: {0}")]
    LayoutMismatch(String),

    /// An empty batch, or a batch whose examples disagree.
    #[error("bad batch: {0}")]
    BadBatch(String),

    /// A dataset index past the end.
    #[error("index {index} is out of range for a dataset of {len} examples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset length.
        len: usize,
    },

    /// A NaN or infinite value where a finite one is required.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Where it was found (a gradient, an importance vector…).
        what: String,
    },

    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file that exists but cannot be what it claims to be: truncated, corrupt, or of another format.
    #[error("corrupt file {path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A value could not be turned into (or read back from) its file format:
    /// results, a manifest, an optimizer state.
    #[error("cannot serialise {what}: {reason}")]
    Serialization {
        /// What was being written or read.
        what: String,
        /// What the serialiser said.
        reason: String,
    },

    /// A tensor could not be read back from its device to the host.
    #[error("a tensor could not be read back from its device: {0}")]
    ReadBack(String),

    /// A tensor that a weights file must hold is missing from it.
    #[error("missing tensor {name:?} in {path}")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The file.
        path: PathBuf,
    },

    /// The model did not produce a gradient for something that needs one.
    #[error("missing gradient: {0}")]
    MissingGradient(String),

    /// An optimizer hyper-parameter (learning rate, betas, epsilon, weight
    /// decay, momentum…) that is NaN, infinite or out of its range.
    #[error("optimizer hyper-parameter {name} is {value}: expected {expected}")]
    HyperParameter {
        /// The hyper-parameter.
        name: String,
        /// The value given.
        value: f64,
        /// What it must be, in words.
        expected: String,
    },

    /// An optimizer state (a file, a checkpoint's, or bytes handed to the
    /// crate) that does not belong to the model and optimizer it is loaded
    /// into, or holds values no step could have produced. Refused before the
    /// optimizer sees it.
    #[error("optimizer state refused: {reason}")]
    OptimizerState {
        /// What is wrong, naming the parameter.
        reason: String,
    },

    /// A checkpoint that parses but does not belong to the run resuming it:
    /// a position outside the run, importance or optimizer state of another run.
    #[error("checkpoint {path} does not belong to this run: {reason}")]
    Checkpoint {
        /// The checkpoint's folder.
        path: PathBuf,
        /// Which part, and why.
        reason: String,
    },

    /// Data-parallel training could not go on: the ranks disagree (model,
    /// data, method, seed or version), another rank failed, or the
    /// transport between them did.
    #[error("distributed run: {0}")]
    Distributed(String),

    /// A device this build has could not start here (no adapter, no driver).
    #[error("device {name:?} is unavailable: {reason}")]
    DeviceUnavailable {
        /// The device's name, as [`crate::device`] takes it.
        name: String,
        /// What the backend said.
        reason: String,
    },
}

impl From<softmask_kernels::InvalidHyperParameter> for Error {
    fn from(e: softmask_kernels::InvalidHyperParameter) -> Error {
        Error::HyperParameter {
            name: e.name.to_string(),
            value: e.value,
            expected: e.expected.to_string(),
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
