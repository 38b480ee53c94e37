//! Parity with the PyTorch reference (tools/reference/notebook_fixtures.py):
//! tokenizer, grouping, importance in every mode, and one epoch of soft-masked
//! Adam, on every CPU device the crate is built for.

mod common;

use burn::optim::{AdamConfig, GradientsParams};
use common::*;
use softmask::*;

#[test]
fn tokenizer_and_grouping_match_the_notebook() {
    let corpus = corpus();
    for name in CONFIGS {
        let fx = load_fixture(name);
        let tok = WordTokenizer::from_corpus(&corpus, UnknownWords::Error);
        assert_eq!(tok.words(), fx.vocabulary.as_slice(), "{name}: vocabulary");
        assert_eq!(
            tok.encode_corpus(&corpus).unwrap(),
            fx.corpus_ids,
            "{name}: ids"
        );
        let data = GroupedDataset::new(&fx.corpus_ids, &GroupConfig::new(fx.config.max_seq_length))
            .unwrap();
        let chunks: Vec<Vec<u32>> = data
            .examples()
            .iter()
            .map(|e| e.input_ids.clone())
            .collect();
        assert_eq!(chunks, fx.chunks, "{name}: chunks");
    }
}

#[test]
fn word_split_matches_python_str_split() {
    #[derive(serde::Deserialize)]
    struct Cases {
        texts: Vec<String>,
        splits: Vec<Vec<String>>,
    }
    let path = fixture_dir("").join("split_cases.json");
    let cases: Cases = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (text, expected) in cases.texts.iter().zip(&cases.splits) {
        let got: Vec<&str> = split_words(text).collect();
        assert_eq!(got, *expected, "{text:?}");
    }
}

fn estimate(
    fx: &Fixture,
    name: &str,
    device: &burn::tensor::Device,
    acc: Accumulation,
    sign: GradientSign,
) -> ImportanceEstimator {
    let model = fx.model(name, "model.safetensors", device);
    let proxy = KlToModel::new(fx.model(name, "duplicate.safetensors", device));
    let mut est = ImportanceEstimator::new(model.gate_layout(), acc, sign).unwrap();
    for idx in &fx.importance_batches {
        est.step(&model, &fx.batch(idx, device), &proxy).unwrap();
    }
    est
}

#[test]
fn importance_matches_the_reference_in_every_mode() {
    for name in CONFIGS {
        let fx = load_fixture(name);
        for (dev_name, device) in devices() {
            for (key, acc, sign) in [
                (
                    "cumulative/signed",
                    Accumulation::Cumulative,
                    GradientSign::Signed,
                ),
                (
                    "cumulative/absolute",
                    Accumulation::Cumulative,
                    GradientSign::Absolute,
                ),
                (
                    "per_batch/signed",
                    Accumulation::PerBatch,
                    GradientSign::Signed,
                ),
                (
                    "per_batch/absolute",
                    Accumulation::PerBatch,
                    GradientSign::Absolute,
                ),
            ] {
                let est = estimate(&fx, name, &device, acc, sign);
                let chunk_tokens: usize =
                    fx.importance_batches.iter().map(|b| b.len()).sum::<usize>()
                        * fx.config.max_seq_length;
                assert_eq!(est.tokens(), chunk_tokens);
                let raw = est.raw().unwrap();
                let norm = raw.normalized(Normalization::Reference).unwrap();
                for (i, gate) in raw.gates().iter().enumerate() {
                    let expected = &fx.raw_importance[key][i];
                    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = max_abs_diff(&gate.values, expected);
                    assert!(
                        d <= 1e-4 * scale,
                        "{name}/{dev_name}/{key} raw {}: {d} vs scale {scale}",
                        gate.name
                    );
                    let d = max_abs_diff(&norm.gates()[i].values, &fx.importance[key][i]);
                    assert!(
                        d <= 1e-5,
                        "{name}/{dev_name}/{key} normalised {}: {d}",
                        gate.name
                    );
                }
                if key == "cumulative/signed" {
                    let one = raw.normalized(Normalization::OneSided).unwrap();
                    for (i, gate) in one.gates().iter().enumerate() {
                        let d = max_abs_diff(&gate.values, &fx.importance_one_sided[i]);
                        assert!(d <= 1e-5, "{name}/{dev_name} one-sided {}: {d}", gate.name);
                    }
                }
            }
        }
    }
}

#[test]
fn notebook_importance_shapes_and_usage() {
    let fx = load_fixture("notebook");
    let (_, device) = devices().remove(0);
    let imp = estimate(
        &fx,
        "notebook",
        &device,
        Accumulation::Cumulative,
        GradientSign::Signed,
    )
    .finish(Normalization::Reference)
    .unwrap();
    let shapes: Vec<(usize, usize)> = imp.gates().iter().map(|g| (g.rows, g.units)).collect();
    assert_eq!(shapes, [(1, 30), (1, 10)]);
    for ((name, usage), expected) in imp.usage().iter().zip(&fx.importance["cumulative/signed"]) {
        let mean = expected.iter().sum::<f32>() / expected.len() as f32;
        assert!((usage - mean).abs() < 1e-5, "{name}: {usage} vs {mean}");
    }
}

#[test]
fn one_epoch_of_soft_masked_adam_matches_the_reference() {
    for name in CONFIGS {
        let fx = load_fixture(name);
        for (dev_name, device) in devices() {
            for (mode, tag) in [
                (MaskMode::Gradient, "gradient"),
                (MaskMode::Update, "update"),
            ] {
                let mut model = fx.model(name, "model.safetensors", &device);
                let importance =
                    fx.importance_of(&model.gate_layout(), &fx.importance["cumulative/signed"]);
                let adam = AdamConfig::new().with_epsilon(1e-8).init();
                let mut optim = SoftMaskedOptimizer::new(adam, &importance, &model, mode).unwrap();
                assert_eq!(optim.mode(), mode);
                for (step, idx) in fx.train_batches.iter().enumerate() {
                    let batch = fx.batch(idx, &device);
                    let loss = binary_cross_entropy(
                        model.forward(batch.input_ids, None).unwrap(),
                        batch.labels,
                    )
                    .unwrap();
                    let value = loss.clone().into_scalar::<f32>();
                    let expected = fx.train_losses[tag][step];
                    assert!(
                        (value - expected).abs() < 1e-5,
                        "{name}/{dev_name}/{tag} loss {step}: {value} vs {expected}"
                    );
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    optim.step(fx.config.lr, &mut model, grads).unwrap();
                }
                let dir = temp_dir(&format!("parity-{name}-{dev_name}-{tag}"));
                let out = dir.join("trained.safetensors");
                model.save_safetensors(&out).unwrap();
                let got = read_tensors(&out);
                let want =
                    read_tensors(&fixture_dir(name).join(format!("trained_{tag}.safetensors")));
                assert_eq!(
                    got.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>()
                );
                for (k, (shape, values)) in &want {
                    assert_eq!(&got[k].0, shape, "{k}");
                    let d = max_abs_diff(&got[k].1, values);
                    assert!(d <= 1e-4, "{name}/{dev_name}/{tag} {k}: {d}");
                }
                std::fs::remove_dir_all(dir).unwrap();
            }
        }
    }
}

#[test]
fn weights_round_trip_through_pytorch_layout() {
    for (dev_name, device) in devices() {
        let fx = load_fixture("deep");
        let model = fx.model("deep", "model.safetensors", &device);
        let dir = temp_dir(&format!("roundtrip-{dev_name}"));
        let out = dir.join("w.safetensors");
        model.save_safetensors(&out).unwrap();
        let original = read_tensors(&fixture_dir("deep").join("model.safetensors"));
        assert_eq!(
            read_tensors(&out),
            original,
            "{dev_name}: bit-exact round trip"
        );
        assert_eq!(
            original["fc1.weight"].0,
            vec![16, 24],
            "PyTorch [out, in] layout"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
