//! Shared test helpers: the devices under test and the notebook fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;
use softmask::continual::{
    ContinualTrainer, MethodConfig, MlmChunkCollate, Outcome, TokenizedDomain,
};
use softmask::{
    GateLayout, Importance, LabelledBatch, Result, SoftMaskBert, SoftMaskNet, SoftMaskNetConfig,
};

/// Every device the crate is built for that runs here (CPU, and GPU devices
/// whose probe passes), with autodiff, and its name.
pub fn devices() -> Vec<(&'static str, Device)> {
    let out: Vec<_> = softmask::device::devices()
        .into_iter()
        .map(|(name, d)| (name, d.autodiff()))
        .collect();
    assert!(!out.is_empty(), "build with the flex or ndarray feature");
    out
}

#[derive(Debug, Deserialize)]
pub struct FixtureConfig {
    pub vocab_size: usize,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub lr: f64,
}

#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub config: FixtureConfig,
    pub vocabulary: Vec<String>,
    pub corpus_ids: Vec<Vec<u32>>,
    pub chunks: Vec<Vec<u32>>,
    pub labels: Vec<u8>,
    pub importance_batches: Vec<Vec<usize>>,
    pub train_batches: Vec<Vec<usize>>,
    pub raw_importance: BTreeMap<String, Vec<Vec<f32>>>,
    pub importance: BTreeMap<String, Vec<Vec<f32>>>,
    pub importance_one_sided: Vec<Vec<f32>>,
    pub train_losses: BTreeMap<String, Vec<f32>>,
}

pub const CONFIGS: [&str; 2] = ["notebook", "deep"];

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notebook")
        .join(name)
}

pub fn load_fixture(name: &str) -> Fixture {
    let text = std::fs::read_to_string(fixture_dir(name).join("fixture.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn corpus() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/notebook_reviews.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

impl Fixture {
    pub fn model_config(&self) -> SoftMaskNetConfig {
        SoftMaskNetConfig::new()
            .with_vocab_size(self.config.vocab_size)
            .with_embed_dim(self.config.embed_dim)
            .with_hidden(self.config.hidden.clone())
            .with_dropout(0.0)
    }

    /// The model loaded from one of the fixture's weight files.
    pub fn model(&self, name: &str, file: &str, device: &Device) -> SoftMaskNet {
        let mut model = self.model_config().init(device).unwrap();
        model
            .load_safetensors(fixture_dir(name).join(file))
            .unwrap();
        model
    }

    pub fn batch(&self, indices: &[usize], device: &Device) -> LabelledBatch {
        let ids: Vec<Vec<u32>> = indices.iter().map(|&i| self.chunks[i].clone()).collect();
        let labels: Vec<f32> = indices.iter().map(|&i| f32::from(self.labels[i])).collect();
        LabelledBatch::from_ids(&ids, &labels, self.config.vocab_size, device).unwrap()
    }

    pub fn importance_of(&self, layout: &GateLayout, values: &[Vec<f32>]) -> Importance {
        Importance::new(layout, values.to_vec()).unwrap()
    }
}

/// Largest absolute difference; panics on a length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest difference relative to the largest reference magnitude.
pub fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    max_abs_diff(got, want) / scale.max(f32::MIN_POSITIVE)
}

/// An importance of `layout` whose gates' values a fixture gives by name.
pub fn importance_by_name(layout: &GateLayout, values: &BTreeMap<String, Vec<f32>>) -> Importance {
    let gates = layout.specs().iter().map(|s| values[&s.name].clone());
    Importance::new(layout, gates.collect()).unwrap()
}

/// One FusedAdamW step (`eps`, `weight_decay`, learning rate `lr`) of
/// `model` on the gradients of `loss`, update-masked with `importance`.
pub fn update_masked_adamw_step<M>(
    model: &mut M,
    loss: burn::tensor::Tensor<1>,
    importance: &Importance,
    (lr, eps, weight_decay): (f64, f32, f64),
) where
    M: burn::module::Module + softmask::SoftMaskable,
{
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &*model);
    let adamw = softmask_kernels::FusedAdamWConfig::new()
        .with_epsilon(eps)
        .with_weight_decay(weight_decay as f32)
        .init()
        .unwrap();
    let mut optim =
        softmask::SoftMaskedOptimizer::new(adamw, importance, &*model, softmask::MaskMode::Update)
            .unwrap();
    optim.step(lr, model, grads).unwrap();
}

/// Every tensor of `want` (a fixture's safetensors) is in `got` with its
/// shape and values within `tolerance` relative, and nothing else is.
pub fn assert_tensors_match(
    what: &str,
    got: &BTreeMap<String, softmask::io::HostTensor>,
    want: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    tolerance: f32,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (key, (shape, values)) in want {
        assert_eq!(&got[key].shape, shape, "{what}: {key}");
        let d = rel_diff(&got[key].values, values);
        assert!(d < tolerance, "{what}: {key} off by {d}");
    }
}

/// Reads every tensor of a safetensors file as f32 values.
pub fn read_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name.to_string(), (view.shape().to_vec(), values))
        })
        .collect()
}

/// Writes f32 tensors as a safetensors file.
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (n.as_str(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softmask-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every float parameter of a model: its id and shape, in visiting order.
pub fn param_shapes<M: burn::module::Module>(
    model: &M,
) -> Vec<(burn::module::ParamId, Vec<usize>)> {
    struct Collect(Vec<(burn::module::ParamId, Vec<usize>)>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0.push((param.id, param.shape().dims::<D>().to_vec()));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// The gradients of a two-example binary loss on a notebook model of
/// vocabulary 20 (at least).
pub fn notebook_grads(model: &SoftMaskNet) -> burn::optim::GradientsParams {
    use burn::module::Module;
    let device = model.devices()[0].clone();
    let batch =
        LabelledBatch::from_ids(&[vec![1, 2, 3], vec![4, 5, 6]], &[1.0, 0.0], 20, &device).unwrap();
    let loss = softmask::binary_cross_entropy(
        model.forward(batch.input_ids.clone(), None).unwrap(),
        batch.labels,
    )
    .unwrap();
    burn::optim::GradientsParams::from_grads(loss.backward(), model)
}

/// A notebook model of vocabulary 20.
pub fn small_net(device: &Device) -> SoftMaskNet {
    SoftMaskNetConfig::new()
        .with_vocab_size(20)
        .init(device)
        .unwrap()
}

/// Stops a continual run (by unwinding out of it) at its `nth` mid-domain
/// checkpoint (1 for the first), which then stays as the run's latest.
pub struct StopAtMidDomain {
    pub nth: usize,
    pub seen: usize,
}

impl softmask::continual::Observer for StopAtMidDomain {
    fn on_checkpoint(&mut self, path: &Path) {
        if !path.to_string_lossy().ends_with("-0000000") {
            self.seen += 1;
            if self.seen == self.nth {
                std::panic::resume_unwind(Box::new("stopped at a mid-domain checkpoint"));
            }
        }
    }
}

/// Runs `config` on the tiny BERT into `out` until its `nth` mid-domain
/// checkpoint, and returns that checkpoint's folder.
pub fn stopped_run(config: MethodConfig, out: &Path, nth: usize) -> PathBuf {
    let device = devices().remove(0).1;
    let o = out.to_path_buf();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        ContinualTrainer::new(config, collate(), &o)
            .unwrap()
            .with_observer(Box::new(StopAtMidDomain { nth, seen: 0 }))
            .run(tiny(&device), &domains(), Some(&general()), false)
            .map(|_| ())
    }));
    assert!(r.is_err(), "the run was not stopped");
    let mut mid: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with("-0000000"))
        .collect();
    assert_eq!(mid.len(), 1, "{mid:?}");
    mid.remove(0)
}

/// An optimizer's whole state as bytes, to show that a refused step left it unchanged.
pub fn optimizer_state(optim: &burn::optim::ModuleOptimizer) -> Vec<u8> {
    optim.into_bytes().unwrap().to_vec()
}

// The continual loop on the tiny BERT fixture (tests/continual.rs, tests/resume.rs).

pub fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tiny")
}

pub fn tiny(device: &Device) -> SoftMaskBert {
    SoftMaskBert::from_pretrained(tiny_dir(), device).unwrap().0
}

pub fn collate() -> MlmChunkCollate {
    // The fixture's ids: 0 pad, 2 a [CLS]-like id, 4 the [MASK]-like id.
    MlmChunkCollate::new(4, 0, 120, vec![0, 1, 2, 3, 4]).unwrap()
}

/// A domain of `chunks` training rows of 16 ids drawn from `lo..hi`.
pub fn synthetic(name: &str, lo: u32, hi: u32, chunks: usize, seed: u64) -> TokenizedDomain {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut row = || {
        std::iter::once(2)
            .chain((0..15).map(|_| rng.random_range(lo..hi)))
            .collect::<Vec<u32>>()
    };
    TokenizedDomain {
        name: name.into(),
        train: (0..chunks).map(|_| row()).collect(),
        held_out: (0..3).map(|_| row()).collect(),
    }
}

/// A causal-LM domain: 6 training and 2 held-out rows of 12 ids in `lo..hi`.
pub fn causal_domain(name: &str, lo: u32, hi: u32) -> TokenizedDomain {
    let row = |i: u32| {
        (0..12)
            .map(|j| lo + (i * 7 + j * 3) % (hi - lo))
            .collect::<Vec<u32>>()
    };
    TokenizedDomain {
        name: name.into(),
        train: (0..6).map(row).collect(),
        held_out: (10..12).map(row).collect(),
    }
}

pub fn domains() -> Vec<TokenizedDomain> {
    vec![
        synthetic("alpha", 5, 60, 6, 1),
        synthetic("beta", 60, 120, 6, 2),
    ]
}

pub fn general() -> Vec<Vec<u32>> {
    synthetic("general", 5, 120, 1, 3).held_out
}

/// A replay corpus for the tiny BERT: general text, disjoint from
/// [`general`]'s held-out chunks.
pub fn replay() -> Vec<Vec<u32>> {
    synthetic("general", 5, 120, 6, 4).train
}

/// A preset shrunk to seconds: 4 steps of 2 chunks per domain.
pub fn quick(name: &str) -> MethodConfig {
    let mut c = MethodConfig::preset(name).unwrap();
    c.steps_per_domain = 4;
    c.batch_size = 2;
    c.seq_len = 16;
    c.importance_batches = 2;
    c.lr = 1e-3;
    c.warmup_fraction = 0.25;
    c
}

pub fn run(config: MethodConfig, out: &Path, resume: bool) -> Result<Outcome<SoftMaskBert>> {
    let device = devices().remove(0).1;
    ContinualTrainer::new(config, collate(), out)?
        .with_general_corpus(replay())
        .run(tiny(&device), &domains(), Some(&general()), resume)
}
