//! GGUF: every tensor type against llama.cpp's own Python package (gguf-py,
//! tools/reference/gguf_fixtures.py), metadata of every type, and bad files
//! refused with a typed error naming the problem.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use softmask::Error;
use softmask::gguf::{GgmlType, GgufFile, GgufValue};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/tiny.gguf")
}

#[derive(serde::Deserialize)]
struct Expected {
    shape: Vec<usize>,
    values: Vec<f64>,
}

#[test]
fn every_tensor_type_dequantizes_as_gguf_py_does() {
    let file = GgufFile::open(fixture()).unwrap();
    let text = std::fs::read_to_string(fixture().with_file_name("expected.json")).unwrap();
    let expected: BTreeMap<String, Expected> = serde_json::from_str(&text).unwrap();
    assert_eq!(expected.len(), 9);
    for (name, want) in &expected {
        let got = file.read(name).unwrap();
        assert_eq!(got.shape, want.shape, "{name}");
        assert_eq!(got.values.len(), want.values.len(), "{name}");
        for (i, (g, w)) in got.values.iter().zip(&want.values).enumerate() {
            // The same operations in the same order: equal to the bit.
            assert_eq!(*g, *w as f32, "{name}[{i}]");
        }
    }
    let kinds: Vec<GgmlType> = file.tensors().iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K
        ]
    );
}

#[test]
fn metadata_of_every_value_type_reads() {
    let file = GgufFile::open(fixture()).unwrap();
    let get = |k: &str| file.get(k).unwrap().clone();
    assert_eq!(get("test.u8"), GgufValue::U8(200));
    assert_eq!(get("test.i8"), GgufValue::I8(-100));
    assert_eq!(get("test.u16"), GgufValue::U16(60000));
    assert_eq!(get("test.i16"), GgufValue::I16(-30000));
    assert_eq!(get("test.u32"), GgufValue::U32(4_000_000_000));
    assert_eq!(get("test.i32"), GgufValue::I32(-2_000_000_000));
    assert_eq!(get("test.f32"), GgufValue::F32(0.5));
    assert_eq!(get("test.bool"), GgufValue::Bool(true));
    assert_eq!(get("test.string").as_str(), Some("héllo ✓"));
    assert_eq!(
        get("test.array"),
        GgufValue::Array(vec![
            GgufValue::I32(1),
            GgufValue::I32(2),
            GgufValue::I32(3)
        ])
    );
    assert_eq!(
        get("test.strings"),
        GgufValue::Array(vec![
            GgufValue::String("a".into()),
            GgufValue::String("bc".into())
        ])
    );
    assert_eq!(get("test.u64"), GgufValue::U64(1 << 63));
    assert_eq!(get("test.i64"), GgufValue::I64(-(1 << 62)));
    assert_eq!(get("test.f64"), GgufValue::F64(0.1));
    assert_eq!(get("test.u16").as_u64(), Some(60000));
    assert_eq!(get("test.i8").as_u64(), None);
    assert_eq!(get("test.i8").as_f64(), Some(-100.0));
    let e = file.read("nope").unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
}

/// The position of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// The reason `bytes`, written to a file, is refused for.
fn refused(bytes: &[u8], tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("softmask-gguf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let r = GgufFile::open(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    match r {
        Err(Error::CorruptFile { reason, .. }) => reason,
        other => panic!("{tag}: expected a corrupt-file error, got {other:?}"),
    }
}

#[test]
fn bad_files_are_refused_naming_the_problem() {
    let good = std::fs::read(fixture()).unwrap();
    let patched = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    assert!(refused(&patched(0, b"GGUG"), "magic").contains("no GGUF magic"));
    for v in [1u32, 4, u32::MAX] {
        let r = refused(&patched(4, &v.to_le_bytes()), "version");
        assert!(r.contains(&format!("GGUF version {v}")), "{r}");
    }
    let r = refused(&patched(8, &(1u64 << 40).to_le_bytes()), "tensors");
    assert!(r.contains("tensor count is 1099511627776"), "{r}");
    let r = refused(&patched(16, &u64::MAX.to_le_bytes()), "kv");
    assert!(r.contains("metadata count"), "{r}");
    // The first key's length, far past the file.
    let r = refused(&patched(24, &(1u64 << 50).to_le_bytes()), "key length");
    assert!(
        r.contains("more than the") && r.contains("bytes left"),
        "{r}"
    );
    // A value type that does not exist.
    let at = find(&good, b"test.u8") + 7;
    let r = refused(&patched(at, &99u32.to_le_bytes()), "value type");
    assert!(r.contains("test.u8: unknown value type 99"), "{r}");
    // A tensor of a type softmask does not read, named.
    let q4k = find(&good, b"q4_k") + 4; // n_dims, two dims, then the type
    let r = refused(&patched(q4k + 4 + 16, &10u32.to_le_bytes()), "type");
    assert!(r.contains("\"q4_k\" is of type Q2_K (id 10)"), "{r}");
    let r = refused(&patched(q4k + 4 + 16, &1000u32.to_le_bytes()), "type id");
    assert!(r.contains("unknown (id 1000)"), "{r}");
    // Dimensions: none, too many, empty, rows not of whole blocks.
    let r = refused(&patched(q4k, &0u32.to_le_bytes()), "n_dims");
    assert!(r.contains("0 dimensions"), "{r}");
    let r = refused(&patched(q4k + 4, &0u64.to_le_bytes()), "empty");
    assert!(r.contains("no elements"), "{r}");
    let r = refused(&patched(q4k + 4, &100u64.to_le_bytes()), "blocks");
    assert!(
        r.contains("rows of 100 values, not whole blocks of 256"),
        "{r}"
    );
    let r = refused(&patched(q4k + 12, &(1u64 << 40).to_le_bytes()), "huge");
    assert!(r.contains("more than 4294967296"), "{r}");
    // Data outside the file, or not aligned.
    let r = refused(
        &patched(q4k + 4 + 16 + 4, &(1u64 << 20).to_le_bytes()),
        "offset",
    );
    assert!(r.contains("lie outside the file's data"), "{r}");
    let r = refused(&patched(q4k + 4 + 16 + 4, &7u64.to_le_bytes()), "align");
    assert!(r.contains("not aligned to 32"), "{r}");
    // Cut short anywhere before the last tensor's end (the rest is
    // padding): refused, never a panic.
    let end = GgufFile::open(fixture())
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.offset() + t.byte_len())
        .max()
        .unwrap() as usize;
    assert_eq!(end, 4684);
    for cut in (0..end).step_by(7) {
        let r = refused(&good[..cut], "cut");
        assert!(
            ["truncated", "outside", "left", "holds"]
                .iter()
                .any(|w| r.contains(w)),
            "{cut}: {r}"
        );
    }
}

/// SmolLM2-135M-Instruct, from `tools/fetch_smollm2.sh`; `None` (the test
/// says it skips) without it.
fn smollm2() -> Option<PathBuf> {
    let dir = std::env::var_os("SOFTMASK_SMOLLM2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/smollm2"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipped: no SmolLM2 GGUF in {} (run tools/fetch_smollm2.sh)",
            dir.display()
        );
        None
    }
}

/// The real file: its metadata, and one tensor of each type against gguf-py
/// (the f64 sum and the edge values that `tools/reference/gguf_fixtures.py
/// --smollm2` prints).
#[test]
fn smollm2_reads_as_gguf_py_reads_it() {
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.tensors().len(), 272);
    let u = |k: &str| file.get(k).and_then(GgufValue::as_u64);
    let s = |k: &str| file.get(k).and_then(GgufValue::as_str).map(str::to_string);
    assert_eq!(s("general.architecture").as_deref(), Some("llama"));
    assert_eq!(
        [
            u("llama.block_count"),
            u("llama.embedding_length"),
            u("llama.attention.head_count"),
            u("llama.attention.head_count_kv"),
            u("llama.feed_forward_length"),
            u("tokenizer.ggml.bos_token_id"),
            u("tokenizer.ggml.eos_token_id"),
        ],
        [30, 576, 9, 3, 1536, 1, 2].map(Some)
    );
    assert_eq!(
        file.get("llama.rope.freq_base").and_then(GgufValue::as_f64),
        Some(100000.0)
    );
    assert_eq!(s("tokenizer.ggml.model").as_deref(), Some("gpt2"));
    assert_eq!(s("tokenizer.ggml.pre").as_deref(), Some("smollm"));
    let len = |k: &str| file.get(k).and_then(GgufValue::as_array).map(<[_]>::len);
    assert_eq!(len("tokenizer.ggml.tokens"), Some(49152));
    assert_eq!(len("tokenizer.ggml.merges"), Some(48900));
    for (name, kind, shape, sum, first, last) in [
        (
            "token_embd.weight",
            GgmlType::Q8_0,
            &[49152, 576][..],
            -15353.04449415207,
            [
                -0.10654449462890625,
                0.032978057861328125,
                0.048198699951171875,
            ],
            -0.0417022705078125,
        ),
        (
            "blk.0.attn_q.weight",
            GgmlType::Q4_1,
            &[576, 576][..],
            59.22322082519531,
            [-0.0963134765625, 0.1573486328125, -0.0963134765625],
            -0.255859375,
        ),
        (
            "blk.29.ffn_down.weight",
            GgmlType::Q4_1,
            &[576, 1536][..],
            49.83570861816406,
            [-0.2733154296875, 0.186279296875, 0.186279296875],
            0.056640625,
        ),
        (
            "output_norm.weight",
            GgmlType::F32,
            &[576][..],
            1038.33203125,
            [1.7578125, 1.8203125, 1.78125],
            1.984375,
        ),
    ] {
        assert_eq!(file.tensor_info(name).map(|t| t.kind), Some(kind), "{name}");
        let t = file.read(name).unwrap();
        let numel: usize = shape.iter().product();
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.values.len(), numel, "{name}");
        assert_eq!(&t.values[..3], first.map(|v| v as f32), "{name}");
        assert_eq!(t.values[numel - 1], last as f32, "{name}");
        let got: f64 = t.values.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (got - sum).abs() < 1e-6 * sum.abs().max(1.0),
            "{name}: {got} vs {sum}"
        );
    }
}

#[derive(serde::Deserialize)]
struct TokenCases {
    vocab_size: usize,
    cases: Vec<TokenCase>,
}

#[derive(serde::Deserialize)]
struct TokenCase {
    text: String,
    ids: Vec<u32>,
}

/// SmolLM2's byte-level BPE, rebuilt from the GGUF metadata, gives the ids
/// transformers gives (tools/reference/tokenizer_fixtures.py) on unseen text:
/// unicode, digits, code, whitespace runs, special tokens.
#[test]
#[cfg(feature = "wordpiece")]
fn smollm2s_tokenizer_from_gguf_matches_transformers() {
    use softmask::{HfTokenizer, Tokenizer};
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tok = HfTokenizer::from_gguf(&file, 128).unwrap();
    let text = std::fs::read_to_string(fixture().with_file_name("smollm2_tokens.json")).unwrap();
    let want: TokenCases = serde_json::from_str(&text).unwrap();
    assert_eq!(tok.vocab_size(), want.vocab_size);
    for case in &want.cases {
        assert_eq!(tok.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
        let back = tok.decode(&case.ids).unwrap();
        // Special tokens are skipped on the way back; all else round-trips.
        if !case.text.contains("<|") {
            assert_eq!(back, case.text);
        }
    }
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert!(tok.special_ids().contains(&0));
    // Saved as a tokenizer.json, it loads back with the same ids.
    let dir = common::temp_dir("smollm2-tokenizer");
    tok.save(dir.join("tokenizer.json")).unwrap();
    let again = HfTokenizer::from_file(dir.join("tokenizer.json"), 128).unwrap();
    for case in &want.cases {
        assert_eq!(
            again.encode(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
    }
    assert_eq!(again.special_ids(), tok.special_ids());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg(feature = "wordpiece")]
fn a_gguf_without_a_byte_level_tokenizer_is_refused() {
    let file = GgufFile::open(fixture()).unwrap();
    let e = softmask::HfTokenizer::from_gguf(&file, 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the GGUF tokenizer is None"), "{e}");
}
