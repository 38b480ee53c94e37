//! A user's own model in the continual loop: a tiny causal language model
//! defined here, with its own batches and weights format, through every
//! method. And EWC's penalty gradient, checked against its formula.

mod common;

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use softmask::continual::*;
use softmask::distributed::Shard;
use softmask::*;

const VOCAB: usize = 50;
const HIDDEN: usize = 8;

/// Embedding, one gated dense layer, an LM head: next-token prediction.
#[derive(Module, Debug)]
struct TinyCausal {
    embed: Embedding,
    fc: Linear,
    head: Linear,
}

impl TinyCausal {
    fn new(device: &Device) -> TinyCausal {
        TinyCausal {
            embed: EmbeddingConfig::new(VOCAB, HIDDEN).init(device),
            fc: LinearConfig::new(HIDDEN, HIDDEN).init(device),
            head: LinearConfig::new(HIDDEN, VOCAB).init(device),
        }
    }

    /// Hidden states `[batch, seq, hidden]`.
    fn hidden(&self, ids: Tensor<2, Int>, gates: Option<&Gates>) -> Result<Tensor<3>> {
        check_token_ids(&ids, VOCAB)?;
        let [b, s] = ids.dims();
        let x = self.embed.forward(ids).reshape([b * s, HIDDEN]);
        let mut y = self.fc.forward(x);
        if let Some(g) = gates {
            y = y * g.tensors()[0].clone();
        }
        Ok(relu(y).reshape([b, s, HIDDEN]))
    }
}

/// Token ids `[batch, seq]`.
#[derive(Debug, Clone)]
struct CausalBatch {
    ids: Tensor<2, Int>,
}

impl TokenCount for CausalBatch {
    fn token_count(&self) -> usize {
        self.ids.dims().iter().product()
    }
}

/// Rows for data-parallel training; every position but the last predicts.
impl Shard for CausalBatch {
    fn rows(&self) -> usize {
        self.ids.dims()[0]
    }
    fn shard(&self, rows: std::ops::Range<usize>) -> softmask::Result<CausalBatch> {
        Ok(CausalBatch {
            ids: self.ids.clone().narrow(0, rows.start, rows.len()),
        })
    }
    fn row_terms(&self) -> softmask::Result<Vec<usize>> {
        let [b, s] = self.ids.dims();
        Ok(vec![s.saturating_sub(1); b])
    }
}

impl SoftMaskable for TinyCausal {
    fn gate_layout(&self) -> GateLayout {
        GateLayout::new(vec![GateSpec::new("fc", 1, HIDDEN)])
    }
    fn governed(&self) -> Vec<Governed> {
        let mut g = vec![Governed::neurons(0, 0, self.fc.weight.id, 1)];
        g.extend(
            self.fc
                .bias
                .as_ref()
                .map(|b| Governed::neurons(0, 0, b.id, 0)),
        );
        g
    }
}

impl Represent<CausalBatch> for TinyCausal {
    fn represent(&self, batch: &CausalBatch, gates: &Gates) -> Result<Tensor<3>> {
        self.hidden(batch.ids.clone(), Some(gates))
    }
}

impl TinyCausal {
    /// The logits of every position but the last, `[batch · (seq - 1), vocab]`.
    fn next_token_logits(&self, batch: &CausalBatch, gates: Option<&Gates>) -> Result<Tensor<2>> {
        let [b, s] = batch.ids.dims();
        let h = self.hidden(batch.ids.clone(), gates)?;
        Ok(self.head.forward(
            h.slice([0..b, 0..s - 1, 0..HIDDEN])
                .reshape([b * (s - 1), HIDDEN]),
        ))
    }
}

impl ContinualModel<CausalBatch> for TinyCausal {
    fn loss(&self, batch: &CausalBatch, gates: Option<&Gates>) -> Result<Tensor<1>> {
        let [b, s] = batch.ids.dims();
        let logits = self.next_token_logits(batch, gates)?;
        let targets = batch
            .ids
            .clone()
            .slice([0..b, 1..s])
            .reshape([b * (s - 1), 1]);
        Ok(log_softmax(logits, 1).gather(1, targets).mean().neg())
    }

    fn objective_logits(&self, batch: &CausalBatch) -> Result<Tensor<2>> {
        self.next_token_logits(batch, None)
    }

    fn pooled(&self, batch: &CausalBatch, gates: Option<&Gates>) -> Result<Tensor<2>> {
        let h = self.hidden(batch.ids.clone(), gates)?;
        let [b, _, _] = h.dims();
        Ok(h.mean_dim(1).reshape([b, HIDDEN]))
    }

    fn save_weights(&self, dir: &Path) -> Result<()> {
        self.clone()
            .save_file(dir.join("model.bpk"))
            .map_err(|e| Error::InvalidConfig(format!("{e:?}")))
    }

    fn load_weights(&self, dir: &Path) -> Result<Self> {
        self.clone()
            .try_load_file(dir.join("model.bpk"))
            .map_err(|e| Error::InvalidConfig(format!("{e:?}")))
    }
}

struct CausalCollate;

impl Collate<CausalBatch> for CausalCollate {
    fn collate(&self, rows: &[Vec<u32>], _seed: u64, device: &Device) -> Result<CausalBatch> {
        let (b, s) = (rows.len(), rows[0].len());
        let ids: Vec<i64> = rows.iter().flatten().map(|&v| i64::from(v)).collect();
        Ok(CausalBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, s]), device),
        })
    }
}

#[test]
fn a_users_causal_model_runs_through_every_method_and_resumes() {
    let device = devices().remove(0).1;
    let doms = [causal_domain("code", 0, 25), causal_domain("prose", 25, 50)];
    let replay = causal_domain("general", 0, 50).train;
    for name in PRESETS {
        let out = temp_dir(&format!("own-{name}"));
        let mut c = quick(name);
        c.lr = 1e-2;
        if c.masked_gates.is_some() {
            // DGA masks the gate "heads", which this model lacks: refused,
            // listing its gates, rather than a run that masks nothing.
            let e = ContinualTrainer::new(c.clone(), CausalCollate, &out)
                .unwrap()
                .run(TinyCausal::new(&device), &doms, None, false)
                .map(|_| ())
                .unwrap_err();
            assert!(e.to_string().contains("its gates are [\"fc\"]"), "{e}");
            c.masked_gates = Some(vec!["fc".into()]);
        }
        let model = TinyCausal::new(&device);
        let before = model.clone();
        let outcome = ContinualTrainer::new(c.clone(), CausalCollate, &out)
            .unwrap()
            .with_general_corpus(replay.clone())
            .run(model, &doms, None, false)
            .unwrap();
        let m = &outcome.results;
        assert_eq!(m.columns, ["code", "prose"], "{name}");
        // Training on a domain lowers its held-out loss.
        assert!(m.after[0][0] < m.base[0], "{name}: {:?}", m);
        let moved = unit_movement(&before, &outcome.model).unwrap();
        assert!(moved[0].iter().any(|&v| v > 0.0), "{name}");
        // Resuming the finished run gives the same results.
        let again = ContinualTrainer::new(c, CausalCollate, &out)
            .unwrap()
            .with_general_corpus(replay.clone())
            .run(TinyCausal::new(&device), &doms, None, true)
            .unwrap();
        assert_eq!(again.results, outcome.results, "{name}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// Values of the parameter `id`, flattened.
fn values_of<M: Module>(model: &M, id: ParamId) -> Vec<f32> {
    struct Find(ParamId, Vec<f32>);
    impl ModuleVisitor for Find {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.id == self.0 {
                self.1 = softmask::io::to_host(p.val()).unwrap().values;
            }
        }
    }
    let mut f = Find(id, Vec::new());
    model.visit(&mut f);
    f.1
}

#[test]
fn the_ewc_penalty_gradient_is_two_lambda_f_times_the_drift() {
    let device = devices().remove(0).1;
    let model = TinyCausal::new(&device);
    let batch = CausalCollate
        .collate(&[(0..12).collect(), (5..17).collect()], 0, &device)
        .unwrap();
    let grads = GradientsParams::from_grads(model.loss(&batch, None).unwrap().backward(), &model);
    let mut fisher = FisherAccumulator::default();
    fisher.add(&model, &grads);
    let mut ewc = Ewc::new();
    ewc.anchor(&model, fisher).unwrap();
    let anchor = ewc.to_host().unwrap();

    // Move the parameters, then differentiate the penalty.
    let moved = burn::optim::SgdConfig::new().init().step(
        0.5,
        model.clone(),
        GradientsParams::from_grads(model.loss(&batch, None).unwrap().backward(), &model),
    );
    let lambda = 3.0;
    let penalty = ewc.penalty(&moved, lambda).unwrap();
    let grads = penalty.backward();
    let id = moved.fc.weight.id;
    let got = softmask::io::to_host(moved.fc.weight.val().grad(&grads).unwrap())
        .unwrap()
        .values;
    let f = &anchor[&format!("0.fisher.{}", id.val())].values;
    let star = &anchor[&format!("0.theta.{}", id.val())].values;
    let theta = values_of(&moved, id);
    let want: Vec<f32> = (0..got.len())
        .map(|i| 2.0 * lambda as f32 * f[i] * (theta[i] - star[i]))
        .collect();
    assert!(want.iter().any(|&w| w.abs() > 1e-6), "the parameters moved");
    assert!(max_abs_diff(&got, &want) < 1e-6, "{got:?} vs {want:?}");
}
