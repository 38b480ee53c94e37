#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/smollm2_logits.json: transformers' logits of
SmolLM2-135M-Instruct, dequantized from its GGUF file to float32, for three
prompts (every position, every 61st vocabulary id, and the top three of the
last position), which SoftMaskLlama::from_gguf must reproduce.

    tools/fetch_smollm2.sh
    .venv/bin/python tools/reference/smollm2_fixtures.py

With --check DIR it loads a folder softmask saved from the GGUF without
training (`continual_domains --save-model DIR --method ncl --steps 1 --lr 1e-30`,
a step that leaves every weight as it was, or
SoftMaskLlama::save_pretrained plus HfTokenizer::save) with plain
AutoModelForCausalLM and AutoTokenizer, and compares its token ids and
logits with the GGUF's in transformers:

    .venv/bin/python tools/reference/smollm2_fixtures.py --check DIR
"""

import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FOLDER = os.path.join(ROOT, ".cache", "smollm2")
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at"]
STRIDE = 61


def main():
    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32)
    model.eval()
    cases = []
    for p in PROMPTS:
        ids = tok(p)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        last = logits[-1]
        top = torch.topk(last, 3)
        cases.append({
            "prompt": p, "ids": ids,
            "logits": [[round(float(v), 5) for v in row[::STRIDE]] for row in logits],
            "top": [[int(i), tok.decode([int(i)]), float(v)] for v, i in zip(top.values, top.indices)],
        })
        print(p, cases[-1]["top"])
    out = os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_logits.json")
    with open(out, "w") as f:
        json.dump({"vocab_size": model.config.vocab_size, "stride": STRIDE, "cases": cases}, f)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


def check(folder):
    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32).eval()
    saved_tok = AutoTokenizer.from_pretrained(folder)
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    texts = PROMPTS + ["Unseen: naïve café, 12345 and   spaces\ttabs.\n\tdef f(x): return x**2"]
    worst = 0.0
    for t in texts:
        ids = tok(t)["input_ids"]
        assert saved_tok(t)["input_ids"] == ids, (t, saved_tok(t)["input_ids"], ids)
        with torch.no_grad():
            a = model(input_ids=torch.tensor([ids])).logits
            b = saved(input_ids=torch.tensor([ids])).logits
        worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    print(f"{folder}: {type(saved).__name__} and {type(saved_tok).__name__}; same ids on "
          f"{len(texts)} texts; logits differ by {worst:.2e} of the largest")
    assert worst < 1e-5


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--check"]:
        check(sys.argv[2])
    else:
        main()
