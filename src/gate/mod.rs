//! Gate: the ground floor, the contract a model implements to be soft-masked.
//!
//! A model names its gates ([`GateLayout`], one [`GateSpec`] per gated layer),
//! takes them in its forward pass ([`Gates`], per-unit multipliers), and says
//! which parameters each unit owns ([`SoftMaskable`], [`Governed`]). Its
//! batches count their tokens ([`TokenCount`]), and for the KL importance
//! proxies it exposes a gated representation ([`Represent`]). Everything above
//! (data, model, importance, mask, continual) builds on these and nothing
//! here depends on them.

mod gates;
mod governed;
mod layout;
mod represent;
mod tokens;

pub use gates::Gates;
pub use governed::{Governed, SoftMaskable};
pub use layout::{GateLayout, GateSpec};
pub use represent::Represent;
pub use tokens::TokenCount;
