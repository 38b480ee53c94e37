//! Continual pre-training of a real BERT through a sequence of domains, with
//! one of the methods (`ncl`, `dga`, `das`, `ewc`, `das-permuted`,
//! `das-uniform`), held-out evaluation after every domain, checkpoints and
//! resume.
//!
//! ```text
//! tools/fetch_minilm.sh     # all-MiniLM-L6-v2 into .cache/all-MiniLM-L6-v2
//! tools/fetch_domains.sh    # Debian's kernel and Python docs, fortunes, into .cache/domains
//! cargo run --example continual_domains -- \
//!     --model .cache/all-MiniLM-L6-v2 \
//!     --domain kernel=.cache/domains/linux-doc --domain python=.cache/domains/python-doc \
//!     --general .cache/domains/fortunes --method das --steps 40 --out runs/das [--resume]
//! ```
//!
//! Every option of the method can be overridden: `--steps`, `--batch-size`,
//! `--seq-len`, `--lr`, `--warmup`, `--importance-batches`, `--mask-mode
//! gradient|update`, `--optimizer adamw|sgd`, `--strength`,
//! `--ungoverned-damping`, `--ewc-lambda`, `--no-contrastive`, `--temperature`,
//! `--seed`, `--checkpoint-every`, `--head-layout semantic|reference`,
//! `--importance-batch-size`, `--normalization reference|one-sided`,
//! `--sign signed|absolute`;
//! `--max-chunks N` caps each side of a domain,
//! `--device flex|ndarray|wgpu|wgpu-cpu|vulkan|cuda|cuda:N` picks the device
//! (the GPU ones with their cargo features).
//!
//! The run folder receives `results.{json,csv,md,svg}`, an importance heatmap
//! after each domain, `log.jsonl`, `importance/` and `checkpoints/` (the last
//! one a Hugging Face folder `SoftMaskBert::from_pretrained` loads).

use std::path::PathBuf;
use std::process::ExitCode;

use softmask::continual::{
    BertMlmCollate, ContinualTrainer, Domain, MethodConfig, OptimizerKind, Progress,
    TokenizedDomain,
};
use softmask::{
    Error, GradientSign, HeadMaskLayout, MaskMode, Normalization, Result, SoftMaskBert, Tokenizer,
    WordPieceTokenizer, open_device,
};

struct Args {
    model: PathBuf,
    domains: Vec<(String, PathBuf)>,
    general: Option<PathBuf>,
    out: PathBuf,
    resume: bool,
    device: String,
    max_chunks: usize,
    head_layout: HeadMaskLayout,
    config: MethodConfig,
}

fn parse() -> std::result::Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // The method first: its preset is what the other options override.
    let method = argv
        .windows(2)
        .find(|w| w[0] == "--method")
        .map_or("das".to_string(), |w| w[1].clone());
    let config = MethodConfig::preset(&method).map_err(|e| e.to_string())?;
    let mut a = Args {
        model: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/all-MiniLM-L6-v2"),
        domains: Vec::new(),
        general: None,
        out: PathBuf::new(),
        resume: false,
        device: "flex".into(),
        max_chunks: 400,
        head_layout: HeadMaskLayout::Semantic,
        config,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--resume" => {
                a.resume = true;
                continue;
            }
            "--no-contrastive" => {
                a.config.contrastive = false;
                continue;
            }
            _ => {}
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let int = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        let real = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        let c = &mut a.config;
        match flag.as_str() {
            "--method" => {}
            "--model" => a.model = v.into(),
            "--domain" => {
                let (name, path) = v
                    .split_once('=')
                    .ok_or(format!("--domain takes NAME=PATH, got {v:?}"))?;
                a.domains.push((name.to_string(), path.into()));
            }
            "--general" => a.general = Some(v.into()),
            "--out" => a.out = v.into(),
            "--device" => a.device = v,
            "--max-chunks" => a.max_chunks = int(&v)?,
            "--head-layout" => {
                a.head_layout = one_of(
                    &flag,
                    &v,
                    [
                        ("semantic", HeadMaskLayout::Semantic),
                        ("reference", HeadMaskLayout::Reference),
                    ],
                )?;
            }
            "--steps" => c.steps_per_domain = int(&v)?,
            "--batch-size" => c.batch_size = int(&v)?,
            "--seq-len" => c.seq_len = int(&v)?,
            "--importance-batches" => c.importance_batches = int(&v)?,
            "--importance-batch-size" => c.importance_batch_size = Some(int(&v)?),
            "--normalization" => {
                c.normalization = one_of(
                    &flag,
                    &v,
                    [
                        ("reference", Normalization::Reference),
                        ("one-sided", Normalization::OneSided),
                    ],
                )?;
            }
            "--sign" => {
                c.sign = one_of(
                    &flag,
                    &v,
                    [
                        ("signed", GradientSign::Signed),
                        ("absolute", GradientSign::Absolute),
                    ],
                )?;
            }
            "--checkpoint-every" => c.checkpoint_every = int(&v)?,
            "--seed" => c.seed = v.parse().map_err(|e| format!("--seed: {e}"))?,
            "--lr" => c.lr = real(&v)?,
            "--warmup" => c.warmup_fraction = real(&v)?,
            "--strength" => c.strength = real(&v)?,
            "--ungoverned-damping" => c.ungoverned_damping = real(&v)?,
            "--ewc-lambda" => c.ewc_lambda = real(&v)?,
            "--temperature" => c.temperature = real(&v)?,
            "--mask-mode" => {
                c.mask_mode = one_of(
                    &flag,
                    &v,
                    [
                        ("update", MaskMode::Update),
                        ("gradient", MaskMode::Gradient),
                    ],
                )?;
            }
            "--optimizer" => {
                c.optimizer = one_of(
                    &flag,
                    &v,
                    [
                        ("adamw", OptimizerKind::AdamW { weight_decay: 0.01 }),
                        ("sgd", OptimizerKind::Sgd { momentum: 0.9 }),
                    ],
                )?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.domains.is_empty() {
        return Err("name at least one --domain NAME=PATH".into());
    }
    if a.out.as_os_str().is_empty() {
        return Err("name the run folder with --out DIR".into());
    }
    Ok(a)
}

/// The value named `v` among `choices`; the error names the flag and the choices.
fn one_of<T, const N: usize>(flag: &str, v: &str, choices: [(&str, T); N]) -> Result<T, String> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    choices
        .into_iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| t)
        .ok_or_else(|| format!("{flag}: {v:?} is not {}", names.join(" or ")))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// At most `max` chunks, spread over the whole side.
fn cap(chunks: Vec<Vec<u32>>, max: usize) -> Vec<Vec<u32>> {
    if chunks.len() <= max {
        return chunks;
    }
    let stride = chunks.len() as f64 / max as f64;
    (0..max)
        .map(|i| chunks[(i as f64 * stride) as usize].clone())
        .collect()
}

fn run(args: Args) -> Result<()> {
    let started = std::time::Instant::now();
    let device = open_device(&args.device)?.autodiff();
    // The MLM head of a checkpoint without one is drawn from this seed, so a
    // resumed run starts from the same base model.
    device.seed(args.config.seed);
    let (model, config) = SoftMaskBert::from_pretrained(&args.model, &device)?;
    let model = model.with_head_layout(args.head_layout);
    let tokenizer =
        WordPieceTokenizer::from_file(args.model.join("tokenizer.json"), args.config.seq_len)?;
    let id = |t: &str| {
        tokenizer
            .token_id(t)
            .ok_or_else(|| Error::InvalidConfig(format!("the tokenizer has no {t} token")))
    };
    let collate = BertMlmCollate::new(
        id("[MASK]")?,
        id("[PAD]")?,
        config.vocab_size,
        tokenizer.special_ids(),
    )?;
    let seq = args.config.seq_len;
    let mut domains: Vec<TokenizedDomain> = Vec::new();
    for (name, path) in &args.domains {
        let d = Domain::from_path(name.as_str(), path)?.tokenize(&tokenizer, seq, 1)?;
        eprintln!(
            "domain {name}: {} training and {} held-out chunks of {seq} tokens (capped at {})",
            d.train.len(),
            d.held_out.len(),
            args.max_chunks
        );
        domains.push(TokenizedDomain {
            train: cap(d.train, args.max_chunks),
            held_out: cap(d.held_out, args.max_chunks / 4 + 1),
            ..d
        });
    }
    let general = match &args.general {
        Some(path) => {
            let d = Domain::from_path("general", path)?.tokenize(&tokenizer, seq, 1)?;
            Some(cap(d.held_out, args.max_chunks / 4 + 1))
        }
        None => None,
    };
    eprintln!(
        "method {} on {} ({} tokens in the vocabulary), {} steps per domain of {} x {seq}",
        args.config.name,
        args.model.display(),
        tokenizer.vocab_size(),
        args.config.steps_per_domain,
        args.config.batch_size
    );
    let mut trainer = ContinualTrainer::new(args.config, collate, &args.out)?
        .with_observer(Box::new(Progress::new(10)));
    let outcome = trainer.run(model, &domains, general.as_deref(), args.resume)?;
    println!("{}", outcome.results.to_table());
    println!(
        "wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
