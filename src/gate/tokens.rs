//! Token count: how many tokens a batch holds, the `N` importance is divided by.

/// Batches that know how many tokens they hold: the `N` importance is divided by.
pub trait TokenCount {
    /// Tokens in the batch (non-padding).
    fn token_count(&self) -> usize;
}
