//! [`Mpi`]: the [`Collective`] over MPI (rsmpi), for `mpirun` across
//! processes, GPUs and hosts (feature `mpi`).

use std::cell::RefCell;

use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::collective::Collective;
use crate::error::{Error, Result};

/// MPI counts are C ints: buffers go in pieces of at most this many elements.
const PIECE: usize = 1 << 28;

/// The MPI world of this process, started by [`Mpi::init`] and finished
/// when dropped. Under `mpirun -np N` it is one of N ranks; started
/// directly, a world of one.
///
/// ```no_run
/// use softmask::distributed::{Collective, Mpi};
///
/// let world = Mpi::init()?;
/// let mut grads = vec![world.rank() as f32; 4];
/// world.all_reduce_sum(&mut grads)?;
/// # Ok::<(), softmask::Error>(())
/// ```
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    /// The send side of all-reduces, kept between calls: a gradient-sized
    /// buffer allocated afresh every step costs its page faults every step.
    send: RefCell<Vec<f32>>,
    /// The same for double-precision reductions (small: losses, counts).
    send_f64: RefCell<Vec<f64>>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .field("local_rank", &self.local_rank)
            .finish()
    }
}

impl Mpi {
    /// Initialises MPI (once per process).
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when MPI was already initialised in this process.
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Distributed("MPI is already initialised in this process".into())
        })?;
        let world = universe.world();
        let local_rank = world.split_shared(world.rank()).rank().max(0) as usize;
        Ok(Mpi {
            world,
            local_rank,
            send: RefCell::new(Vec::new()),
            send_f64: RefCell::new(Vec::new()),
            _universe: universe,
        })
    }

    /// `buf` reduced by `op` over every rank, in pieces MPI's counts hold.
    fn all_reduce<T: Equivalence + Copy>(
        &self,
        buf: &mut [T],
        send: &RefCell<Vec<T>>,
        op: SystemOperation,
    ) -> Result<()> {
        let mut send = send.borrow_mut();
        for piece in buf.chunks_mut(PIECE) {
            send.clear();
            send.extend_from_slice(piece);
            self.world.all_reduce_into(&send[..], piece, op);
        }
        Ok(())
    }

    /// Ends every rank of the job with exit status `code`: for an error one
    /// rank met alone, so that no other rank waits for it in a collective.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank().max(0) as usize
    }

    fn size(&self) -> usize {
        self.world.size().max(1) as usize
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.all_reduce(buf, &self.send, SystemOperation::sum())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.all_reduce(buf, &self.send_f64, SystemOperation::sum())
    }

    fn all_reduce_max(&self, buf: &mut [f64]) -> Result<()> {
        self.all_reduce(buf, &self.send_f64, SystemOperation::max())
    }

    fn broadcast(&self, buf: &mut [u8], root: usize) -> Result<()> {
        let size = self.size();
        if root >= size {
            return Err(Error::Distributed(format!(
                "broadcast from rank {root} in a world of {size}"
            )));
        }
        let root = self.world.process_at_rank(root as i32);
        for piece in buf.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
        Ok(())
    }
}
