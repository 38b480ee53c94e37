//! The continual loop on the tiny BERT fixture: every method end to end, the
//! mechanisms each pins, and bad input (resume after SIGKILL: tests/resume.rs).

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::*;
use softmask::continual::*;
use softmask::*;

#[test]
fn every_method_runs_and_writes_its_results() {
    for name in PRESETS {
        let out = temp_dir(&format!("cont-{name}"));
        let outcome = run(quick(name), &out, false).unwrap();
        let m = &outcome.results;
        assert_eq!(m.columns, ["general", "alpha", "beta"], "{name}");
        assert_eq!(m.after.len(), 2, "{name}");
        assert!(
            m.base
                .iter()
                .chain(m.after.iter().flatten())
                .all(|v| v.is_finite() && *v > 0.0)
        );
        for file in [
            "results.json",
            "results.csv",
            "results.md",
            "results.svg",
            "log.jsonl",
        ] {
            assert!(out.join(file).is_file(), "{name}: {file}");
        }
        // The final checkpoint is a Hugging Face folder the model loads from.
        let last = out.join("checkpoints/002-0000000");
        let (reloaded, _) = SoftMaskBert::from_pretrained(&last, &Device::flex()).unwrap();
        assert_eq!(
            reloaded.named_tensors().unwrap(),
            outcome.model.named_tensors().unwrap(),
            "{name}"
        );
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv, m.to_csv());
        // The effective configuration, which --config reads back.
        assert_eq!(
            MethodConfig::load(out.join("config.json")).unwrap(),
            quick(name),
            "{name}"
        );
        // The log has every step, the base evaluation and one per domain.
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        let count = |event: &str| log.matches(&format!("\"event\":\"{event}\"")).count();
        assert_eq!(
            (count("step"), count("eval"), count("checkpoint")),
            (8, 3, 2),
            "{name}"
        );
        std::fs::remove_dir_all(out).unwrap();
    }
}

#[test]
fn ncl_applies_no_mask_and_das_accumulates_by_max() {
    let out = temp_dir("acc-ncl");
    let ncl = run(quick("ncl"), &out, false).unwrap();
    assert!(ncl.importance.is_none());
    assert!(
        std::fs::read_dir(out.join("importance"))
            .unwrap()
            .next()
            .is_none()
    );
    std::fs::remove_dir_all(&out).unwrap();

    let out = temp_dir("acc-das");
    let das = run(quick("das"), &out, false).unwrap();
    let load = |f: &str| Importance::load(out.join("importance").join(f)).unwrap();
    let saved = [
        load("general.safetensors"),
        load("domain-alpha.safetensors"),
        load("domain-beta.safetensors"),
    ];
    for imp in &saved {
        // Saved normalised: every value in [0, 1).
        assert!(
            imp.gates()
                .iter()
                .flat_map(|g| &g.values)
                .all(|v| (0.0..1.0).contains(v))
        );
    }
    let want = Importance::max(&saved).unwrap();
    assert_eq!(das.importance.unwrap(), want);
    // Max is element-wise: never below any saved value, equal to one of them.
    for (gi, g) in want.gates().iter().enumerate() {
        for (u, &v) in g.values.iter().enumerate() {
            let of: Vec<f32> = saved.iter().map(|s| s.gates()[gi].values[u]).collect();
            assert!(of.contains(&v) && of.iter().all(|&x| x <= v));
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn controls_keep_each_layers_mean_mask_and_dga_masks_heads_only() {
    let layout = GateLayout::new(vec![
        GateSpec::new("heads", 2, 4),
        GateSpec::new("output", 2, 3),
    ]);
    let acc = Importance::new(
        &layout,
        vec![
            vec![0.9, 0.1, 0.5, 0.3, 0.0, 0.2, 0.8, 0.6],
            vec![0.7, 0.2, 0.0, 0.4, 0.4, 0.1],
        ],
    )
    .unwrap();
    let mean_rows = |imp: &Importance| -> Vec<f32> {
        imp.gates()
            .iter()
            .flat_map(|g| {
                (0..g.rows).map(|r| g.row(r).unwrap().iter().sum::<f32>() / g.units as f32)
            })
            .collect()
    };
    let mut das = quick("das");
    das.strength = 0.5;
    let real = applied_importance(&das, &acc).unwrap();
    assert_eq!(real.gates()[0].values[0], 0.45);
    for control in ["das-permuted", "das-uniform"] {
        let mut c = quick(control);
        c.strength = 0.5;
        let applied = applied_importance(&c, &acc).unwrap();
        assert_ne!(applied, real, "{control}");
        for (a, b) in mean_rows(&applied).iter().zip(mean_rows(&real)) {
            assert!((a - b).abs() < 1e-6, "{control}: layer mean {a} vs {b}");
        }
    }
    let dga = applied_importance(&quick("dga"), &acc).unwrap();
    assert_eq!(dga.gates()[0], acc.gates()[0]);
    assert!(dga.gates()[1].values.iter().all(|&v| v == 0.0));
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_nothing_lost() {
    let device = devices().remove(0).1;
    let out = temp_dir("cont-bad");
    let trainer = |c: MethodConfig, o: &Path| ContinualTrainer::new(c, collate(), o).unwrap();
    let err = |r: Result<Outcome<SoftMaskBert>>| r.map(|_| ()).unwrap_err().to_string();

    assert!(
        err(trainer(quick("ncl"), &out).run(tiny(&device), &[], None, false)).contains("no domain")
    );
    let twice = vec![synthetic("a", 5, 60, 6, 1), synthetic("a", 5, 60, 6, 2)];
    assert!(
        err(trainer(quick("ncl"), &out).run(tiny(&device), &twice, None, false))
            .contains("\"a\" appears twice")
    );
    let short = vec![synthetic("a", 5, 60, 1, 1)];
    assert!(
        err(trainer(quick("ncl"), &out).run(tiny(&device), &short, None, false))
            .contains("fewer than one batch of 2")
    );
    let mut empty = synthetic("a", 5, 60, 6, 1);
    empty.held_out.clear();
    assert!(
        err(trainer(quick("ncl"), &out).run(tiny(&device), &[empty], None, false))
            .contains("empty held-out")
    );
    assert!(
        MethodConfig::preset("hat")
            .unwrap_err()
            .to_string()
            .contains("unknown method")
    );

    // A finished run, then a fresh run into the same folder: refused, files kept.
    run(quick("ncl"), &out, false).unwrap();
    let before = std::fs::read(out.join("results.json")).unwrap();
    assert!(err(run(quick("ncl"), &out, false)).contains("already holds a run"));
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), before);
    // Resuming it with another configuration or model is refused.
    let mut other = quick("ncl");
    other.lr = 2e-3;
    assert!(err(run(other, &out, true)).contains("another method configuration"));
    let bigger = SoftMaskBert::from_pretrained(tiny_dir(), &device)
        .unwrap()
        .1
        .clone();
    let mut wide = bigger;
    wide.intermediate_size = 32;
    let model = wide.init(&device).unwrap();
    let r = ContinualTrainer::new(quick("ncl"), collate(), &out)
        .unwrap()
        .run(model, &domains(), Some(&general()), true);
    assert!(
        matches!(r, Err(Error::LayoutMismatch(_))),
        "{:?}",
        r.map(|_| ())
    );
    // A manifest whose results do not fit the run is refused, not summarised.
    let last = out.join("checkpoints/002-0000000/manifest.json");
    let good = std::fs::read_to_string(&last).unwrap();
    let mut tampered: serde_json::Value = serde_json::from_str(&good).unwrap();
    tampered["results"]["after"][1] = serde_json::json!([1.0]);
    std::fs::write(&last, tampered.to_string()).unwrap();
    assert!(
        matches!(run(quick("ncl"), &out, true), Err(Error::CorruptFile { reason, .. })
            if reason.contains("row width")),
    );
    let mut tampered: serde_json::Value = serde_json::from_str(&good).unwrap();
    tampered["position"]["domain"] = serde_json::json!(1);
    std::fs::write(&last, tampered.to_string()).unwrap();
    assert!(
        matches!(run(quick("ncl"), &out, true), Err(Error::CorruptFile { reason, .. })
            if reason.contains("2 result rows for 1 finished domains")),
    );
    // A corrupt manifest is named, never taken for a checkpoint.
    std::fs::write(&last, b"{ not json").unwrap();
    assert!(matches!(
        run(quick("ncl"), &out, true),
        Err(Error::CorruptFile { .. })
    ));
    std::fs::remove_dir_all(&out).unwrap();

    // A loss that turns non-finite stops the run with a typed error; the
    // checkpoint of the last good step stays.
    let out = temp_dir("cont-nan");
    let mut wild = quick("ncl");
    wild.lr = 1e30;
    wild.warmup_fraction = 0.0;
    wild.checkpoint_every = 1;
    let e = run(wild, &out, false).map(|_| ()).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { what } if what.contains("training loss")),
        "{e}"
    );
    let kept: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[derive(serde::Deserialize)]
struct DasFixture {
    temperature: f64,
    lr: f64,
    weight_decay: f64,
    importance: std::collections::BTreeMap<String, Vec<f32>>,
    mlm_loss: f32,
    contrastive_loss: f32,
}

#[derive(serde::Deserialize)]
struct TinyBatch {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    labels: Vec<Vec<i64>>,
}

/// One DAS step (MLM + contrastive, update-masked AdamW) against
/// tools/reference/das_fixtures.py.
#[test]
fn a_das_step_matches_pytorch_on_every_device() {
    let das = tiny_dir().parent().unwrap().join("das");
    let fx: DasFixture =
        serde_json::from_str(&std::fs::read_to_string(das.join("fixture.json")).unwrap()).unwrap();
    #[derive(serde::Deserialize)]
    struct Batches {
        batches: Vec<TinyBatch>,
    }
    let b: Batches =
        serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("fixture.json")).unwrap())
            .unwrap();
    let b = &b.batches[0];
    let want = read_tensors(&das.join("after_step.safetensors"));
    for (name, device) in devices() {
        let mut model = tiny(&device).with_dropout(0.0).unwrap();
        let layout = model.gate_layout();
        let importance = Importance::new(
            &layout,
            layout
                .specs()
                .iter()
                .map(|s| fx.importance[&s.name].clone())
                .collect(),
        )
        .unwrap();
        let gates = Gates::from_tensors(
            importance
                .gates()
                .iter()
                .map(|g| {
                    burn::tensor::Tensor::<2>::from_data(
                        burn::tensor::TensorData::new(g.values.clone(), [g.rows, g.units]),
                        &device,
                    )
                })
                .collect(),
            &layout,
        )
        .unwrap();
        let batch = BertBatch::from_rows(
            &b.input_ids,
            &b.attention_mask,
            None,
            Some(&b.labels),
            120,
            &device,
        )
        .unwrap();
        let mlm = model.loss(&batch, None).unwrap();
        let contrastive = contrastive_loss(
            model.pooled(&batch, None).unwrap(),
            model.pooled(&batch, None).unwrap(),
            model.pooled(&batch, Some(&gates)).unwrap(),
            fx.temperature,
        )
        .unwrap();
        let (m, c) = (
            mlm.clone().into_scalar::<f32>(),
            contrastive.clone().into_scalar::<f32>(),
        );
        assert!(
            (m - fx.mlm_loss).abs() < 1e-5 * fx.mlm_loss,
            "{name}: mlm {m} vs {}",
            fx.mlm_loss
        );
        assert!(
            (c - fx.contrastive_loss).abs() < 1e-4 * fx.contrastive_loss,
            "{name}: contrastive {c} vs {}",
            fx.contrastive_loss
        );
        let grads =
            burn::optim::GradientsParams::from_grads((mlm + contrastive).backward(), &model);
        let adamw = OptimizerKind::adamw(fx.weight_decay);
        let mut optim =
            SoftMaskedOptimizer::new(adamw.init().unwrap(), &importance, &model, MaskMode::Update)
                .unwrap();
        optim.step(fx.lr, &mut model, grads).unwrap();
        let got = model.named_tensors().unwrap();
        for (key, (shape, values)) in &want {
            let g = &got[key];
            assert_eq!(&g.shape, shape, "{key}");
            let d = max_abs_diff(&g.values, values);
            assert!(d < 2e-6, "{name}: {key} differs by {d}");
        }
    }
}

/// Every collated batch's rows, recorded.
struct Recording {
    inner: MlmChunkCollate,
    rows: std::sync::Arc<std::sync::Mutex<Vec<Vec<Vec<u32>>>>>,
}

impl Collate<BertBatch> for Recording {
    fn collate(
        &self,
        rows: &[Vec<u32>],
        seed: u64,
        device: &burn::tensor::Device,
    ) -> Result<BertBatch> {
        self.rows.lock().unwrap().push(rows.to_vec());
        self.inner.collate(rows, seed, device)
    }
}

#[test]
fn replay_draws_its_share_of_every_batch_from_one_stream_across_domains() {
    let device = devices().remove(0).1;
    let mut c = quick("replay");
    c.batch_size = 4;
    assert_eq!(c.replay_rows(), 1);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recording = Recording {
        inner: collate(),
        rows: seen.clone(),
    };
    let doms = domains();
    let out = temp_dir("replay");
    ContinualTrainer::new(c.clone(), recording, &out)
        .unwrap()
        .with_general_corpus(replay())
        .run(tiny(&device), &doms, Some(&general()), false)
        .unwrap();
    let general_rows = general();
    let held_out: Vec<&Vec<u32>> = doms
        .iter()
        .flat_map(|d| &d.held_out)
        .chain(&general_rows)
        .collect();
    let batches = seen.lock().unwrap().clone();
    let training: Vec<&Vec<Vec<u32>>> = batches
        .iter()
        .filter(|b| !b.iter().any(|r| held_out.contains(&r)))
        .collect();
    assert_eq!(training.len(), 2 * c.steps_per_domain);
    let corpus = replay();
    let mut replayed = Vec::new();
    for (i, b) in training.iter().enumerate() {
        let domain = &doms[i / c.steps_per_domain];
        assert_eq!(b.len(), 4);
        assert!(b[..3].iter().all(|r| domain.train.contains(r)), "batch {i}");
        assert!(corpus.contains(&b[3]), "batch {i}");
        replayed.push(b[3].clone());
    }
    // One epoch over the replay corpus spans both domains (4 + 2 steps).
    let mut first: Vec<Vec<u32>> = replayed[..corpus.len()].to_vec();
    first.sort();
    let mut all = corpus.clone();
    all.sort();
    assert_eq!(first, all);
    std::fs::remove_dir_all(&out).unwrap();

    // Without a replay corpus the run is refused before anything is written;
    // resuming with another corpus is refused too.
    let out = temp_dir("replay-refused");
    let e = ContinualTrainer::new(c.clone(), collate(), &out)
        .unwrap()
        .run(tiny(&device), &doms, Some(&general()), false)
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("give one (ContinualTrainer::with_general_corpus)"),
        "{e}"
    );
    assert!(!out.join("checkpoints").exists());
    ContinualTrainer::new(c.clone(), collate(), &out)
        .unwrap()
        .with_general_corpus(replay())
        .run(tiny(&device), &doms, Some(&general()), false)
        .unwrap();
    let other: Vec<Vec<u32>> = replay().into_iter().rev().skip(1).collect();
    let e = ContinualTrainer::new(c, collate(), &out)
        .unwrap()
        .with_general_corpus(other)
        .run(tiny(&device), &doms, Some(&general()), true)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidConfig(_) | Error::Checkpoint { .. }),
        "{e}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// Split-half stability: the same batch in both halves ranks every unit the
/// same (1 per layer); a DAS run records the stability of every importance
/// it estimates.
#[test]
fn importance_stability_is_one_for_identical_halves_and_recorded_per_run() {
    let device = devices().remove(0).1;
    let model = tiny(&device).with_dropout(0.0).unwrap();
    let b = collate()
        .collate(&domains()[0].train[..2], 3, &device)
        .unwrap();
    let mut est = ImportanceEstimator::new(
        model.gate_layout(),
        Accumulation::PerBatch,
        GradientSign::Absolute,
    )
    .unwrap();
    est.step(&model, &b, &MlmLoss).unwrap();
    assert!(est.split_half(Normalization::Reference).unwrap().is_none());
    est.step(&model, &b, &MlmLoss).unwrap();
    for gate in est.split_half(Normalization::Reference).unwrap().unwrap() {
        assert_eq!(gate.rows.len(), 2, "{}", gate.name);
        for r in &gate.rows {
            let r = r.unwrap();
            assert!((r - 1.0).abs() < 1e-6, "{}: {r}", gate.name);
        }
    }

    let out = temp_dir("stability");
    run(quick("das"), &out, false).unwrap();
    let text = std::fs::read_to_string(out.join("importance-stability.json")).unwrap();
    let record: std::collections::BTreeMap<
        String,
        Vec<softmask::importance::stability::GateStability>,
    > = serde_json::from_str(&text).unwrap();
    assert_eq!(
        record.keys().collect::<Vec<_>>(),
        ["alpha", "beta", "general"]
    );
    for gates in record.values() {
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["heads", "intermediate", "output"]);
        assert!(
            gates
                .iter()
                .flat_map(|g| &g.rows)
                .flatten()
                .all(|r| (-1.0..=1.0).contains(r))
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// The positive control's general importance is the objective's on the
/// general corpus: not DAS's (dropout KL on the first domain), the same
/// for its controls (which differ in how it is applied), and another for
/// another corpus.
#[test]
fn das_oracle_estimates_the_general_importance_on_the_general_corpus() {
    let device = devices().remove(0).1;
    // Without dropout the oracle's estimate draws nothing from the device's
    // generator, which tests running beside this one share.
    let general_of = |name: &str, corpus: Vec<Vec<u32>>| {
        let out = temp_dir(&format!("oracle-{name}"));
        let p = if name == "das" { 0.1 } else { 0.0 };
        ContinualTrainer::new(quick(name), collate(), &out)
            .unwrap()
            .with_general_corpus(corpus)
            .run(
                tiny(&device).with_dropout(p).unwrap(),
                &domains(),
                Some(&general()),
                false,
            )
            .unwrap();
        let imp = Importance::load(out.join("importance/general.safetensors")).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        imp
    };
    let oracle = general_of("das-oracle", replay());
    assert_eq!(general_of("das-oracle-permuted", replay()), oracle);
    assert_ne!(general_of("das", replay()), oracle);
    let other: Vec<Vec<u32>> = domains()[1].train.clone();
    assert_ne!(general_of("das-oracle", other), oracle);
    let c = MethodConfig::preset("das-oracle-uniform").unwrap();
    assert!(c.uses_general_corpus() && c.control == Control::Uniform);
    assert_eq!(c.general_proxy, GeneralProxy::CorpusLoss);
}

/// Records every step's loss and tokens.
struct Steps(std::rc::Rc<std::cell::RefCell<Vec<(f32, usize)>>>);

impl Observer for Steps {
    fn on_step(&mut self, e: &StepEvent) {
        self.0.borrow_mut().push((e.loss, e.tokens));
    }
}

/// With gradient accumulation k, step s runs batches k·s .. k·s + k - 1 of
/// the domain, exactly as k steps without it would (same rows, masks and
/// dropout), and reports their mean loss and their tokens. A learning rate
/// of 1e-30 keeps the model fixed, so the two runs' losses can be compared.
#[test]
fn gradient_accumulation_averages_the_next_k_batches() {
    let device = devices().remove(0).1;
    let steps = |accumulate: usize, per_domain: usize| {
        let mut c = quick("ncl");
        c.lr = 1e-30; // no float32 weight moves
        c.accumulate = accumulate;
        c.steps_per_domain = per_domain;
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let out = temp_dir(&format!("accumulate-{accumulate}"));
        ContinualTrainer::new(c, collate(), &out)
            .unwrap()
            .with_observer(Box::new(Steps(seen.clone())))
            .run(
                // No dropout: the device's generator is the process's, and
                // the tests beside this one draw from it too.
                tiny(&device).with_dropout(0.0).unwrap(),
                &domains(),
                None,
                false,
            )
            .unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        seen.take()
    };
    let one = steps(1, 6);
    let three = steps(3, 2);
    assert_eq!(three.len(), 4);
    for (s, &(loss, tokens)) in three.iter().enumerate() {
        let part = &one[3 * s..3 * s + 3];
        let mean = part.iter().map(|p| p.0).sum::<f32>() / 3.0;
        assert!(
            (loss - mean).abs() <= 1e-6 * mean.abs(),
            "step {s}: {loss} vs {mean}"
        );
        assert_eq!(tokens, part.iter().map(|p| p.1).sum::<usize>());
        assert_eq!(tokens, 3 * 2 * 16);
    }
    let mut bad = quick("ncl");
    bad.accumulate = 0;
    assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))));
}
