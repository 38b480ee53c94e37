//! The benchmark workloads, shared by `benches/softmask.rs` and
//! `examples/bench_workload.rs` (which the PyTorch comparison drives).
#![allow(dead_code)]

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::*;

/// Sizes of one workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub vocab: usize,
    pub embed: usize,
    pub hidden: [usize; 2],
    pub batch: usize,
    pub seq: usize,
}

pub const NOTEBOOK: Workload = Workload {
    name: "notebook",
    vocab: 300,
    embed: 50,
    hidden: [30, 10],
    batch: 2,
    seq: 50,
};

pub const WIDE: Workload = Workload {
    name: "wide",
    vocab: 5000,
    embed: 256,
    hidden: [1024, 256],
    batch: 32,
    seq: 128,
};

pub const WORKLOADS: [Workload; 2] = [NOTEBOOK, WIDE];

/// The operations measured on each workload.
pub const OPS: [&str; 4] = ["importance", "step_gradient", "step_update", "step_plain"];

/// The devices built in, with autodiff.
pub fn devices() -> Vec<(&'static str, Device)> {
    softmask::cpu_devices()
        .into_iter()
        .map(|(name, d)| (name, d.autodiff()))
        .collect()
}

/// Everything one operation needs, built once.
pub struct Setup {
    /// Always `Some` between iterations (taken by value for the plain step).
    pub model: Option<SoftMaskNet>,
    pub proxy: KlToModel<SoftMaskNet>,
    pub batch: LabelledBatch,
    pub importance: Importance,
    pub plain: ModuleOptimizer,
    pub masked: Option<SoftMaskedOptimizer>,
    pub estimator: ImportanceEstimator,
}

impl Workload {
    pub fn config(&self) -> SoftMaskNetConfig {
        SoftMaskNetConfig::new()
            .with_vocab_size(self.vocab)
            .with_embed_dim(self.embed)
            .with_hidden(self.hidden.to_vec())
            .with_dropout(0.2)
    }

    /// Model, duplicate, one seeded batch, importance uniform in [0, 1), and the optimizer for `op`.
    pub fn setup(&self, op: &str, device: &Device) -> Result<Setup> {
        device.seed(0);
        let model = self.config().init(device)?;
        let proxy = KlToModel::new(self.config().init(device)?);
        let mut rng = StdRng::seed_from_u64(0);
        let ids: Vec<Vec<u32>> = (0..self.batch)
            .map(|_| {
                (0..self.seq)
                    .map(|_| rng.random_range(0..self.vocab as u32))
                    .collect()
            })
            .collect();
        let labels: Vec<f32> = (0..self.batch).map(|i| (i % 2) as f32).collect();
        let batch = LabelledBatch::from_ids(&ids, &labels, self.vocab, device)?;
        let layout = model.gate_layout();
        let values = layout
            .specs()
            .iter()
            .map(|s| (0..s.numel()).map(|_| rng.random::<f32>()).collect())
            .collect();
        let importance = Importance::new(&layout, values)?;
        let adam = || AdamConfig::new().with_epsilon(1e-8).init();
        let masked = match op {
            "step_gradient" => Some(SoftMaskedOptimizer::new(
                adam(),
                &importance,
                &model,
                MaskMode::Gradient,
            )?),
            "step_update" => Some(SoftMaskedOptimizer::new(
                adam(),
                &importance,
                &model,
                MaskMode::Update,
            )?),
            _ => None,
        };
        let estimator =
            ImportanceEstimator::new(layout, Accumulation::PerBatch, GradientSign::Signed)?;
        Ok(Setup {
            model: Some(model),
            proxy,
            batch,
            importance,
            plain: adam(),
            masked,
            estimator,
        })
    }
}

impl Setup {
    /// One iteration of `op`.
    pub fn run(&mut self, op: &str) -> Result<()> {
        let mut model = self
            .model
            .take()
            .ok_or_else(|| Error::InvalidConfig("a previous iteration failed".into()))?;
        match op {
            "importance" => {
                self.estimator.step(&model, &self.batch, &self.proxy)?;
            }
            _ => {
                let probs = model.forward(self.batch.input_ids.clone(), None)?;
                let loss = binary_cross_entropy(probs, self.batch.labels.clone())?;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                match self.masked.as_mut() {
                    Some(optim) => optim.step(1e-3, &mut model, grads)?,
                    None => model = self.plain.step(1e-3, model, grads),
                }
            }
        }
        // Wait for the device, so asynchronous backends are timed whole.
        let _ = model.devices().first().map(Device::sync);
        self.model = Some(model);
        Ok(())
    }
}
