//! Time and bytes of one gradient all-reduce over MPI (feature `mpi`), at
//! the sizes of all-MiniLM-L6-v2 and SmolLM2-135M, through
//! [`all_reduce_gradients`]'s path: host floats summed in place.
//!
//! ```text
//! cargo build --features mpi --example bench_allreduce
//! mpirun --allow-run-as-root --oversubscribe -np 2 target/debug/examples/bench_allreduce
//! ```
//!
//! [`all_reduce_gradients`]: softmask::distributed::all_reduce_gradients

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use softmask::distributed::{Collective, Mpi, barrier};

/// Times all-reduces of gradient-sized buffers; rank 0 prints the medians.
#[derive(Parser)]
struct Args {
    /// Repetitions per size (the median is printed)
    #[arg(long, default_value_t = 7)]
    reps: usize,
}

/// (model, parameters).
const SIZES: [(&str, usize); 2] = [
    ("all-MiniLM-L6-v2", 22_713_216),
    ("SmolLM2-135M", 134_515_008),
];

fn main() -> ExitCode {
    let args = Args::parse();
    let world = match Mpi::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if world.rank() == 0 {
        println!(
            "| model | floats | MB | ranks | all-reduce ms (median of {}) | GB/s (bus, 2(N-1)/N) |",
            args.reps
        );
        println!("|---|---:|---:|---:|---:|---:|");
    }
    for (name, n) in SIZES {
        let mut buf = vec![world.rank() as f32 + 0.5; n];
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps + 1 {
            if barrier(&world).is_err() {
                return ExitCode::FAILURE;
            }
            let t = Instant::now();
            if world.all_reduce_sum(&mut buf).is_err() {
                return ExitCode::FAILURE;
            }
            times.push(t.elapsed().as_secs_f64());
        }
        times.remove(0); // the first one warms the transport up
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let size = world.size() as f64;
        let bytes = 4.0 * n as f64;
        if world.rank() == 0 {
            println!(
                "| {name} | {n} | {:.1} | {} | {:.1} | {:.2} |",
                bytes / 1e6,
                world.size(),
                median * 1e3,
                2.0 * (size - 1.0) / size * bytes / median / 1e9
            );
        }
    }
    ExitCode::SUCCESS
}
