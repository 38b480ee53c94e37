//! The gated BERT encoder against Hugging Face `transformers`
//! (tools/reference/bert_fixtures.py): a tiny random BertForMaskedLM whose
//! weights are committed, and all-MiniLM-L6-v2 when its files are present.

mod common;

use std::path::{Path, PathBuf};

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor};
use common::*;
use serde::Deserialize;
use softmask::*;

#[derive(Deserialize)]
struct Batch {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    token_type_ids: Vec<Vec<u32>>,
    labels: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
struct Tiny {
    batches: Vec<Batch>,
    last_hidden_state: Vec<f32>,
    hidden_shape: Vec<usize>,
    logits: Vec<f32>,
    logits_shape: Vec<usize>,
    mlm_loss: f32,
    importance_mlm: std::collections::BTreeMap<String, Vec<f32>>,
    importance_kl: std::collections::BTreeMap<String, Vec<f32>>,
    scaled_preactivation_absmax: Vec<f32>,
    importance_mlm_scaled: std::collections::BTreeMap<String, Vec<f32>>,
}

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tiny")
}

fn tiny_fixture() -> Tiny {
    serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("fixture.json")).unwrap())
        .unwrap()
}

fn tiny_config() -> BertConfig {
    BertConfig::load(tiny_dir().join("config.json"))
        .unwrap()
        .with_dropout(0.0)
}

fn tiny_model(file: &str, device: &Device) -> SoftMaskBert {
    SoftMaskBert::from_safetensors(&tiny_config(), tiny_dir().join(file), device).unwrap()
}

fn batch(b: &Batch, vocab: usize, device: &Device) -> BertBatch {
    BertBatch::from_rows(
        &b.input_ids,
        &b.attention_mask,
        Some(&b.token_type_ids),
        Some(&b.labels),
        vocab,
        device,
    )
    .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn tiny_hidden_states_logits_and_loss_match_transformers() {
    let fx = tiny_fixture();
    for (name, device) in devices() {
        let model = tiny_model("model.safetensors", &device);
        let b = batch(&fx.batches[0], model.vocab_size(), &device);
        let hidden = model.forward(&b, None).unwrap();
        assert_eq!(hidden.dims().to_vec(), fx.hidden_shape);
        let d = rel_diff(&values(hidden.clone()), &fx.last_hidden_state);
        assert!(d < 1e-4, "{name}: hidden {d}");
        let logits = model.mlm_logits(hidden);
        assert_eq!(logits.dims().to_vec(), fx.logits_shape);
        let d = rel_diff(&values(logits), &fx.logits);
        assert!(d < 1e-4, "{name}: logits {d}");
        let loss = model.mlm_loss(&b, None).unwrap().into_scalar::<f32>();
        assert!(
            (loss - fx.mlm_loss).abs() < 1e-4 * fx.mlm_loss,
            "{name}: loss {loss} vs {}",
            fx.mlm_loss
        );
    }
}

fn check_importance(
    name: &str,
    raw: &Importance,
    want: &std::collections::BTreeMap<String, Vec<f32>>,
) {
    let layout = raw.layout();
    let expected = Importance::new(
        &layout,
        layout
            .specs()
            .iter()
            .map(|s| want[&s.name].clone())
            .collect(),
    )
    .unwrap();
    for (g, e) in raw.gates().iter().zip(expected.gates()) {
        let d = rel_diff(&g.values, &e.values);
        assert!(d < 1e-4, "{name} raw {}: {d}", g.name);
    }
    let (a, b) = (
        raw.normalized(Normalization::Reference).unwrap(),
        expected.normalized(Normalization::Reference).unwrap(),
    );
    for (g, e) in a.gates().iter().zip(b.gates()) {
        let d = max_abs_diff(&g.values, &e.values);
        assert!(d < 1e-4, "{name} normalised {}: {d}", g.name);
    }
}

#[test]
fn tiny_importance_with_the_mlm_and_kl_proxies_matches_transformers() {
    let fx = tiny_fixture();
    for (name, device) in devices() {
        let model = tiny_model("model.safetensors", &device);
        let shapes: Vec<(usize, usize)> = model
            .gate_layout()
            .specs()
            .iter()
            .map(|s| (s.rows, s.units))
            .collect();
        assert_eq!(shapes, [(2, 4), (2, 64), (2, 32)]);
        let batches: Vec<BertBatch> = fx
            .batches
            .iter()
            .map(|b| batch(b, model.vocab_size(), &device))
            .collect();

        let mut mlm = ImportanceEstimator::new(
            model.gate_layout(),
            Accumulation::PerBatch,
            GradientSign::Signed,
        )
        .unwrap();
        for b in &batches {
            mlm.step(&model, b, &MlmLoss).unwrap();
        }
        check_importance(
            &format!("{name}/mlm"),
            &mlm.raw().unwrap(),
            &fx.importance_mlm,
        );

        let proxy = KlToModel::new(tiny_model("other.safetensors", &device));
        let mut kl = ImportanceEstimator::new(
            model.gate_layout(),
            Accumulation::PerBatch,
            GradientSign::Signed,
        )
        .unwrap();
        for b in &batches {
            kl.step(&model, b, &proxy).unwrap();
        }
        check_importance(&format!("{name}/kl"), &kl.raw().unwrap(), &fx.importance_kl);
    }
}

/// GELU inputs as large as a trained checkpoint's (±4): where the exact GELU
/// derivative and its tanh approximation part (burn 0.22's default backward),
/// every gradient through the feed-forward blocks would be off by up to 1e-3.
#[test]
fn importance_with_realistic_gelu_inputs_matches_transformers_on_every_device() {
    let fx = tiny_fixture();
    assert!(
        fx.scaled_preactivation_absmax.iter().all(|&m| m > 3.0),
        "the scaled fixture must reach |x| > 3: {:?}",
        fx.scaled_preactivation_absmax
    );
    for (name, device) in devices() {
        let model = tiny_model("scaled.safetensors", &device);
        let mut mlm = ImportanceEstimator::new(
            model.gate_layout(),
            Accumulation::PerBatch,
            GradientSign::Signed,
        )
        .unwrap();
        for b in &fx.batches {
            mlm.step(&model, &batch(b, model.vocab_size(), &device), &MlmLoss)
                .unwrap();
        }
        check_importance(
            &format!("{name}/scaled mlm"),
            &mlm.raw().unwrap(),
            &fx.importance_mlm_scaled,
        );
    }
}

#[test]
fn save_round_trip_and_a_missing_mlm_head() {
    let fx = tiny_fixture();
    let (_, device) = devices().remove(0);
    let model = tiny_model("model.safetensors", &device);
    let b = batch(&fx.batches[1], model.vocab_size(), &device);
    let dir = temp_dir("bert-save");
    model
        .save_safetensors(dir.join("model.safetensors"))
        .unwrap();
    tiny_config().save(dir.join("config.json")).unwrap();
    let (again, _) = SoftMaskBert::from_pretrained(&dir, &device).unwrap();
    let (x, y) = (
        values(model.forward(&b, None).unwrap()),
        values(again.forward(&b, None).unwrap()),
    );
    assert_eq!(x, y, "bit-exact after a save and load");
    let saved = read_tensors(&dir.join("model.safetensors"));
    assert!(saved.contains_key("bert.encoder.layer.1.attention.self.query.weight"));
    assert!(saved.contains_key("cls.predictions.transform.dense.weight"));

    // An encoder-only checkpoint (BertModel names, no prefix, no head) loads with a fresh head.
    let encoder_only: std::collections::BTreeMap<_, _> = saved
        .into_iter()
        .filter(|(k, _)| !k.starts_with("cls."))
        .map(|(k, v)| (k.trim_start_matches("bert.").to_string(), v))
        .collect();
    write_tensors(&dir.join("model.safetensors"), &encoder_only);
    let (headless, _) = SoftMaskBert::from_pretrained(&dir, &device).unwrap();
    assert_eq!(
        values(headless.forward(&b, None).unwrap()),
        x,
        "same encoder"
    );
    let logits = headless.mlm_logits(headless.forward(&b, None).unwrap());
    assert_eq!(logits.dims()[2], 120);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gradient_mask_freezes_fully_important_heads() {
    let fx = tiny_fixture();
    let (_, device) = devices().remove(0);
    let mut model = tiny_model("model.safetensors", &device);
    let layout = model.gate_layout();
    // Head 2 of layer 0 fully important; everything else free.
    let mut heads = vec![0.0; 8];
    heads[2] = 1.0;
    let imp = Importance::new(&layout, vec![heads, vec![0.0; 128], vec![0.0; 64]]).unwrap();
    let before = dir_tensors(&model, "before");
    let b = batch(&fx.batches[0], model.vocab_size(), &device);
    let grads = GradientsParams::from_grads(model.mlm_loss(&b, None).unwrap().backward(), &model);
    let mut optim =
        SoftMaskedOptimizer::new(SgdConfig::new().init(), &imp, &model, MaskMode::Gradient)
            .unwrap();
    optim.step(0.5, &mut model, grads).unwrap();
    let after = dir_tensors(&model, "after");
    // PyTorch layout [out, in]: head 2 owns output rows 16..24 of query, key, value.
    let q = "bert.encoder.layer.0.attention.self.query.weight";
    let (w0, w1) = (&before[q].1, &after[q].1);
    for row in 0..32 {
        let same = (0..32).all(|c| w0[row * 32 + c] == w1[row * 32 + c]);
        assert_eq!(same, (16..24).contains(&row), "query row {row}");
    }
    // ... and input columns 16..24 of the attention output dense layer.
    let o = "bert.encoder.layer.0.attention.output.dense.weight";
    for col in 0..32 {
        let same = (0..32).all(|r| before[o].1[r * 32 + col] == after[o].1[r * 32 + col]);
        assert_eq!(same, (16..24).contains(&col), "output dense column {col}");
    }
}

fn dir_tensors(
    model: &SoftMaskBert,
    tag: &str,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let dir = temp_dir(&format!("bert-{tag}"));
    model.save_safetensors(dir.join("w.safetensors")).unwrap();
    let t = read_tensors(&dir.join("w.safetensors"));
    std::fs::remove_dir_all(dir).unwrap();
    t
}

#[test]
fn bert_bad_inputs() {
    let (_, device) = devices().remove(0);
    let dir = temp_dir("bert-bad");
    let config_text = std::fs::read_to_string(tiny_dir().join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config_text).unwrap();
    let write = |v: &serde_json::Value| {
        std::fs::write(dir.join("config.json"), serde_json::to_vec(v).unwrap()).unwrap();
        std::fs::copy(
            tiny_dir().join("model.safetensors"),
            dir.join("model.safetensors"),
        )
        .unwrap();
    };

    // A missing field, a mistyped one, an inconsistent one, an unsupported one.
    let mut missing = config.clone();
    missing.as_object_mut().unwrap().remove("hidden_size");
    write(&missing);
    let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig(m) if m.contains("hidden_size")),
        "{err}"
    );
    let mut typed = config.clone();
    typed["num_hidden_layers"] = "two".into();
    write(&typed);
    let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        err.to_string().contains("num_hidden_layers") || err.to_string().contains("invalid type"),
        "{err}"
    );
    let mut heads = config.clone();
    heads["num_attention_heads"] = 5.into();
    write(&heads);
    let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a multiple of num_attention_heads"),
        "{err}"
    );
    let mut act = config.clone();
    act["hidden_act"] = "relu".into();
    write(&act);
    assert!(
        SoftMaskBert::from_pretrained(&dir, &device)
            .unwrap_err()
            .to_string()
            .contains("hidden_act")
    );

    // A checkpoint whose shapes disagree with its config.
    config["intermediate_size"] = 48.into();
    write(&config);
    let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what.contains("intermediate.dense.weight")),
        "{err}"
    );
    config["intermediate_size"] = 64.into();
    config["num_hidden_layers"] = 3.into();
    write(&config);
    let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name.contains("layer.2")),
        "{err}"
    );

    // Sizes no machine can hold: refused before anything is allocated (before,
    // an abort on a 1.48 TB allocation).
    let good = config.clone();
    for (field, value, says) in [
        (
            "num_hidden_layers",
            serde_json::json!(1_000_000_000u64),
            "num_hidden_layers",
        ),
        (
            "vocab_size",
            serde_json::json!(1_000_000_000_000u64),
            "vocab_size",
        ),
        ("hidden_size", serde_json::json!(4_000_000u64), "would hold"),
        (
            "max_position_embeddings",
            serde_json::json!(1u64 << 40),
            "would hold",
        ),
    ] {
        let mut huge = good.clone();
        huge[field] = value;
        write(&huge);
        let err = SoftMaskBert::from_pretrained(&dir, &device).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains(says)),
            "{field}: {err}"
        );
        let parsed: BertConfig = serde_json::from_value(huge).unwrap();
        let err = parsed.init(&device).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains(says)),
            "{field}: {err}"
        );
    }
    let held: usize = tiny_model("model.safetensors", &device)
        .named_tensors()
        .unwrap()
        .values()
        .map(|t| t.values.len())
        .sum();
    assert_eq!(tiny_config().num_parameters().unwrap(), held);
    assert_eq!(held, 23_576);

    // Batches: too long, empty, ragged, out of vocabulary; gates of the wrong shape.
    let model = tiny_model("model.safetensors", &device);
    let long = vec![vec![5u32; 41]];
    let b = BertBatch::from_rows(&long, &[vec![1; 41]], None, None, 120, &device).unwrap();
    let err = model.forward(&b, None).unwrap_err();
    assert!(
        matches!(err, Error::SequenceTooLong { len: 41, max: 40 }),
        "{err}"
    );
    let err = BertBatch::from_rows(&[], &[], None, None, 120, &device).unwrap_err();
    assert!(matches!(err, Error::BadBatch(_)), "{err}");
    let err =
        BertBatch::from_rows(&[vec![5, 6]], &[vec![1]], None, None, 120, &device).unwrap_err();
    assert!(matches!(err, Error::BadBatch(_)), "{err}");
    let err =
        BertBatch::from_rows(&[vec![5, 120]], &[vec![1, 1]], None, None, 120, &device).unwrap_err();
    assert!(
        matches!(err, Error::TokenOutOfVocab { id: 120, .. }),
        "{err}"
    );
    let ok = BertBatch::from_rows(&[vec![5, 6]], &[vec![1, 1]], None, None, 120, &device).unwrap();
    let wrong = GateLayout::new(vec![
        GateSpec::new("heads", 2, 3),
        GateSpec::new("intermediate", 2, 64),
        GateSpec::new("output", 2, 32),
    ]);
    let err = model
        .forward(&ok, Some(&Gates::ones(&wrong, &device)))
        .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what.contains("heads")),
        "{err}"
    );
    let err = model.mlm_loss(&ok, None).unwrap_err();
    assert!(err.to_string().contains("no MLM labels"), "{err}");
    // A token type past the model's table (before: a panic in the embedding).
    let types = BertBatch::from_rows(
        &[vec![5, 6]],
        &[vec![1, 1]],
        Some(&[vec![0, 2]]),
        None,
        120,
        &device,
    )
    .unwrap();
    let err = model.forward(&types, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad batch: token_type_ids hold 2, the model has 2 token types"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropout_can_be_switched_off_on_a_loaded_model_without_losing_autodiff() {
    let fx = tiny_fixture();
    for (name, device) in devices() {
        // The checkpoint's config keeps dropout 0.1: two passes differ.
        let dropping = SoftMaskBert::from_safetensors(
            &BertConfig::load(tiny_dir().join("config.json")).unwrap(),
            tiny_dir().join("model.safetensors"),
            &device,
        )
        .unwrap();
        let b = batch(&fx.batches[0], dropping.vocab_size(), &device);
        let (x, y) = (
            values(dropping.forward(&b, None).unwrap()),
            values(dropping.forward(&b, None).unwrap()),
        );
        assert!(max_abs_diff(&x, &y) > 1e-3, "{name}: dropout is on");
        let model = dropping.with_dropout(0.0).unwrap();
        let hidden = model.forward(&b, None).unwrap();
        assert!(hidden.device().is_autodiff(), "{name}: autodiff kept");
        let d = rel_diff(&values(hidden), &fx.last_hidden_state);
        assert!(d < 1e-4, "{name}: hidden {d}");
        assert!(matches!(
            model.with_dropout(1.0),
            Err(Error::InvalidConfig(_))
        ));
    }
}

#[test]
fn named_tensors_are_what_save_writes() {
    let (_, device) = devices().remove(0);
    let model = tiny_model("model.safetensors", &device);
    let dir = temp_dir("bert-named");
    let path = dir.join("saved.safetensors");
    model.save_safetensors(&path).unwrap();
    let saved = read_tensors(&path);
    let named = model.named_tensors().unwrap();
    assert_eq!(saved.len(), named.len());
    for (name, t) in &named {
        assert_eq!(saved[name], (t.shape.clone(), t.values.clone()), "{name}");
    }
    // PyTorch layout: [out, in] for the intermediate dense of hidden 32 -> 64.
    assert_eq!(
        named["bert.encoder.layer.0.intermediate.dense.weight"].shape,
        [64, 32]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "wordpiece")]
mod minilm {
    use super::*;

    #[derive(Deserialize)]
    struct MiniLm {
        sentences: Vec<String>,
        max_length: usize,
        input_ids: Vec<Vec<u32>>,
        attention_mask: Vec<Vec<u32>>,
        hidden_shape: Vec<usize>,
        hidden_first16: Vec<f32>,
        hidden_token_mean: Vec<f32>,
        hidden_token_std: Vec<f32>,
    }

    /// The MiniLM folder (`tools/fetch_minilm.sh` fills it), or `None` with a message.
    fn folder() -> Option<PathBuf> {
        let dir = std::env::var_os("SOFTMASK_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/all-MiniLM-L6-v2")
            });
        if dir.join("model.safetensors").is_file() {
            Some(dir)
        } else {
            eprintln!(
                "skipped: no all-MiniLM-L6-v2 in {} (run tools/fetch_minilm.sh)",
                dir.display()
            );
            None
        }
    }

    fn fixture() -> MiniLm {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/minilm.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn minilm_token_ids_and_hidden_states_match_transformers() {
        let Some(dir) = folder() else { return };
        let fx = fixture();
        let tok = HfTokenizer::from_file(dir.join("tokenizer.json"), fx.max_length).unwrap();
        let enc = tok.encode_batch(&fx.sentences).unwrap();
        assert_eq!(enc.input_ids, fx.input_ids);
        assert_eq!(enc.attention_mask, fx.attention_mask);
        assert_eq!(tok.token_id("[MASK]"), Some(103));
        for (name, device) in devices() {
            // Inference: the device without autodiff (no dropout, no graph).
            let device = device.inner();
            let (model, config) = SoftMaskBert::from_pretrained(&dir, &device).unwrap();
            assert_eq!((config.num_hidden_layers, config.hidden_size), (6, 384));
            let batcher = BertTextBatcher::new(tok.clone(), config.vocab_size).unwrap();
            let b = batcher.batch_texts(&fx.sentences, &device).unwrap();
            assert_eq!(
                values_i64(b.input_ids.clone()),
                fx.input_ids
                    .concat()
                    .iter()
                    .map(|&v| i64::from(v))
                    .collect::<Vec<_>>()
            );
            let hidden = model.forward(&b, None).unwrap();
            assert_eq!(hidden.dims().to_vec(), fx.hidden_shape);
            let first16 = values(hidden.clone().slice([0..3, 0..fx.hidden_shape[1], 0..16]));
            let d = rel_diff(&first16, &fx.hidden_first16);
            assert!(d < 1e-4, "{name}: hidden first 16 features: {d}");
            let mean = values(hidden.clone().mean_dim(2));
            assert!(
                rel_diff(&mean, &fx.hidden_token_mean) < 1e-4,
                "{name}: token means"
            );
            let std: Vec<f32> = values(hidden.var(2)).iter().map(|v| v.sqrt()).collect();
            assert!(
                rel_diff(&std, &fx.hidden_token_std) < 1e-4,
                "{name}: token stds"
            );
        }
    }

    fn values_i64(t: Tensor<2, burn::tensor::Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    #[test]
    fn batcher_masks_for_mlm() {
        let Some(dir) = folder() else { return };
        let tok = HfTokenizer::from_file(dir.join("tokenizer.json"), 16).unwrap();
        let mlm = MlmMasker::new(103, 30522, tok.special_ids(), 1)
            .unwrap()
            .with_probability(0.5)
            .unwrap();
        let batcher = BertTextBatcher::new(tok, 30522).unwrap().with_mlm(mlm);
        let (_, device) = devices().remove(0);
        let b = burn::data::dataloader::batcher::Batcher::batch(
            &batcher,
            vec!["the food is always great here".to_string()],
            &device,
        )
        .unwrap();
        let labels = b
            .labels
            .unwrap()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(
            (labels[0], *labels.last().unwrap()),
            (-100, -100),
            "[CLS] and [SEP] are never selected"
        );
        assert!(labels.iter().any(|&l| l != -100));
    }

    #[test]
    fn tokenizer_file_that_does_not_parse() {
        let dir = temp_dir("bad-tokenizer");
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, b"{\"version\": \"1.0\", \"model\": 42}").unwrap();
        let err = HfTokenizer::from_file(&path, 16).unwrap_err();
        assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn the_head_layout_in_force_is_what_the_maskers_and_the_loop_see() {
    let (_, device) = devices().remove(0);
    let model = tiny_model("model.safetensors", &device);
    assert_eq!(model.head_layout(), HeadMaskLayout::Semantic);
    assert_eq!(
        model.governed(),
        model.governed_with(HeadMaskLayout::Semantic)
    );
    let reference = model.with_head_layout(HeadMaskLayout::Reference);
    assert_eq!(
        reference.governed(),
        reference.governed_with(HeadMaskLayout::Reference)
    );
    assert_ne!(
        reference.governed(),
        reference.governed_with(HeadMaskLayout::Semantic)
    );
    // A checkpoint the loop reloads keeps the layout.
    use softmask::continual::ContinualModel;
    let dir = temp_dir("bert-layout");
    reference.save_weights(&dir).unwrap();
    let loaded = reference.load_weights(&dir).unwrap();
    assert_eq!(loaded.head_layout(), HeadMaskLayout::Reference);
    std::fs::remove_dir_all(&dir).unwrap();
}
