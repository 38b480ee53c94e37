//! The seed notebook, end to end, on its own three reviews.
//!
//! Vocabulary, grouping, importance of the gated units (KL to a duplicate
//! model, the notebook's cumulative accumulation), then 10 epochs of Adam at
//! 0.003 with the soft-mask. Then the same training with no mask, with the
//! gradient mask and with the update mask, from the same start and the same
//! dropout noise, to show how far the protected units moved under each:
//! Adam cancels a gradient mask; an update mask holds.
//!
//! ```text
//! cargo run --release --example continual_pretrain -- [--device flex] [--seed 0] [--epochs 10]
//! cargo run --example continual_pretrain -- --help
//! ```

use std::path::Path;
use std::process::ExitCode;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use clap::Parser;
use softmask::*;

mod common;

/// The seed notebook end to end on its three reviews: importance, then the
/// same training with no mask, the gradient mask and the update mask.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// The device: flex, ndarray, or with their cargo features wgpu, wgpu-cpu, vulkan, cuda, cuda:N
    #[arg(long = "device", value_name = "NAME", default_value = "flex")]
    device_name: String,
    /// Seed of the weights, the data order and the dropout
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Epochs of each of the three trainings
    #[arg(long, value_name = "N", default_value_t = 10)]
    epochs: usize,
}

const MAX_SEQ_LENGTH: usize = 50;
const BATCH_SIZE: usize = 2;
const LR: f64 = 0.003;

fn main() -> ExitCode {
    let args = Args::parse();
    match open_device(&args.device_name) {
        // A device that does not open is a usage error here.
        Err(e) => common::exit(Err(e), 2),
        Ok(device) => common::exit(run(&args, &device.autodiff()), 1),
    }
}

fn run(args: &Args, device: &Device) -> Result<()> {
    device.seed(args.seed);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/notebook_reviews.txt");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    let corpus: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    // Tokenize and group.
    let tokenizer = WordTokenizer::from_corpus(&corpus, UnknownWords::Error);
    let data = GroupedDataset::from_texts(
        &tokenizer,
        &corpus,
        &GroupConfig::new(MAX_SEQ_LENGTH).with_seed(args.seed),
    )?;
    println!(
        "device {}, seed {}: {} words in the vocabulary, {} chunks of {MAX_SEQ_LENGTH} tokens",
        args.device_name,
        args.seed,
        tokenizer.vocab_size(),
        data.examples().len()
    );

    // The model and the duplicate of the notebook (default sizes, dropout 0.2).
    let config = SoftMaskNetConfig::new();
    let model = config.init(device)?;
    let proxy = KlToModel::new(config.init(device)?);
    let vocab = config.vocab_size;

    // Importance, the notebook's way.
    let mut estimator = ImportanceEstimator::new(
        model.gate_layout(),
        Accumulation::Cumulative,
        GradientSign::Signed,
    )?;
    for batch in data.batches(BATCH_SIZE, Shuffle::Seeded(args.seed), vocab, device)? {
        estimator.step(&model, &batch?, &proxy)?;
    }
    let importance = estimator.finish(Normalization::Reference)?;
    for gate in importance.gates() {
        let values: Vec<String> = gate.values.iter().map(|v| format!("{v:.4}")).collect();
        println!("{}_impt: [[{}]]", gate.name, values.join(", "));
    }
    for gate in importance.gates() {
        println!("{}_impt size: [{}, {}]", gate.name, gate.rows, gate.units);
    }
    for (name, usage) in importance.usage() {
        println!("{name}_impt usage: {usage}");
    }

    // Training with the soft-mask, three ways from the same start.
    println!(
        "\ntraining: {} epochs of Adam, lr {LR}, batch {BATCH_SIZE}",
        args.epochs
    );
    let mut trained = Vec::new();
    for mode in [None, Some(MaskMode::Gradient), Some(MaskMode::Update)] {
        device.seed(args.seed + 1);
        let label = match mode {
            None => "no mask",
            Some(MaskMode::Gradient) => "gradient mask (the notebook)",
            Some(MaskMode::Update) => "update mask",
        };
        let (after, losses) = train(model.clone(), &data, &importance, mode, args, vocab, device)?;
        let losses: Vec<String> = losses.iter().map(|l| format!("{l:.4}")).collect();
        println!(
            "{label:>28}: mean loss per example by epoch [{}]",
            losses.join(", ")
        );
        trained.push(after);
    }

    // How far the units moved.
    let moved: Vec<Vec<Vec<f32>>> = trained
        .iter()
        .map(|m| unit_movement(&model, m))
        .collect::<Result<_>>()?;
    println!("\nmovement of each unit's parameters relative to unmasked training (median ratio):");
    println!(
        "{:>6} {:>22} {:>15} {:>13}",
        "layer", "units", "gradient mask", "update mask"
    );
    for (g, gate) in importance.gates().iter().enumerate() {
        for (label, keep) in [("important (I >= 0.5)", true), ("others (I < 0.5)", false)] {
            let ratio = |k: usize| {
                let r: Vec<f32> = (0..gate.values.len())
                    .filter(|&u| (gate.values[u] >= 0.5) == keep && moved[0][g][u] > 0.0)
                    .map(|u| moved[k][g][u] / moved[0][g][u])
                    .collect();
                median(r)
            };
            println!(
                "{:>6} {label:>22} {:>15} {:>13}",
                gate.name,
                fmt(ratio(1)),
                fmt(ratio(2))
            );
        }
    }
    // With the gradient mask the ratios stay within a hair of 1 (Adam cancels
    // the scale), so their correlation with 1 - I is noise; the span shows it.
    for (k, label) in [(1, "gradient"), (2, "update")] {
        let (xs, ys): (Vec<f32>, Vec<f32>) = importance
            .gates()
            .iter()
            .enumerate()
            .flat_map(|(g, gate)| {
                let moved = &moved;
                gate.values
                    .iter()
                    .enumerate()
                    .filter(move |&(u, _)| moved[0][g][u] > 0.0)
                    .map(move |(u, i)| (1.0 - i, moved[k][g][u] / moved[0][g][u]))
            })
            .unzip();
        let (lo, hi) = ys
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &y| (a.min(y), b.max(y)));
        println!(
            "{label} mask: movement ratios span {lo:.3}..{hi:.3}; correlation with 1 - I {:.3}",
            correlation(&xs, &ys)
        );
    }
    Ok(())
}

/// Trains a copy of `model` for `args.epochs` on `device`; returns it and the mean loss per example of each epoch.
fn train(
    mut model: SoftMaskNet,
    data: &GroupedDataset,
    importance: &Importance,
    mode: Option<MaskMode>,
    args: &Args,
    vocab: usize,
    device: &Device,
) -> Result<(SoftMaskNet, Vec<f32>)> {
    let adam = || AdamConfig::new().with_epsilon(1e-8).init();
    let mut masked = match mode {
        Some(mode) => Some(SoftMaskedOptimizer::new(adam(), importance, &model, mode)?),
        None => None,
    };
    let mut plain = adam();
    let mut epoch_losses = Vec::with_capacity(args.epochs);
    for epoch in 0..args.epochs {
        let (mut total, mut examples) = (0.0, 0usize);
        let order = Shuffle::Seeded(args.seed + 100 + epoch as u64);
        for batch in data.batches(BATCH_SIZE, order, vocab, device)? {
            let batch = batch?;
            let n = batch.dims()[0];
            let loss = binary_cross_entropy(model.forward(batch.input_ids, None)?, batch.labels)?;
            total += loss.clone().into_scalar::<f32>() * n as f32;
            examples += n;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            match masked.as_mut() {
                Some(optim) => optim.step(LR, &mut model, grads)?,
                None => model = plain.step(LR, model, grads),
            }
        }
        epoch_losses.push(total / examples as f32);
    }
    Ok((model, epoch_losses))
}

fn median(mut v: Vec<f32>) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

fn fmt(v: Option<f32>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn correlation(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len() as f32;
    let (mx, my) = (x.iter().sum::<f32>() / n, y.iter().sum::<f32>() / n);
    let cov: f32 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f32 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f32 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}
