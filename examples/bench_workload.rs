//! Runs benchmark operations of one workload, interleaved round-robin in one
//! process (so a noisy machine weighs on all alike), and prints the median
//! wall time per iteration of each as a JSON line. `tools/bench/compare.py` drives it
//! (side by side with PyTorch, and under `/usr/bin/time -v` for peak memory);
//! `cargo bench` measures the same workloads with criterion.
//!
//! ```text
//! cargo run --release --example bench_workload -- --workload wide --ops step_plain,step_update --device flex --iters 20
//! ```

use std::process::ExitCode;
use std::time::Instant;

#[path = "../benches/support/workloads.rs"]
mod workloads;

fn main() -> ExitCode {
    let mut workload = "notebook".to_string();
    let mut ops = "step_update".to_string();
    let mut device = "flex".to_string();
    let (mut iters, mut warmup) = (50usize, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("{flag} needs a value");
            return ExitCode::from(2);
        };
        let parsed = match flag.as_str() {
            "--workload" => {
                workload = value;
                Ok(())
            }
            "--ops" => {
                ops = value;
                Ok(())
            }
            "--device" => {
                device = value;
                Ok(())
            }
            "--iters" => value.parse().map(|v| iters = v).map_err(|e| e.to_string()),
            "--warmup" => value.parse().map(|v| warmup = v).map_err(|e| e.to_string()),
            _ => Err(format!("unknown argument {flag}")),
        };
        if let Err(e) = parsed {
            eprintln!("{flag}: {e}");
            return ExitCode::from(2);
        }
    }
    let Some(w) = workloads::WORKLOADS.iter().find(|w| w.name == workload) else {
        eprintln!("unknown workload {workload:?}");
        return ExitCode::from(2);
    };
    let Some((_, dev)) = workloads::devices().into_iter().find(|(n, _)| *n == device) else {
        eprintln!("device {device:?} is not built in");
        return ExitCode::from(2);
    };
    let ops: Vec<&str> = ops.split(',').collect();
    if ops.iter().any(|op| !workloads::OPS.contains(op)) || iters == 0 {
        eprintln!(
            "--ops takes a comma list of {:?}; --iters at least 1",
            workloads::OPS
        );
        return ExitCode::from(2);
    }
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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
