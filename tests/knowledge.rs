//! Knowledge probes: probe files checked line by line, the
//! lm-eval-harness tokenization, continuation scores against transformers
//! (tools/reference/llama_fixtures.py), and the plugin in the loop, resumed.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use softmask::continual::*;
use softmask::data::probes::{ProbeItem, ProbeSet, TokenizedProbe};
use softmask::model::llama::SoftMaskLlama;
use softmask::*;

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama")
        .join(name)
}

fn item(id: &str, prompt: &str, choices: &[&str], answer: usize) -> ProbeItem {
    ProbeItem {
        id: id.into(),
        category: "test".into(),
        prompt: prompt.into(),
        choices: choices.iter().map(|c| c.to_string()).collect(),
        answer,
    }
}

#[test]
fn probe_files_are_checked_line_by_line() {
    let dir = temp_dir("probes");
    let good = r#"{"id": "a", "prompt": "The capital of France is", "choices": [" Paris", " Rome"], "answer": 0}"#;
    let path = dir.join("p.jsonl");
    std::fs::write(&path, format!("{good}\n\n")).unwrap();
    let set = ProbeSet::from_jsonl(&path).unwrap();
    assert_eq!(set.items()[0].category, "");
    assert_eq!(set.items()[0].choices[1], " Rome");
    for (line2, says) in [
        ("{not json", "line 2: not a probe item"),
        (
            r#"{"id": "b", "prompt": "x", "choices": [" a", " b"], "answer": 2}"#,
            "line 2: answer 2 is not one of its 2 choices",
        ),
        (
            r#"{"id": "b", "prompt": "x", "choices": [" a"], "answer": 0}"#,
            "line 2: 1 choices",
        ),
        (
            r#"{"id": "b", "prompt": "", "choices": [" a", " b"], "answer": 0}"#,
            "line 2: an empty prompt",
        ),
        (
            r#"{"id": "b", "prompt": "x", "choices": [" a", " a"], "answer": 0}"#,
            "line 2: two choices are the same",
        ),
        (good, "id \"a\" appears twice"),
    ] {
        std::fs::write(&path, format!("{good}\n{line2}\n")).unwrap();
        let e = ProbeSet::from_jsonl(&path).unwrap_err();
        assert!(
            matches!(&e, Error::CorruptFile { reason, .. } if reason.contains(says)),
            "{line2}: {e}"
        );
    }
    std::fs::write(&path, "").unwrap();
    assert!(ProbeSet::from_jsonl(&path).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_choice_is_what_the_prompt_and_it_encode_to_past_the_prompt() {
    let tok = WordTokenizer::from_corpus(
        &["the capital of france is paris rome"],
        UnknownWords::Error,
    );
    let set = ProbeSet::new(vec![item(
        "a",
        "the capital of france is",
        &[" paris", " rome"],
        0,
    )])
    .unwrap();
    let probes = set.tokenize(&tok).unwrap();
    let ids = |t: &str| tok.encode(t).unwrap();
    assert_eq!(probes[0].context, ids("the capital of france is"));
    assert_eq!(probes[0].choices, [ids("paris"), ids("rome")]);
    assert_eq!(probes[0].answer, 0);
}

#[test]
fn a_tokenizer_that_appends_a_token_cannot_score_continuations() {
    // The tiny RoBERTa's tokenizer ends every encoding with </s>.
    let tok = HfTokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta/tiny/tokenizer.json"),
        64,
    )
    .unwrap();
    let set = ProbeSet::new(vec![item("a", "Soft-masking keeps", &[" the", " a"], 0)]).unwrap();
    let e = set.tokenize(&tok).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidConfig(m) if m.contains("\"a\"") && m.contains("do not begin")),
        "{e}"
    );
}

#[derive(serde::Deserialize)]
struct Continuation {
    context: Vec<u32>,
    continuation: Vec<u32>,
    logprob: f32,
}

#[derive(serde::Deserialize)]
struct Derived {
    continuations: Vec<Continuation>,
}

/// The summed log-probability of each continuation, batched and padded,
/// equals transformers' one sequence at a time, on every device.
#[test]
fn continuation_scores_match_transformers() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let text = std::fs::read_to_string(folder(name).join("derived.json")).unwrap();
        let fx: Derived = serde_json::from_str(&text).unwrap();
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = fx
            .continuations
            .iter()
            .map(|c| (c.context.clone(), c.continuation.clone()))
            .collect();
        for (device_name, device) in devices() {
            let model = SoftMaskLlama::from_pretrained(folder(name), &device).unwrap();
            let got = model.continuation_logprobs(&pairs).unwrap();
            for (g, c) in got.iter().zip(&fx.continuations) {
                assert!(
                    (g - c.logprob).abs() < 1e-5 * c.logprob.abs().max(1.0),
                    "{name} on {device_name}: {g} vs {}",
                    c.logprob
                );
            }
            assert!(matches!(
                model.continuation_logprobs(&[(vec![], vec![1])]),
                Err(Error::BadBatch(_))
            ));
            assert!(matches!(
                model.continuation_logprobs(&[(vec![1], vec![64])]),
                Err(Error::TokenOutOfVocab { id: 64, .. })
            ));
        }
    }
}

/// Items over the tiny decoder's vocabulary, as ids.
fn tiny_probes(out: &Path) -> KnowledgeProbes {
    let items: Vec<ProbeItem> = (0..6)
        .map(|i| item(&format!("p{i}"), "x", &[" a", " b", " c"], i % 3))
        .collect();
    let set = ProbeSet::new(items).unwrap();
    let probes = (0..6u32)
        .map(|i| TokenizedProbe {
            context: vec![5 + i, 9, 12 + i],
            choices: vec![vec![30 + i], vec![40, 2 + i], vec![55 - i]],
            answer: (i % 3) as usize,
        })
        .collect();
    KnowledgeProbes::new(&set, probes, out).unwrap()
}

#[test]
fn probes_are_scored_after_every_domain_and_a_resumed_run_reports_the_same() {
    let device = devices().remove(0).1;
    let doms = [causal_domain("code", 5, 30), causal_domain("prose", 30, 60)];
    let collate = CausalChunkCollate::new(0, 64).unwrap();
    let model = || SoftMaskLlama::from_pretrained(folder("tiny-llama"), &device).unwrap();
    let mut config = quick("ncl");
    config.lr = 1e-2;
    config.checkpoint_every = 2;
    let out = temp_dir("knowledge");
    // Without the base model's row the run is refused at its first domain.
    let e = ContinualTrainer::new(config.clone(), collate.clone(), &out)
        .unwrap()
        .run_with_plugins(
            model(),
            &doms,
            None,
            false,
            vec![Box::new(tiny_probes(&out))],
        )
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("evaluate the base model"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
    let mut probes = tiny_probes(&out);
    let base = probes.evaluate(&model(), "base").unwrap().clone();
    let outcome = ContinualTrainer::new(config.clone(), collate.clone(), &out)
        .unwrap()
        .run_with_plugins(model(), &doms, None, false, vec![Box::new(probes)])
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("knowledge.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let after: Vec<&str> = rows.iter().map(|r| r["after"].as_str().unwrap()).collect();
    assert_eq!(after, ["base", "code", "prose"]);
    assert_eq!(rows[0]["accuracy"].as_f64().unwrap() as f32, base.accuracy);
    assert_eq!(rows[0]["forgotten"].as_f64().unwrap(), 0.0);
    // The last row is the trained model's, scored again here.
    let mut again = tiny_probes(&temp_dir("knowledge-again"));
    let last = again.evaluate(&outcome.model, "prose").unwrap();
    assert_eq!(rows[2]["accuracy"].as_f64().unwrap() as f32, last.accuracy);
    assert_eq!(
        rows[2]["mean_margin"].as_f64().unwrap() as f32,
        last.mean_margin
    );
    let known: Vec<usize> = (0..6).filter(|&i| base.correct[i]).collect();
    let lost = known.iter().filter(|&&i| !last.correct[i]).count();
    assert_eq!(
        rows[2]["forgotten"].as_f64().unwrap() as f32,
        lost as f32 / known.len().max(1) as f32
    );
    let svg = std::fs::read_to_string(out.join("knowledge.svg")).unwrap();
    for label in [">accuracy<", ">test<", ">base<", ">prose<"] {
        assert!(svg.contains(label), "{label}");
    }
    assert_eq!(svg.matches("<rect x=").count(), 3 * 2);
    let md = std::fs::read_to_string(out.join("knowledge.md")).unwrap();
    assert!(
        md.starts_with("| after | accuracy | mean margin | forgotten | test |"),
        "{md}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("knowledge.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // Stopped in the last domain, and (as if killed after the last domain
    // was scored, before its checkpoint) with every row written: the
    // resumed run scores that domain again and reports the same.
    let whole = std::fs::read(out.join("knowledge.json")).unwrap();
    let stopped = temp_dir("knowledge-stopped");
    let (o, c, col) = (stopped.clone(), config.clone(), collate.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut probes = tiny_probes(&o);
        probes.evaluate(&model(), "base").unwrap();
        ContinualTrainer::new(c, col, &o)
            .unwrap()
            .with_observer(Box::new(StopAtMidDomain { nth: 2, seen: 0 }))
            .run_with_plugins(model(), &doms, None, false, vec![Box::new(probes)])
            .map(|_| ())
    }));
    assert!(r.is_err(), "the run was not stopped");
    let rows_then = std::fs::read_to_string(stopped.join("knowledge.csv")).unwrap();
    assert_eq!(rows_then.lines().count(), 3, "base and code: {rows_then}");
    std::fs::write(stopped.join("knowledge.json"), &whole).unwrap();
    let resumed = tiny_probes(&stopped).resume().unwrap();
    assert_eq!(resumed.rows().len(), 3);
    ContinualTrainer::new(config, collate, &stopped)
        .unwrap()
        .run_with_plugins(model(), &doms, None, true, vec![Box::new(resumed)])
        .unwrap();
    assert_eq!(
        std::fs::read(stopped.join("knowledge.json")).unwrap(),
        whole
    );
    std::fs::remove_dir_all(&stopped).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

#[derive(serde::Deserialize)]
struct SmolChoice {
    ids: Vec<u32>,
    logprob: f32,
}

#[derive(serde::Deserialize)]
struct SmolItem {
    id: String,
    context_ids: Vec<u32>,
    choices: Vec<SmolChoice>,
}

#[derive(serde::Deserialize)]
struct SmolProbes {
    items: Vec<SmolItem>,
}

/// The shipped probe set on SmolLM2 (tools/reference/probe_fixtures.py):
/// the ids of the first items' prompts and choices, and their scores,
/// against transformers' dequantized model.
#[test]
fn the_general_knowledge_set_scores_as_in_transformers_on_smollm2() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = ProbeSet::from_jsonl(root.join("data/probes/general_knowledge.jsonl")).unwrap();
    assert!(set.items().len() >= 300, "{}", set.items().len());
    let gguf = root.join(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        eprintln!("skipped: run tools/fetch_smollm2.sh for the SmolLM2 probe test");
        return;
    }
    let fx: SmolProbes = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/gguf/smollm2_probes.json")).unwrap(),
    )
    .unwrap();
    let file = softmask::gguf::GgufFile::open(&gguf).unwrap();
    let tok = HfTokenizer::from_gguf(&file, 128).unwrap();
    let n = fx.items.len();
    let first = ProbeSet::new(set.items()[..n].to_vec()).unwrap();
    let probes = first.tokenize(&tok).unwrap();
    let device = devices().remove(0).1;
    let model = SoftMaskLlama::from_gguf(&gguf, &device).unwrap();
    let mut pairs = Vec::new();
    for ((item, probe), want) in first.items().iter().zip(&probes).zip(&fx.items) {
        assert_eq!(item.id, want.id);
        assert_eq!(probe.context, want.context_ids, "{}", item.id);
        for (c, w) in probe.choices.iter().zip(&want.choices) {
            assert_eq!(c, &w.ids, "{}", item.id);
            pairs.push((probe.context.clone(), c.clone()));
        }
    }
    let got = model.continuation_logprobs(&pairs).unwrap();
    let want: Vec<f32> = fx
        .items
        .iter()
        .flat_map(|i| i.choices.iter().map(|c| c.logprob))
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-3 * w.abs().max(1.0), "{g} vs {w}");
    }
}
