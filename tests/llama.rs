//! The gated Llama-family decoder against transformers
//! (tools/reference/llama_fixtures.py): a LlamaForCausalLM with
//! grouped-query attention and tied embeddings, a Qwen2ForCausalLM with
//! q/k/v biases and a separate head; logits and loss of a padded batch, on
//! every CPU device.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use softmask::continual::ContinualModel;
use softmask::model::llama::{CausalBatch, LlamaConfig, SoftMaskLlama};
use softmask::*;

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama")
        .join(name)
}

#[derive(serde::Deserialize)]
struct Expected {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    loss: f32,
    logits: Vec<f32>,
    shape: Vec<usize>,
    greedy: Vec<u32>,
}

fn ints(rows: &[Vec<i64>], device: &burn::tensor::Device) -> Tensor<2, Int> {
    let (b, s) = (rows.len(), rows[0].len());
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [b, s]), device)
}

#[test]
fn logits_and_loss_match_transformers_on_every_device() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let text = std::fs::read_to_string(folder(name).join("expected.json")).unwrap();
        let fx: Expected = serde_json::from_str(&text).unwrap();
        for (device_name, device) in devices() {
            let model = SoftMaskLlama::from_pretrained(folder(name), &device).unwrap();
            let ids = ints(&fx.input_ids, &device);
            let mask = ints(&fx.attention_mask, &device);
            let logits = model
                .forward(ids.clone(), Some(mask.clone()), None)
                .unwrap();
            assert_eq!(logits.dims().to_vec(), fx.shape, "{name}");
            let got = io::to_host(logits).unwrap().values;
            let scale = fx.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = max_abs_diff(&got, &fx.logits);
            assert!(
                d < 1e-5 * scale.max(1.0),
                "{name} on {device_name}: logits differ by {d}"
            );
            let loss = model
                .causal_lm_loss(ids, Some(mask), None)
                .unwrap()
                .into_scalar::<f32>();
            assert!(
                (loss - fx.loss).abs() < 1e-5 * fx.loss,
                "{name} on {device_name}: {loss} vs {}",
                fx.loss
            );
            // transformers' generate(do_sample=False) from the first four ids.
            let prompt: Vec<u32> = fx.input_ids[0][..4].iter().map(|&v| v as u32).collect();
            assert_eq!(
                model.greedy(&prompt, 5).unwrap(),
                fx.greedy,
                "{name} on {device_name}"
            );
        }
    }
}

#[test]
fn gates_of_ones_change_nothing_and_a_closed_head_changes_the_logits() {
    let device = devices().remove(0).1;
    let model = SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap();
    let layout = model.gate_layout();
    assert_eq!(layout.to_string(), "[heads [2, 4], intermediate [2, 48]]");
    let ids = ints(&[vec![1, 5, 9, 33]], &device);
    let plain = io::to_host(model.forward(ids.clone(), None, None).unwrap()).unwrap();
    let ones = Gates::ones(&layout, &device);
    let gated = io::to_host(model.forward(ids.clone(), None, Some(&ones)).unwrap()).unwrap();
    assert_eq!(plain, gated);
    let mut heads = vec![1.0f32; 8];
    heads[1] = 0.0;
    let closed = Gates::from_tensors(
        vec![
            Tensor::from_data(TensorData::new(heads, [2, 4]), &device),
            Tensor::ones([2, 48], &device),
        ],
        &layout,
    )
    .unwrap();
    let changed = io::to_host(model.forward(ids, None, Some(&closed)).unwrap()).unwrap();
    assert!(max_abs_diff(&changed.values, &plain.values) > 1e-3);
}

#[test]
fn key_and_value_rows_are_governed_by_their_groups_of_query_heads() {
    let device = devices().remove(0).1;
    let model = SoftMaskLlama::from_pretrained(folder("tiny-qwen2"), &device).unwrap();
    let governed = model.governed();
    // Per layer: q, o, k (+bias), v (+bias), q bias, gate, up, down.
    assert_eq!(governed.len(), 2 * 10);
    let shared: Vec<&Governed> = governed.iter().filter(|g| g.group > 1).collect();
    assert_eq!(shared.len(), 2 * 4);
    assert!(
        shared
            .iter()
            .all(|g| g.group == 2 && g.span == 8 && g.gate == 0)
    );
    // Every governed parameter fits: a mask plan builds.
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    UpdateSoftMasker::new(&imp, &model).unwrap();
    // The KL proxy's dropout takes a rate in [0, 1).
    assert!(model.clone().with_proxy_dropout(0.2).is_ok());
    assert!(matches!(
        model.with_proxy_dropout(1.0).map(|_| ()),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn configurations_softmask_cannot_run_are_refused_by_name() {
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(folder("tiny-llama").join("config.json")).unwrap(),
    )
    .unwrap();
    for (field, value, says) in [
        (
            "num_attention_heads",
            serde_json::json!(5),
            "does not divide hidden_size",
        ),
        (
            "num_key_value_heads",
            serde_json::json!(3),
            "does not divide num_attention_heads",
        ),
        (
            "model_type",
            serde_json::json!("gpt_neox"),
            "model_type \"gpt_neox\"",
        ),
        (
            "sliding_window",
            serde_json::json!(4096),
            "sliding attention window",
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_theta": 0.0}),
            "rope_theta must be above 0",
        ),
        (
            "vocab_size",
            serde_json::json!(0),
            "vocab_size must be at least 1",
        ),
        (
            "hidden_act",
            serde_json::json!("gelu"),
            "hidden_act \"gelu\"",
        ),
        ("mlp_bias", serde_json::json!(true), "mlp_bias"),
        ("head_dim", serde_json::json!(16), "head_dim 16"),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
            "rope_type \"llama3\"",
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_theta": 5e5, "rope_type": "yarn"}),
            "rope_type \"yarn\"",
        ),
    ] {
        let mut c = good.clone();
        c[field] = value;
        let config: LlamaConfig = serde_json::from_value(c).unwrap();
        let e = config.validate().unwrap_err();
        assert!(e.contains(says), "{field}: {e}");
    }
}

#[derive(serde::Deserialize)]
struct SmolLogits {
    vocab_size: usize,
    stride: usize,
    cases: Vec<SmolCase>,
}

#[derive(serde::Deserialize)]
struct SmolCase {
    prompt: String,
    ids: Vec<i64>,
    logits: Vec<Vec<f32>>,
    top: Vec<(usize, String, f32)>,
}

/// SmolLM2 from its GGUF (tools/fetch_smollm2.sh) against transformers'
/// dequantized model (tools/reference/smollm2_fixtures.py): logits within
/// 1e-3 of the largest |logit| at every position, and " Paris" after "The
/// capital of France is".
#[test]
fn smollm2_from_its_gguf_gives_transformers_logits() {
    let path = std::env::var_os("SOFTMASK_SMOLLM2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/smollm2"))
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        eprintln!(
            "skipped: no {} (run tools/fetch_smollm2.sh)",
            path.display()
        );
        return;
    }
    let device = devices().remove(0).1;
    let model = SoftMaskLlama::from_gguf(&path, &device).unwrap();
    let c = model.config();
    assert_eq!(
        (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.kv_heads(),
            c.intermediate_size
        ),
        (30, 576, 9, 3, 1536)
    );
    assert!(c.tie_word_embeddings);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/smollm2_logits.json"),
    )
    .unwrap();
    let fx: SmolLogits = serde_json::from_str(&text).unwrap();
    assert_eq!(c.vocab_size, fx.vocab_size);
    for case in &fx.cases {
        let ids = ints(std::slice::from_ref(&case.ids), &device);
        let logits = io::to_host(model.forward(ids, None, None).unwrap()).unwrap();
        let v = fx.vocab_size;
        let scale = case
            .logits
            .iter()
            .flatten()
            .fold(0f32, |m, x| m.max(x.abs()));
        for (p, want) in case.logits.iter().enumerate() {
            let got: Vec<f32> = logits.values[p * v..(p + 1) * v]
                .iter()
                .step_by(fx.stride)
                .copied()
                .collect();
            let d = max_abs_diff(&got, want);
            assert!(
                d < 1e-3 * scale,
                "{:?} position {p}: {d} (scale {scale})",
                case.prompt
            );
        }
        let last = &logits.values[(case.ids.len() - 1) * v..case.ids.len() * v];
        let best = (0..v).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap();
        assert_eq!(best, case.top[0].0, "{:?}", case.prompt);
        assert!((last[best] - case.top[0].2).abs() < 1e-3 * scale);
    }
    assert_eq!(fx.cases[0].top[0].1, " Paris");
    let prompt: Vec<u32> = fx.cases[0].ids.iter().map(|&v| v as u32).collect();
    assert_eq!(
        model.greedy(&prompt, 1).unwrap(),
        [fx.cases[0].top[0].0 as u32]
    );
}

/// A saved folder loads back as the same model (every tensor, the logits),
/// tied or not; `tools/reference/llama_fixtures.py --check DIR` loads it in
/// transformers.
#[test]
fn a_saved_folder_loads_back_as_the_same_model() {
    let device = devices().remove(0).1;
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = SoftMaskLlama::from_pretrained(folder(name), &device).unwrap();
        let dir = temp_dir(&format!("llama-save-{name}"));
        model.save_pretrained(&dir).unwrap();
        let back = SoftMaskLlama::from_pretrained(&dir, &device).unwrap();
        assert_eq!(back.config().theta(), model.config().theta());
        assert_eq!(
            back.named_tensors().unwrap(),
            model.named_tensors().unwrap()
        );
        let saved = read_tensors(&dir.join("model.safetensors"));
        assert_eq!(saved.contains_key("lm_head.weight"), name == "tiny-qwen2");
        let original = read_tensors(&folder(name).join("model.safetensors"));
        assert_eq!(
            saved, original,
            "{name}: the same tensors under the same names"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Every method of the loop runs on the decoder with the causal-LM loss;
/// the domain's loss falls; the KL proxy's dropout gives a general
/// importance that is not flat; a finished run resumes to the same results.
#[test]
fn every_method_runs_on_the_decoder() {
    use softmask::continual::*;
    let device = devices().remove(0).1;
    let doms = [causal_domain("code", 5, 30), causal_domain("prose", 30, 60)];
    let (general, replay) = {
        let g = causal_domain("general", 5, 60);
        (g.held_out, g.train)
    };
    let collate = CausalChunkCollate::new(0, 64).unwrap();
    for name in PRESETS {
        let out = temp_dir(&format!("llama-{name}"));
        let mut c = quick(name);
        c.lr = 1e-2;
        c.checkpoint_every = 2;
        let model = SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap();
        let outcome = ContinualTrainer::new(c.clone(), collate.clone(), &out)
            .unwrap()
            .with_general_corpus(replay.clone())
            .run(model, &doms, Some(&general), false)
            .unwrap();
        let m = &outcome.results;
        assert!(m.after[0][1] < m.base[1], "{name}: {m:?}");
        if c.general_importance {
            let imp = Importance::load(out.join("importance/general.safetensors")).unwrap();
            let heads = &imp.gates()[0].values;
            assert!(
                heads.iter().any(|&v| v != heads[0]),
                "{name}: flat importance"
            );
        }
        let again = ContinualTrainer::new(c, collate.clone(), &out)
            .unwrap()
            .with_general_corpus(replay.clone())
            .run(
                SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap(),
                &doms,
                Some(&general),
                true,
            )
            .unwrap();
        assert_eq!(again.results, outcome.results, "{name}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// A folder of shards and their index loads as the single file does; an
/// index naming a shard outside the folder is refused.
#[test]
fn sharded_folders_load_as_one_file() {
    let device = devices().remove(0).1;
    let dir = temp_dir("llama-shards");
    std::fs::copy(
        folder("tiny-qwen2").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let all = read_tensors(&folder("tiny-qwen2").join("model.safetensors"));
    let (first, second): (Vec<_>, Vec<_>) =
        all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (shard, part) in [("a.safetensors", first), ("b.safetensors", second)] {
        let part: std::collections::BTreeMap<_, _> = part.into_iter().map(|(_, kv)| kv).collect();
        for name in part.keys() {
            map.insert(name.clone(), serde_json::json!(shard));
        }
        write_tensors(&dir.join(shard), &part);
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = SoftMaskLlama::from_pretrained(&dir, &device).unwrap();
    let single = SoftMaskLlama::from_pretrained(folder("tiny-qwen2"), &device).unwrap();
    assert_eq!(
        sharded.named_tensors().unwrap(),
        single.named_tensors().unwrap()
    );

    let mut bad = index.clone();
    bad["weight_map"]["lm_head.weight"] = serde_json::json!("../a.safetensors");
    std::fs::write(dir.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    let e = SoftMaskLlama::from_pretrained(&dir, &device)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, Error::CorruptFile { reason, .. } if reason.contains("names no shard file")),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[derive(serde::Deserialize)]
struct Derived {
    batches: Vec<Rows>,
    importance: std::collections::BTreeMap<String, Vec<f32>>,
    step: Step,
}

#[derive(serde::Deserialize)]
struct Rows {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
}

#[derive(serde::Deserialize)]
struct Step {
    lr: f64,
    eps: f32,
    weight_decay: f64,
    loss: f32,
    importance: std::collections::BTreeMap<String, Vec<f32>>,
}

/// A padded batch of the fixture: the real tokens of each row.
fn causal(rows: &Rows, vocab: usize, device: &burn::tensor::Device) -> CausalBatch {
    let real: Vec<Vec<u32>> = rows
        .input_ids
        .iter()
        .zip(&rows.attention_mask)
        .map(|(ids, mask)| {
            ids.iter()
                .zip(mask)
                .filter(|(_, m)| **m == 1)
                .map(|(&i, _)| i as u32)
                .collect()
        })
        .collect();
    CausalBatch::from_rows(&real, 0, vocab, device).unwrap()
}

/// Gate-gradient importance of the causal-LM loss, and every weight after
/// one update-masked AdamW step, against transformers
/// (tools/reference/llama_fixtures.py), on every CPU device, with the head's
/// logits in one piece and in chunks.
#[test]
fn importance_and_an_update_masked_adamw_step_match_transformers() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let text = std::fs::read_to_string(folder(name).join("derived.json")).unwrap();
        let fx: Derived = serde_json::from_str(&text).unwrap();
        let want = read_tensors(&folder(name).join("after_step.safetensors"));
        // The head in one chunk, and in chunks of 20 vocabulary entries
        // (20, 20, 20, 4 of 64; the last one short).
        let runs = devices()
            .into_iter()
            .flat_map(|d| [(d.clone(), None), (d, Some(20))]);
        for ((device_name, device), chunk) in runs {
            let mut model = SoftMaskLlama::from_pretrained(folder(name), &device).unwrap();
            if let Some(rows) = chunk {
                assert!(matches!(
                    model.clone().with_head_chunk(0).map(|_| ()),
                    Err(Error::ZeroSize { .. })
                ));
                model = model.with_head_chunk(rows).unwrap();
            }
            let device_name = format!("{device_name}, head chunk {chunk:?}");
            let vocab = model.config().vocab_size;
            let layout = model.gate_layout();
            let batches: Vec<CausalBatch> = fx
                .batches
                .iter()
                .map(|b| causal(b, vocab, &device))
                .collect();
            let mut est = ImportanceEstimator::new(
                layout.clone(),
                Accumulation::PerBatch,
                GradientSign::Signed,
            )
            .unwrap();
            let proxy = |m: &SoftMaskLlama, g: &Gates, b: &CausalBatch| m.loss(b, Some(g));
            for b in &batches {
                est.step(&model, b, &proxy).unwrap();
            }
            for gate in est.raw().unwrap().gates() {
                let d = rel_diff(&gate.values, &fx.importance[&gate.name]);
                assert!(
                    d < 1e-5,
                    "{name} on {device_name}: importance {} off by {d}",
                    gate.name
                );
            }

            let pattern = importance_by_name(&layout, &fx.step.importance);
            let loss = model.loss(&batches[0], None).unwrap();
            let got_loss = loss.clone().into_scalar::<f32>();
            assert!(
                (got_loss - fx.step.loss).abs() < 1e-5 * fx.step.loss,
                "{name} on {device_name}: loss {got_loss} vs {}",
                fx.step.loss
            );
            update_masked_adamw_step(
                &mut model,
                loss,
                &pattern,
                (fx.step.lr, fx.step.eps, fx.step.weight_decay),
            );
            let what = format!("{name} on {device_name}");
            assert_tensors_match(&what, &model.named_tensors().unwrap(), &want, 1e-5);
        }
    }
}

#[test]
fn a_tokenizer_with_more_ids_than_the_model_is_refused() {
    let device = devices().remove(0).1;
    let model = SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap();
    // The tiny RoBERTa's byte-level BPE has 300 ids; this model has 64 rows.
    let tokenizer = HfTokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta/tiny/tokenizer.json"),
        32,
    )
    .unwrap();
    let e = tokenizer
        .check_vocabulary(model.config().vocab_size)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::VocabularyMismatch {
                tokenizer: 300,
                model: 64
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not the model's tokenizer"));
    assert!(tokenizer.check_vocabulary(300).is_ok());
}

/// kd distils to the model as it was at the domain's start: at a domain's
/// first step the two are the same model, so one step per domain is NCL's
/// step exactly; over more steps it differs, and a run stopped mid-domain
/// resumes with the same teacher (kept in the checkpoint) to the same end.
#[test]
fn kd_starts_from_its_own_model_and_resumes_with_the_same_teacher() {
    use softmask::continual::*;
    let device = devices().remove(0).1;
    let doms = [causal_domain("code", 5, 30), causal_domain("prose", 30, 60)];
    let collate = CausalChunkCollate::new(0, 64).unwrap();
    let model = || SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap();
    let run = |c: MethodConfig, out: &Path, resume: bool| {
        ContinualTrainer::new(c, collate.clone(), out)
            .unwrap()
            .run(model(), &doms, None, resume)
    };
    let config = |name: &str, steps: usize| {
        let mut c = quick(name);
        c.lr = 1e-2;
        c.steps_per_domain = steps;
        c.checkpoint_every = 2;
        c
    };
    let tensors = |o: &continual::Outcome<SoftMaskLlama>| o.model.named_tensors().unwrap();
    let (a, b) = (temp_dir("kd-one"), temp_dir("ncl-one"));
    // The largest difference between two models' weights.
    let apart = |x: &continual::Outcome<SoftMaskLlama>, y: &continual::Outcome<SoftMaskLlama>| {
        let (x, y) = (tensors(x), tensors(y));
        x.iter()
            .map(|(k, t)| max_abs_diff(&t.values, &y[k].values))
            .fold(0f32, f32::max)
    };
    let kd = run(config("kd", 1), &a, false).unwrap();
    let ncl = run(config("ncl", 1), &b, false).unwrap();
    // The KL's gradient at equal models is rounding (Σ p = 1 ± 1e-7), which
    // AdamW's normalised step lifts to a few 1e-6.
    let d = apart(&kd, &ncl);
    assert!(d < 5e-5, "one step: kd and ncl differ by {d}");
    let (a4, b4) = (temp_dir("kd-four"), temp_dir("ncl-four"));
    let kd = run(config("kd", 4), &a4, false).unwrap();
    let ncl = run(config("ncl", 4), &b4, false).unwrap();
    let d = apart(&kd, &ncl);
    assert!(d > 1e-3, "four steps: kd and ncl differ by only {d}");

    let stopped = temp_dir("kd-stopped");
    let (o, c, col) = (stopped.clone(), config("kd", 4), collate.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ContinualTrainer::new(c, col, &o)
            .unwrap()
            .with_observer(Box::new(StopAtMidDomain { nth: 2, seen: 0 }))
            .run(model(), &doms, None, false)
            .map(|_| ())
    }));
    assert!(r.is_err(), "the run was not stopped");
    let mid: Vec<PathBuf> = std::fs::read_dir(stopped.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-0000002"))
        .collect();
    assert_eq!(mid.len(), 1, "{mid:?}");
    let teacher = mid[0].join("kd-teacher");
    assert!(teacher.join("model.safetensors").is_file());
    // Without its teacher the checkpoint is refused, by name.
    let hidden = stopped.join("teacher-aside");
    std::fs::rename(&teacher, &hidden).unwrap();
    let e = run(config("kd", 4), &stopped, true)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Checkpoint { reason, .. } if reason.contains("kd's teacher")),
        "{e}"
    );
    std::fs::rename(&hidden, &teacher).unwrap();
    let resumed = run(config("kd", 4), &stopped, true).unwrap();
    assert_eq!(resumed.results, kd.results);
    assert!(
        tensors(&resumed) == tensors(&kd),
        "the resumed run ends elsewhere"
    );
    for d in [a, b, a4, b4, stopped] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The chunked head's gradients, compared directly: one plain SGD step of
/// rate 1 moves every weight by exactly its gradient, whole head or chunks.
#[test]
fn the_chunked_head_gives_the_whole_heads_gradients() {
    use softmask::continual::ContinualModel;
    let device = devices().remove(0).1;
    for name in ["tiny-llama", "tiny-qwen2"] {
        let text = std::fs::read_to_string(folder(name).join("derived.json")).unwrap();
        let fx: Derived = serde_json::from_str(&text).unwrap();
        let stepped = |chunk: Option<usize>| {
            let mut model = SoftMaskLlama::from_pretrained(folder(name), &device).unwrap();
            if let Some(c) = chunk {
                model = model.with_head_chunk(c).unwrap();
            }
            let batch = causal(&fx.batches[0], 64, &device);
            let loss = model.loss(&batch, None).unwrap();
            let none = Importance::zeros(&model.gate_layout()).unwrap();
            update_masked_sgd_step(&mut model, loss, &none);
            model.named_tensors().unwrap()
        };
        let (whole, chunked) = (stepped(None), stepped(Some(7)));
        let before = SoftMaskLlama::from_pretrained(folder(name), &device)
            .unwrap()
            .named_tensors()
            .unwrap();
        for (key, w) in &whole {
            let grad_whole: Vec<f32> = before[key]
                .values
                .iter()
                .zip(&w.values)
                .map(|(b, a)| b - a)
                .collect();
            let grad_chunked: Vec<f32> = before[key]
                .values
                .iter()
                .zip(&chunked[key].values)
                .map(|(b, a)| b - a)
                .collect();
            let scale = grad_whole
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
                .max(1e-6);
            let d = max_abs_diff(&grad_whole, &grad_chunked) / scale;
            assert!(d < 1e-4, "{name}: {key} gradient off by {d} of its largest");
        }
    }
}

/// One plain SGD step of rate 1 on `loss`, masked with `importance`.
fn update_masked_sgd_step(model: &mut SoftMaskLlama, loss: Tensor<1>, importance: &Importance) {
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &*model);
    let sgd = softmask::continual::OptimizerKind::Sgd { momentum: 0.0 }
        .init()
        .unwrap();
    let mut optim = SoftMaskedOptimizer::new(sgd, importance, &*model, MaskMode::Update).unwrap();
    optim.step(1.0, model, grads).unwrap();
}
