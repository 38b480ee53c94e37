//! Trainer: the fixed continual loop — importance, soft-masked training,
//! evaluation, checkpoints — over a sequence of domains. What the loop calls
//! lives beside it: `apply` (importance), `eval`, `checkpoint`, the methods'
//! plugins ([`Plugin`]), and [`sampling`](crate::data::sampling).

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use burn::optim::GradientsParams;

use super::apply::{accumulated, check_gates, estimate, in_force};
use super::checkpoint::{self, Position, RunIdentity, RunState};
use super::contrastive::ContrastivePlugin;
use super::domain::TokenizedDomain;
use super::eval::{self, columns, evaluate};
use super::ewc::EwcPlugin;
use super::kd::KdPlugin;
use super::method::{GeneralProxy, MethodConfig};
use super::objective::{Collate, ContinualModel};
use super::observe::{JsonlLog, Observer, StepEvent};
use super::plot;
use super::plugin::{DomainEnd, DomainStart, Plugin, RankShare};
use super::results::ResultMatrix;
use crate::data::sampling::stream::{REPLAY, TRAIN};
use crate::data::sampling::{batch_rows, mix};
use crate::distributed::{
    Collective, RowWindow, Shard, SingleProcess, agree, all_reduce_gradients, broadcast_weights,
    check_same, split,
};
use crate::error::{Error, Result};
use crate::gate::TokenCount;
use crate::importance::Importance;
use crate::importance::estimate::model_device;
use crate::mask::SoftMaskedOptimizer;
use crate::params;

/// What a finished run gives back.
#[derive(Debug)]
pub struct Outcome<M> {
    /// The model after the last domain.
    pub model: M,
    /// The held-out losses after every domain, with the base model's.
    pub results: ResultMatrix,
    /// The accumulated (element-wise max) importance at the end, if any.
    pub importance: Option<Importance>,
}

/// The continual loop over domains (docs/method.md §3), configured by a
/// [`MethodConfig`], for any model that implements [`ContinualModel`].
///
/// Per domain: accumulate the saved importances (element-wise max of the
/// normalised ones), train with the objective plus the terms of the method's
/// [`Plugin`]s (DAS's contrastive term, EWC's penalty), soft-masking every
/// step; then estimate and save the domain's importance, let the plugins
/// close the domain, evaluate every held-out set, and write a checkpoint.
/// Before the first domain, the general importance (KL between two dropout
/// passes) on the first domain's data.
///
/// Everything random is drawn from the method's seed, the domain and the step,
/// so a run resumed from a checkpoint ends exactly as one never interrupted.
///
/// The run folder holds `config.json` (the method's configuration, which
/// [`MethodConfig::load`] reads), `log.jsonl`, `importance/*.safetensors`,
/// `checkpoints/`, and at the end `results.json`, `results.csv`,
/// `results.md` and SVG pictures.
pub struct ContinualTrainer<C> {
    config: MethodConfig,
    collate: C,
    out: PathBuf,
    observers: Vec<Box<dyn Observer>>,
    general_train: Vec<Vec<u32>>,
    collective: Rc<dyn Collective>,
}

impl<C> ContinualTrainer<C> {
    /// A trainer writing into the run folder `out`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the option when `config` does not validate.
    pub fn new(config: MethodConfig, collate: C, out: impl Into<PathBuf>) -> Result<Self> {
        config.validate()?;
        Ok(ContinualTrainer {
            config,
            collate,
            out: out.into(),
            observers: Vec::new(),
            general_train: Vec::new(),
            collective: Rc::new(SingleProcess),
        })
    }

    /// Adds an observer.
    pub fn with_observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Training text of a general corpus, as token chunks (of `seq_len`):
    /// what [`MethodConfig::replay_fraction`] of every training batch's rows
    /// are drawn from (in a seeded order that runs on across domains), and
    /// what `das-oracle`'s general importance is estimated on
    /// ([`GeneralProxy::CorpusLoss`]).
    /// Keep it disjoint from the text the run evaluates on (the general
    /// corpus's training split, say, when its held-out split is the general
    /// evaluation). Used only by methods that ask for it.
    pub fn with_general_corpus(mut self, chunks: Vec<Vec<u32>>) -> Self {
        self.general_train = chunks;
        self
    }

    /// Trains data-parallel over the ranks of `collective` (one process by
    /// default): every rank runs this trainer on the same model, data and
    /// method, and the run ends as one process's would, within float
    /// rounding.
    ///
    /// - Every training batch is collated whole on every rank and split by
    ///   rows ([`split`]); each rank's loss is weighted by its share of the
    ///   objective's terms, plugins give their share
    ///   ([`Plugin::loss_term_shard`]), and the gradients (with the loss)
    ///   are summed in one all-reduce before the soft-masked step, so every
    ///   rank steps identically. A non-finite loss stops every rank with
    ///   the same [`Error::NonFinite`].
    /// - Importance and evaluation batches are dealt round-robin and summed.
    /// - Rank 0 broadcasts its weights at the start and on resume, and alone
    ///   writes the run folder (config, log, importance, checkpoints,
    ///   results, pictures); the folder must be one every rank can read
    ///   (one host, or a shared file system), since all ranks resume from it.
    /// - The ranks check at the start that they run the same thing (method,
    ///   data, model shapes, softmask version).
    ///
    /// Observers see every rank's events: add them on rank 0 only. Plugins
    /// that add loss terms must be the same on every rank; one that only
    /// reads the model (knowledge probes) may run on rank 0 alone. Dropout
    /// stays the same as one process's ([`RowWindow`]).
    ///
    /// A failure inside the loop (a batch, a loss, a plugin, the gradients,
    /// importance, evaluation, a write of rank 0's) is agreed at the next
    /// agreement point, so every rank returns an error there and none waits
    /// in a collective. A failure outside the loop's reach (the caller's own
    /// code, an observer that panics) ends its rank alone: end the job then
    /// (`Mpi::abort`), as `continual_domains --distributed` does.
    pub fn with_collective(mut self, collective: Rc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The method's configuration.
    pub fn config(&self) -> &MethodConfig {
        &self.config
    }
}

/// The plugins a method's configuration asks for, in the order their loss
/// terms are added: DAS's contrastive term, EWC's penalty, kd's distillation.
fn method_plugins<M: ContinualModel<B> + 'static, B>(
    config: &MethodConfig,
) -> Vec<Box<dyn Plugin<M, B>>> {
    let mut plugins: Vec<Box<dyn Plugin<M, B>>> = Vec::new();
    if config.contrastive && config.masks() {
        plugins.push(Box::new(ContrastivePlugin::new(config.temperature)));
    }
    if config.ewc_lambda > 0.0 {
        plugins.push(Box::new(EwcPlugin::new(config.ewc_lambda)));
    }
    if config.kd_lambda > 0.0 {
        plugins.push(Box::new(KdPlugin::new(config.kd_lambda)));
    }
    plugins
}

impl<C> ContinualTrainer<C> {
    /// Tells every observer, and the run's own JSONL log (rank 0's only).
    fn notify(&mut self, log: &mut Option<JsonlLog>, f: impl Fn(&mut dyn Observer)) {
        for o in &mut self.observers {
            f(o.as_mut());
        }
        if let Some(log) = log {
            f(log);
        }
    }

    /// Whether this rank writes the run folder (rank 0).
    fn writes(&self) -> bool {
        self.collective.rank() == 0
    }

    /// `write` on rank 0, its outcome agreed by every rank (so that a
    /// failed write stops all of them, and the others wait for it).
    fn written<T>(&self, what: &str, write: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        let done = if self.writes() {
            write().map(Some)
        } else {
            Ok(None)
        };
        agree(self.collective.as_ref(), what, done)
    }

    /// Tells every observer (not the log) how far a pass has come.
    fn progress(observers: &mut [Box<dyn Observer>], what: &str, done: usize, total: usize) {
        for o in observers.iter_mut() {
            o.on_pass(what, done, total);
        }
    }

    /// The held-out losses of every column ([`evaluate`]), with progress.
    fn held_out<M, B>(
        &mut self,
        model: &M,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
    ) -> Result<Vec<f32>>
    where
        M: ContinualModel<B>,
        C: Collate<B>,
    {
        evaluate(
            &self.collate,
            self.config.batch_size,
            model,
            domains,
            general,
            self.collective.as_ref(),
            &mut |d, n| Self::progress(&mut self.observers, "evaluation", d, n),
        )
    }

    /// Estimates and saves the general importance (`domain` `None`, on
    /// `on`'s data) or the importance of domain `domain` (`on`); returns the
    /// saved file's name.
    fn importance<M, B>(
        &mut self,
        log: &mut Option<JsonlLog>,
        model: &M,
        on: &TokenizedDomain,
        domain: Option<usize>,
    ) -> Result<String>
    where
        M: ContinualModel<B>,
        B: TokenCount,
        C: Collate<B>,
    {
        let (what, label, name) = match domain {
            None => (
                "general importance",
                "general",
                "general.safetensors".into(),
            ),
            Some(_) => (
                "domain importance",
                on.name.as_str(),
                format!("domain-{}.safetensors", on.name),
            ),
        };
        let (imp, stability) = estimate(
            &self.config,
            &self.collate,
            model,
            &on.train,
            domain,
            self.collective.as_ref(),
            &mut |d, n| Self::progress(&mut self.observers, what, d, n),
        )?;
        let path = checkpoint::importance_dir(&self.out).join(&name);
        self.written("writing the importance", || {
            imp.save(&path)?;
            match stability {
                Some(stability) => eval::record_stability(&self.out, label, stability),
                None => Ok(()),
            }
        })?;
        self.notify(log, |o| o.on_importance(label, &imp));
        Ok(name)
    }

    /// Runs (or, with `resume`, continues) the sequence.
    ///
    /// `model` is the base model; on resume its weights are replaced by the
    /// checkpoint's. `general` is an optional held-out corpus of the base
    /// model's knowledge.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for no domain, duplicate domain names, a
    /// domain shorter than one batch, masked gates the model lacks, or an
    /// output folder that holds another run (or a run to resume without
    /// `resume`); [`Error::LayoutMismatch`] or [`Error::InvalidConfig`] for a
    /// checkpoint of another model, config or data, [`Error::Checkpoint`] for
    /// one whose parts do not belong to the run; [`Error::NonFinite`] when the
    /// training loss turns NaN (the last good checkpoint is kept); and the
    /// errors of the model and the files.
    pub fn run<M, B>(
        &mut self,
        model: M,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
        resume: bool,
    ) -> Result<Outcome<M>>
    where
        M: ContinualModel<B> + 'static,
        B: TokenCount + Shard,
        C: Collate<B>,
    {
        self.run_with_plugins(model, domains, general, resume, Vec::new())
    }

    /// [`run`](Self::run) with `plugins` after the method's own: a new
    /// method's additions to the loop (see [`Plugin`]).
    pub fn run_with_plugins<M, B>(
        &mut self,
        model: M,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
        resume: bool,
        extra: Vec<Box<dyn Plugin<M, B>>>,
    ) -> Result<Outcome<M>>
    where
        M: ContinualModel<B> + 'static,
        B: TokenCount + Shard,
        C: Collate<B>,
    {
        let collective = self.collective.clone();
        let c = collective.as_ref();
        // Every rank checks its inputs; a rank that fails alone stops all.
        let checked = (|| {
            self.check_inputs(domains, general)?;
            self.check_ranks()?;
            check_gates(&self.config, &model.gate_layout())?;
            let device = model_device(&model)?;
            if !device.is_autodiff() {
                return Err(Error::InvalidConfig(
                    "continual training needs an autodiff device (e.g. \
                     Device::flex().autodiff())"
                        .into(),
                ));
            }
            Ok(device)
        })();
        let device = agree(c, "checking the run's inputs", checked)?;
        let mut plugins = method_plugins::<M, B>(&self.config);
        plugins.extend(extra);
        let identity = RunIdentity {
            config: self.config.clone(),
            domains: domains
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        checkpoint::fingerprint(&d.train)
                            ^ checkpoint::fingerprint(&d.held_out).rotate_left(1),
                    )
                })
                .collect(),
            general: general.map(checkpoint::fingerprint),
            general_train: self
                .config
                .uses_general_corpus()
                .then(|| checkpoint::fingerprint(&self.general_train)),
            layout: model.gate_layout(),
            shapes: params::shapes(&model),
        };
        let names: Vec<String> = domains.iter().map(|d| d.name.clone()).collect();
        let importance_dir = checkpoint::importance_dir(&self.out);
        if c.size() > 1 {
            let mut what = serde_json::to_vec(&identity).map_err(|e| Error::Serialization {
                what: "the run's identity".into(),
                reason: e.to_string(),
            })?;
            what.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
            what.push(u8::from(resume));
            what.extend_from_slice(self.out.to_string_lossy().as_bytes());
            check_same(c, "the run (method, data, model, version, folder)", &what)?;
        }
        // Rank 0 checks (and on resume tidies) the folder; the others then
        // find the same checkpoint in it.
        let prepared = self
            .written("checking the run folder", || {
                checkpoint::prepare(&self.out, &identity, resume)
            })?
            .flatten();
        let prepared = match (self.writes(), resume) {
            (false, true) => checkpoint::found(&self.out, &identity),
            _ => Ok(prepared),
        };
        let prepared = agree(c, "finding the checkpoint", prepared)?;
        let at = prepared
            .as_ref()
            .map(|(_, dir)| dir.to_string_lossy().into_owned())
            .unwrap_or_default();
        check_same(c, "the checkpoint to resume from", at.as_bytes())?;
        let restored = match prepared {
            Some(found) => {
                let at = found.1.clone();
                let restored = checkpoint::restore(
                    &self.config,
                    &self.out,
                    &names,
                    model,
                    found,
                    &device,
                    &mut plugins,
                );
                let (m, state, optim) = agree(c, "restoring the checkpoint", restored)?;
                (broadcast_weights(c, m)?, Some((state, at, optim)))
            }
            None => (broadcast_weights(c, model)?, None),
        };
        let mut log = self.written("opening the log", || {
            JsonlLog::open(self.out.join("log.jsonl"))
        })?;
        // The optimizer a mid-domain checkpoint resumes with, its state checked.
        let mut resumed_optim = None;
        let (mut model, mut state) = match restored {
            (m, Some((state, at, optim))) => {
                let Position { domain, step } = state.position;
                let name = names.get(domain).map_or("(done)", String::as_str);
                self.notify(&mut log, |o| o.on_resume(&at, name, domain, step));
                resumed_optim = optim;
                (m, state)
            }
            (model, None) => {
                self.written("writing the run's config", || {
                    std::fs::create_dir_all(&importance_dir).map_err(|source| Error::Io {
                        path: importance_dir.clone(),
                        source,
                    })?;
                    self.config.save(self.out.join("config.json"))
                })?;
                let base = self.held_out(&model, domains, general)?;
                self.notify(&mut log, |o| {
                    o.on_eval("base", &columns(general.is_some(), &names), &base)
                });
                let results =
                    ResultMatrix::new(&self.config.name, general.is_some(), &names, base)?;
                (
                    model,
                    RunState {
                        position: Position { domain: 0, step: 0 },
                        importances: Vec::new(),
                        results,
                        optimizer: None,
                    },
                )
            }
        };

        while state.position.domain < domains.len() {
            let t = state.position.domain;
            let domain = &domains[t];
            let start = state.position.step;
            self.notify(&mut log, |o| {
                o.on_domain_start(&domain.name, t, domains.len(), start)
            });

            if t == 0
                && start == 0
                && self.config.general_importance
                && state.importances.is_empty()
            {
                let name = match self.config.general_proxy {
                    GeneralProxy::DropoutKl => self.importance(&mut log, &model, domain, None)?,
                    GeneralProxy::CorpusLoss => {
                        let corpus = TokenizedDomain {
                            name: "general".into(),
                            train: self.general_train.clone(),
                            held_out: Vec::new(),
                        };
                        self.importance(&mut log, &model, &corpus, None)?
                    }
                };
                state.importances.push(name);
            }
            let so_far = agree(
                c,
                "reading the importance so far",
                accumulated(&importance_dir, &state.importances),
            )?;
            let applied = in_force(&self.config, so_far.as_ref())?;
            let zeros;
            let mask = match &applied {
                Some(a) => a,
                None => {
                    zeros = Importance::zeros(&model.gate_layout())?;
                    &zeros
                }
            };
            let base = match resumed_optim.take() {
                Some(optim) => optim,
                None => self.config.optimizer.init()?,
            };
            let mut optim = SoftMaskedOptimizer::new(base, mask, &model, self.config.mask_mode)?
                .with_ungoverned_damping(self.config.ungoverned_damping)?;
            let begins = DomainStart {
                index: t,
                applied: applied.as_ref(),
                device: &device,
            };
            let began = plugins
                .iter_mut()
                .try_for_each(|p| p.before_domain(&begins));
            agree(c, "starting the domain's plugins", began)?;

            for step in start..self.config.steps_per_domain {
                let began = Instant::now();
                let k = self.config.accumulate;
                let (mut value, mut grads, mut tokens) = (0f32, None, 0);
                for j in 0..k {
                    let batch = self.step_batch(domain, t, step * k + j, &device);
                    let batch = agree(c, "collating a batch", batch)?;
                    tokens += batch.token_count();
                    let (v, g) = if c.size() == 1 {
                        whole_step(&model, &batch, &mut plugins)?
                    } else {
                        let (v, g) = shard_share(c, &model, &batch, &mut plugins)?;
                        (v, Some(g))
                    };
                    // k batches average; one batch stays as it is.
                    let weight = 1.0 / k as f32;
                    value += if k == 1 { v } else { v * weight };
                    // A batch without gradients had a non-finite loss, and so has
                    // the step: it stops below.
                    if let Some(g) = g {
                        grads = Some(params::add_scaled(&model, grads, g, weight));
                    }
                }
                if c.size() > 1 {
                    let mut sum = [value];
                    let reduced = all_reduce_gradients(
                        c,
                        &model,
                        grads.unwrap_or_else(GradientsParams::new),
                        &mut sum,
                    )?;
                    value = sum[0];
                    grads = Some(reduced);
                }
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        what: format!(
                            "training loss ({value}) of domain {:?} at step {}; the last \
                             checkpoint in {} is kept",
                            domain.name,
                            step + 1,
                            checkpoint::folder(&self.out).display()
                        ),
                    });
                }
                let lr = self.config.lr_at(step);
                if let (true, Some(grads)) = (lr > 0.0, grads) {
                    let stepped = optim.step(lr, &mut model, grads);
                    agree(c, "an optimizer step", stepped)?;
                }
                let event = StepEvent {
                    domain: domain.name.clone(),
                    domain_index: t,
                    step: step + 1,
                    steps: self.config.steps_per_domain,
                    loss: value,
                    lr,
                    tokens,
                    seconds: began.elapsed().as_secs_f64(),
                };
                self.notify(&mut log, |o| o.on_step(&event));
                let every = self.config.checkpoint_every;
                if every > 0
                    && (step + 1).is_multiple_of(every)
                    && step + 1 < self.config.steps_per_domain
                {
                    state.position = Position {
                        domain: t,
                        step: step + 1,
                    };
                    let path = self.written("writing a checkpoint", || {
                        let bytes =
                            optim
                                .optimizer()
                                .into_bytes()
                                .map_err(|e| Error::Serialization {
                                    what: "the optimizer state".into(),
                                    reason: format!("{e:?}"),
                                })?;
                        state.optimizer = Some(bytes.to_vec());
                        let path = checkpoint::save(&self.out, &model, &identity, &state, &plugins);
                        state.optimizer = None;
                        path
                    })?;
                    if let Some(path) = path {
                        self.notify(&mut log, |o| o.on_checkpoint(&path));
                    }
                }
            }

            if self.config.domain_importance {
                let name = self.importance(&mut log, &model, domain, Some(t))?;
                state.importances.retain(|n| n != &name);
                state.importances.push(name);
            }
            let ends = DomainEnd {
                index: t,
                domain,
                config: &self.config,
                device: &device,
                collate: &self.collate,
            };
            let closed = plugins
                .iter_mut()
                .try_for_each(|p| p.after_domain(&model, &ends));
            agree(c, "closing the domain's plugins", closed)?;
            let row = self.held_out(&model, domains, general)?;
            self.notify(&mut log, |o| {
                o.on_eval(&domain.name, &columns(general.is_some(), &names), &row)
            });
            state.results.push(row)?;
            let picture = self
                .out
                .join(format!("importance-after-{}.svg", domain.name));
            self.written("drawing the importance", || {
                match accumulated(&importance_dir, &state.importances)? {
                    Some(acc) => plot::write_importance(&acc, &picture),
                    None => Ok(()),
                }
            })?;
            self.notify(&mut log, |o| o.on_domain_end(&domain.name));
            state.position = Position {
                domain: t + 1,
                step: 0,
            };
            let path = self.written("writing a checkpoint", || {
                checkpoint::save(&self.out, &model, &identity, &state, &plugins)
            })?;
            if let Some(path) = path {
                self.notify(&mut log, |o| o.on_checkpoint(&path));
            }
        }

        self.written("writing the results", || {
            eval::write_results(&self.out, &state.results)
        })?;
        let importance = accumulated(&importance_dir, &state.importances)?;
        Ok(Outcome {
            model,
            results: state.results,
            importance,
        })
    }

    /// Training batch number `at` of domain `t` (with its replayed rows),
    /// collated whole, the device seeded for it.
    fn step_batch<B>(
        &self,
        domain: &TokenizedDomain,
        t: usize,
        at: usize,
        device: &burn::tensor::Device,
    ) -> Result<B>
    where
        C: Collate<B>,
    {
        let seed = mix(self.config.seed, &[TRAIN, t as u64, at as u64]);
        let replayed = self.config.replay_rows();
        let mut rows = batch_rows(
            &domain.train,
            self.config.batch_size - replayed,
            at,
            mix(self.config.seed, &[t as u64]),
        );
        if replayed > 0 {
            // One stream over the replay corpus, on across domains.
            let per_domain = self.config.steps_per_domain * self.config.accumulate;
            rows.extend(batch_rows(
                &self.general_train,
                replayed,
                t * per_domain + at,
                mix(self.config.seed, &[REPLAY, 0]),
            ));
        }
        device.seed(seed);
        self.collate.collate(&rows, seed, device)
    }

    /// Refuses what data parallelism cannot split.
    fn check_ranks(&self) -> Result<()> {
        let size = self.collective.size();
        if size == 1 {
            return Ok(());
        }
        if self.config.batch_size < size {
            return Err(Error::InvalidConfig(format!(
                "a batch of {} rows cannot be split across {size} ranks: every rank needs a row",
                self.config.batch_size
            )));
        }
        Ok(())
    }

    fn check_inputs(
        &self,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
    ) -> Result<()> {
        if domains.is_empty() {
            return Err(Error::InvalidConfig("no domain to train".into()));
        }
        for (i, d) in domains.iter().enumerate() {
            super::domain::check_name(&d.name)?;
            if d.name == "general" {
                return Err(Error::InvalidConfig(
                    "a domain cannot be called \"general\": that name is the general corpus's"
                        .into(),
                ));
            }
            if domains[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::InvalidConfig(format!(
                    "domain name {:?} appears twice",
                    d.name
                )));
            }
            if d.train.len() < self.config.batch_size {
                return Err(Error::InvalidConfig(format!(
                    "domain {:?} has {} training chunks, fewer than one batch of {}",
                    d.name,
                    d.train.len(),
                    self.config.batch_size
                )));
            }
            if d.held_out.is_empty() || d.train.iter().chain(&d.held_out).any(Vec::is_empty) {
                return Err(Error::InvalidConfig(format!(
                    "domain {:?} has an empty held-out set or an empty chunk",
                    d.name
                )));
            }
        }
        if let Some(g) = general
            && (g.is_empty() || g.iter().any(Vec::is_empty))
        {
            return Err(Error::InvalidConfig(
                "the general held-out corpus is empty or holds an empty chunk".into(),
            ));
        }
        if self.config.uses_general_corpus()
            && (self.general_train.is_empty() || self.general_train.iter().any(Vec::is_empty))
        {
            return Err(Error::InvalidConfig(format!(
                "method {:?} replays or estimates its general importance on a general \
                 corpus: give one (ContinualTrainer::with_general_corpus) without empty chunks",
                self.config.name,
            )));
        }
        Ok(())
    }
}

/// One process's training step on the whole batch: the loss's value, and
/// its gradients when it is finite.
fn whole_step<M, B>(
    model: &M,
    batch: &B,
    plugins: &mut [Box<dyn Plugin<M, B>>],
) -> Result<(f32, Option<GradientsParams>)>
where
    M: ContinualModel<B>,
{
    let mut loss = model.loss(batch, None)?;
    for p in plugins.iter_mut() {
        if let Some(term) = p.loss_term(model, batch)? {
            loss = loss + term;
        }
    }
    let value = loss.clone().into_scalar::<f32>();
    if !value.is_finite() {
        return Ok((value, None));
    }
    Ok((
        value,
        Some(GradientsParams::from_grads(loss.backward(), model)),
    ))
}

/// One rank's part of a data-parallel training step on a batch: its rows
/// of the collated batch, its share of the loss (the objective weighted by
/// its share of the objective's terms, and each plugin's share) and its
/// gradients. Summed over the ranks (one all-reduce, after every batch of
/// the step), the shares give the whole batch's loss and gradients.
fn shard_share<M, B>(
    c: &dyn Collective,
    model: &M,
    batch: &B,
    plugins: &mut [Box<dyn Plugin<M, B>>],
) -> Result<(f32, GradientsParams)>
where
    M: ContinualModel<B>,
    B: Shard,
{
    // Every rank passes the same agreement points in the same order, however
    // far it got: a failure anywhere stops all ranks at the next one, and no
    // rank is left in a collective the others skip.
    let total_rows = batch.rows();
    let rows = split(total_rows, c.rank(), c.size());
    let _window = RowWindow::open(rows.clone());
    let local = (|| {
        let terms = batch.row_terms()?;
        if terms.len() != total_rows {
            return Err(Error::BadBatch(format!(
                "row_terms gave {} rows for a batch of {total_rows}",
                terms.len()
            )));
        }
        let whole: usize = terms.iter().sum();
        let own: usize = terms[rows.clone()].iter().sum();
        let part = batch.shard(rows.clone())?;
        // Rows without any objective term still draw the random numbers
        // (the dropout seeds) one process would: on a stand-in row, weighted 0.
        let stand_in = match (own, terms.iter().position(|&t| t > 0)) {
            (0, Some(r)) => Some(batch.shard(r..r + 1)?),
            _ => None,
        };
        let weight = own as f32 / whole.max(1) as f32;
        let loss = model
            .loss(stand_in.as_ref().unwrap_or(&part), None)?
            .mul_scalar(weight);
        Ok((part, stand_in, weight, loss))
    })();
    let (part, stand_in, weight, mut loss) = agree(c, "a training step's loss", local)?;
    let share = RankShare {
        collective: c,
        rows,
        total_rows,
        batch: &part,
        weighted: stand_in.as_ref().unwrap_or(&part),
        weight,
    };
    for p in plugins.iter_mut() {
        let term = p.loss_term_shard(model, &share);
        if let Some(term) = agree(c, "a plugin's loss term", term)? {
            loss = loss + term;
        }
    }
    let value = loss.clone().into_scalar::<f32>();
    Ok((value, GradientsParams::from_grads(loss.backward(), model)))
}
