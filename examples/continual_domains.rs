//! Continual pre-training of a real BERT, RoBERTa or decoder LLM through a sequence of
//! domains, with one of the methods (`ncl`, `dga`, `das`, `ewc`,
//! `das-permuted`, `das-uniform`), held-out evaluation after every domain,
//! checkpoints and resume. `--model` takes a BERT or RoBERTa folder (MLM), a Llama, Qwen2
//! or Mistral folder, or a llama GGUF file such as SmolLM2's
//! (`tools/fetch_smollm2.sh`; causal-LM loss, documents joined with the
//! end-of-text token).
//!
//! ```text
//! tools/fetch_minilm.sh     # all-MiniLM-L6-v2 into .cache/all-MiniLM-L6-v2
//! tools/fetch_domains.sh    # Debian's kernel and Python docs, fortunes, into .cache/domains
//! cargo run --example continual_domains -- \
//!     --model .cache/all-MiniLM-L6-v2 \
//!     --domain kernel=.cache/domains/linux-doc --domain python=.cache/domains/python-doc \
//!     --general .cache/domains/fortunes --method das --steps 40 --out runs/das [--resume]
//! cargo run --example continual_domains -- --help    # every option, with its default
//! ```
//!
//! The method's configuration starts from the preset of `--method` (default
//! `das`), or from a whole configuration read with `--config FILE` (JSON, as
//! a run folder's `config.json`); each method option given (`--steps`,
//! `--lr`, `--mask-mode gradient|update`, `--optimizer adamw|sgd`, ...)
//! then replaces its field. `--max-chunks N` caps each side of a domain,
//! `--device` picks the device (the GPU ones with their cargo features).
//!
//! The run folder receives `config.json` (the effective configuration, also
//! printed to stderr), `results.{json,csv,md,svg}`, an importance heatmap
//! after each domain, `log.jsonl`, `importance/` and `checkpoints/` (the last
//! one a Hugging Face folder `SoftMaskBert::from_pretrained` loads).

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args as ClapArgs, Parser};
use serde::Serialize;
use serde_json::Value;
use softmask::continual::{
    CausalChunkCollate, Collate, ContinualModel, ContinualTrainer, Domain, DomainEnd,
    KnowledgeProbes, MethodConfig, MlmChunkCollate, OptimizerKind, PRESETS, Plugin, Progress,
    TokenizedDomain,
};
use softmask::data::probes::ProbeSet;
use softmask::distributed::{Collective, Shard, SingleProcess};
use softmask::gguf::GgufFile;
use softmask::model::llama::{CausalBatch, SoftMaskLlama};
use softmask::{
    EndOfText, Error, GradientSign, HeadMaskLayout, HfTokenizer, MaskMode, Normalization, Result,
    SoftMaskBert, TokenCount, Tokenizer, open_device,
};

mod common;

/// Continual pre-training of a BERT, RoBERTa or decoder LLM through a sequence of domains, with
/// held-out evaluation after every domain, checkpoints and resume.
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// A Hugging Face folder (config.json, model.safetensors, tokenizer.json) of a BERT, a RoBERTa, or a Llama, Qwen2 or Mistral decoder, or a llama GGUF file
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/all-MiniLM-L6-v2"))]
    model: PathBuf,
    /// A domain to train, in order: a text file or a folder of .txt files (repeat the flag for each domain)
    #[arg(long = "domain", value_name = "NAME=PATH", required = true, value_parser = domain)]
    domains: Vec<(String, PathBuf)>,
    /// General text, evaluated (never trained) after every domain
    #[arg(long, value_name = "PATH")]
    general: Option<PathBuf>,
    /// The run folder
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A prompt whose greedy continuation is printed for the base model and after every domain, and logged in probes.jsonl (decoders only; repeat the flag for each prompt)
    #[arg(long = "probe", value_name = "TEXT")]
    probes: Vec<String>,
    /// Tokens each probe continues by
    #[arg(long, value_name = "N", default_value_t = 8)]
    probe_tokens: usize,
    /// General training text, for methods that use it (replay draws from it; das-oracle estimates its general importance on it): a text file or folder whose training split is used; default: the --general corpus's training split (its held-out split stays the general evaluation)
    #[arg(long, value_name = "PATH")]
    general_train: Option<PathBuf>,
    /// A knowledge-probe set (JSONL of {"id", "prompt", "choices", "answer"}, such as data/probes/general_knowledge.jsonl): each choice scored by its log-likelihood after the prompt, for the base model and after every domain, into knowledge.json, .csv, .md and .svg (decoders only)
    #[arg(long, value_name = "FILE")]
    knowledge: Option<PathBuf>,
    /// Also write the model after the last domain to DIR as a Hugging Face folder (config.json, model.safetensors, tokenizer.json) that transformers loads
    #[arg(long, value_name = "DIR")]
    save_model: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint
    #[arg(long)]
    resume: bool,
    /// Train data-parallel over the ranks of `mpirun -np N` (build with --features mpi): each rank takes its rows of every batch, rank 0 writes --out (which every rank must see); --device cuda opens cuda:{local rank}
    #[arg(long)]
    distributed: bool,
    /// The device: flex, ndarray, or with their cargo features wgpu, wgpu-cpu, vulkan, cuda, cuda:N
    #[arg(long, value_name = "NAME", default_value = "flex")]
    device: String,
    /// At most N training chunks of each domain (and N/4 + 1 held-out ones), spread over it
    #[arg(long, value_name = "N", default_value_t = 400)]
    max_chunks: usize,
    /// Which parameters a head gate governs: what the head owns, or the research code's layout
    #[arg(long, value_name = "LAYOUT", default_value = "semantic", value_parser = one_of([("semantic", HeadMaskLayout::Semantic), ("reference", HeadMaskLayout::Reference)]))]
    head_layout: HeadMaskLayout,
    /// The preset the method's configuration starts from
    #[arg(long, value_name = "NAME", default_value = "das", value_parser = PossibleValuesParser::new(PRESETS))]
    method: String,
    /// A whole method configuration (JSON, as a run folder's config.json) in place of --method's preset
    #[arg(long = "config", value_name = "FILE", conflicts_with = "method")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    options: MethodOptions,
}

/// The method's options, each one given in place of the preset's (or
/// --config's) value. They are named, and serialise, as the fields of
/// [`MethodConfig`] they replace; `None` (null) is an option not given.
#[derive(ClapArgs, Serialize)]
#[command(next_help_heading = "Method options (each replaces the preset's or --config's value)")]
struct MethodOptions {
    /// Optimizer steps per domain [default: the preset's]
    #[arg(long = "steps", value_name = "N")]
    steps_per_domain: Option<usize>,
    /// Chunks per training batch [default: the preset's]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Tokens per chunk [default: the preset's]
    #[arg(long, value_name = "N")]
    seq_len: Option<usize>,
    /// Peak learning rate [default: the preset's]
    #[arg(long, value_name = "RATE")]
    lr: Option<f64>,
    /// Fraction of each domain's steps warming the learning rate up [default: the preset's]
    #[arg(long = "warmup", value_name = "FRACTION")]
    warmup_fraction: Option<f64>,
    /// Batches for each importance (and Fisher) estimate [default: the preset's]
    #[arg(long, value_name = "N")]
    importance_batches: Option<usize>,
    /// Chunks per importance batch [default: the preset's, else --batch-size]
    #[arg(long, value_name = "N")]
    importance_batch_size: Option<usize>,
    /// Mask the gradient or the update [default: the preset's]
    #[arg(long, value_name = "MODE", value_parser = one_of([("update", MaskMode::Update), ("gradient", MaskMode::Gradient)]))]
    mask_mode: Option<MaskMode>,
    /// AdamW (weight decay 0.01) or SGD (momentum 0.9) [default: the preset's]
    #[arg(long, value_name = "NAME", value_parser = one_of([("adamw", OptimizerKind::adamw(0.01)), ("sgd", OptimizerKind::Sgd { momentum: 0.9 })]))]
    optimizer: Option<OptimizerKind>,
    /// Damping strength s in [0, 1]: the mask is 1 - s * I [default: the preset's]
    #[arg(long, value_name = "S")]
    strength: Option<f64>,
    /// Damping c in [0, 1] of the parameters no gate governs [default: the preset's]
    #[arg(long, value_name = "C")]
    ungoverned_damping: Option<f64>,
    /// EWC's penalty weight; 0 turns EWC off [default: the preset's]
    #[arg(long, value_name = "LAMBDA")]
    ewc_lambda: Option<f64>,
    /// kd's weight on the KL to the model before the domain; 0 turns kd off [default: the preset's]
    #[arg(long, value_name = "LAMBDA")]
    kd_lambda: Option<f64>,
    /// Gradient accumulation: batches averaged into each optimizer step [default: the preset's]
    #[arg(long, value_name = "K")]
    accumulate: Option<usize>,
    /// The fraction of every batch's rows replayed from --general-train (or the general corpus's training split) [default: the preset's]
    #[arg(long, value_name = "F")]
    replay_fraction: Option<f64>,
    /// Leave DAS's contrastive term out [default: the preset's choice]
    #[arg(long)]
    #[serde(skip)]
    no_contrastive: bool,
    /// Temperature of the contrastive term [default: the preset's]
    #[arg(long, value_name = "T")]
    temperature: Option<f64>,
    /// Seed of every random choice: batch order, masking, dropout, controls [default: the preset's]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Write a checkpoint every N steps; 0: only after each domain [default: the preset's]
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Normalisation of raw importance [default: the preset's]
    #[arg(long, value_name = "NAME", value_parser = one_of([("reference", Normalization::Reference), ("one-sided", Normalization::OneSided)]))]
    normalization: Option<Normalization>,
    /// Signed or absolute gate gradients [default: the preset's]
    #[arg(long, value_name = "SIGN", value_parser = one_of([("signed", GradientSign::Signed), ("absolute", GradientSign::Absolute)]))]
    sign: Option<GradientSign>,
}

/// A parser of the names of `choices` into their values; `--help` lists the names.
fn one_of<T: Copy + Send + Sync + 'static, const N: usize>(
    choices: [(&'static str, T); N],
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(choices.map(|(name, _)| name)).try_map(move |v| {
        choices
            .iter()
            .find(|&&(name, _)| name == v)
            .map(|&(_, t)| t)
            .ok_or("not one of the choices")
    })
}

/// `NAME=PATH` of `--domain`.
fn domain(v: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, path) = v
        .split_once('=')
        .ok_or(format!("takes NAME=PATH, got {v:?}"))?;
    Ok((name.to_string(), path.into()))
}

impl Args {
    /// The method's configuration: `--method`'s preset, or `--config`'s
    /// file, with each option given in place of its field.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for an unreadable `--config` file,
    /// [`Error::InvalidConfig`] for one that is not a method configuration.
    fn method_config(&self) -> Result<MethodConfig> {
        let base = match &self.config_file {
            None => MethodConfig::preset(&self.method)?,
            Some(path) => MethodConfig::load(path)?,
        };
        let mut fields = to_json(&base)?;
        let given = to_json(&self.options)?;
        for (name, value) in given.as_object().into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            let field = fields.get_mut(name).ok_or_else(|| {
                Error::InvalidConfig(format!("the configuration has no field {name}"))
            })?;
            *field = value.clone();
        }
        let mut config: MethodConfig = serde_json::from_value(fields)
            .map_err(|e| Error::InvalidConfig(format!("the method options: {e}")))?;
        config.contrastive &= !self.options.no_contrastive;
        Ok(config)
    }
}

/// `value` as JSON.
fn to_json(value: &impl Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::InvalidConfig(format!("as JSON: {e}")))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A --config file that cannot be read as a configuration is a usage error, as a bad flag is.
    let config = match args.method_config() {
        Err(e) => return common::exit(Err(e), 2),
        Ok(config) => config,
    };
    let ranks = match Ranks::open(args.distributed) {
        Err(e) => return common::exit(Err(e), 2),
        Ok(ranks) => ranks,
    };
    let result = run(&args, config, &ranks);
    ranks.fail(&result);
    common::exit(result, 1)
}

/// The processes a run spans: this one, or the ranks of `mpirun`.
struct Ranks {
    collective: Rc<dyn Collective>,
    #[cfg(feature = "mpi")]
    mpi: Option<Rc<softmask::distributed::Mpi>>,
}

impl Ranks {
    /// One process, or with `--distributed` the MPI world.
    fn open(distributed: bool) -> Result<Ranks> {
        if !distributed {
            return Ok(Ranks {
                collective: Rc::new(SingleProcess),
                #[cfg(feature = "mpi")]
                mpi: None,
            });
        }
        #[cfg(feature = "mpi")]
        {
            let mpi = Rc::new(softmask::distributed::Mpi::init()?);
            Ok(Ranks {
                collective: mpi.clone(),
                mpi: Some(mpi),
            })
        }
        #[cfg(not(feature = "mpi"))]
        Err(Error::InvalidConfig(
            "--distributed needs the `mpi` feature: cargo build --features mpi --example \
             continual_domains, then mpirun -np N target/debug/examples/continual_domains \
             --distributed ..."
                .into(),
        ))
    }

    /// Whether this process prints and probes (rank 0).
    fn leads(&self) -> bool {
        self.collective.rank() == 0
    }

    /// After an error on a rank of several: ends every rank now (MPI abort),
    /// so that none waits for this one in a collective.
    fn fail(&self, result: &Result<()>) {
        #[cfg(feature = "mpi")]
        if let (Err(e), Some(mpi)) = (result, &self.mpi)
            && mpi.size() > 1
        {
            eprintln!("error on rank {} of {}: {e}", mpi.rank(), mpi.size());
            mpi.abort(1);
        }
        let _ = result;
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

/// What `--model` names.
enum ModelKind {
    /// A BERT or RoBERTa folder (`model_type` bert or roberta).
    Bert,
    /// A decoder folder (`model_type` llama, qwen2 or mistral) with its `tokenizer.json`.
    DecoderFolder,
    /// A decoder GGUF file (architecture llama), its tokenizer in the metadata.
    DecoderGguf,
}

/// The kind of model at `path`: a `.gguf` file, or a folder whose
/// `config.json` names its `model_type`.
fn model_kind(path: &std::path::Path) -> Result<ModelKind> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Ok(ModelKind::DecoderGguf);
    }
    let config = path.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|source| Error::Io {
        path: config.clone(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::CorruptFile {
        path: config.clone(),
        reason: e.to_string(),
    })?;
    match value.get("model_type").and_then(Value::as_str) {
        Some("llama" | "qwen2" | "mistral") => Ok(ModelKind::DecoderFolder),
        Some("bert" | "roberta") | None => Ok(ModelKind::Bert),
        Some(other) => Err(Error::InvalidConfig(format!(
            "{}: model_type {other:?}; --model takes a BERT, RoBERTa, Llama, Qwen2 or Mistral \
             folder, or a llama GGUF file",
            config.display()
        ))),
    }
}

fn run(args: &Args, method: MethodConfig, ranks: &Ranks) -> Result<()> {
    method.validate()?;
    if ranks.leads() {
        eprintln!(
            "configuration (saved as config.json in the run folder):\n{}",
            method.to_json()?
        );
    }
    // Under mpirun each rank of a host takes its own GPU.
    let device = match (args.distributed, args.device.as_str()) {
        (true, "cuda") => format!("cuda:{}", ranks.collective.local_rank()),
        _ => args.device.clone(),
    };
    let device = open_device(&device)?.autodiff();
    // The MLM head of a checkpoint without one is drawn from this seed, so a
    // resumed run starts from the same base model.
    device.seed(method.seed);
    match model_kind(&args.model)? {
        ModelKind::Bert => {
            if args.knowledge.is_some() || !args.probes.is_empty() {
                return Err(Error::InvalidConfig(
                    "--knowledge and --probe score a decoder's continuations; this is an \
                     encoder"
                        .into(),
                ));
            }
            let (model, config) = SoftMaskBert::from_pretrained(&args.model, &device)?;
            let model = model.with_head_layout(args.head_layout);
            let tokenizer =
                HfTokenizer::from_file(args.model.join("tokenizer.json"), method.seq_len)?;
            tokenizer.check_vocabulary(config.vocab_size)?;
            // BERT's WordPiece names them [MASK] and [PAD], RoBERTa's BPE <mask> and <pad>.
            let id = |names: [&str; 2]| {
                names
                    .iter()
                    .find_map(|t| tokenizer.token_id(t))
                    .ok_or_else(|| {
                        Error::InvalidConfig(format!("the tokenizer has no {} token", names[0]))
                    })
            };
            let collate = MlmChunkCollate::new(
                id(["[MASK]", "<mask>"])?,
                id(["[PAD]", "<pad>"])?,
                config.vocab_size,
                tokenizer.special_ids(),
            )?;
            train(
                args,
                method,
                model,
                (&tokenizer, &tokenizer),
                (collate, ranks),
                Vec::new(),
            )
        }
        kind => {
            let (model, tokenizer) = match kind {
                ModelKind::DecoderGguf => {
                    let file = GgufFile::open(&args.model)?;
                    let tokenizer = HfTokenizer::from_gguf(&file, method.seq_len)?;
                    (SoftMaskLlama::from_gguf(&args.model, &device)?, tokenizer)
                }
                _ => (
                    SoftMaskLlama::from_pretrained(&args.model, &device)?,
                    HfTokenizer::from_file(args.model.join("tokenizer.json"), method.seq_len)?,
                ),
            };
            let vocab = model.config().vocab_size;
            tokenizer.check_vocabulary(vocab)?;
            // Documents are joined with the end-of-text token; padding takes it too.
            let eos = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>"]
                .iter()
                .find_map(|t| tokenizer.token_id(t))
                .ok_or_else(|| {
                    Error::InvalidConfig("the tokenizer has no end-of-text token".into())
                })?;
            let collate = CausalChunkCollate::new(eos, vocab)?;
            let probe = Probe {
                prompts: args.probes.clone(),
                tokens: args.probe_tokens,
                tokenizer: tokenizer.clone(),
                log: args.out.join("probes.jsonl"),
            };
            let mut plugins: Vec<Box<dyn Plugin<SoftMaskLlama, CausalBatch>>> = Vec::new();
            // The base model's probes write into the run folder before the
            // loop checks it: refuse a folder holding another run first.
            let probing = args.knowledge.is_some() || !args.probes.is_empty();
            if probing
                && !args.resume
                && (args.out.join("checkpoints").exists() || args.out.join("results.json").exists())
            {
                return Err(Error::InvalidConfig(format!(
                    "the output folder {} already holds a run: resume it, or choose another folder",
                    args.out.display()
                )));
            }
            // Probes read the model and write into the run folder: rank 0's.
            if let (Some(path), true) = (&args.knowledge, ranks.leads()) {
                let set = ProbeSet::from_jsonl(path)?;
                let mut probes = KnowledgeProbes::new(&set, set.tokenize(&tokenizer)?, &args.out)?;
                if args.resume {
                    probes = probes.resume()?;
                } else {
                    let base = probes.evaluate(&model, "base")?;
                    eprintln!(
                        "knowledge probes ({} items): base accuracy {:.3}, mean margin {:.3}",
                        set.items().len(),
                        base.accuracy,
                        base.mean_margin
                    );
                }
                plugins.push(Box::new(probes));
            }
            if !args.probes.is_empty() && ranks.leads() {
                if !args.resume {
                    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
                        path: args.out.clone(),
                        source,
                    })?;
                    probe.report(&model, "base")?;
                }
                plugins.push(Box::new(probe));
            }
            let joined = EndOfText::new(tokenizer.clone(), eos);
            train(
                args,
                method,
                model,
                (&joined, &tokenizer),
                (collate, ranks),
                plugins,
            )
        }
    }
}

/// Tokenizes the domains and the general corpus with `tokenizer`, runs the
/// loop on `model`, and with `--save-model` writes the model after the last
/// domain with `hf`, the model's own tokenizer.
fn train<M, B, C, T>(
    args: &Args,
    method: MethodConfig,
    model: M,
    (tokenizer, hf): (&T, &HfTokenizer),
    (collate, ranks): (C, &Ranks),
    plugins: Vec<Box<dyn Plugin<M, B>>>,
) -> Result<()>
where
    M: ContinualModel<B> + 'static,
    B: TokenCount + Shard,
    C: Collate<B>,
    T: Tokenizer,
{
    let say = |line: String| {
        if ranks.leads() {
            eprintln!("{line}");
        }
    };
    let started = std::time::Instant::now();
    let seq = method.seq_len;
    let mut domains: Vec<TokenizedDomain> = Vec::new();
    for (name, path) in &args.domains {
        let d = Domain::from_path(name.as_str(), path)?.tokenize(tokenizer, seq, 1)?;
        say(format!(
            "domain {name}: {} training and {} held-out chunks of {seq} tokens (capped at {})",
            d.train.len(),
            d.held_out.len(),
            args.max_chunks
        ));
        domains.push(TokenizedDomain {
            train: cap(d.train, args.max_chunks),
            held_out: cap(d.held_out, args.max_chunks / 4 + 1),
            ..d
        });
    }
    let (general, general_train) = match &args.general {
        Some(path) => {
            let d = Domain::from_path("general", path)?.tokenize(tokenizer, seq, 1)?;
            (
                Some(cap(d.held_out, args.max_chunks / 4 + 1)),
                Some(d.train),
            )
        }
        None => (None, None),
    };
    let general_corpus = match (
        method.uses_general_corpus(),
        &args.general_train,
        general_train,
    ) {
        (false, _, _) => Vec::new(),
        (true, Some(path), _) => {
            let d = Domain::from_path("general", path)?.tokenize(tokenizer, seq, 1)?;
            cap(d.train, args.max_chunks)
        }
        (true, None, Some(train)) => cap(train, args.max_chunks),
        (true, None, None) => {
            return Err(Error::InvalidConfig(format!(
                "method {} replays or estimates its general importance on general text: \
                 give --general-train or --general",
                method.name
            )));
        }
    };
    if !general_corpus.is_empty() {
        say(format!(
            "general training text: {} chunks ({} of every {} rows replayed)",
            general_corpus.len(),
            method.replay_rows(),
            method.batch_size,
        ));
    }
    let mut trainer = ContinualTrainer::new(method, collate, &args.out)?
        .with_general_corpus(general_corpus)
        .with_collective(ranks.collective.clone());
    if ranks.leads() {
        trainer = trainer.with_observer(Box::new(Progress::new(10)));
    }
    let outcome =
        trainer.run_with_plugins(model, &domains, general.as_deref(), args.resume, plugins)?;
    if !ranks.leads() {
        return Ok(());
    }
    println!("{}", outcome.results.to_table());
    if let Some(dir) = &args.save_model {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        outcome.model.save_weights(dir)?;
        hf.save(dir.join("tokenizer.json"))?;
        println!("saved the model to {}", dir.display());
    }
    println!(
        "wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--probe`: what the model says after each prompt, printed and appended to
/// `probes.jsonl`, for the base model and after every domain. It reads the
/// model and changes nothing.
struct Probe {
    prompts: Vec<String>,
    tokens: usize,
    tokenizer: HfTokenizer,
    log: PathBuf,
}

impl Probe {
    fn report(&self, model: &SoftMaskLlama, after: &str) -> Result<()> {
        use std::io::Write;
        let io = |source| Error::Io {
            path: self.log.clone(),
            source,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io)?;
        for prompt in &self.prompts {
            let ids = self.tokenizer.encode(prompt)?;
            let text = self.tokenizer.decode(&model.greedy(&ids, self.tokens)?)?;
            eprintln!("  probe after {after}: {prompt:?} -> {text:?}");
            let line = serde_json::json!({"after": after, "prompt": prompt, "continuation": text});
            writeln!(log, "{line}").map_err(io)?;
        }
        Ok(())
    }
}

impl Plugin<SoftMaskLlama, CausalBatch> for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    fn after_domain(
        &mut self,
        model: &SoftMaskLlama,
        end: &DomainEnd<'_, CausalBatch>,
    ) -> Result<()> {
        self.report(model, &end.domain.name)
    }
}
