//! Limits: the documented bounds that sizes from a user or a file are checked
//! against before anything is allocated.
//!
//! A configuration or file can name any size. Rather than let an absurd one
//! reach an allocation (which aborts the process instead of returning an
//! error), every size is checked here first and refused with a typed
//! [`Error`] naming the field.

use crate::error::{Error, Result};

/// The most float values one model, gate layout or importance may hold:
/// 2³² (16 GiB of `f32`), ten times BERT-large.
pub const MAX_PARAMETERS: usize = 1 << 32;

/// The most layers a model configuration may ask for: 1024, eight times the
/// deepest published transformer. Each layer allocates its own tensors, so a
/// count is bounded on its own as well as through [`MAX_PARAMETERS`].
pub const MAX_LAYERS: usize = 1024;

/// The longest chunk [`GroupConfig`](crate::GroupConfig) accepts: 2²⁰ tokens,
/// far beyond any model's position table.
pub const MAX_SEQ_LENGTH: usize = 1 << 20;

/// The largest token id a batch may hold: burn's integer tensors are 32-bit
/// on some backends, so ids (and vocabulary sizes) stay below 2³¹.
pub const MAX_TOKEN_ID: u32 = i32::MAX as u32 - 1;

/// The largest step count an optimizer state may carry: AdamW's bias
/// correction raises the betas to the next step's count as an `i32`.
pub const MAX_OPTIMIZER_STEPS: u64 = i32::MAX as u64 - 1;

/// The most tensors, and the most metadata entries, a GGUF file may declare:
/// 2¹⁶ (the largest published models have about a thousand tensors).
pub const MAX_GGUF_ENTRIES: usize = 1 << 16;

/// The most metadata values (array elements included) a GGUF file may hold:
/// 2²², about thirty times a 128k-token vocabulary with its merges and types.
pub const MAX_GGUF_VALUES: usize = 1 << 22;

/// How deep GGUF metadata arrays may nest.
pub const MAX_GGUF_NESTING: usize = 4;

/// Most choices a knowledge-probe item may have
/// ([`ProbeSet`](crate::data::probes::ProbeSet)).
pub const MAX_PROBE_CHOICES: usize = 64;

/// Adds up `terms` (each a product of sizes) with overflow checks and fails
/// with [`Error::InvalidConfig`] naming `what` when the total exceeds
/// [`MAX_PARAMETERS`].
pub(crate) fn check_parameter_count(what: &str, terms: &[&[usize]]) -> Result<usize> {
    let total = terms.iter().try_fold(0usize, |acc, factors| {
        factors
            .iter()
            .try_fold(1usize, |p, &f| p.checked_mul(f))
            .and_then(|n| acc.checked_add(n))
    });
    match total {
        Some(n) if n <= MAX_PARAMETERS => Ok(n),
        Some(n) => Err(Error::InvalidConfig(format!(
            "{what} would hold {n} values, more than the limit of {MAX_PARAMETERS} \
             (softmask::limits::MAX_PARAMETERS)"
        ))),
        None => Err(Error::InvalidConfig(format!(
            "{what} would hold more values than a machine can address \
             (the limit is {MAX_PARAMETERS}, softmask::limits::MAX_PARAMETERS)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sums_of_products_and_refuses_overflow() {
        assert_eq!(check_parameter_count("m", &[&[2, 3], &[4]]).unwrap(), 10);
        assert_eq!(
            check_parameter_count("m", &[&[MAX_PARAMETERS]]).unwrap(),
            MAX_PARAMETERS
        );
        let err = check_parameter_count("m", &[&[MAX_PARAMETERS], &[1]]).unwrap_err();
        assert!(err.to_string().contains("4294967297 values"), "{err}");
        let err = check_parameter_count("m", &[&[usize::MAX, 2]]).unwrap_err();
        assert!(err.to_string().contains("more values than"), "{err}");
    }
}
