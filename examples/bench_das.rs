//! One DAS training step on a real BERT, timed: MLM (15% of the tokens
//! masked) plus DAS's contrastive term (two dropout views and an
//! importance-gated view of the original tokens), then an update-masked
//! AdamW step. Also the plain update-masked MLM step, and the MLM-proxy
//! importance pass (gate gradients of the MLM loss). Prints the median and
//! minimum wall time of each as JSON lines; `tools/bench/compare_das.py`
//! runs it beside `tools/bench/torch_das.py` (the same in PyTorch).
//!
//! ```text
//! tools/fetch_minilm.sh
//! cargo run --release --example bench_das -- [--model .cache/all-MiniLM-L6-v2] [--iters 5] [--batch 8] [--seq 128]
//!     [--device flex] [--ops das_step,mlm_step,importance]
//! cargo run --example bench_das -- --help
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use clap::Parser;
use clap::builder::PossibleValuesParser;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::continual::{
    Collate, ContinualModel, MlmChunkCollate, OptimizerKind, contrastive_loss,
};
use softmask::{
    Accumulation, Gates, GradientSign, ImportanceEstimator, MaskMode, MlmLoss, Result,
    SoftMaskBert, SoftMaskable, SoftMaskedOptimizer, open_device,
};

mod common;
mod timing;

/// The operations timed, in the order of each round.
const OPS: [&str; 3] = ["das_step", "mlm_step", "importance"];

/// One DAS training step on a real BERT, the plain update-masked MLM step and
/// the MLM-proxy importance pass, timed; one JSON line per operation.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Hugging Face checkpoint folder (config.json, model.safetensors)
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/all-MiniLM-L6-v2"))]
    model: PathBuf,
    /// Timed iterations of each operation, after one warm-up
    #[arg(long, value_name = "N", default_value_t = 5)]
    iters: usize,
    /// Rows per batch
    #[arg(long, value_name = "N", default_value_t = 8)]
    batch: usize,
    /// Tokens per row
    #[arg(long, value_name = "N", default_value_t = 128)]
    seq: usize,
    /// The device: flex, ndarray, or with their cargo features wgpu, wgpu-cpu, vulkan, cuda, cuda:N
    #[arg(long, value_name = "NAME", default_value = "flex")]
    device: String,
    /// The operations to time, a comma list
    #[arg(long, value_name = "OPS", value_delimiter = ',', default_value = "das_step,mlm_step,importance", value_parser = PossibleValuesParser::new(OPS))]
    ops: Vec<String>,
}

fn main() -> ExitCode {
    common::exit(run(&Args::parse()), 1)
}

fn run(args: &Args) -> Result<()> {
    let dev = open_device(&args.device)?.autodiff();
    dev.seed(0);
    let (mut model, config) = SoftMaskBert::from_pretrained(&args.model, &dev)?;
    // Token ids drawn from the ordinary vocabulary (past the special tokens),
    // a [CLS] first: the same rows on both sides of the comparison.
    let mut rng = StdRng::seed_from_u64(0);
    let rows: Vec<Vec<u32>> = (0..args.batch)
        .map(|_| {
            std::iter::once(101)
                .chain((1..args.seq).map(|_| rng.random_range(1000..config.vocab_size as u32)))
                .collect()
        })
        .collect();
    let collate = MlmChunkCollate::new(103, 0, config.vocab_size, vec![0, 100, 101, 102, 103])?;
    // A fixed importance in [0, 1).
    let layout = model.gate_layout();
    let importance = timing::fixed_importance(&layout)?;
    let gates = Gates::from_tensors(
        importance
            .gates()
            .iter()
            .map(|g| {
                Tensor::<2>::from_data(TensorData::new(g.values.clone(), [g.rows, g.units]), &dev)
            })
            .collect(),
        &layout,
    )?;
    let adamw = OptimizerKind::adamw(0.01);
    let mut optim = SoftMaskedOptimizer::new(adamw.init()?, &importance, &model, MaskMode::Update)?;
    let mut estimator =
        ImportanceEstimator::new(layout.clone(), Accumulation::PerBatch, GradientSign::Signed)?;
    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..args.iters + 1 {
        for (op, t) in times.iter_mut().enumerate() {
            if !args.ops.iter().any(|o| o == OPS[op]) {
                continue;
            }
            let b = collate.collate(&rows, i as u64, &dev)?;
            let start = Instant::now();
            if op == 2 {
                // The MLM-proxy importance pass: gate gradients only.
                estimator.step(&model, &b, &MlmLoss)?;
                if i > 0 {
                    t.push(start.elapsed().as_secs_f64() * 1e3);
                }
                continue;
            }
            let mut loss = model.loss(&b, None)?;
            if op == 0 {
                let z1 = model.pooled(&b, None)?;
                let z2 = model.pooled(&b, None)?;
                let z3 = model.pooled(&b, Some(&gates))?;
                loss = loss + contrastive_loss(z1, z2, z3, 0.05)?;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(1e-5, &mut model, grads)?;
            if i > 0 {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for (op, t) in OPS.iter().zip(times) {
        timing::print_timing(op, &args.device, t, "");
    }
    Ok(())
}
