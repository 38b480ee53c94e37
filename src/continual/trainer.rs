//! Trainer: the fixed continual loop — importance, soft-masked training,
//! evaluation, checkpoints — over a sequence of domains.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::checkpoint::{self, FORMAT, Manifest, Position, RunIdentity};
use super::contrastive::contrastive_loss;
use super::domain::TokenizedDomain;
use super::eval::ResultMatrix;
use super::ewc::{Ewc, FisherAccumulator};
use super::method::{Control, MethodConfig};
use super::objective::{Collate, ContinualModel};
use super::observe::{JsonlLog, Observer, StepEvent};
use super::plot;
use crate::error::{Error, Result};
use crate::importance::estimate::{ImportanceEstimator, TokenCount, model_device};
use crate::importance::gates::Gates;
use crate::importance::proxy::KlToDropoutCopy;
use crate::importance::{GateImportance, Importance};
use crate::io;
use crate::mask::{ParamTable, SoftMaskedOptimizer, load_checked};

/// Masking of held-out sets is seeded by this, the batch and the column,
/// never by the method's seed: every method is evaluated on the same tokens.
const EVAL_SEED: u64 = 0x5eed_e7a1;

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

/// The continual loop over domains (METHOD.md §3), configured by a
/// [`MethodConfig`], for any model that implements [`ContinualModel`].
///
/// Per domain: accumulate the saved importances (element-wise max of the
/// normalised ones), train with the objective (plus DAS's contrastive term
/// and EWC's penalty when on), soft-masking every step; then estimate and
/// save the domain's importance, evaluate every held-out set, and write a
/// checkpoint. Before the first domain, the general importance (KL between
/// two dropout passes) on the first domain's data.
///
/// Everything random is drawn from the method's seed, the domain and the step,
/// so a run resumed from a checkpoint ends exactly as one never interrupted.
///
/// The run folder holds `log.jsonl`, `importance/*.safetensors`,
/// `checkpoints/`, and at the end `results.json`, `results.csv`,
/// `results.md` and SVG pictures.
pub struct ContinualTrainer<C> {
    config: MethodConfig,
    collate: C,
    out: PathBuf,
    observers: Vec<Box<dyn Observer>>,
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
        })
    }

    /// Adds an observer.
    pub fn with_observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The method's configuration.
    pub fn config(&self) -> &MethodConfig {
        &self.config
    }
}

/// The state of a run between steps: what a checkpoint holds.
struct State {
    position: Position,
    importances: Vec<String>,
    results: ResultMatrix,
    ewc: Ewc,
    optimizer: Option<Vec<u8>>,
}

/// Mixes a seed with a path of indices (SplitMix64 steps): a stream per purpose.
pub(crate) fn mix(seed: u64, parts: &[u64]) -> u64 {
    let mut z = seed;
    for &p in parts {
        z = z.wrapping_add(p).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// Purposes of the random streams.
const TRAIN: u64 = 1;
const ORDER: u64 = 2;
const IMPORTANCE: u64 = 3;
const FISHER: u64 = 4;

/// The rows of batch `index` of a seeded sequence of epochs over the chunks:
/// each epoch visits every chunk once, in an order drawn from `seed` and the
/// epoch, so any batch can be found again from its index alone.
fn batch_rows(chunks: &[Vec<u32>], batch: usize, index: usize, seed: u64) -> Vec<Vec<u32>> {
    let n = chunks.len();
    let order = |epoch: usize| {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(
            seed,
            &[ORDER, epoch as u64],
        )));
        order
    };
    let mut current: Option<(usize, Vec<usize>)> = None;
    let mut rows = Vec::with_capacity(batch);
    for p in index * batch..(index + 1) * batch {
        let epoch = p / n;
        if current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            current = Some((epoch, order(epoch)));
        }
        if let Some((_, o)) = &current {
            rows.push(chunks[o[p % n]].clone());
        }
    }
    rows
}

/// Parameter ids of a module, in visiting order.
fn param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// Parameter shapes of a module, in visiting order.
fn param_shapes<M: Module>(model: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.shape().dims::<D>().to_vec());
        }
    }
    let mut s = Shapes(Vec::new());
    model.visit(&mut s);
    s.0
}

/// `model` with the parameter ids `ids` (same structure), so optimizer state
/// and masks keyed by id apply to it.
fn with_ids<M: Module>(model: M, ids: &[ParamId]) -> M {
    struct Give<'a> {
        ids: &'a [ParamId],
        next: usize,
    }
    impl ModuleMapper for Give<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let id = self.ids.get(self.next).copied().unwrap_or(param.id);
            self.next += 1;
            let (_, tensor, _) = param.consume();
            Param::initialized(id, tensor)
        }
    }
    model.map(&mut Give { ids, next: 0 })
}

/// The importance a method applies: the chosen gates of the accumulated
/// importance, through the control, times the strength.
pub fn applied_importance(config: &MethodConfig, accumulated: &Importance) -> Result<Importance> {
    let layout = accumulated.layout();
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(layout.len());
    let controlled = match config.control {
        Control::None => accumulated.clone(),
        Control::Permuted => accumulated.permuted(mix(config.seed, &[0xc0])),
        Control::Uniform => accumulated.row_means(),
    };
    for g in controlled.gates() {
        let chosen = config
            .masked_gates
            .as_ref()
            .is_none_or(|names| names.contains(&g.name));
        let s = if chosen { config.strength as f32 } else { 0.0 };
        values.push(g.values.iter().map(|v| v * s).collect());
    }
    Importance::new(&layout, values)
}

/// The gates of an importance, as tensors on `device`: DAS's forward view.
fn gates_of(importance: &Importance, device: &Device) -> Result<Gates> {
    let layout = importance.layout();
    let tensors = importance
        .gates()
        .iter()
        .map(|g: &GateImportance| {
            Tensor::<2>::from_data(TensorData::new(g.values.clone(), [g.rows, g.units]), device)
        })
        .collect();
    Gates::from_tensors(tensors, &layout)
}

impl<C> ContinualTrainer<C> {
    /// Tells every observer, and the run's own JSONL log.
    fn notify(&mut self, log: &mut JsonlLog, f: impl Fn(&mut dyn Observer)) {
        for o in &mut self.observers {
            f(o.as_mut());
        }
        f(log);
    }

    fn importance_dir(&self) -> PathBuf {
        self.out.join("importance")
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
    /// domain shorter than one batch, or an output folder that holds another
    /// run (or a run to resume without `resume`); [`Error::LayoutMismatch`] or
    /// [`Error::InvalidConfig`] for a checkpoint of another model, config or
    /// data; [`Error::NonFinite`] when the training loss turns NaN (the last
    /// good checkpoint is kept); and the errors of the model and the files.
    pub fn run<M, B>(
        &mut self,
        model: M,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
        resume: bool,
    ) -> Result<Outcome<M>>
    where
        M: ContinualModel<B>,
        B: TokenCount,
        C: Collate<B>,
    {
        self.check_inputs(domains, general)?;
        check_gates(&self.config, &model.gate_layout())?;
        let device = model_device(&model)?;
        if !device.is_autodiff() {
            return Err(Error::InvalidConfig(
                "continual training needs an autodiff device (e.g. Device::flex().autodiff())"
                    .into(),
            ));
        }
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
            layout: model.gate_layout(),
            shapes: param_shapes(&model),
        };
        let names: Vec<String> = domains.iter().map(|d| d.name.clone()).collect();
        let prepared = self.prepare(&identity, resume)?;
        let mut log = JsonlLog::open(self.out.join("log.jsonl"))?;
        let (mut model, mut state) = match prepared {
            Some((manifest, dir)) => self.restore(model, manifest, &dir, &device, domains)?,
            None => {
                std::fs::create_dir_all(self.importance_dir()).map_err(|source| Error::Io {
                    path: self.importance_dir(),
                    source,
                })?;
                let base = self.evaluate(&model, domains, general, &device)?;
                self.notify(&mut log, |o| {
                    o.on_eval("base", &columns(general, &names), &base)
                });
                let results =
                    ResultMatrix::new(&self.config.name, general.is_some(), &names, base)?;
                (
                    model,
                    State {
                        position: Position { domain: 0, step: 0 },
                        importances: Vec::new(),
                        results,
                        ewc: Ewc::new(),
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
                let imp = self.estimate(&model, &domain.train, &device, None)?;
                let name = "general.safetensors".to_string();
                imp.save(self.importance_dir().join(&name))?;
                self.notify(&mut log, |o| o.on_importance("general", &imp));
                state.importances.push(name);
            }
            let accumulated = self.accumulated(&state.importances)?;
            let applied = match &accumulated {
                Some(acc) if self.config.masks() => applied_importance(&self.config, acc)?,
                _ => Importance::zeros(&model.gate_layout())?,
            };
            let mut optim = SoftMaskedOptimizer::new(
                self.config.optimizer.init()?,
                &applied,
                &model,
                self.config.mask_mode,
            )?
            .with_ungoverned_damping(self.config.ungoverned_damping)?;
            if let Some(bytes) = state.optimizer.take() {
                optim.load_state(&bytes)?;
            }
            // DAS's third view: the importance in force as forward gates.
            // Without any importance yet there is no such view, and no term.
            let view = match (&accumulated, self.config.contrastive) {
                (Some(_), true) if self.config.masks() => Some(gates_of(&applied, &device)?),
                _ => None,
            };

            for step in start..self.config.steps_per_domain {
                let began = Instant::now();
                let seed = mix(self.config.seed, &[TRAIN, t as u64, step as u64]);
                let rows = batch_rows(
                    &domain.train,
                    self.config.batch_size,
                    step,
                    mix(self.config.seed, &[t as u64]),
                );
                device.seed(seed);
                let batch = self.collate.collate(&rows, seed, &device)?;
                let mut loss = model.loss(&batch, None)?;
                if let Some(view) = &view {
                    let z1 = model.pooled(&batch, None)?;
                    let z2 = model.pooled(&batch, None)?;
                    let z3 = model.pooled(&batch, Some(view))?;
                    loss = loss + contrastive_loss(z1, z2, z3, self.config.temperature)?;
                }
                if self.config.ewc_lambda > 0.0
                    && let Some(p) = state.ewc.penalty(&model, self.config.ewc_lambda)
                {
                    loss = loss + p;
                }
                let value = loss.clone().into_scalar::<f32>();
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
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                if lr > 0.0 {
                    optim.step(lr, &mut model, grads)?;
                }
                let event = StepEvent {
                    domain: domain.name.clone(),
                    domain_index: t,
                    step: step + 1,
                    steps: self.config.steps_per_domain,
                    loss: value,
                    lr,
                    tokens: batch.token_count(),
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
                    state.optimizer = Some(
                        optim
                            .optimizer()
                            .into_bytes()
                            .map_err(|e| Error::InvalidConfig(format!("optimizer state: {e:?}")))?
                            .to_vec(),
                    );
                    let path = self.save_checkpoint(&model, &identity, &mut state)?;
                    self.notify(&mut log, |o| o.on_checkpoint(&path));
                }
            }

            if self.config.domain_importance {
                let imp = self.estimate(&model, &domain.train, &device, Some(t))?;
                let name = format!("domain-{}.safetensors", domain.name);
                imp.save(self.importance_dir().join(&name))?;
                self.notify(&mut log, |o| o.on_importance(&domain.name, &imp));
                state.importances.retain(|n| n != &name);
                state.importances.push(name);
            }
            if self.config.ewc_lambda > 0.0 {
                let fisher = self.fisher(&model, &domain.train, &device, t)?;
                state.ewc.anchor(&model, fisher)?;
            }
            let row = self.evaluate(&model, domains, general, &device)?;
            self.notify(&mut log, |o| {
                o.on_eval(&domain.name, &columns(general, &names), &row)
            });
            state.results.push(row)?;
            if let Some(acc) = self.accumulated(&state.importances)? {
                plot::write_importance(
                    &acc,
                    &self
                        .out
                        .join(format!("importance-after-{}.svg", domain.name)),
                )?;
            }
            self.notify(&mut log, |o| o.on_domain_end(&domain.name));
            state.position = Position {
                domain: t + 1,
                step: 0,
            };
            state.optimizer = None;
            let path = self.save_checkpoint(&model, &identity, &mut state)?;
            self.notify(&mut log, |o| o.on_checkpoint(&path));
        }

        self.write_results(&state.results)?;
        let importance = self.accumulated(&state.importances)?;
        Ok(Outcome {
            model,
            results: state.results,
            importance,
        })
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
        Ok(())
    }

    /// Checks the output folder: a fresh run needs it empty of runs; resume
    /// needs a checkpoint of the same identity (or none, then starts afresh).
    fn prepare(&self, identity: &RunIdentity, resume: bool) -> Result<Option<(Manifest, PathBuf)>> {
        let latest = checkpoint::latest(&self.out)?;
        if resume {
            checkpoint::clear_partial(&self.out);
        }
        match (latest, resume) {
            (Some((manifest, dir)), true) => {
                if manifest.identity != *identity {
                    return Err(describe_mismatch(&manifest.identity, identity, &dir));
                }
                Ok(Some((manifest, dir)))
            }
            (Some((_, dir)), false) => Err(Error::InvalidConfig(format!(
                "the output folder {} already holds a run (checkpoint {}): resume it, or \
                 choose another folder",
                self.out.display(),
                dir.display()
            ))),
            (None, _) => {
                if self.out.join("results.json").exists() {
                    return Err(Error::InvalidConfig(format!(
                        "the output folder {} holds the results of another run",
                        self.out.display()
                    )));
                }
                std::fs::create_dir_all(&self.out).map_err(|source| Error::Io {
                    path: self.out.clone(),
                    source,
                })?;
                Ok(None)
            }
        }
    }

    fn restore<M, B>(
        &self,
        model: M,
        manifest: Manifest,
        dir: &Path,
        device: &Device,
        domains: &[TokenizedDomain],
    ) -> Result<(M, State)>
    where
        M: ContinualModel<B>,
    {
        self.check_position(&manifest, dir, domains)?;
        // The checkpoint's parameter ids, so that its optimizer state and EWC
        // anchors (keyed by id) apply to the loaded model.
        let ids: Vec<ParamId> = manifest
            .param_ids
            .iter()
            .map(|&i| ParamId::from(i))
            .collect();
        if ids.len() != manifest.identity.shapes.len() {
            return Err(Error::CorruptFile {
                path: dir.join("manifest.json"),
                reason: "parameter ids and shapes disagree".into(),
            });
        }
        let loaded = with_ids(model.load_weights(dir)?, &ids);
        if param_shapes(&loaded) != manifest.identity.shapes {
            return Err(Error::LayoutMismatch(format!(
                "the weights in {} do not have the model's shapes",
                dir.display()
            )));
        }
        self.check_importances(&manifest, dir, domains, &loaded.gate_layout())?;
        let optimizer = if manifest.optimizer {
            let bytes = io::read(&dir.join("optimizer.bin"))?;
            // Checked here, against the loaded model and the run's optimizer,
            // before anything of the run changes.
            load_checked(
                &self.config.optimizer.init()?,
                &bytes,
                &ParamTable::of(&loaded),
            )
            .map_err(|e| Error::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("its optimizer.bin: {e}"),
            })?;
            Some(bytes)
        } else {
            None
        };
        let ewc = if manifest.ewc {
            let file = io::TensorFile::load(&dir.join("ewc.safetensors"))?;
            Ewc::from_host(file.tensors, &device.clone().inner())?
        } else {
            Ewc::new()
        };
        Ok((
            loaded,
            State {
                position: manifest.position,
                importances: manifest.importances,
                results: manifest.results,
                ewc,
                optimizer,
            },
        ))
    }

    /// Refuses a checkpoint whose position the run never reaches or never
    /// checkpoints at, or whose optional parts disagree with its position.
    fn check_position(
        &self,
        manifest: &Manifest,
        dir: &Path,
        domains: &[TokenizedDomain],
    ) -> Result<()> {
        let c = &self.config;
        let Position { domain, step } = manifest.position;
        let refuse = |reason: String| {
            Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                reason,
            })
        };
        let n = domains.len();
        let steps = c.steps_per_domain;
        if domain > n || (domain == n && step > 0) || step >= steps {
            return refuse(format!(
                "its position (domain {domain}, step {step}) is outside the run of {n} \
                 domain(s) of {steps} steps"
            ));
        }
        if step > 0 && (c.checkpoint_every == 0 || !step.is_multiple_of(c.checkpoint_every)) {
            return refuse(format!(
                "its position (domain {domain}, step {step}) is not one this run checkpoints at \
                 (every {} steps, and at the end of each domain)",
                c.checkpoint_every
            ));
        }
        if manifest.optimizer != (step > 0) {
            return refuse(format!(
                "at step {step} of a domain it {} an optimizer state; the run saves one \
                 exactly in mid-domain checkpoints",
                if manifest.optimizer { "holds" } else { "lacks" }
            ));
        }
        let ewc = c.ewc_lambda > 0.0 && domain > 0;
        if manifest.ewc != ewc {
            return refuse(format!(
                "it {} EWC anchors, which this run {} after {domain} finished domain(s)",
                if manifest.ewc { "holds" } else { "lacks" },
                if ewc { "has" } else { "does not have" }
            ));
        }
        Ok(())
    }

    /// Refuses a checkpoint whose importance files are not the ones this run
    /// has estimated by its position, or are not of the model's gates.
    fn check_importances(
        &self,
        manifest: &Manifest,
        dir: &Path,
        domains: &[TokenizedDomain],
        layout: &crate::importance::gates::GateLayout,
    ) -> Result<()> {
        let c = &self.config;
        let Position { domain, step } = manifest.position;
        let mut expected = Vec::new();
        if c.general_importance && (domain > 0 || step > 0) {
            expected.push("general.safetensors".to_string());
        }
        if c.domain_importance {
            for d in &domains[..domain.min(domains.len())] {
                expected.push(format!("domain-{}.safetensors", d.name));
            }
        }
        let refuse = |reason: String| Error::Checkpoint {
            path: dir.to_path_buf(),
            reason,
        };
        if manifest.importances != expected {
            return Err(refuse(format!(
                "it lists the importance files {:?}; at domain {domain}, step {step} this run \
                 has estimated {expected:?}",
                manifest.importances
            )));
        }
        for name in &expected {
            Importance::load(self.importance_dir().join(name))
                .and_then(|imp| imp.check_layout(layout))
                .map_err(|e| refuse(format!("its importance {name}: {e}")))?;
        }
        Ok(())
    }

    fn save_checkpoint<M, B>(
        &self,
        model: &M,
        identity: &RunIdentity,
        state: &mut State,
    ) -> Result<PathBuf>
    where
        M: ContinualModel<B>,
    {
        let partial = checkpoint::begin(&self.out)?;
        model.save_weights(&partial)?;
        if let Some(bytes) = &state.optimizer {
            io::write_atomic(&partial.join("optimizer.bin"), bytes)?;
        }
        let ewc = state.ewc.anchors() > 0;
        if ewc {
            io::TensorFile::from(state.ewc.to_host()?).save(&partial.join("ewc.safetensors"))?;
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            identity: identity.clone(),
            position: state.position,
            importances: state.importances.clone(),
            results: state.results.clone(),
            optimizer: state.optimizer.is_some(),
            ewc,
            param_ids: param_ids(model).iter().map(ParamId::val).collect(),
        };
        checkpoint::commit(&self.out, &partial, &manifest)
    }

    /// The element-wise max of the saved (normalised) importances.
    fn accumulated(&self, names: &[String]) -> Result<Option<Importance>> {
        if names.is_empty() {
            return Ok(None);
        }
        let all = names
            .iter()
            .map(|n| Importance::load(self.importance_dir().join(n)))
            .collect::<Result<Vec<_>>>()?;
        Importance::max(&all).map(Some)
    }

    /// Normalised importance over `importance_batches` batches of `chunks`:
    /// KL between two dropout passes (the general importance, `domain` `None`)
    /// or the objective as proxy (after training domain `domain`).
    fn estimate<M, B>(
        &self,
        model: &M,
        chunks: &[Vec<u32>],
        device: &Device,
        domain: Option<usize>,
    ) -> Result<Importance>
    where
        M: ContinualModel<B>,
        B: TokenCount,
        C: Collate<B>,
    {
        let c = &self.config;
        let mut est = ImportanceEstimator::new(model.gate_layout(), c.accumulation, c.sign)?;
        let purpose = domain.map_or(0, |t| t as u64 + 1);
        for b in 0..c.importance_batches {
            let seed = mix(c.seed, &[IMPORTANCE, purpose, b as u64]);
            let rows = batch_rows(
                chunks,
                c.importance_batch(),
                b,
                mix(c.seed, &[IMPORTANCE, purpose]),
            );
            device.seed(seed);
            let batch = self.collate.collate(&rows, seed, device)?;
            if domain.is_none() {
                est.step(model, &batch, &KlToDropoutCopy)?;
            } else {
                let proxy = |m: &M, g: &Gates, b: &B| m.loss(b, Some(g));
                est.step(model, &batch, &proxy)?;
            }
        }
        est.finish(c.normalization)
    }

    fn fisher<M, B>(
        &self,
        model: &M,
        chunks: &[Vec<u32>],
        device: &Device,
        t: usize,
    ) -> Result<FisherAccumulator>
    where
        M: ContinualModel<B>,
        C: Collate<B>,
    {
        let c = &self.config;
        let mut acc = FisherAccumulator::default();
        for b in 0..c.importance_batches {
            let seed = mix(c.seed, &[FISHER, t as u64, b as u64]);
            let rows = batch_rows(
                chunks,
                c.importance_batch(),
                b,
                mix(c.seed, &[FISHER, t as u64]),
            );
            device.seed(seed);
            let batch = self.collate.collate(&rows, seed, device)?;
            let loss = model.loss(&batch, None)?;
            let grads = GradientsParams::from_grads(loss.backward(), model);
            acc.add(model, &grads);
        }
        Ok(acc)
    }

    /// Held-out loss on every column (general first, then every domain), on
    /// the inference copy of the model (no dropout), with a fixed masking.
    fn evaluate<M, B>(
        &self,
        model: &M,
        domains: &[TokenizedDomain],
        general: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Vec<f32>>
    where
        M: ContinualModel<B>,
        C: Collate<B>,
    {
        let inner = device.clone().inner();
        let valid = model.valid();
        let sets: Vec<&[Vec<u32>]> = general
            .into_iter()
            .chain(domains.iter().map(|d| d.held_out.as_slice()))
            .collect();
        let mut out = Vec::with_capacity(sets.len());
        for (col, rows) in sets.iter().enumerate() {
            let (mut sum, mut weight) = (0f64, 0usize);
            for (b, chunk) in rows.chunks(self.config.batch_size).enumerate() {
                let seed = mix(EVAL_SEED, &[col as u64, b as u64]);
                let batch = self.collate.collate(chunk, seed, &inner)?;
                let loss = valid.loss(&batch, None)?.into_scalar::<f32>();
                sum += f64::from(loss) * chunk.len() as f64;
                weight += chunk.len();
            }
            out.push((sum / weight.max(1) as f64) as f32);
        }
        Ok(out)
    }

    fn write_results(&self, results: &ResultMatrix) -> Result<()> {
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "matrix": results,
            "summary": results.summary(),
        }))
        .map_err(|e| Error::InvalidConfig(format!("results cannot be written: {e}")))?;
        io::write_atomic(&self.out.join("results.json"), &json)?;
        io::write_atomic(&self.out.join("results.csv"), results.to_csv().as_bytes())?;
        io::write_atomic(&self.out.join("results.md"), results.to_table().as_bytes())?;
        plot::write_matrix(results, &self.out.join("results.svg"))
    }
}

fn columns(general: Option<&[Vec<u32>]>, names: &[String]) -> Vec<String> {
    general
        .map(|_| "general".to_string())
        .into_iter()
        .chain(names.iter().cloned())
        .collect()
}

/// Refuses a method that masks a gate the model does not have.
fn check_gates(config: &MethodConfig, layout: &crate::importance::gates::GateLayout) -> Result<()> {
    let gates: Vec<&str> = layout.specs().iter().map(|s| s.name.as_str()).collect();
    for name in config.masked_gates.iter().flatten() {
        if !gates.contains(&name.as_str()) {
            return Err(Error::InvalidConfig(format!(
                "method {:?}: masked_gates names the gate {name:?}, which the model does not \
                 have; its gates are {gates:?}",
                config.name
            )));
        }
    }
    Ok(())
}

/// A typed error naming what differs between a checkpoint and this run.
fn describe_mismatch(saved: &RunIdentity, now: &RunIdentity, dir: &Path) -> Error {
    let at = dir.display();
    if saved.layout != now.layout || saved.shapes != now.shapes {
        return Error::LayoutMismatch(format!(
            "checkpoint {at} is of another model (gates {} vs {})",
            saved.layout, now.layout
        ));
    }
    if saved.config != now.config {
        return Error::InvalidConfig(format!(
            "checkpoint {at} was written with another method configuration ({:?}); \
             resume with the same options",
            saved.config.name
        ));
    }
    Error::InvalidConfig(format!(
        "checkpoint {at} was written for other domains or data ({:?})",
        saved.domains.iter().map(|(n, _)| n).collect::<Vec<_>>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_visit_every_chunk_once_per_epoch_and_depend_on_the_seed() {
        let chunks: Vec<Vec<u32>> = (0..5).map(|i| vec![i]).collect();
        // Batches of 2 over 5 chunks: batches 0..5 span two epochs.
        let seen: Vec<u32> = (0..5)
            .flat_map(|b| batch_rows(&chunks, 2, b, 9))
            .map(|r| r[0])
            .collect();
        for epoch in seen.chunks(5) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, [0, 1, 2, 3, 4]);
        }
        assert_eq!(batch_rows(&chunks, 2, 3, 9), batch_rows(&chunks, 2, 3, 9));
        let other: Vec<u32> = (0..5)
            .flat_map(|b| batch_rows(&chunks, 2, b, 10))
            .map(|r| r[0])
            .collect();
        assert_ne!(seen, other);
    }

    #[test]
    fn mix_separates_streams() {
        assert_ne!(mix(1, &[TRAIN, 0, 0]), mix(1, &[TRAIN, 0, 1]));
        assert_ne!(mix(1, &[TRAIN, 0, 1]), mix(1, &[TRAIN, 1, 0]));
        assert_ne!(mix(1, &[TRAIN]), mix(2, &[TRAIN]));
        assert_eq!(mix(7, &[ORDER, 3]), mix(7, &[ORDER, 3]));
    }
}
