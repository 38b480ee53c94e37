//! Data parallelism over MPI (feature `mpi`; no test harness: one MPI world
//! per process). Run under `mpirun -np N` (`.ci/run` runs N = 2 and 4):
//! every rank runs each case single-process into a folder of its own, then
//! all ranks run it together, and the two must agree within 1e-5 relative:
//! the result matrix, the accumulated importance and every weight after the
//! last step. Every preset runs on the tiny BERT (dropout 0.1, MLM) and the
//! tiny decoder (causal LM), with batches of 5 rows (uneven shares), a
//! mid-domain checkpoint and a stop then resume. Ranks that disagree and a
//! non-finite loss stop every rank with the same typed error.
//!
//! First, one SGD step of learning rate 1: the summed gradient (of the
//! objective, DAS's contrastive term included) is one process's within 1e-5
//! of its largest element (float32 sums in another order: about 1e-6 here).
//! The presets then run AdamW with epsilon 1e-4. A first AdamW step moves a
//! weight by about `lr · g / (|g| + epsilon)`, which turns a rounding-level
//! difference of a gradient near epsilon into a part of `lr`: with
//! PyTorch's 1e-8 (or 1e-6) a masked or cancelling gradient of that size
//! moved a weight of the tiny decoder by 1e-4 of the largest weight after
//! one step, as it would under PyTorch's DDP. Epsilon 1e-4 bounds that by
//! `lr · δg / epsilon`. DAS with PyTorch's epsilon is checked on its
//! result matrix.
//!
//! ```text
//! cargo build --features mpi --tests
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="mpirun --allow-run-as-root --oversubscribe -np 2" \
//!     cargo test --features mpi --test mpi
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use common::*;
use softmask::continual::*;
use softmask::distributed::{Collective, Mpi, barrier};
use softmask::model::llama::{CausalBatch, SoftMaskLlama};
use softmask::*;

const TOLERANCE: f32 = 1e-5;

/// Every weight of `model`, flattened in visiting order.
fn weights<M: Module>(model: &M) -> Vec<f32> {
    struct All(Vec<f32>);
    impl ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.extend(data.try_to_vec::<f32>().unwrap());
        }
    }
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}

fn matrix(r: &ResultMatrix) -> Vec<f32> {
    r.base
        .iter()
        .chain(r.after.iter().flatten())
        .copied()
        .collect()
}

fn importance(i: &Option<Importance>) -> Vec<f32> {
    i.iter()
        .flat_map(|i| i.gates().iter().flat_map(|g| g.values.clone()))
        .collect()
}

/// A folder every rank names alike, emptied by rank 0.
fn shared_dir(c: &dyn Collective, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softmask-mpi-{tag}-{}", c.size()));
    if c.rank() == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
    barrier(c).unwrap();
    dir
}

/// Panics at the start of step `at` of the second domain, on every rank
/// alike (a stand-in for a killed job; the checkpoint before it stays).
struct StopAt {
    at: usize,
}

impl Observer for StopAt {
    fn on_step(&mut self, e: &StepEvent) {
        if e.domain_index == 1 && e.step == self.at {
            std::panic::resume_unwind(Box::new("stopped"));
        }
    }
}

/// A preset as the cases run it: 4 steps per domain of batches of 5 rows
/// (uneven shares on 2 and 4 ranks), a checkpoint every 2 steps, AdamW
/// with epsilon 1e-4.
fn config(preset: &str) -> MethodConfig {
    let mut c = quick(preset);
    c.batch_size = 5;
    c.checkpoint_every = 2;
    c.optimizer = OptimizerKind::AdamW {
        weight_decay: 0.01,
        epsilon: 1e-4,
    };
    c
}

/// One model's way through the loop.
trait Case {
    type M: ContinualModel<Self::B> + 'static;
    type B: TokenCount + softmask::distributed::Shard;
    fn name(&self) -> &'static str;
    fn collate(&self) -> Box<dyn Collate<Self::B>>;
    /// Text to replay, and das-oracle's general importance.
    fn general_train(&self) -> Vec<Vec<u32>>;
    fn trainer(
        &self,
        config: MethodConfig,
        out: &Path,
    ) -> ContinualTrainer<Box<dyn Collate<Self::B>>> {
        ContinualTrainer::new(config, self.collate(), out)
            .unwrap()
            .with_general_corpus(self.general_train())
    }
    fn model(&self) -> Self::M;
    fn domains(&self) -> Vec<TokenizedDomain>;
    fn general(&self) -> Vec<Vec<u32>>;
}

struct Bert;

impl Case for Bert {
    type M = SoftMaskBert;
    type B = BertBatch;
    fn name(&self) -> &'static str {
        "bert"
    }
    fn collate(&self) -> Box<dyn Collate<BertBatch>> {
        Box::new(collate())
    }
    fn general_train(&self) -> Vec<Vec<u32>> {
        replay()
    }
    fn model(&self) -> SoftMaskBert {
        tiny(&devices().remove(0).1)
    }
    fn domains(&self) -> Vec<TokenizedDomain> {
        domains()
    }
    fn general(&self) -> Vec<Vec<u32>> {
        general()
    }
}

struct Decoder;

impl Case for Decoder {
    type M = SoftMaskLlama;
    type B = CausalBatch;
    fn name(&self) -> &'static str {
        "decoder"
    }
    fn collate(&self) -> Box<dyn Collate<CausalBatch>> {
        Box::new(CausalChunkCollate::new(0, 64).unwrap())
    }
    fn general_train(&self) -> Vec<Vec<u32>> {
        causal_domain("general", 5, 60).train
    }
    fn model(&self) -> SoftMaskLlama {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny-llama");
        SoftMaskLlama::from_pretrained(dir, &devices().remove(0).1).unwrap()
    }
    fn domains(&self) -> Vec<TokenizedDomain> {
        vec![causal_domain("code", 5, 30), causal_domain("prose", 30, 60)]
    }
    fn general(&self) -> Vec<Vec<u32>> {
        causal_domain("general", 5, 60).held_out
    }
}

/// What a run ends with, to compare.
struct Ended {
    matrix: Vec<f32>,
    importance: Vec<f32>,
    weights: Vec<f32>,
}

fn ended<M: Module>(o: Outcome<M>) -> Ended {
    Ended {
        matrix: matrix(&o.results),
        importance: importance(&o.importance),
        weights: weights(&o.model),
    }
}

/// Failures seen on this rank.
struct Checks {
    rank: usize,
    failed: usize,
}

impl Checks {
    fn close(&mut self, what: &str, got: &[f32], want: &[f32]) {
        let ok = got.len() == want.len() && rel_diff(got, want) <= TOLERANCE;
        if !ok {
            self.failed += 1;
            eprintln!(
                "rank {}: FAILED {what}: relative difference {} ({} vs {} values)",
                self.rank,
                if got.len() == want.len() {
                    rel_diff(got, want)
                } else {
                    f32::NAN
                },
                got.len(),
                want.len()
            );
        }
    }

    fn holds(&mut self, what: &str, ok: bool) {
        if !ok {
            self.failed += 1;
            eprintln!("rank {}: FAILED {what}", self.rank);
        }
    }

    fn same(&mut self, what: &str, got: &Ended, want: &Ended) {
        self.close(&format!("{what}: result matrix"), &got.matrix, &want.matrix);
        self.close(
            &format!("{what}: importance"),
            &got.importance,
            &want.importance,
        );
        self.close(&format!("{what}: weights"), &got.weights, &want.weights);
    }
}

/// `config` run by this rank alone (into a folder of its own, removed
/// after) and by all ranks together (into `tag`'s shared folder, returned).
fn alone_and_together<K: Case>(
    case: &K,
    c: &Rc<dyn Collective>,
    config: &MethodConfig,
    tag: &str,
) -> (Result<Ended>, Result<Ended>, PathBuf) {
    let run = |out: &Path, together: bool| {
        let mut trainer = case.trainer(config.clone(), out);
        if together {
            trainer = trainer.with_collective(c.clone());
        }
        trainer
            .run(case.model(), &case.domains(), Some(&case.general()), false)
            .map(ended)
    };
    let alone = temp_dir(&format!("mpi-alone-{tag}-{}", c.rank()));
    let want = run(&alone, false);
    let _ = std::fs::remove_dir_all(&alone);
    let out = shared_dir(c.as_ref(), tag);
    (want, run(&out, true), out)
}

fn every_preset<K: Case>(case: &K, world: &Rc<Mpi>, checks: &mut Checks) {
    let c: Rc<dyn Collective> = world.clone();
    for preset in PRESETS {
        let what = format!("{} {preset} on {} ranks", case.name(), c.size());
        let config = config(preset);
        let tag = format!("{}-{preset}", case.name());
        let (Ok(want), Ok(got), out) = alone_and_together(case, &c, &config, &tag) else {
            checks.holds(&format!("{what}: both runs finish"), false);
            continue;
        };
        checks.same(&what, &got, &want);
        // Every rank ends with the same weights (bit for bit).
        let bytes: Vec<u8> = got.weights.iter().flat_map(|v| v.to_le_bytes()).collect();
        checks.holds(
            &format!("{what}: every rank's weights alike"),
            softmask::distributed::check_same(c.as_ref(), "weights", &bytes).is_ok(),
        );
        if c.rank() == 0 {
            checks.holds(
                &format!("{what}: rank 0 wrote the results"),
                out.join("results.json").is_file() && out.join("log.jsonl").is_file(),
            );
        }

        // Stopped after the second domain's mid-domain checkpoint, then resumed.
        let stopped = shared_dir(c.as_ref(), &format!("{tag}-stop"));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            case.trainer(config.clone(), &stopped)
                .with_collective(c.clone())
                .with_observer(Box::new(StopAt { at: 3 }))
                .run(case.model(), &case.domains(), Some(&case.general()), false)
                .map(|_| ())
        }));
        checks.holds(&format!("{what}: stopped"), r.is_err());
        match case
            .trainer(config, &stopped)
            .with_collective(c.clone())
            .run(case.model(), &case.domains(), Some(&case.general()), true)
        {
            Ok(o) => checks.same(&format!("{what}, resumed"), &ended(o), &want),
            Err(e) => checks.holds(&format!("{what}: resumed ({e})"), false),
        }
        if c.rank() == 0 {
            println!("ok: {what}");
        }
    }
}

/// One plain SGD step of learning rate 1 from the base model: the weights
/// move by the summed gradient, which must be one process's.
fn gradients<K: Case>(case: &K, world: &Rc<Mpi>, checks: &mut Checks) {
    let mut config = config("das");
    config.optimizer = OptimizerKind::Sgd { momentum: 0.0 };
    config.lr = 1.0;
    config.steps_per_domain = 1;
    config.warmup_fraction = 0.0;
    let base = weights(&case.model());
    let moved =
        |e: Ended| -> Vec<f32> { e.weights.iter().zip(&base).map(|(w, b)| w - b).collect() };
    compared(
        case,
        world,
        checks,
        &config,
        "grad",
        "the summed gradient",
        |checks, what, got, want| checks.close(what, &moved(got), &moved(want)),
    );
}

/// DAS with gradient accumulation over 3 batches: as one process's with it.
fn accumulated<K: Case>(case: &K, world: &Rc<Mpi>, checks: &mut Checks) {
    let mut config = config("das");
    config.accumulate = 3;
    compared(
        case,
        world,
        checks,
        &config,
        "acc",
        "accumulating 3 batches",
        |checks, what, got, want| checks.same(what, &got, &want),
    );
}

/// DAS with PyTorch's epsilon: the result matrix as one process's.
fn pytorch_epsilon<K: Case>(case: &K, world: &Rc<Mpi>, checks: &mut Checks) {
    let mut config = config("das");
    config.optimizer = OptimizerKind::adamw(0.01);
    compared(
        case,
        world,
        checks,
        &config,
        "eps",
        "(epsilon 1e-8)",
        |checks, what, got, want| {
            checks.close(&format!("{what}: result matrix"), &got.matrix, &want.matrix)
        },
    );
}

/// `config` alone and on every rank (folder tag `tag`), the two compared by
/// `check`; `how` names the case in the messages.
fn compared<K: Case>(
    case: &K,
    world: &Rc<Mpi>,
    checks: &mut Checks,
    config: &MethodConfig,
    tag: &str,
    how: &str,
    check: impl FnOnce(&mut Checks, &str, Ended, Ended),
) {
    let c: Rc<dyn Collective> = world.clone();
    let what = format!("{} das {how} on {} ranks", case.name(), c.size());
    match alone_and_together(case, &c, config, &format!("{}-{tag}", case.name())) {
        (Ok(want), Ok(got), _) => check(checks, &what, got, want),
        _ => checks.holds(&format!("{what}: both runs finish"), false),
    }
    if c.rank() == 0 {
        println!("ok: {what}");
    }
}

/// A plugin that fails on one rank only (`fails`): at its `at`-th loss
/// term, or with no `at` after the first domain.
struct FailOn {
    fails: bool,
    at: Option<usize>,
    calls: usize,
}

impl<M, B> Plugin<M, B> for FailOn {
    fn name(&self) -> &str {
        "fail-on"
    }
    fn loss_term_shard(&mut self, _: &M, _: &RankShare<'_, B>) -> Result<Option<Tensor<1>>> {
        self.calls += 1;
        match (self.fails, self.at) {
            (true, Some(at)) if at == self.calls => Err(Error::BadBatch("injected".into())),
            _ => Ok(None),
        }
    }
    fn after_domain(&mut self, _: &M, _: &DomainEnd<'_, B>) -> Result<()> {
        match (self.fails, self.at) {
            (true, None) => Err(Error::BadBatch("injected after a domain".into())),
            _ => Ok(()),
        }
    }
}

/// Ranks with different seeds, and a loss that turns non-finite: every rank
/// gets the same kind of error, and none waits forever.
fn refusals(world: &Rc<Mpi>, checks: &mut Checks) {
    let c: Rc<dyn Collective> = world.clone();
    let together = |config: MethodConfig, tag: &str| {
        Bert.trainer(config, &shared_dir(c.as_ref(), tag))
            .with_collective(c.clone())
            .run(Bert.model(), &Bert.domains(), Some(&Bert.general()), false)
            .map(|_| ())
    };
    if c.size() > 1 {
        let mut disagree = config("das");
        disagree.seed = 7 + c.rank() as u64;
        let r = together(disagree, "disagree");
        checks.holds(
            &format!("ranks with different seeds are refused ({r:?})"),
            matches!(r, Err(Error::Distributed(_))),
        );
        let mut small = config("das");
        small.batch_size = c.size() - 1;
        let r = together(small, "small");
        checks.holds(
            &format!("a batch with fewer rows than ranks is refused ({r:?})"),
            matches!(r, Err(Error::InvalidConfig(_))),
        );
    }
    // One rank fails in a loss term (after DAS's contrastive gather), or
    // after a domain: every rank returns an error, none hangs.
    if c.size() > 1 {
        for at in [Some(2), None] {
            let plugin = FailOn {
                fails: c.rank() == c.size() - 1,
                at,
                calls: 0,
            };
            let out = shared_dir(c.as_ref(), "fail");
            let r = Bert
                .trainer(config("das"), &out)
                .with_collective(c.clone())
                .run_with_plugins(
                    Bert.model(),
                    &Bert.domains(),
                    Some(&Bert.general()),
                    false,
                    vec![Box::new(plugin)],
                )
                .map(|_| ());
            checks.holds(
                &format!("one rank's failure ({at:?}) stops every rank ({r:?})"),
                matches!(r, Err(Error::BadBatch(_) | Error::Distributed(_))),
            );
        }
    }
    let mut nan = config("ncl");
    nan.lr = 1e12;
    let r = together(nan, "nan");
    checks.holds(
        &format!("a non-finite loss stops every rank ({r:?})"),
        matches!(r, Err(Error::NonFinite { .. })),
    );
    if c.rank() == 0 {
        println!("ok: refusals on {} ranks", c.size());
    }
}

fn main() -> ExitCode {
    let world = Rc::new(Mpi::init().unwrap());
    let mut checks = Checks {
        rank: world.rank(),
        failed: 0,
    };
    refusals(&world, &mut checks);
    gradients(&Bert, &world, &mut checks);
    gradients(&Decoder, &world, &mut checks);
    every_preset(&Bert, &world, &mut checks);
    every_preset(&Decoder, &world, &mut checks);
    accumulated(&Bert, &world, &mut checks);
    accumulated(&Decoder, &world, &mut checks);
    pytorch_epsilon(&Bert, &world, &mut checks);
    pytorch_epsilon(&Decoder, &world, &mut checks);
    let mut failed = [checks.failed as f64];
    world.all_reduce_sum_f64(&mut failed).unwrap();
    if world.rank() == 0 {
        println!(
            "mpi: {} failure(s) on {} ranks",
            failed[0] as usize,
            world.size()
        );
    }
    if failed[0] > 0.0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
