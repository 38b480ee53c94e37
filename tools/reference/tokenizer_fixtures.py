#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/smollm2_tokens.json: the ids transformers gives
texts (unicode, digits, code, runs of whitespace, special tokens) with the
tokenizer it rebuilds from SmolLM2's GGUF file, which HfTokenizer::from_gguf
must reproduce.

    tools/fetch_smollm2.sh
    .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/tokenizer_fixtures.py
"""

import json
import os

from transformers import AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

TEXTS = [
    "The capital of France is",
    "héllo wörld ✓ naïve café – “quotes” — 日本語のテキスト 🙂",
    "12345 6789 3.14159 1,000,000 2026-11-29",
    "def f(x):\n    return x**2  # ok\n\n\n",
    "  leading   spaces\tand\ttabs\r\n and trailing   ",
    "<|endoftext|>hi<|im_start|>user\nHello<|im_end|>",
    "Don't we'll they've I'M SHOUTING",
    "",
]


def main():
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, ".cache", "smollm2"), gguf_file=NAME)
    cases = [{"text": t, "ids": tok(t)["input_ids"]} for t in TEXTS]
    out = os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_tokens.json")
    with open(out, "w") as f:
        json.dump({"vocab_size": len(tok), "cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
