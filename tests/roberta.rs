//! RoBERTa, the DAS paper's model, on the gated encoder against
//! `transformers` (tools/reference/roberta_fixtures.py): a tiny random
//! RobertaForMaskedLM with a byte-level BPE tokenizer; token ids, logits,
//! MLM loss, gate-gradient importance and every weight after one
//! update-masked AdamW step, on every CPU device.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use common::*;
use serde::Deserialize;
use softmask::*;

#[derive(Deserialize)]
struct Batch {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    labels: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
struct Step {
    lr: f64,
    eps: f32,
    weight_decay: f64,
    loss: f32,
    importance: BTreeMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Fixture {
    texts: Vec<String>,
    token_ids: Vec<Vec<u32>>,
    batches: Vec<Batch>,
    logits: Vec<f32>,
    logits_shape: Vec<usize>,
    mlm_loss: f32,
    importance: BTreeMap<String, Vec<f32>>,
    step: Step,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta/tiny")
}

fn fixture() -> Fixture {
    serde_json::from_str(&std::fs::read_to_string(dir().join("fixture.json")).unwrap()).unwrap()
}

fn model(device: &Device) -> SoftMaskBert {
    let (model, config) = SoftMaskBert::from_pretrained(dir(), device).unwrap();
    assert!(config.is_roberta());
    model.with_dropout(0.0).unwrap()
}

fn batch(b: &Batch, device: &Device) -> BertBatch {
    BertBatch::from_rows(
        &b.input_ids,
        &b.attention_mask,
        None,
        Some(&b.labels),
        300,
        device,
    )
    .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    io::to_host(t).unwrap().values
}

#[test]
fn the_byte_level_tokenizer_gives_transformers_ids() {
    let fx = fixture();
    let tokenizer = HfTokenizer::from_file(dir().join("tokenizer.json"), 128).unwrap();
    for (text, want) in fx.texts.iter().zip(&fx.token_ids) {
        assert_eq!(&tokenizer.encode(text).unwrap(), want, "{text:?}");
    }
    assert_eq!(tokenizer.token_id("<mask>"), Some(4));
    assert_eq!(tokenizer.token_id("<pad>"), Some(1));
    // Saved and loaded back: the same ids.
    let out = temp_dir("roberta-tokenizer");
    tokenizer.save(out.join("tokenizer.json")).unwrap();
    let again = HfTokenizer::from_file(out.join("tokenizer.json"), 128).unwrap();
    for (text, want) in fx.texts.iter().zip(&fx.token_ids) {
        assert_eq!(&again.encode(text).unwrap(), want, "{text:?}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn logits_loss_importance_and_an_update_masked_step_match_transformers() {
    let fx = fixture();
    let want = read_tensors(&dir().join("after_step.safetensors"));
    for (name, device) in devices() {
        let mut model = model(&device);
        let batches: Vec<BertBatch> = fx.batches.iter().map(|b| batch(b, &device)).collect();
        // Padded rows: RoBERTa's positions count real tokens past padding_idx.
        let logits = model.mlm_logits(model.forward(&batches[0], None).unwrap());
        assert_eq!(logits.dims().to_vec(), fx.logits_shape);
        let d = rel_diff(&values(logits), &fx.logits);
        assert!(d < 1e-5, "{name}: logits off by {d}");
        let loss = model
            .mlm_loss(&batches[0], None)
            .unwrap()
            .into_scalar::<f32>();
        assert!(
            (loss - fx.mlm_loss).abs() < 1e-5 * fx.mlm_loss,
            "{name}: loss {loss} vs {}",
            fx.mlm_loss
        );

        let layout = model.gate_layout();
        let mut est =
            ImportanceEstimator::new(layout.clone(), Accumulation::PerBatch, GradientSign::Signed)
                .unwrap();
        for b in &batches {
            est.step(&model, b, &MlmLoss).unwrap();
        }
        for gate in est.raw().unwrap().gates() {
            let d = rel_diff(&gate.values, &fx.importance[&gate.name]);
            assert!(d < 1e-5, "{name}: importance {} off by {d}", gate.name);
        }

        let pattern = importance_by_name(&layout, &fx.step.importance);
        let loss = model.mlm_loss(&batches[0], None).unwrap();
        assert!((loss.clone().into_scalar::<f32>() - fx.step.loss).abs() < 1e-5 * fx.step.loss);
        update_masked_adamw_step(
            &mut model,
            loss,
            &pattern,
            (fx.step.lr, fx.step.eps, fx.step.weight_decay),
        );
        assert_tensors_match(name, &model.named_tensors().unwrap(), &want, 1e-5);
    }
}

#[test]
fn a_saved_roberta_loads_back_in_roberta_names() {
    let fx = fixture();
    let device = devices().remove(0).1;
    let model = model(&device);
    let b = batch(&fx.batches[1], &device);
    let out = temp_dir("roberta-save");
    model.save_pretrained(&out).unwrap();
    let saved = read_tensors(&out.join("model.safetensors"));
    let original = read_tensors(&dir().join("model.safetensors"));
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>(),
        "the names transformers wrote"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "roberta");
    assert_eq!(config["architectures"][0], "RobertaForMaskedLM");
    let (again, _) = SoftMaskBert::from_pretrained(&out, &device).unwrap();
    let again = again.with_dropout(0.0).unwrap();
    assert_eq!(
        values(again.forward(&b, None).unwrap()),
        values(model.forward(&b, None).unwrap())
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn roberta_sequences_end_two_positions_early_and_unknown_encoders_are_refused() {
    let device = devices().remove(0).1;
    let model = model(&device);
    // 130 positions, padding_idx 1: the longest sequence is 128.
    assert_eq!(model.config().max_sequence(), 128);
    for (len, ok) in [(128, true), (129, false)] {
        let b = BertBatch::from_rows(&[vec![5; len]], &[vec![1; len]], None, None, 300, &device)
            .unwrap();
        let r = model.forward(&b, None);
        match ok {
            true => assert!(r.is_ok()),
            false => assert!(
                matches!(r, Err(Error::SequenceTooLong { len: 129, max: 128 })),
                "{:?}",
                r.map(|_| ())
            ),
        }
    }
    let mut config = model.config().clone();
    config.model_type = "deberta".into();
    assert!(matches!(config.init(&device), Err(Error::InvalidConfig(m)) if m.contains("deberta")));
    config.model_type = "roberta".into();
    config.max_position_embeddings = 2;
    assert!(
        matches!(config.init(&device), Err(Error::InvalidConfig(m)) if m.contains("pad_token_id"))
    );
}
