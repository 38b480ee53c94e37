//! SmolLM2-135M timed: one update-masked causal-LM step (loss, backward,
//! AdamW, the update soft-mask over every head and intermediate unit) and
//! the importance pass (gate gradients of the causal-LM loss). Prints the
//! median and minimum wall time of each as JSON lines;
//! `tools/bench/compare_smollm2.py` runs it beside
//! `tools/bench/torch_smollm2.py` (the same in PyTorch + transformers, on
//! the same dequantized weights).
//!
//! ```text
//! tools/fetch_smollm2.sh
//! cargo run --release --example bench_smollm2 -- [--gguf .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
//!     [--iters 5] [--batch 4] [--seq 64] [--device flex] [--ops step,importance]
//! cargo run --example bench_smollm2 -- --help
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::optim::GradientsParams;
use clap::Parser;
use clap::builder::PossibleValuesParser;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::continual::{ContinualModel, OptimizerKind};
use softmask::model::llama::{CausalBatch, SoftMaskLlama};
use softmask::{
    Accumulation, GradientSign, ImportanceEstimator, MaskMode, Result, SoftMaskable,
    SoftMaskedOptimizer, open_device,
};

mod common;
mod timing;

/// The operations timed, in the order of each round.
const OPS: [&str; 2] = ["step", "importance"];

/// SmolLM2's update-masked causal-LM step and its importance pass, timed;
/// one JSON line per operation.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// A llama GGUF file
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))]
    gguf: PathBuf,
    /// Timed iterations of each operation, after one warm-up
    #[arg(long, value_name = "N", default_value_t = 5)]
    iters: usize,
    /// Rows per batch
    #[arg(long, value_name = "N", default_value_t = 4)]
    batch: usize,
    /// Tokens per row (all real)
    #[arg(long, value_name = "N", default_value_t = 64)]
    seq: usize,
    /// Seed of the token ids
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// The device: flex, ndarray, or with their cargo features wgpu, wgpu-cpu, vulkan, cuda, cuda:N
    #[arg(long, value_name = "NAME", default_value = "flex")]
    device: String,
    /// The operations to time, a comma list
    #[arg(long, value_name = "OPS", value_delimiter = ',', default_value = "step,importance", value_parser = PossibleValuesParser::new(OPS))]
    ops: Vec<String>,
}

fn main() -> ExitCode {
    common::exit(run(&Args::parse()), 1)
}

fn run(args: &Args) -> Result<()> {
    let dev = open_device(&args.device)?.autodiff();
    dev.seed(0);
    let mut model = SoftMaskLlama::from_gguf(&args.gguf, &dev)?;
    let vocab = model.config().vocab_size;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let rows: Vec<Vec<u32>> = (0..args.batch)
        .map(|_| {
            (0..args.seq)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect();
    let batch = CausalBatch::from_rows(&rows, 0, vocab, &dev)?;
    // A fixed importance in [0, 1).
    let layout = model.gate_layout();
    let importance = timing::fixed_importance(&layout)?;
    let adamw = OptimizerKind::adamw(0.01);
    let mut optim = SoftMaskedOptimizer::new(adamw.init()?, &importance, &model, MaskMode::Update)?;
    let mut estimator = ImportanceEstimator::new(
        layout.clone(),
        Accumulation::PerBatch,
        GradientSign::Absolute,
    )?;
    let proxy = |m: &SoftMaskLlama, g: &softmask::Gates, b: &CausalBatch| m.loss(b, Some(g));
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut loss_seen = f32::NAN;
    for i in 0..args.iters + 1 {
        for (op, t) in times.iter_mut().enumerate() {
            if !args.ops.iter().any(|o| o == OPS[op]) {
                continue;
            }
            let start = Instant::now();
            if op == 1 {
                estimator.step(&model, &batch, &proxy)?;
            } else {
                let loss = model.loss(&batch, None)?;
                if i == 0 {
                    loss_seen = loss.clone().into_scalar::<f32>();
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                optim.step(1e-4, &mut model, grads)?;
            }
            if i > 0 {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    // JSON has no NaN: null when no step ran.
    let first_loss = match loss_seen.is_finite() {
        true => loss_seen.to_string(),
        false => "null".into(),
    };
    for (op, t) in OPS.iter().zip(times) {
        let extra = format!(
            ", \"batch\": {}, \"seq\": {}, \"first_loss\": {first_loss}",
            args.batch, args.seq
        );
        timing::print_timing(op, &args.device, t, &extra);
    }
    Ok(())
}
