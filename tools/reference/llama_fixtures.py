#!/usr/bin/env python3
"""Writes tests/fixtures/llama/: tiny random decoder LMs of transformers
(a LlamaForCausalLM with grouped-query attention and tied embeddings, a
Qwen2ForCausalLM with q/k/v biases and a separate head), each as a Hugging
Face folder, with the logits and the mean next-token loss of a padded batch.

    .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/llama_fixtures.py
    .venv/bin/python tools/reference/llama_fixtures.py --check SAVED_DIR tiny-llama
"""

import json
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "llama")

IDS = [[1, 5, 9, 33, 2, 17, 60, 4], [3, 44, 8, 12, 0, 0, 0, 0]]
MASK = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]]


def write(name, model):
    model.eval()
    folder = os.path.join(OUT, name)
    model.save_pretrained(folder, safe_serialization=True)
    ids, mask = torch.tensor(IDS), torch.tensor(MASK)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        prompt = torch.tensor([IDS[0][:4]])
        greedy = model.generate(prompt, max_new_tokens=5, do_sample=False,
                                pad_token_id=0)[0, 4:].tolist()
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"input_ids": IDS, "attention_mask": MASK, "loss": loss.item(),
                   "logits": logits.reshape(-1).tolist(), "shape": list(logits.shape),
                   "greedy": greedy}, f)
    print(f"wrote {folder}")


def main():
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5, rope_theta=10000.0)
    llama = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    qwen = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    # Random init is near zero; spread the weights so the test sees real values.
    for m in (llama, qwen):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    write("tiny-llama", llama)
    write("tiny-qwen2", qwen)


def check(folder, reference):
    """Loads a folder softmask saved in transformers and compares its logits
    with the reference fixture's (the model it was loaded from)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with open(os.path.join(OUT, reference, "expected.json")) as f:
        want = json.load(f)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(want["input_ids"]),
                       attention_mask=torch.tensor(want["attention_mask"])).logits
    d = (logits.reshape(-1) - torch.tensor(want["logits"])).abs().max().item()
    print(f"{folder}: {type(model).__name__}, logits differ from {reference}'s by {d:.2e}")
    assert d < 1e-5


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--check"]:
        check(sys.argv[2], sys.argv[3])
    else:
        main()
