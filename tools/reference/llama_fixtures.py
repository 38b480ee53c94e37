#!/usr/bin/env python3
"""Writes tests/fixtures/llama/: tiny random decoder LMs of transformers
(a LlamaForCausalLM with grouped-query attention and tied embeddings, a
Qwen2ForCausalLM with q/k/v biases and a separate head), each as a Hugging
Face folder, with the logits and the mean next-token loss of a padded batch;
and for each (`derived.json`, `after_step.safetensors`):

* the raw gate-gradient importance of the causal-LM loss over two padded
  batches (gates `heads` [layers, query heads] on the input of `o_proj`,
  `intermediate` [layers, intermediate] on the input of `down_proj`; the
  summed gradients over the batches' real tokens);
* the summed log-probability of a few continuations after their contexts
  (the knowledge probes' score);
* every weight after one AdamW step (lr 1e-3, eps 1e-6, weight decay 0.01)
  on the first batch's loss, with the update soft-mask
  theta_old + (1 - I) * (theta_new - theta_old) for a fixed importance
  pattern: a query head's q_proj rows and bias and o_proj columns, a
  key/value head's k_proj/v_proj rows and biases by the largest importance
  among the query heads of its group, intermediate unit j's gate_proj and
  up_proj rows and down_proj column.

  Epsilon is 1e-6 rather than the loop's 1e-8: a first AdamW step moves a
  weight by lr * g / (|g| + eps), and a k_proj bias's gradient (all but
  cancelled by the softmax) reaches 1e-9, where g / |g| is float32 rounding
  noise on either side; with 1e-6 every compared update is well-conditioned.

    .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/llama_fixtures.py
    .venv/bin/python tools/reference/llama_fixtures.py --check SAVED_DIR tiny-llama
"""

import json
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "llama")

IDS = [[1, 5, 9, 33, 2, 17, 60, 4], [3, 44, 8, 12, 0, 0, 0, 0]]
MASK = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]]
# The second batch of the importance pass.
IDS2 = [[7, 21, 30, 5, 0, 0], [11, 2, 40, 63, 19, 8], [6, 6, 50, 0, 0, 0]]
MASK2 = [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
LR, EPS, WD = 1e-3, 1e-6, 0.01
# (context, continuation) pairs scored by their log-likelihood.
PAIRS = [([1, 5, 9], [33]), ([1, 5, 9], [2, 17, 60]), ([7], [21, 30, 5, 11, 2]), ([3, 44, 8, 12, 40], [63])]


def continuation_logprob(model, context, continuation):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context + continuation])).logits[0]
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(context) - 1 + k, t]) for k, t in enumerate(continuation))


def pattern(rows, units, offset):
    """Importance values in [0, 1): a fixed, uneven pattern."""
    return [[((r * 7 + u * 5 + offset) % 11) / 11.0 for u in range(units)] for r in range(rows)]


def loss_of(model, ids, mask):
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    return model(input_ids=ids, attention_mask=mask,
                 labels=ids.masked_fill(mask == 0, -100)).loss


def derive(name, model):
    """Importance and one update-masked AdamW step of `model` (see above)."""
    cfg = model.config
    L, H, I = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size
    hd = cfg.hidden_size // H
    group = H // cfg.num_key_value_heads
    heads = torch.ones(L, H, requires_grad=True)
    inter = torch.ones(L, I, requires_grad=True)
    hooks = []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
            lambda _m, a, i=i: (a[0] * heads[i].repeat_interleave(hd),)))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(
            lambda _m, a, i=i: (a[0] * inter[i],)))
    for ids, mask in ((IDS, MASK), (IDS2, MASK2)):
        loss_of(model, ids, mask).backward()
    tokens = sum(map(sum, MASK)) + sum(map(sum, MASK2))
    importance = {"heads": (heads.grad / tokens).reshape(-1).tolist(),
                  "intermediate": (inter.grad / tokens).reshape(-1).tolist()}
    for h in hooks:
        h.remove()
    model.zero_grad()

    continuations = [{"context": c, "continuation": t, "logprob": continuation_logprob(model, c, t)}
                     for c, t in PAIRS]
    imp_h, imp_i = torch.tensor(pattern(L, H, 1)), torch.tensor(pattern(L, I, 2))
    params = dict(model.named_parameters())
    old = {k: v.detach().clone() for k, v in params.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, eps=EPS, weight_decay=WD)
    loss = loss_of(model, IDS, MASK)
    loss.backward()
    opt.step()
    with torch.no_grad():
        def pull(key, keep):
            if key in params:
                p = params[key]
                p.copy_(old[key] + keep * (p - old[key]))

        for i in range(L):
            pre = f"model.layers.{i}"
            q = (1 - imp_h[i]).repeat_interleave(hd)
            kv = (1 - imp_h[i].reshape(-1, group).max(1).values).repeat_interleave(hd)
            pull(f"{pre}.self_attn.q_proj.weight", q.unsqueeze(1))
            pull(f"{pre}.self_attn.q_proj.bias", q)
            for part in ("k_proj", "v_proj"):
                pull(f"{pre}.self_attn.{part}.weight", kv.unsqueeze(1))
                pull(f"{pre}.self_attn.{part}.bias", kv)
            pull(f"{pre}.self_attn.o_proj.weight", q.unsqueeze(0))
            keep = 1 - imp_i[i]
            pull(f"{pre}.mlp.gate_proj.weight", keep.unsqueeze(1))
            pull(f"{pre}.mlp.up_proj.weight", keep.unsqueeze(1))
            pull(f"{pre}.mlp.down_proj.weight", keep.unsqueeze(0))
    folder = os.path.join(OUT, name)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()
          if not (k == "lm_head.weight" and cfg.tie_word_embeddings)}
    save_file(sd, os.path.join(folder, "after_step.safetensors"))
    with open(os.path.join(folder, "derived.json"), "w") as f:
        json.dump({"generator": "tools/reference/llama_fixtures.py",
                   "batches": [{"input_ids": IDS, "attention_mask": MASK},
                               {"input_ids": IDS2, "attention_mask": MASK2}],
                   "importance": importance,
                   "continuations": continuations,
                   "step": {"lr": LR, "eps": EPS, "weight_decay": WD, "loss": loss.item(),
                            "importance": {"heads": sum(pattern(L, H, 1), []),
                                           "intermediate": sum(pattern(L, I, 2), [])}}}, f)
    print(f"wrote {folder}/derived.json, after_step.safetensors")


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
    derive("tiny-llama", llama)
    derive("tiny-qwen2", qwen)


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
