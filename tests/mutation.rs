//! Seeded mutations of valid files: every load must give `Ok` or a typed
//! error, never a panic or an abort.
//!
//! A few thousand mutations of a notebook model's weights, an importance file,
//! a BERT checkpoint (`model.safetensors` and `config.json`), a word
//! vocabulary, a GGUF file (opened, every tensor read), a FusedAdamW
//! optimizer state (loaded, then stepped: never NaN in the model after a step
//! that returned `Ok`) and a continual run's checkpoint manifest (resumed):
//! bytes flipped, runs overwritten, the file
//! cut short or grown, and (for the safetensors header, the config and the
//! manifest) numbers replaced by extreme ones, where the dangerous sizes live.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use softmask::*;

/// Extreme numbers to plant where a size was.
const EXTREMES: [&str; 9] = [
    "0",
    "1",
    "-1",
    "2147483648",
    "4294967296",
    "1000000000000",
    "18446744073709551615",
    "99999999999999999999999",
    "1e300",
];

/// One mutation of `bytes`, chosen by `rng`.
fn mutate(bytes: &[u8], rng: &mut StdRng, header_end: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let n = out.len();
    match rng.random_range(0..6u32) {
        // Flip a few bytes anywhere.
        0 => {
            for _ in 0..rng.random_range(1..5usize) {
                let at = rng.random_range(0..n);
                out[at] ^= 1 << rng.random_range(0..8u32);
            }
        }
        // Overwrite a short run inside the header (shapes, offsets, dtypes).
        1 => {
            let at = rng.random_range(0..header_end.max(1));
            for b in out.iter_mut().skip(at).take(rng.random_range(1..9usize)) {
                *b = rng.random();
            }
        }
        // Cut short.
        2 => out.truncate(rng.random_range(0..n)),
        // Grow: random bytes inserted.
        3 => {
            let at = rng.random_range(0..=n);
            let extra: Vec<u8> = (0..rng.random_range(1..64usize))
                .map(|_| rng.random())
                .collect();
            out.splice(at..at, extra);
        }
        // Replace a number in the header text by an extreme one.
        _ => {
            let text = &bytes[..header_end.min(n)];
            let digits: Vec<usize> = (0..text.len())
                .filter(|&i| text[i].is_ascii_digit())
                .collect();
            if let Some(&start) = digits.get(rng.random_range(0..digits.len().max(1))) {
                let mut end = start;
                while end < text.len() && text[end].is_ascii_digit() {
                    end += 1;
                }
                let mut begin = start;
                while begin > 0 && text[begin - 1].is_ascii_digit() {
                    begin -= 1;
                }
                let with = EXTREMES[rng.random_range(0..EXTREMES.len())].as_bytes();
                out.splice(begin..end, with.iter().copied());
            }
        }
    }
    out
}

/// Where a safetensors file's JSON header ends (8-byte length, then the header).
fn safetensors_header_end(bytes: &[u8]) -> usize {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    8 + len
}

/// Runs `load` on `count` mutations of `original` written to `path`; returns
/// how many loaded, and fails the test on any panic, naming the mutation.
fn fuzz(
    what: &str,
    original: &[u8],
    header_end: usize,
    path: &Path,
    count: usize,
    seed: u64,
    load: &dyn Fn(&Path) -> Result<()>,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut loaded = 0;
    for i in 0..count {
        let bytes = mutate(original, &mut rng, header_end);
        std::fs::write(path, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| load(path))) {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => {}
            Err(_) => panic!("{what}: mutation {i} (seed {seed}) panicked"),
        }
    }
    loaded
}

fn device() -> Device {
    devices().remove(0).1
}

#[test]
fn mutated_notebook_weights_load_or_give_a_typed_error() {
    let fx = load_fixture("notebook");
    let device = device();
    let original = std::fs::read(fixture_dir("notebook").join("model.safetensors")).unwrap();
    let dir = temp_dir("fuzz-weights");
    let path = dir.join("w.safetensors");
    let mut model = fx.model_config().init(&device).unwrap();
    let before = model.named_tensors().unwrap();
    let loaded = fuzz(
        "notebook weights",
        &original,
        safetensors_header_end(&original),
        &path,
        1000,
        1,
        &|p| {
            // A refused file leaves the model untouched.
            let mut m = model.clone();
            let kept = m.named_tensors()?;
            match m.load_safetensors(p) {
                Ok(()) => Ok(()),
                Err(e) => {
                    assert_eq!(m.named_tensors()?, kept, "a refused load changed the model");
                    Err(e)
                }
            }
        },
    );
    assert!((1..1000).contains(&loaded), "{loaded} of 1000 loaded");
    model
        .load_safetensors(fixture_dir("notebook").join("model.safetensors"))
        .unwrap();
    assert_ne!(model.named_tensors().unwrap(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mutated_importance_files_load_or_give_a_typed_error() {
    let layout = GateLayout::new(vec![
        GateSpec::new("heads", 2, 4),
        GateSpec::new("intermediate", 2, 16),
    ]);
    let values = layout
        .specs()
        .iter()
        .map(|s| {
            (0..s.numel())
                .map(|i| i as f32 / s.numel() as f32)
                .collect()
        })
        .collect();
    let dir = temp_dir("fuzz-importance");
    let good = dir.join("good.safetensors");
    Importance::new(&layout, values)
        .unwrap()
        .save(&good)
        .unwrap();
    let original = std::fs::read(&good).unwrap();
    let loaded = fuzz(
        "importance",
        &original,
        safetensors_header_end(&original),
        &dir.join("m.safetensors"),
        1000,
        2,
        &|p| {
            let imp = Importance::load(p)?;
            // Whatever loads is usable: finite, of a valid layout, normalisable.
            imp.layout().validate()?;
            imp.normalized(Normalization::Reference)?;
            Ok(())
        },
    );
    assert!((1..1000).contains(&loaded), "{loaded} of 1000 loaded");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tiny_bert_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tiny")
}

#[test]
fn mutated_bert_checkpoints_load_or_give_a_typed_error() {
    let device = device();
    let dir = temp_dir("fuzz-bert");
    let config = std::fs::read(tiny_bert_dir().join("config.json")).unwrap();
    let weights = std::fs::read(tiny_bert_dir().join("model.safetensors")).unwrap();

    // The weights, with a valid config beside them.
    std::fs::write(dir.join("config.json"), &config).unwrap();
    let loaded = fuzz(
        "bert weights",
        &weights,
        safetensors_header_end(&weights),
        &dir.join("model.safetensors"),
        1000,
        3,
        &|_| SoftMaskBert::from_pretrained(&dir, &device).map(|_| ()),
    );
    assert!((1..1000).contains(&loaded), "{loaded} of 1000 loaded");

    // The config, with valid weights beside it: every number is a size.
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
    let loaded = fuzz(
        "bert config",
        &config,
        config.len(),
        &dir.join("config.json"),
        1000,
        4,
        &|_| SoftMaskBert::from_pretrained(&dir, &device).map(|_| ()),
    );
    assert!((1..1000).contains(&loaded), "{loaded} of 1000 loaded");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mutated_vocabularies_load_or_give_a_typed_error() {
    let dir = temp_dir("fuzz-vocab");
    let good = dir.join("vocab.json");
    let tok = WordTokenizer::from_corpus(&corpus(), UnknownWords::Reserve("<unk>".into()));
    tok.save(&good).unwrap();
    let original = std::fs::read(&good).unwrap();
    let loaded = fuzz(
        "vocabulary",
        &original,
        original.len(),
        &dir.join("m.json"),
        500,
        5,
        &|p| WordTokenizer::load(p).map(|_| ()),
    );
    assert!((1..500).contains(&loaded), "{loaded} of 500 loaded");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Where a burn optimizer state's metadata ends (magic, version, metadata
/// size, then the metadata).
fn burnpack_header_end(bytes: &[u8]) -> usize {
    let len = u32::from_le_bytes(bytes[6..10].try_into().unwrap()) as usize;
    10 + len
}

fn fused_masked(model: &SoftMaskNet) -> SoftMaskedOptimizer {
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    let adamw = softmask_kernels::FusedAdamWConfig::new().init().unwrap();
    SoftMaskedOptimizer::new(adamw, &imp, model, MaskMode::Update).unwrap()
}

/// Every parameter of `model` is finite.
fn all_finite(model: &SoftMaskNet) -> bool {
    model
        .named_tensors()
        .unwrap()
        .values()
        .all(|t| t.values.iter().all(|v| v.is_finite()))
}

#[test]
fn mutated_optimizer_states_load_or_give_a_typed_error_and_never_a_nan_model() {
    let device = device();
    let mut model = small_net(&device);
    let mut optim = fused_masked(&model);
    for _ in 0..2 {
        let g = notebook_grads(&model);
        optim.step(1e-2, &mut model, g).unwrap();
    }
    let original = optim.optimizer().into_bytes().unwrap().to_vec();
    let dir = temp_dir("fuzz-optimizer");
    let loaded = fuzz(
        "optimizer state",
        &original,
        burnpack_header_end(&original),
        &dir.join("optimizer.bin"),
        3000,
        6,
        &|p| {
            let bytes = std::fs::read(p).unwrap();
            let mut m = model.clone();
            let mut o = fused_masked(&m);
            o.load_state(&bytes)?;
            let g = notebook_grads(&m);
            o.step(1e-2, &mut m, g)?;
            assert!(
                all_finite(&m),
                "a step returned Ok over a model holding NaN"
            );
            Ok(())
        },
    );
    assert!((1..3000).contains(&loaded), "{loaded} of 3000 loaded");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Copies the files of `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn mutated_checkpoint_manifests_resume_or_give_a_typed_error() {
    use softmask::continual::{ContinualTrainer, MethodConfig};
    let device = device();
    // A run stopped at the last mid-domain checkpoint (domain 1, step 3 of
    // 4), so that a resume takes one step, evaluates and writes its results.
    let mut config: MethodConfig = quick("das");
    config.checkpoint_every = 3;
    config.ewc_lambda = 1.0;
    let template = temp_dir("fuzz-manifest-run");
    let ckpt = stopped_run(config.clone(), &template, 2);
    assert!(ckpt.ends_with("001-0000003"));
    let manifest_path = Path::new("checkpoints/001-0000003/manifest.json");
    let original = std::fs::read(template.join(manifest_path)).unwrap();
    let dir = temp_dir("fuzz-manifest");
    let work = dir.join("run");
    let loaded = fuzz(
        "checkpoint manifest",
        &original,
        original.len(),
        &dir.join("manifest.json"),
        1000,
        7,
        &|p| {
            let _ = std::fs::remove_dir_all(&work);
            copy_tree(&template, &work);
            std::fs::copy(p, work.join(manifest_path)).unwrap();
            let outcome = ContinualTrainer::new(config.clone(), collate(), &work)?.run(
                tiny(&device),
                &domains(),
                Some(&general()),
                true,
            )?;
            assert!(
                outcome
                    .model
                    .named_tensors()?
                    .values()
                    .all(|t| t.values.iter().all(|v| v.is_finite())),
                "a resumed run ended Ok with NaN in the model"
            );
            Ok(())
        },
    );
    assert!((1..1000).contains(&loaded), "{loaded} of 1000 resumed");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(template).unwrap();
}

#[test]
fn mutated_gguf_files_open_or_give_a_typed_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/tiny.gguf");
    let original = std::fs::read(&path).unwrap();
    let header_end = softmask::gguf::GgufFile::open(&path)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.offset() as usize)
        .min()
        .unwrap();
    let dir = temp_dir("fuzz-gguf");
    let loaded = fuzz(
        "gguf",
        &original,
        header_end,
        &dir.join("m.gguf"),
        3000,
        8,
        &|p| {
            // Whatever opens reads every tensor, at the shape it claims.
            let file = softmask::gguf::GgufFile::open(p)?;
            for t in file.tensors() {
                let read = file.read(&t.name)?;
                assert_eq!(read.values.len(), read.shape.iter().product::<usize>());
            }
            Ok(())
        },
    );
    assert!((1..3000).contains(&loaded), "{loaded} of 3000 opened");
    std::fs::remove_dir_all(dir).unwrap();
}
