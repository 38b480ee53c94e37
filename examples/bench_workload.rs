//! Runs benchmark operations of one workload, interleaved round-robin in one
//! process (so a noisy machine weighs on all alike), and prints the median
//! wall time per iteration of each as a JSON line. `tools/bench/compare.py` drives it
//! (side by side with PyTorch, and under `/usr/bin/time -v` for peak memory);
//! `cargo bench` measures the same workloads with criterion.
//!
//! ```text
//! cargo run --release --example bench_workload -- --workload wide --ops step_plain,step_update --device flex --iters 20
//! cargo run --example bench_workload -- --help
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use clap::builder::PossibleValuesParser;

mod common;
#[path = "../benches/support/workloads.rs"]
mod workloads;

/// Benchmark operations of one workload, interleaved round-robin; one JSON
/// line per operation with its median and minimum wall time.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// The workload
    #[arg(long, value_name = "NAME", default_value = "notebook", value_parser = PossibleValuesParser::new(workloads::WORKLOADS.map(|w| w.name)))]
    workload: String,
    /// The operations to time, a comma list
    #[arg(long, value_name = "OPS", value_delimiter = ',', default_value = "step_update", value_parser = PossibleValuesParser::new(workloads::OPS))]
    ops: Vec<String>,
    /// The device (a CPU one built in)
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = PossibleValuesParser::new(softmask::cpu_devices().into_iter().map(|(name, _)| name)))]
    device: String,
    /// Timed iterations of each operation
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = at_least_one)]
    iters: usize,
    /// Untimed iterations of each operation first
    #[arg(long, value_name = "N", default_value_t = 5)]
    warmup: usize,
}

/// A count of at least 1.
fn at_least_one(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(0) => Err("at least 1".into()),
        n => n.map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (workload, device) = (&args.workload, &args.device);
    // The parser admits only these names.
    let Some(w) = workloads::WORKLOADS.iter().find(|w| w.name == workload) else {
        return common::exit(Err(format!("unknown workload {workload:?}")), 2);
    };
    let Some((_, dev)) = workloads::devices().into_iter().find(|(n, _)| n == device) else {
        return common::exit(Err(format!("device {device:?} is not built in")), 2);
    };
    let (ops, iters, warmup) = (&args.ops, args.iters, args.warmup);
    let run = || -> softmask::Result<Vec<Vec<f64>>> {
        let mut setups = ops
            .iter()
            .map(|op| w.setup(op, &dev))
            .collect::<softmask::Result<Vec<_>>>()?;
        let mut times = vec![Vec::with_capacity(iters); ops.len()];
        for i in 0..warmup + iters {
            for ((op, setup), t) in ops.iter().zip(&mut setups).zip(&mut times) {
                let start = Instant::now();
                setup.run(op)?;
                if i >= warmup {
                    t.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        Ok(times)
    };
    match run() {
        Ok(times) => {
            for (op, mut t) in ops.iter().zip(times) {
                t.sort_by(f64::total_cmp);
                println!(
                    "{{\"side\": \"rust\", \"workload\": \"{workload}\", \"op\": \"{op}\", \"device\": \"{device}\", \"iters\": {iters}, \"median_ms\": {:.4}, \"min_ms\": {:.4}}}",
                    t[t.len() / 2],
                    t[0]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => common::exit(Err(e), 1),
    }
}
