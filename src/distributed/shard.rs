//! Splitting one collated batch across ranks: [`Shard`] (what a batch type
//! gives for it), [`split`] (which rows each rank takes) and the row
//! window ([`RowWindow`]) that keeps dropout the same as one process's.

use std::cell::Cell;
use std::ops::Range;

use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};
use crate::io::ints_to_host;

/// A collated batch that data-parallel training can split by rows after
/// collation, so that N ranks together see exactly the batch one process
/// would (the same padding, MLM masks and labels).
pub trait Shard: Sized {
    /// Rows in the batch.
    fn rows(&self) -> usize;

    /// The batch of rows `rows` only (the sequence length unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::BadBatch`] for rows outside the batch.
    fn shard(&self, rows: Range<usize>) -> Result<Self>;

    /// How many terms the model's objective averages over in each row
    /// (labelled tokens for MLM, positions with a next token for a causal
    /// LM): each rank's loss is weighted by its share of them.
    ///
    /// # Errors
    ///
    /// When the batch cannot be read back from its device.
    fn row_terms(&self) -> Result<Vec<usize>>;
}

/// The rows of a batch of `total` rows that rank `rank` of `size` takes:
/// contiguous, in rank order, the first `total % size` ranks one more.
///
/// ```
/// use softmask::distributed::split;
///
/// assert_eq!(split(5, 0, 2), 0..3);
/// assert_eq!(split(5, 1, 2), 3..5);
/// assert_eq!(split(2, 3, 4), 2..2);
/// ```
pub fn split(total: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (total / size, total % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Rows `rows` of a `[batch, seq]` tensor of ids or masks, checked: a
/// building block of [`Shard::shard`].
///
/// # Errors
///
/// [`Error::BadBatch`] for rows outside the batch.
pub fn take_rows(t: &Tensor<2, Int>, rows: &Range<usize>) -> Result<Tensor<2, Int>> {
    let total = t.dims()[0];
    if rows.start > rows.end || rows.end > total {
        return Err(Error::BadBatch(format!(
            "rows {rows:?} of a batch of {total} rows"
        )));
    }
    Ok(t.clone().narrow(0, rows.start, rows.len()))
}

/// Per row of a `[batch, seq]` tensor, how many of its values after the
/// first `skip` satisfy `counts`: labelled tokens, real next tokens.
///
/// # Errors
///
/// [`Error::ReadBack`] when the tensor cannot be read back.
pub fn count_per_row(
    t: &Tensor<2, Int>,
    skip: usize,
    counts: impl Fn(i64) -> bool,
) -> Result<Vec<usize>> {
    let seq = t.dims()[1].max(1);
    Ok(ints_to_host(t.clone())?
        .chunks(seq)
        .map(|row| row.iter().skip(skip).filter(|&&v| counts(v)).count())
        .collect())
}

thread_local! {
    static WINDOW: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// While alive, says that this thread's forward passes run rows
/// `first..first + rows` of a larger batch: dropout then draws the mask
/// those rows have in the whole batch, so a rank's rows get what they
/// would in one process. Dropped, it restores what was before.
#[derive(Debug)]
pub struct RowWindow {
    before: Option<(usize, usize)>,
}

impl RowWindow {
    /// Opens the window on `rows` (of the whole batch).
    pub fn open(rows: Range<usize>) -> RowWindow {
        let before = WINDOW.with(|w| w.replace(Some((rows.start, rows.len()))));
        RowWindow { before }
    }

    /// Where a batch-major tensor of `n` elements (each of this window's
    /// rows a contiguous `n / rows` of them, as `[batch, ...]` and
    /// `[batch * seq, ...]` are) begins in the whole batch's: `first ·
    /// n / rows` while a window is open and `rows` divides `n`, else 0.
    pub fn offset(n: usize) -> usize {
        WINDOW.with(|w| match w.get() {
            Some((first, rows)) if rows > 0 && n.is_multiple_of(rows) => first * (n / rows),
            _ => 0,
        })
    }
}

impl Drop for RowWindow {
    fn drop(&mut self) {
        WINDOW.with(|w| w.set(self.before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_batch_in_order() {
        for total in 1..9 {
            for size in 1..5 {
                let parts: Vec<_> = (0..size).map(|r| split(total, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, total);
                assert!(parts.windows(2).all(|p| p[0].end == p[1].start));
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn the_window_gives_its_rows_offset_and_closes() {
        assert_eq!(RowWindow::offset(12), 0);
        {
            let _w = RowWindow::open(4..7);
            // [3, 4] and [3 * 2, 2] alike begin at row 4 of the whole batch.
            assert_eq!(RowWindow::offset(12), 16);
            assert_eq!(RowWindow::offset(13), 0);
            {
                let _inner = RowWindow::open(1..2);
                assert_eq!(RowWindow::offset(5), 5);
            }
            assert_eq!(RowWindow::offset(3), 4);
        }
        assert_eq!(RowWindow::offset(12), 0);
    }
}
