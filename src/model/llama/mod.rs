//! The gated Llama-family decoder (Llama, Qwen2, Mistral): RMSNorm, RoPE,
//! grouped-query causal attention, a SwiGLU MLP, a tied or separate LM head,
//! loaded from a Hugging Face folder.

mod batch;
mod config;
mod gguf;
mod layers;
mod model;
mod score;

pub use batch::CausalBatch;
pub use config::LlamaConfig;
pub use layers::LlamaLayer;
pub use model::{HEAD_CHUNK_BYTES, HEAD_WHOLE_BYTES, PROXY_DROPOUT, SoftMaskLlama};
