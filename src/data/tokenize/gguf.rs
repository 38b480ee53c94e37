//! GGUF tokenizers: the byte-level BPE a GGUF file describes in its
//! metadata, rebuilt as a Hugging Face `tokenizers` pipeline the way
//! `transformers` rebuilds it (`AutoTokenizer.from_pretrained(..., gguf_file=...)`).

use serde_json::{Value, json};

use super::hf::HfTokenizer;
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufValue};

/// GPT-2's map from bytes to the printable characters byte-level BPE spells
/// them with.
fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        out[b as usize] = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{fffd}')
        };
    }
    out
}

/// The split a pre-tokenizer type learned its merges with (`tokenizer.ggml.pre`),
/// where it is not GPT-2's own.
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => Some(LLAMA3),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2),
        _ => None,
    }
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let bad = || {
        Error::InvalidConfig(format!(
            "the GGUF tokenizer needs {key} as an array of strings"
        ))
    };
    file.get(key)
        .and_then(GgufValue::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().ok_or_else(bad))
        .collect()
}

impl HfTokenizer {
    /// The byte-level BPE tokenizer of a GGUF file (`tokenizer.ggml.model`
    /// `gpt2`, as Llama 3, Qwen2 and SmolLM use), rebuilt as `transformers`
    /// does: its vocabulary (respelled in the byte alphabet where needed) and
    /// merges; control tokens as special tokens and user-defined ones as added
    /// tokens; the split of `tokenizer.ggml.pre` (GPT-2's otherwise); BOS
    /// added when `tokenizer.ggml.add_bos_token` says so. Batches are
    /// truncated to `max_length`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for another tokenizer model, or a vocabulary,
    /// merges or token types that are missing or malformed;
    /// [`Error::ZeroSize`] for `max_length` 0.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use softmask::gguf::GgufFile;
    /// use softmask::{HfTokenizer, Tokenizer};
    ///
    /// let file = GgufFile::open(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")?;
    /// let tok = HfTokenizer::from_gguf(&file, 128)?;
    /// assert_eq!(tok.encode("The capital of France is")?, [504, 3575, 282, 4649, 314]);
    /// # Ok::<(), softmask::Error>(())
    /// ```
    pub fn from_gguf(file: &GgufFile, max_length: usize) -> Result<HfTokenizer> {
        let model = file.get("tokenizer.ggml.model").and_then(GgufValue::as_str);
        if model != Some("gpt2") {
            return Err(Error::InvalidConfig(format!(
                "the GGUF tokenizer is {model:?}; softmask builds byte-level BPE (\"gpt2\") ones"
            )));
        }
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let merges = strings(file, "tokenizer.ggml.merges")?;
        let types: Vec<u64> = match file.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(v) => v
                .as_array()
                .map(|a| a.iter().map(|t| t.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default(),
        };
        if types.len() != tokens.len() {
            return Err(Error::InvalidConfig(format!(
                "the GGUF tokenizer has {} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let spelling = bytes_to_unicode();
        let in_alphabet = |t: &str| t.chars().all(|c| spelling.contains(&c));
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, (&token, &kind)) in tokens.iter().zip(&types).enumerate() {
            let spelled = if in_alphabet(token) {
                token.to_string()
            } else {
                token.bytes().map(|b| spelling[b as usize]).collect()
            };
            vocab.insert(spelled, json!(id));
            // 3: control (special); 4: user-defined (matched whole, not special).
            if (kind == 3 && in_alphabet(token)) || kind == 4 {
                added.push(json!({
                    "id": id, "content": token, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": kind == 3,
                }));
            }
        }
        let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
        let pre = file
            .get("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or("default");
        let pre_tokenizer = match split_regex(pre) {
            Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
            None => byte_level(true),
        };
        let bos = match file.get("tokenizer.ggml.add_bos_token") {
            Some(GgufValue::Bool(true)) => file
                .get("tokenizer.ggml.bos_token_id")
                .and_then(GgufValue::as_u64)
                .and_then(|id| tokens.get(id as usize).map(|t| (id, *t))),
            _ => None,
        };
        let post_processor = match bos {
            Some((id, token)) => json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {token: {"id": token, "ids": [id], "tokens": [token]}},
            }),
            None => Value::Null,
        };
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        });
        let plain: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| Error::InvalidConfig(format!("the GGUF tokenizer does not build: {e}")))?;
        HfTokenizer::new(plain, max_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let s = bytes_to_unicode();
        assert_eq!(
            (s[b'a' as usize], s[b' ' as usize], s[b'\n' as usize]),
            ('a', 'Ġ', 'Ċ')
        );
        assert_eq!((s[0], s[0xad]), ('Ā', 'Ń'));
        let mut all: Vec<char> = s.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }
}
