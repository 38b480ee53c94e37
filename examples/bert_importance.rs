//! Soft-masking a real pre-trained BERT: importance of its heads and neurons,
//! then a few soft-masked MLM steps.
//!
//! Loads a Hugging Face checkpoint folder (`config.json`, `model.safetensors`,
//! `tokenizer.json`), reads a text file (one example per line), estimates head,
//! intermediate and output importance with the research code's proxy (KL between
//! two dropout passes of the model), prints head importance as a layers × heads
//! table and each gate's usage, then trains a few MLM steps with Adam and the
//! update soft-mask.
//!
//! ```text
//! tools/fetch_minilm.sh    # all-MiniLM-L6-v2 into .cache/all-MiniLM-L6-v2
//! cargo run --example bert_importance -- \
//!     [--model .cache/all-MiniLM-L6-v2] [--text examples/data/notebook_reviews.txt] \
//!     [--device flex] [--steps 3] [--max-length 64] [--batch 4]
//! cargo run --example bert_importance -- --help
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use burn::optim::{AdamConfig, GradientsParams};
use clap::Parser;
use softmask::*;

mod common;

/// Head and neuron importance of a pre-trained BERT, then a few MLM steps
/// with Adam and the update soft-mask.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json)
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/all-MiniLM-L6-v2"))]
    model: PathBuf,
    /// Text file, one example per line
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/notebook_reviews.txt"))]
    text: PathBuf,
    /// The device: flex, ndarray, or with their cargo features wgpu, wgpu-cpu, vulkan, cuda, cuda:N
    #[arg(long, value_name = "NAME", default_value = "flex")]
    device: String,
    /// MLM steps with the update soft-mask
    #[arg(long, value_name = "N", default_value_t = 3)]
    steps: usize,
    /// Tokens per text, at most
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_length: usize,
    /// Texts per batch
    #[arg(long, value_name = "N", default_value_t = 4)]
    batch: usize,
}

fn main() -> ExitCode {
    common::exit(run(&Args::parse()), 1)
}

fn run(args: &Args) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::ZeroSize { what: "batch" });
    }
    let device = open_device(&args.device)?.autodiff();
    device.seed(0);
    let started = std::time::Instant::now();
    let (mut model, config) = SoftMaskBert::from_pretrained(&args.model, &device)?;
    let tokenizer = HfTokenizer::from_file(args.model.join("tokenizer.json"), args.max_length)?;
    let text = std::fs::read_to_string(&args.text).map_err(|source| Error::Io {
        path: args.text.clone(),
        source,
    })?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err(Error::EmptyCorpus);
    }
    let batches: Vec<&[&str]> = lines.chunks(args.batch).collect();
    println!(
        "{}: {} layers, {} heads, hidden {}; {} texts in {} batches of up to {} tokens",
        args.model.display(),
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        lines.len(),
        batches.len(),
        args.max_length
    );

    // Importance for general knowledge: KL between two dropout passes.
    let mut estimator = ImportanceEstimator::new(
        model.gate_layout(),
        Accumulation::PerBatch,
        GradientSign::Absolute,
    )?;
    let batcher = BertTextBatcher::new(tokenizer.clone(), config.vocab_size)?;
    for texts in &batches {
        estimator.step(
            &model,
            &batcher.batch_texts(texts, &device)?,
            &KlToDropoutCopy,
        )?;
    }
    let importance = estimator.finish(Normalization::Reference)?;
    let heads = importance
        .get("heads")
        .ok_or_else(|| Error::LayoutMismatch("no head gate".into()))?;
    println!("\nhead importance (layers x heads):");
    print!("{:>7}", "");
    for h in 0..heads.units {
        print!("{h:>6}");
    }
    println!();
    for l in 0..heads.rows {
        print!("layer {l}");
        for v in heads.row(l).unwrap_or_default() {
            print!("{v:>6.2}");
        }
        println!();
    }
    for (name, usage) in importance.usage() {
        println!("{name} usage: {usage:.4}");
    }

    // A few MLM steps, soft-masked on the update (Adam).
    let mask_id = tokenizer
        .token_id("[MASK]")
        .ok_or_else(|| Error::InvalidConfig("the tokenizer has no [MASK] token".into()))?;
    let collator = MlmMasker::new(mask_id, config.vocab_size, tokenizer.special_ids(), 0)?;
    let mlm_batcher = BertTextBatcher::new(tokenizer, config.vocab_size)?.with_mlm(collator);
    let mut optim = SoftMaskedOptimizer::new(
        AdamConfig::new().init(),
        &importance,
        &model,
        MaskMode::Update,
    )?;
    println!("\nMLM with the update soft-mask:");
    for step in 0..args.steps {
        let batch = mlm_batcher.batch_texts(batches[step % batches.len()], &device)?;
        let loss = match model.mlm_loss(&batch, None) {
            Err(Error::BadBatch(_)) => continue, // nothing selected in this batch
            other => other?,
        };
        println!("step {step}: loss {:.4}", loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(5e-5, &mut model, grads)?;
    }
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
