//! FusedAdamW against burn's AdamW: the same parameters step after step, and
//! optimizer states that load into either.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Distribution, Tensor};
use softmask_kernels::FusedAdamWConfig;

fn params(model: &Linear) -> Vec<f32> {
    let mut out = model
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    if let Some(b) = &model.bias {
        out.extend(b.val().into_data().try_to_vec::<f32>().unwrap_or_default());
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// One step of `optim` on `model` with a fixed regression loss.
fn step(optim: &mut ModuleOptimizer, model: Linear, x: &Tensor<2>, lr: f64) -> Linear {
    let loss = model.forward(x.clone()).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(lr, model, grads)
}

fn model(device: &Device) -> Linear {
    let mut m = LinearConfig::new(300, 70).init(device);
    // Weights far from zero, so that weight decay shows.
    m.weight = Param::from_tensor(Tensor::random(
        [300, 70],
        Distribution::Normal(0.5, 1.0),
        device,
    ));
    m
}

fn burn_adamw() -> ModuleOptimizer {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init()
}

fn fused_adamw() -> ModuleOptimizer {
    FusedAdamWConfig::new()
        .with_weight_decay(0.01)
        .init()
        .unwrap_or_else(|e| panic!("the defaults validate: {e}"))
}

#[test]
fn hyper_parameters_out_of_range_are_refused_by_name() {
    let refused = |c: FusedAdamWConfig| c.init().err().map(|e| (e.name, e.to_string()));
    let c = FusedAdamWConfig::new;
    assert_eq!(
        refused(c().with_beta_1(f32::NAN)).map(|e| e.0),
        Some("beta_1")
    );
    assert_eq!(refused(c().with_beta_1(1.0)).map(|e| e.0), Some("beta_1"));
    assert_eq!(refused(c().with_beta_2(-0.1)).map(|e| e.0), Some("beta_2"));
    assert_eq!(refused(c().with_epsilon(0.0)).map(|e| e.0), Some("epsilon"));
    assert_eq!(
        refused(c().with_epsilon(f32::INFINITY)).map(|e| e.0),
        Some("epsilon")
    );
    assert_eq!(
        refused(c().with_weight_decay(-1e-3)).map(|e| e.0),
        Some("weight_decay")
    );
    assert_eq!(
        refused(c().with_weight_decay(f32::NAN)).map(|e| e.1),
        Some(
            "optimizer hyper-parameter weight_decay is NaN: expected a finite value of 0 or more"
                .into()
        )
    );
    // The edges of the ranges are accepted.
    assert!(
        c().with_beta_1(0.0)
            .with_beta_2(0.0)
            .with_weight_decay(0.0)
            .init()
            .is_ok()
    );
}

#[test]
fn fused_adamw_follows_burns_adamw() {
    let device = Device::flex().autodiff();
    let start = model(&device);
    let x = Tensor::<2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
    let (mut a, mut b) = (start.clone(), start.clone());
    let (mut oa, mut ob) = (burn_adamw(), fused_adamw());
    for t in 0..4 {
        let lr = 1e-2 / (t + 1) as f64;
        a = step(&mut oa, a, &x, lr);
        b = step(&mut ob, b, &x, lr);
        assert_close(&params(&b), &params(&a), &format!("step {t}"));
    }
    assert!(params(&b) != params(&start), "the steps moved nothing");
}

#[test]
fn states_load_into_either_optimizer() {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
    let mut m = model(&device);
    let mut burn = burn_adamw();
    for _ in 0..2 {
        m = step(&mut burn, m, &x, 1e-2);
    }
    let bytes = burn
        .clone()
        .into_bytes()
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mut fused = fused_adamw()
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .unwrap_or_else(|e| panic!("burn's state into FusedAdamW: {e:?}"));
    let a = step(&mut burn, m.clone(), &x, 1e-2);
    let b = step(&mut fused, m.clone(), &x, 1e-2);
    assert_close(&params(&b), &params(&a), "after loading burn's state");

    let bytes = fused.into_bytes().map(|b| b.to_vec()).unwrap_or_default();
    let mut back = burn_adamw()
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .unwrap_or_else(|e| panic!("FusedAdamW's state into burn's: {e:?}"));
    let c = step(&mut back, b.clone(), &x, 1e-2);
    let d = step(&mut burn, a, &x, 1e-2);
    assert_close(&params(&c), &params(&d), "after loading FusedAdamW's state");
}

#[test]
#[allow(deprecated)] // NdArray: a backend without the fused kernels.
fn other_backends_step_with_burns_adamw() {
    let device = Device::ndarray().autodiff();
    let x = Tensor::<2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
    let start = model(&device);
    let a = step(&mut burn_adamw(), start.clone(), &x, 1e-2);
    let b = step(&mut fused_adamw(), start, &x, 1e-2);
    assert_eq!(params(&b), params(&a));
}
