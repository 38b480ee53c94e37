//! Soft-masking through the `SoftMaskable` trait on a model that is not
//! `SoftMaskNet`: exact gradient and update masks, neuron and head-block spans.

mod common;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use softmask::*;

/// Two dense layers: `proj` has 2 "heads" of 3 outputs each; `out` has 4 neurons.
#[derive(Module, Debug)]
struct TwoHeads {
    proj: Linear,
    out: Linear,
}

impl TwoHeads {
    fn new(device: &Device) -> TwoHeads {
        TwoHeads {
            proj: LinearConfig::new(5, 6).init(device),
            out: LinearConfig::new(6, 4).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>, gates: Option<&Gates>) -> Tensor<2> {
        let mut h = self.proj.forward(x);
        if let Some(g) = gates {
            // Each head gate covers 3 consecutive outputs.
            let [_, heads] = g.tensors()[0].dims();
            let per_head = g.tensors()[0]
                .clone()
                .reshape([heads, 1])
                .repeat_dim(1, 3)
                .reshape([1, 6]);
            h = h * per_head;
        }
        let mut y = self.out.forward(h);
        if let Some(g) = gates {
            y = y * g.tensors()[1].clone();
        }
        y
    }
}

impl SoftMaskable for TwoHeads {
    fn gate_layout(&self) -> GateLayout {
        GateLayout::new(vec![
            GateSpec::new("heads", 1, 2),
            GateSpec::new("out", 1, 4),
        ])
    }

    fn governed(&self) -> Vec<Governed> {
        let mut g = vec![Governed::blocks(0, 0, self.proj.weight.id, 1, 3)];
        g.extend(
            self.proj
                .bias
                .as_ref()
                .map(|b| Governed::blocks(0, 0, b.id, 0, 3)),
        );
        g.push(Governed::neurons(1, 0, self.out.weight.id, 1));
        g.extend(
            self.out
                .bias
                .as_ref()
                .map(|b| Governed::neurons(1, 0, b.id, 0)),
        );
        g
    }
}

fn importance(model: &TwoHeads) -> Importance {
    Importance::new(
        &model.gate_layout(),
        vec![vec![0.75, 0.0], vec![1.0, 0.5, 0.25, 0.0]],
    )
    .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn param_values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    values(p.val())
}

fn loss_and_grads(model: &TwoHeads, device: &Device) -> GradientsParams {
    let x = Tensor::<2>::from_data(
        TensorData::new(
            (0..10).map(|v| v as f32 * 0.1 - 0.4).collect::<Vec<_>>(),
            [2, 5],
        ),
        device,
    );
    let loss = model.forward(x, None).powf_scalar(2.0).sum();
    GradientsParams::from_grads(loss.backward(), model)
}

#[test]
fn gradient_mask_scales_rows_and_head_blocks_exactly() {
    for (name, device) in devices() {
        let model = TwoHeads::new(&device);
        let mut grads = loss_and_grads(&model, &device);
        let before_w = values(grads.get::<2>(model.proj.weight.id).unwrap());
        let before_b = values(grads.get::<1>(model.out.bias.as_ref().unwrap().id).unwrap());
        GradientSoftMasker::new(&importance(&model), &model)
            .unwrap()
            .apply(&model, &mut grads)
            .unwrap();
        let after_w = values(grads.get::<2>(model.proj.weight.id).unwrap());
        let after_b = values(grads.get::<1>(model.out.bias.as_ref().unwrap().id).unwrap());
        // proj.weight is [in 5, out 6]: outputs 0..3 are head 0 (mask 0.25), 3..6 head 1 (mask 1).
        for (i, (b, a)) in before_w.iter().zip(&after_w).enumerate() {
            let m = if i % 6 < 3 { 0.25 } else { 1.0 };
            assert_eq!(*a, b * m, "{name}: proj.weight[{i}]");
        }
        let masks = [0.0, 0.5, 0.75, 1.0];
        for u in 0..4 {
            assert_eq!(after_b[u], before_b[u] * masks[u], "{name}: out.bias[{u}]");
        }
    }
}

#[test]
fn with_sgd_gradient_and_update_masks_give_the_same_step() {
    for (name, device) in devices() {
        let start = TwoHeads::new(&device);
        let imp = importance(&start);
        let mut results = Vec::new();
        for mode in [MaskMode::Gradient, MaskMode::Update] {
            let mut model = start.clone();
            let grads = loss_and_grads(&model, &device);
            let mut optim =
                SoftMaskedOptimizer::new(SgdConfig::new().init(), &imp, &model, mode).unwrap();
            optim.step(0.1, &mut model, grads).unwrap();
            results.push((
                param_values(&model.proj.weight),
                param_values(model.out.bias.as_ref().unwrap()),
            ));
        }
        let d = max_abs_diff(&results[0].0, &results[1].0)
            .max(max_abs_diff(&results[0].1, &results[1].1));
        assert!(d < 1e-6, "{name}: {d}");
        // The fully important unit (I = 1) did not move; the unimportant one did.
        let b0 = param_values(start.out.bias.as_ref().unwrap());
        assert_eq!(results[1].1[0], b0[0]);
        assert_ne!(results[1].1[3], b0[3]);
    }
}

#[test]
fn importance_of_a_custom_model_through_a_closure_proxy() {
    for (name, device) in devices() {
        let model = TwoHeads::new(&device);
        struct Rows(Tensor<2>, usize);
        impl TokenCount for Rows {
            fn token_count(&self) -> usize {
                self.1
            }
        }
        let proxy = |m: &TwoHeads, g: &Gates, b: &Rows| -> Result<Tensor<1>> {
            Ok(m.forward(b.0.clone(), Some(g)).sum())
        };
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 10], [2, 5]), &device);
        let mut est = ImportanceEstimator::new(
            model.gate_layout(),
            Accumulation::PerBatch,
            GradientSign::Signed,
        )
        .unwrap();
        est.step(&model, &Rows(x.clone(), 2), &proxy).unwrap();
        // d(sum y)/d(out gate u) = sum over rows of y_u (with gates of ones).
        let y = values(model.forward(x, None).sum_dim(0));
        let raw = est.raw().unwrap();
        let got = &raw.get("out").unwrap().values;
        for u in 0..4 {
            assert!(
                (got[u] - y[u] / 2.0).abs() < 1e-5,
                "{name}: unit {u}: {} vs {}",
                got[u],
                y[u] / 2.0
            );
        }
    }
}

#[test]
fn freezing_a_never_used_model_leaves_the_original_trainable() {
    for (name, device) in devices() {
        let model = SoftMaskNetConfig::new()
            .with_vocab_size(10)
            .init(&device)
            .unwrap();
        let frozen_copy = frozen(&model);
        let batch = LabelledBatch::from_ids(&[vec![1, 2, 3]], &[1.0], 10, &device).unwrap();
        let loss = binary_cross_entropy(
            model.forward(batch.input_ids.clone(), None).unwrap(),
            batch.labels.clone(),
        )
        .unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        assert!(
            grads.len() >= 7,
            "{name}: {} parameter gradients",
            grads.len()
        );
        let loss = binary_cross_entropy(
            frozen_copy.forward(batch.input_ids, None).unwrap(),
            batch.labels,
        )
        .unwrap();
        assert!(
            !loss.is_tracked()
                || GradientsParams::from_grads(loss.backward(), &frozen_copy).is_empty(),
            "{name}"
        );
    }
}

/// Grouped-query attention: a key head read by several query heads is damped
/// by the largest importance among them, never less than any head that reads it.
#[test]
fn a_shared_block_is_damped_by_the_most_protective_unit_of_its_group() {
    #[derive(Module, Debug)]
    struct Gqa {
        q: Linear,
        k: Linear,
        group: usize,
    }
    impl SoftMaskable for Gqa {
        fn gate_layout(&self) -> GateLayout {
            GateLayout::new(vec![GateSpec::new("heads", 1, 4)])
        }
        fn governed(&self) -> Vec<Governed> {
            // 4 query heads of dim 2 (q: 8 outputs); 2 key heads (k: 4
            // outputs), each read by 2 query heads. burn's Linear is [in, out].
            vec![
                Governed::blocks(0, 0, self.q.weight.id, 1, 2),
                Governed::shared(0, 0, self.k.weight.id, 1, 2, self.group),
            ]
        }
    }
    let device = devices().remove(0).1;
    let model = Gqa {
        q: LinearConfig::new(3, 8).with_bias(false).init(&device),
        k: LinearConfig::new(3, 4).with_bias(false).init(&device),
        group: 2,
    };
    let layout = model.gate_layout();
    let imp = Importance::new(&layout, vec![vec![0.1, 0.9, 0.5, 0.2]]).unwrap();
    let masker = GradientSoftMasker::new(&imp, &model).unwrap();
    let x = Tensor::<2>::ones([1, 3], &device);
    let loss = model.q.forward(x.clone()).sum() + model.k.forward(x).sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    masker.apply(&model, &mut grads).unwrap();
    // The first input row of each weight: one gradient of 1 per output, masked.
    let row = |id, cols: usize| -> Vec<f32> {
        let g = grads
            .get::<2>(id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        g[..cols].to_vec()
    };
    let (q, k) = (row(model.q.weight.id, 8), row(model.k.weight.id, 4));
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(
        close(&q, &[0.9, 0.9, 0.1, 0.1, 0.5, 0.5, 0.8, 0.8]),
        "{q:?}"
    );
    // Key head 0 is read by query heads 0 and 1 (importance 0.1, 0.9): 1 - 0.9.
    assert!(close(&k, &[0.1, 0.1, 0.5, 0.5]), "{k:?}");
    for (h, &i) in [0.1f32, 0.9, 0.5, 0.2].iter().enumerate() {
        assert!(k[(h / 2) * 2] <= 1.0 - i + 1e-6, "head {h}");
    }
    // A group that does not divide the units is refused.
    let bad = Gqa { group: 3, ..model };
    let e = GradientSoftMasker::new(&imp, &bad).unwrap_err().to_string();
    assert!(e.contains("groups of 3 (of 4 units)"), "{e}");
}
