//! Optimizer state and resume: every state the crate loads is checked before
//! burn sees it, every hyper-parameter a step takes is in range, and a
//! checkpoint that does not belong to the run is refused, naming the part.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Bytes, Device};
use burn_pack::{Reader, Scalar, Writer};
use common::*;
use softmask::continual::*;
use softmask::mask::load_optimizer_state;
use softmask::*;
use softmask_kernels::FusedAdamWConfig;

fn device() -> Device {
    devices().remove(0).1
}

fn fused() -> ModuleOptimizer {
    FusedAdamWConfig::new().init().unwrap()
}

fn grads(model: &SoftMaskNet) -> GradientsParams {
    notebook_grads(model)
}

fn model(device: &Device) -> SoftMaskNet {
    small_net(device)
}

fn masked(model: &SoftMaskNet, optim: ModuleOptimizer) -> SoftMaskedOptimizer {
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    SoftMaskedOptimizer::new(optim, &imp, model, MaskMode::Update).unwrap()
}

/// A model and the FusedAdamW state of two steps on it.
fn trained(device: &Device) -> (SoftMaskNet, Vec<u8>) {
    let mut m = model(device);
    let mut optim = masked(&m, fused());
    for _ in 0..2 {
        let g = grads(&m);
        optim.step(1e-2, &mut m, g).unwrap();
    }
    let bytes = optim.optimizer().into_bytes().unwrap().to_vec();
    (m, bytes)
}

/// The entries of a burn optimizer state, to rewrite.
struct Parts {
    tensors: Vec<burn_pack::Tensor>,
    scalars: BTreeMap<String, Scalar>,
    metadata: BTreeMap<String, String>,
}

fn parts(bytes: &[u8]) -> Parts {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
    Parts {
        scalars: reader.scalars().clone(),
        metadata: reader.metadata().clone(),
        tensors: reader.into_tensors().unwrap(),
    }
}

fn pack(p: Parts) -> Vec<u8> {
    let mut w = Writer::new(p.tensors);
    for (k, v) in &p.scalars {
        w = w.with_scalar(k, *v);
    }
    for (k, v) in &p.metadata {
        w = w.with_metadata(k, v);
    }
    w.into_bytes().unwrap().to_vec()
}

/// `bytes` with the first tensor whose name ends in `leaf` replaced by `f` of it.
fn rewrite_tensor(
    bytes: &[u8],
    leaf: &str,
    f: impl FnOnce(burn_pack::Tensor) -> burn_pack::Tensor,
) -> Vec<u8> {
    let mut p = parts(bytes);
    let i = p
        .tensors
        .iter()
        .position(|t| t.name.ends_with(leaf))
        .unwrap();
    let t = p.tensors.remove(i);
    p.tensors.insert(i, f(t));
    pack(p)
}

/// What a state holds, in a canonical order: tensors (name, parameter id,
/// shape, bytes) and scalars.
type Content = (
    Vec<(String, Option<u64>, Vec<usize>, Vec<u8>)>,
    BTreeMap<String, Scalar>,
);

fn content(bytes: &[u8]) -> Content {
    let p = parts(bytes);
    let mut tensors: Vec<_> = p
        .tensors
        .into_iter()
        .map(|t| {
            let (name, _, shape, id, data) = t.into_parts().unwrap();
            (name, id, shape.to_vec(), data.to_vec())
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, p.scalars)
}

fn refusal(r: Result<()>) -> String {
    match r {
        Err(e @ Error::OptimizerState { .. }) => e.to_string(),
        other => panic!("expected an optimizer-state refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_state_loads_as_the_optimizer_saved_it() {
    let device = device();
    let (m, bytes) = trained(&device);
    let mut a = masked(&m, fused());
    a.load_state(&bytes).unwrap();
    // The loaded optimizer holds exactly the saved state: two moments and a
    // step count of 2 for each of the model's parameters.
    let saved = content(&bytes);
    assert_eq!(content(&a.optimizer().into_bytes().unwrap()), saved);
    assert_eq!(saved.0.len(), 2 * param_shapes(&m).len());
    assert!(
        saved
            .1
            .iter()
            .filter(|(k, _)| k.ends_with("momentum.time"))
            .all(|(_, v)| *v == Scalar::UInt(2))
    );
    let loaded = load_optimizer_state(&fused(), &bytes, &m).unwrap();
    assert_eq!(content(&loaded.into_bytes().unwrap()), saved);
}

/// Row 1: a damaged `param_id` panicked inside burn.
#[test]
fn a_tensor_without_a_parameter_id_is_refused_not_a_panic() {
    let device = device();
    let (m, bytes) = trained(&device);
    let bad = rewrite_tensor(&bytes, "moment_1", |mut t| {
        t.param_id = None;
        t
    });
    let mut optim = masked(&m, fused());
    optim.load_state(&bytes).unwrap();
    let e = refusal(optim.load_state(&bad));
    assert!(e.contains("carries no parameter id"), "{e}");
    // The refused load left the state in force.
    assert_eq!(
        content(&optim.optimizer().into_bytes().unwrap()),
        content(&bytes)
    );
}

/// Row 3: a NaN moment loaded, stepped Ok, and left NaN in the model.
#[test]
fn a_non_finite_moment_is_refused_naming_the_parameter() {
    let device = device();
    let (m, bytes) = trained(&device);
    for (leaf, value, says) in [
        ("moment_1", f32::NAN, "holds NaN"),
        ("moment_1", f32::INFINITY, "holds inf"),
        ("moment_2", -1.0, "below 0 in a second moment"),
    ] {
        let bad = rewrite_tensor(&bytes, leaf, |t| {
            let (name, dtype, shape, id, data) = t.into_parts().unwrap();
            let mut v = data.to_vec();
            v[..4].copy_from_slice(&value.to_le_bytes());
            burn_pack::Tensor::new(name, dtype, shape, id, Bytes::from_bytes_vec(v))
        });
        let e = refusal(masked(&m, fused()).load_state(&bad));
        assert!(e.contains(says) && e.contains("(id "), "{leaf}: {e}");
    }
}

/// Row 6: moments of another shape loaded, and their parameters were
/// silently not updated.
#[test]
fn moments_of_another_shape_are_refused() {
    let device = device();
    let (m, bytes) = trained(&device);
    // A matrix's moment, transposed: the same values, the shape of a model
    // whose layer is the other way round.
    let mut p = parts(&bytes);
    let t = p
        .tensors
        .iter_mut()
        .find(|t| t.name.ends_with("moment_2") && t.shape.len() == 2 && t.shape[0] != t.shape[1])
        .unwrap();
    t.shape = vec![t.shape[1], t.shape[0]].into();
    let bad = pack(p);
    let e = refusal(masked(&m, fused()).load_state(&bad));
    assert!(e.contains("has shape"), "{e}");
}

#[test]
fn step_counts_out_of_range_are_refused() {
    let device = device();
    let (m, bytes) = trained(&device);
    for time in [0u64, u64::MAX] {
        let mut p = parts(&bytes);
        let key = p
            .scalars
            .keys()
            .find(|k| k.ends_with("momentum.time"))
            .unwrap()
            .clone();
        p.scalars.insert(key, Scalar::UInt(time));
        let e = refusal(masked(&m, fused()).load_state(&pack(p)));
        assert!(e.contains("step count"), "{time}: {e}");
    }
}

/// Another model's state, and an SGD state handed to AdamW: refused, not
/// dropped where the crate has the model.
#[test]
fn a_state_of_another_model_or_optimizer_is_refused() {
    let device = device();
    let (_, bytes) = trained(&device);
    let other = model(&device);
    let e = refusal(masked(&other, fused()).load_state(&bytes));
    assert!(e.contains("which this model does not have"), "{e}");

    let mut m = model(&device);
    let mut sgd = masked(
        &m,
        SgdConfig::new()
            .with_momentum(Some(burn::optim::momentum::MomentumConfig::new()))
            .init(),
    );
    let g = grads(&m);
    sgd.step(1e-2, &mut m, g).unwrap();
    let sgd_state = sgd.optimizer().into_bytes().unwrap().to_vec();
    let e = refusal(masked(&m, fused()).load_state(&sgd_state));
    assert!(e.contains("does not fit this optimizer"), "{e}");
}

/// Rows 4 and 5: a NaN learning rate or beta stepped Ok into a NaN model.
#[test]
fn hyper_parameters_out_of_range_are_refused_by_name() {
    let device = device();
    let mut m = model(&device);
    let before = m.named_tensors().unwrap();
    let mut optim = masked(&m, fused());
    for lr in [f64::NAN, f64::INFINITY, -1e-3] {
        let g = grads(&m);
        let e = optim.step(lr, &mut m, g).unwrap_err();
        assert!(
            matches!(&e, Error::HyperParameter { name, .. } if name == "lr"),
            "{lr}: {e}"
        );
    }
    assert_eq!(m.named_tensors().unwrap(), before);
    let Err(e) = FusedAdamWConfig::new().with_beta_2(f32::NAN).init() else {
        panic!("a NaN beta was accepted");
    };
    let e = Error::from(e);
    assert_eq!(
        e.to_string(),
        "optimizer hyper-parameter beta_2 is NaN: expected a finite value in [0, 1)"
    );
    let Err(e) = OptimizerKind::Sgd { momentum: f64::NAN }.init() else {
        panic!("a NaN momentum was accepted");
    };
    assert!(
        matches!(&e, Error::HyperParameter { name, .. } if name == "momentum"),
        "{e}"
    );
}

/// A step whose finite inputs overflow (here an extreme learning rate) is
/// reported, never an `Ok` over a model holding infinities.
#[test]
fn a_step_that_overflows_the_parameters_is_an_error() {
    let device = device();
    let mut m = model(&device);
    let mut optim = masked(&m, SgdConfig::new().init());
    let g = grads(&m);
    let e = optim.step(1e300, &mut m, g).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { what } if what.contains("after an optimizer step")),
        "{e}"
    );
}

// Resume: the checkpoint's parts must belong to the run.

fn resumable() -> MethodConfig {
    let mut c = quick("das");
    c.checkpoint_every = 2;
    c
}

/// A run folder holding a mid-domain checkpoint (domain 0, step 2), and it.
fn interrupted(tag: &str) -> (PathBuf, PathBuf) {
    let out = temp_dir(tag);
    let ckpt = stopped_run(resumable(), &out, 1);
    assert!(ckpt.ends_with("000-0000002") && ckpt.join("optimizer.bin").exists());
    (out, ckpt)
}

fn resume(out: &Path) -> Result<Outcome<SoftMaskBert>> {
    run(resumable(), out, true)
}

fn checkpoint_refusal(r: Result<Outcome<SoftMaskBert>>) -> String {
    match r.map(|_| ()) {
        Err(e @ Error::Checkpoint { .. }) => e.to_string(),
        other => panic!("expected a checkpoint refusal, got {other:?}"),
    }
}

/// Every file of a folder, to show a refused resume changed nothing.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn resume_refuses_checkpoints_that_do_not_belong_to_the_run() {
    let (out, ckpt) = interrupted("state-resume");
    let manifest = std::fs::read_to_string(ckpt.join("manifest.json")).unwrap();
    let state = std::fs::read(ckpt.join("optimizer.bin")).unwrap();

    // Row 2: the state's parameter id damaged inside a checkpoint.
    let bad = rewrite_tensor(&state, "moment_1", |mut t| {
        t.param_id = None;
        t
    });
    std::fs::write(ckpt.join("optimizer.bin"), &bad).unwrap();
    let kept = files(&out);
    let e = checkpoint_refusal(resume(&out));
    assert!(
        e.contains("optimizer.bin") && e.contains("carries no parameter id"),
        "{e}"
    );
    assert_eq!(files(&out), kept, "a refused resume changed the run folder");

    // Row 7: the optimizer state of another run (another model instance).
    let (other_out, other_ckpt) = interrupted("state-resume-other");
    std::fs::copy(other_ckpt.join("optimizer.bin"), ckpt.join("optimizer.bin")).unwrap();
    let e = checkpoint_refusal(resume(&out));
    assert!(e.contains("which this model does not have"), "{e}");
    std::fs::remove_dir_all(other_out).unwrap();
    std::fs::write(ckpt.join("optimizer.bin"), &state).unwrap();

    // Row 8: a position past the domain's end, or one the run never checkpoints at.
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    for (step, says) in [
        (999, "outside the run"),
        (3, "not one this run checkpoints at"),
    ] {
        m["position"]["step"] = serde_json::json!(step);
        std::fs::write(ckpt.join("manifest.json"), m.to_string()).unwrap();
        let e = checkpoint_refusal(resume(&out));
        assert!(e.contains(says), "step {step}: {e}");
    }
    // Importance files the run has not estimated at this position.
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["importances"] = serde_json::json!(["general.safetensors", "domain-alpha.safetensors"]);
    std::fs::write(ckpt.join("manifest.json"), m.to_string()).unwrap();
    let e = checkpoint_refusal(resume(&out));
    assert!(e.contains("importance files"), "{e}");
    // An importance of another layout.
    std::fs::write(ckpt.join("manifest.json"), &manifest).unwrap();
    let imp = out.join("importance/general.safetensors");
    let good_imp = std::fs::read(&imp).unwrap();
    Importance::zeros(&GateLayout::new(vec![GateSpec::new("heads", 1, 1)]))
        .unwrap()
        .save(&imp)
        .unwrap();
    let e = checkpoint_refusal(resume(&out));
    assert!(e.contains("its importance general.safetensors"), "{e}");
    std::fs::write(&imp, good_imp).unwrap();

    // Put back as it was, the checkpoint resumes to the end (bit-exact
    // resume is tests/resume.rs's, alone in its binary).
    let resumed = resume(&out).unwrap();
    assert_eq!(resumed.results.after.len(), 2);
    // The log says where the run resumed.
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("\"event\":\"resume\""))
        .unwrap();
    assert!(
        line.contains("\"domain\":\"alpha\"")
            && line.contains("\"step\":2")
            && line.contains("000-0000002"),
        "{line}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

/// Row 9: a method masking a gate the model lacks masked nothing, silently.
#[test]
fn a_method_naming_a_gate_the_model_lacks_is_refused_listing_its_gates() {
    let out = temp_dir("state-gates");
    let mut c = quick("dga");
    c.masked_gates = Some(vec!["head".into()]);
    let e = run(c, &out, false).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("\"head\"") && e.contains("[\"heads\", \"intermediate\", \"output\"]"),
        "{e}"
    );
    assert!(!out.join("log.jsonl").exists());
    std::fs::remove_dir_all(out).unwrap();
}
