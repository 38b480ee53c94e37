//! Split-half stability: whether an importance estimate ranks units the same
//! way on two disjoint halves of its data. An importance no more stable than
//! chance cannot target anything.

use serde::{Deserialize, Serialize};

/// The split-half rank correlation of one gate: per row (layer), the
/// Spearman correlation between the importance of the even-numbered and of
/// the odd-numbered batches; `None` for a row whose values are all equal in
/// a half.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateStability {
    /// The gate's name.
    pub name: String,
    /// One correlation per row.
    pub rows: Vec<Option<f32>>,
}

/// The Spearman rank correlation of `a` and `b` (ties take their mean
/// rank); `None` for fewer than two values, lengths that differ, or a side
/// whose values are all equal.
///
/// # Example
///
/// ```
/// use softmask::importance::stability::spearman;
///
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
/// assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
/// ```
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean) * (x - mean);
        vb += (y - mean) * (y - mean);
    }
    match va > 0.0 && vb > 0.0 {
        true => Some((cov / (va * vb).sqrt()) as f32),
        false => None,
    }
}

/// 1-based ranks, ties averaged.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_take_their_mean_rank() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        // Against the textbook value: x = 1..5, y = 5,6,7,8,7 → 0.8208.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((r - 0.820_782_4).abs() < 1e-6, "{r}");
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0]), None);
    }
}
