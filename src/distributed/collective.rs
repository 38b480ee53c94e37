//! The collective seam: what data-parallel training asks of the processes
//! it runs on (rank, world size, all-reduce, broadcast), with the
//! single-process implementation every run gets by default.

use crate::error::{Error, Result};

/// The few collective operations data-parallel training needs, over host
/// buffers. Every rank calls the same operations in the same order with
/// buffers of the same length; [`SingleProcess`] (one rank) leaves them as
/// they are, `Mpi` (feature `mpi`) runs them over MPI.
///
/// The crate decides what to reduce and when; an implementation only moves
/// bytes. A transport that reports a failure returns [`Error::Distributed`]
/// (MPI's default error handler ends the job instead).
///
/// ```
/// use softmask::distributed::{Collective, SingleProcess};
///
/// let one = SingleProcess;
/// let mut grads = [1.0f32, 2.0];
/// one.all_reduce_sum(&mut grads)?;
/// assert_eq!((one.rank(), one.size(), grads), (0, 1, [1.0, 2.0]));
/// # Ok::<(), softmask::Error>(())
/// ```
pub trait Collective {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// How many ranks take part.
    fn size(&self) -> usize;

    /// This process's rank among the ranks on its host (which GPU it opens).
    fn local_rank(&self) -> usize {
        self.rank()
    }

    /// Replaces `buf` on every rank with the element-wise sum over ranks.
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when the transport fails.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;

    /// [`all_reduce_sum`](Self::all_reduce_sum) in double precision (sums
    /// of losses and counts).
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when the transport fails.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;

    /// Replaces `buf` on every rank with the element-wise maximum over ranks.
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when the transport fails.
    fn all_reduce_max(&self, buf: &mut [f64]) -> Result<()>;

    /// Copies rank `root`'s `buf` into every rank's `buf` (all of one length).
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when the transport fails.
    fn broadcast(&self, buf: &mut [u8], root: usize) -> Result<()>;
}

/// One process: rank 0 of 1; every collective is the identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_max(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast(&self, _buf: &mut [u8], _root: usize) -> Result<()> {
        Ok(())
    }
}

/// Rank 0's bytes on every rank, whatever their length there.
///
/// # Errors
///
/// [`Error::Distributed`] when the transport fails.
pub fn broadcast_bytes(c: &dyn Collective, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut len = (bytes.len() as u64).to_le_bytes();
    c.broadcast(&mut len, 0)?;
    let mut out = if c.rank() == 0 {
        bytes.to_vec()
    } else {
        vec![0u8; u64::from_le_bytes(len) as usize]
    };
    c.broadcast(&mut out, 0)?;
    Ok(out)
}

/// Rank 0's floats copied into every rank's `values` (of one length).
///
/// # Errors
///
/// [`Error::Distributed`] when the transport fails.
pub fn broadcast_f32(c: &dyn Collective, values: &mut [f32]) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    c.broadcast(&mut bytes, 0)?;
    for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// Whether any rank says `flag` (every rank gets the same answer).
///
/// # Errors
///
/// [`Error::Distributed`] when the transport fails.
pub fn any(c: &dyn Collective, flag: bool) -> Result<bool> {
    let mut v = [f64::from(u8::from(flag))];
    c.all_reduce_max(&mut v)?;
    Ok(v[0] > 0.0)
}

/// Waits until every rank has come here (after rank 0 wrote what the
/// others read).
///
/// # Errors
///
/// [`Error::Distributed`] when the transport fails.
pub fn barrier(c: &dyn Collective) -> Result<()> {
    any(c, false).map(|_| ())
}

/// Every rank's result of a step that may fail on some ranks only: `Ok` on
/// all when all succeeded; otherwise every rank returns an error, the
/// failing ones their own and the others an [`Error::Distributed`] naming
/// `what`, so no rank goes on into a collective the others never reach.
///
/// # Errors
///
/// As above, and [`Error::Distributed`] when the transport fails.
pub fn agree<T>(c: &dyn Collective, what: &str, result: Result<T>) -> Result<T> {
    if c.size() == 1 {
        return result;
    }
    let failed = any(c, result.is_err())?;
    match result {
        Err(e) => Err(e),
        Ok(_) if failed => Err(Error::Distributed(format!(
            "another rank failed in {what}; its error is in its output"
        ))),
        Ok(v) => Ok(v),
    }
}

/// Checks that every rank holds the same `bytes` (the run's identity:
/// model, data, method, seed, crate version) as rank 0; every rank returns
/// the same error naming `what` otherwise.
///
/// # Errors
///
/// [`Error::Distributed`] when the ranks disagree or the transport fails.
pub fn check_same(c: &dyn Collective, what: &str, bytes: &[u8]) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let root = broadcast_bytes(c, bytes)?;
    let differs = root != bytes;
    let mut v = [if differs { c.rank() as f64 + 1.0 } else { 0.0 }];
    c.all_reduce_max(&mut v)?;
    if v[0] > 0.0 {
        return Err(Error::Distributed(format!(
            "the ranks disagree on {what}: rank {} differs from rank 0 (same model, data, \
             method, seed and softmask version on every rank?)",
            v[0] as usize - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_keeps_every_buffer() {
        let c = SingleProcess;
        let mut f = [3.0f32, -1.0];
        let mut d = [2.5f64];
        c.all_reduce_sum(&mut f).unwrap();
        c.all_reduce_max(&mut d).unwrap();
        assert_eq!((f, d), ([3.0, -1.0], [2.5]));
        assert_eq!(broadcast_bytes(&c, b"abc").unwrap(), b"abc");
        assert!(any(&c, true).unwrap() && !any(&c, false).unwrap());
        check_same(&c, "x", b"anything").unwrap();
        assert!(matches!(
            agree::<()>(&c, "x", Err(Error::BadBatch("b".into()))),
            Err(Error::BadBatch(_))
        ));
    }
}
