//! Faults at the optimizer step: each is refused with a typed error before the
//! abort-on-unwind step runs, and the model, the gradients and the optimizer
//! state stay exactly as they were.

mod common;

use burn::module::{Module, ParamId};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use softmask::*;

fn small_model(device: &Device) -> SoftMaskNet {
    SoftMaskNetConfig::new()
        .with_vocab_size(20)
        .with_embed_dim(4)
        .with_hidden(vec![3, 2])
        .with_dropout(0.0)
        .init(device)
        .unwrap()
}

/// Importance 1 everywhere: with the update mask, no governed unit may move.
fn protect_all(model: &SoftMaskNet) -> Importance {
    let layout = model.gate_layout();
    let values = layout
        .specs()
        .iter()
        .map(|s| vec![1.0; s.numel()])
        .collect();
    Importance::new(&layout, values).unwrap()
}

fn grads(model: &SoftMaskNet) -> GradientsParams {
    notebook_grads(model)
}

/// The id and shape of the head's weight, which no gate governs.
fn ungoverned(model: &SoftMaskNet) -> (ParamId, Vec<usize>) {
    let governed: Vec<ParamId> = model.governed().iter().map(|g| g.param).collect();
    param_shapes(model)
        .into_iter()
        .rev()
        .find(|(id, shape)| !governed.contains(id) && shape.len() == 2)
        .unwrap()
}

/// An optimizer with state (one good step taken on `model`).
fn stepped(model: &mut SoftMaskNet, imp: &Importance, mode: MaskMode) -> SoftMaskedOptimizer {
    let mut optim = SoftMaskedOptimizer::new(AdamConfig::new().init(), imp, model, mode).unwrap();
    let g = grads(model);
    optim.step(0.1, model, g).unwrap();
    optim
}

/// Runs a refused step and checks that nothing changed.
fn refused(
    optim: &mut SoftMaskedOptimizer,
    model: &mut SoftMaskNet,
    grads: GradientsParams,
) -> Error {
    let (weights, state) = (
        model.named_tensors().unwrap(),
        optimizer_state(optim.optimizer()),
    );
    let err = optim.step(0.1, model, grads).unwrap_err();
    assert_eq!(model.named_tensors().unwrap(), weights, "model changed");
    assert_eq!(
        optimizer_state(optim.optimizer()),
        state,
        "optimizer changed"
    );
    err
}

#[test]
fn a_mask_built_for_another_model_instance_is_refused() {
    for (name, device) in devices() {
        for mode in [MaskMode::Gradient, MaskMode::Update] {
            let mut a = small_model(&device);
            let imp = protect_all(&a);
            let mut optim = stepped(&mut a, &imp, mode);
            // Same layout, other parameter ids: before, Ok and no mask applied.
            let mut b = small_model(&device);
            let g = grads(&b);
            let err = refused(&mut optim, &mut b, g);
            assert!(
                matches!(&err, Error::LayoutMismatch(m)
                    if m.contains("4 of the 4 parameters") && m.contains("another model instance")),
                "{name} {mode:?}: {err}"
            );
        }
        // The maskers on their own.
        let a = small_model(&device);
        let mut b = small_model(&device);
        let imp = protect_all(&a);
        let mut g = grads(&b);
        let before = g.get::<2>(ungoverned(&b).0).unwrap().into_data();
        let err = GradientSoftMasker::new(&imp, &a)
            .unwrap()
            .apply(&b, &mut g)
            .unwrap_err();
        assert!(matches!(err, Error::LayoutMismatch(_)), "{name}: {err}");
        assert_eq!(g.get::<2>(ungoverned(&b).0).unwrap().into_data(), before);
        let update = UpdateSoftMasker::new(&imp, &a).unwrap();
        let snapshot = update.snapshot(&a);
        let weights = b.named_tensors().unwrap();
        let err = update.apply(&mut b, &snapshot).unwrap_err();
        assert!(matches!(err, Error::LayoutMismatch(_)), "{name}: {err}");
        let err = update
            .step(&mut AdamConfig::new().init(), 0.1, &mut b, g)
            .unwrap_err();
        assert!(matches!(err, Error::LayoutMismatch(_)), "{name}: {err}");
        assert_eq!(b.named_tensors().unwrap(), weights);
    }
}

#[test]
fn the_right_instance_with_full_importance_keeps_governed_units_still() {
    // The control for the test above: the same step on the model the mask was
    // built for leaves every governed parameter exactly where it was.
    for (name, device) in devices() {
        let mut a = small_model(&device);
        let before = a.named_tensors().unwrap();
        let all = protect_all(&a);
        let _ = stepped(&mut a, &all, MaskMode::Update);
        let after = a.named_tensors().unwrap();
        for key in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
            assert_eq!(before[key], after[key], "{name}: {key} moved");
        }
        // The head bias always has a gradient (the weight may not, behind dead units).
        assert_ne!(before["head.bias"], after["head.bias"], "{name}");
    }
}

#[test]
fn a_non_finite_gradient_no_gate_governs_is_refused() {
    for (name, device) in devices() {
        for mode in [MaskMode::Gradient, MaskMode::Update] {
            let mut model = small_model(&device);
            let imp = Importance::zeros(&model.gate_layout()).unwrap();
            let mut optim = stepped(&mut model, &imp, mode);
            for bad in [f32::NAN, f32::INFINITY] {
                let mut g = grads(&model);
                let (id, shape) = ungoverned(&model);
                let mut values = vec![0.1f32; shape.iter().product()];
                values[0] = bad;
                g.register(
                    id,
                    Tensor::<2>::from_data(TensorData::new(values, shape), &device.clone().inner()),
                );
                let err = refused(&mut optim, &mut model, g);
                assert!(
                    matches!(&err, Error::NonFinite { what } if what == "gradient of head.weight"),
                    "{name} {mode:?}: {err}"
                );
            }
        }
    }
}

#[test]
fn a_gradient_of_another_shape_or_rank_is_refused() {
    for (name, device) in devices() {
        for mode in [MaskMode::Gradient, MaskMode::Update] {
            let mut model = small_model(&device);
            let imp = Importance::zeros(&model.gate_layout()).unwrap();
            let mut optim = stepped(&mut model, &imp, mode);
            let fc1 = model.governed()[0].param;
            let inner = device.clone().inner();

            // Governed, wrong shape: before, a burn shape panic inside the
            // abort-on-unwind step (update mode aborted the process).
            let mut g = grads(&model);
            g.register(fc1, Tensor::<2>::ones([2, 2], &inner));
            let err = refused(&mut optim, &mut model, g);
            assert!(
                matches!(&err, Error::ShapeMismatch { what, expected, actual }
                    if what == "gradient of hidden.0.weight"
                        && expected.starts_with("[4, 3]") && actual == "[2, 2]"),
                "{name} {mode:?}: {err}"
            );

            // Ungoverned, wrong shape.
            let mut g = grads(&model);
            let (id, _) = ungoverned(&model);
            g.register(id, Tensor::<2>::ones([3, 3], &inner));
            let err = refused(&mut optim, &mut model, g);
            assert!(
                matches!(&err, Error::ShapeMismatch { what, .. } if what == "gradient of head.weight"),
                "{name} {mode:?}: {err}"
            );

            // Wrong rank.
            let mut g = grads(&model);
            g.register(fc1, Tensor::<1>::ones([12], &inner));
            let err = refused(&mut optim, &mut model, g);
            assert!(
                matches!(&err, Error::ShapeMismatch { actual, .. } if actual.contains("another rank")),
                "{name} {mode:?}: {err}"
            );
        }
    }
}

#[test]
fn finite_gradients_whose_sums_only_overflow_together_are_accepted() {
    let device = devices().remove(0).1;
    let mut model = small_model(&device);
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    let mut optim =
        SoftMaskedOptimizer::new(AdamConfig::new().init(), &imp, &model, MaskMode::Update).unwrap();
    // Two gradients each summing to 2e38 (finite); together past f32's range.
    let g = filled_grads(&model, |shape| {
        let mut values = vec![0.0f32; shape.iter().product()];
        if shape.len() == 1 {
            values[0] = 2e38;
        }
        values
    });
    optim.step(0.1, &mut model, g).unwrap();
}

/// Gradients made by hand, `values(shape)` for every parameter: unlike a
/// backward pass through a small random ReLU net, never zero by chance.
fn filled_grads(model: &SoftMaskNet, values: impl Fn(&[usize]) -> Vec<f32>) -> GradientsParams {
    let inner = model.devices()[0].clone().inner();
    let mut g = GradientsParams::new();
    for (id, shape) in param_shapes(model) {
        let data = TensorData::new(values(&shape), shape.clone());
        match shape.len() {
            1 => g.register(id, Tensor::<1>::from_data(data, &inner)),
            _ => g.register(id, Tensor::<2>::from_data(data, &inner)),
        }
    }
    g
}

#[test]
fn ungoverned_damping_scales_the_updates_no_gate_governs() {
    for (name, device) in devices() {
        for mode in [MaskMode::Update, MaskMode::Gradient] {
            let mut model = small_model(&device);
            let before = model.named_tensors().unwrap();
            let imp = Importance::zeros(&model.gate_layout()).unwrap();
            // Full damping with SGD: ungoverned parameters stay, governed ones move.
            let mut optim =
                SoftMaskedOptimizer::new(burn::optim::SgdConfig::new().init(), &imp, &model, mode)
                    .unwrap()
                    .with_ungoverned_damping(1.0)
                    .unwrap();
            let g = filled_grads(&model, |shape| vec![1.0; shape.iter().product()]);
            optim.step(0.5, &mut model, g).unwrap();
            let after = model.named_tensors().unwrap();
            for key in ["word_embeddings.weight", "head.weight", "head.bias"] {
                assert_eq!(before[key], after[key], "{name} {mode:?}: {key} moved");
            }
            for key in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                assert_ne!(
                    before[key], after[key],
                    "{name} {mode:?}: {key} did not move"
                );
            }
        }
    }
    let model = small_model(&devices().remove(0).1);
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    assert!(matches!(
        UpdateSoftMasker::new(&imp, &model)
            .unwrap()
            .with_ungoverned_damping(1.5),
        Err(Error::InvalidConfig(_))
    ));
}
