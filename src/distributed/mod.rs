//! Distributed: data-parallel training over several processes, GPUs or
//! hosts. Beside the ground floor: any floor may use it.
//!
//! Every rank holds a replica of the model. The continual loop
//! ([`ContinualTrainer::with_collective`](crate::continual::ContinualTrainer::with_collective))
//! collates the whole batch on every rank, takes its rows ([`split`],
//! [`Shard`]), weights its loss by its share of the objective's terms and
//! sums the gradients of all ranks ([`all_reduce_gradients`]) before the
//! soft-masked step, so the mask, AdamW and every check see the same
//! gradients on every rank, and the same as one process would. Importance
//! and evaluation split their batches across ranks and sum.
//!
//! The [`Collective`] trait is the one seam: [`SingleProcess`] by default,
//! `Mpi` with the feature `mpi` (rsmpi, under `mpirun`). burn 0.22 has
//! collectives on CUDA inside one process only, so MPI does the moving and
//! the crate decides what to reduce and when.

pub mod collective;
pub mod gradients;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod shard;

pub use collective::{
    Collective, SingleProcess, agree, any, barrier, broadcast_bytes, broadcast_f32, check_same,
};
pub use gradients::{all_reduce_gradients, broadcast_weights};
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
pub use shard::{RowWindow, Shard, count_per_row, split, take_rows};
