#!/usr/bin/env python3
"""Scores the general-knowledge probe set data/probes/general_knowledge.jsonl
with transformers on SmolLM2-135M-Instruct, dequantized from its GGUF file to
float32, and writes tests/fixtures/gguf/smollm2_probes.json: the token ids and
choice log-probabilities of the first 12 items, which softmask's probe scorer
must reproduce, and a summary (accuracy, mean margin, ids of the items the
base model gets right) over the whole file.

    tools/fetch_smollm2.sh
    .venv/bin/python tools/reference/probe_fixtures.py

Tokenization convention (the Rust side does the same):

* context ids = tokenizer(prompt)["input_ids"]; the GGUF tokenizer adds no BOS
  (and no EOS), so these are the prompt's own tokens;
* continuation ids = tokenizer(prompt + choice)["input_ids"][len(context):],
  where the first len(context) ids of the whole must equal the context ids
  (checked for every choice; the script fails and names the items otherwise);
* score of a choice = sum over its continuation tokens t_i of
  log_softmax(logits at the position before t_i)[t_i];
* the item is right when the answer's score is the largest (argmax, first
  index on ties); its margin is the answer's score minus the best other's.

The forward passes are batched (padded on the right, with an attention mask,
sorted by length); the first 12 items are scored again one sequence at a time
and the two must agree, and the fixture keeps the unbatched values.
"""

import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FOLDER = os.path.join(ROOT, ".cache", "smollm2")
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROBES = "data/probes/general_knowledge.jsonl"
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_probes.json")
FIXTURE_ITEMS = 12
BATCH = 64
THREADS = 2


def load_items():
    with open(os.path.join(ROOT, PROBES), encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    ids = [it["id"] for it in items]
    assert len(set(ids)) == len(ids), "duplicate ids"
    for it in items:
        assert len(it["choices"]) == 4 and 0 <= it["answer"] < 4, it["id"]
    return items


def tokenize(tok, items):
    """Context and continuation ids per item; fails on any item whose
    prompt + choice does not start with the prompt's own tokens."""
    failures = []
    for it in items:
        ctx = tok(it["prompt"])["input_ids"]
        it["context_ids"] = ctx
        it["cont_ids"] = []
        for c in it["choices"]:
            whole = tok(it["prompt"] + c)["input_ids"]
            if whole[: len(ctx)] != ctx or len(whole) == len(ctx):
                failures.append((it["id"], c, ctx, whole))
            it["cont_ids"].append(whole[len(ctx):])
    for f in failures:
        print("context-prefix property fails:", f)
    assert not failures, f"{len(failures)} choices break the context-prefix property"


def score_batch(model, seqs, pad_id):
    """seqs: list of (context_ids, continuation_ids). Returns the summed
    log-probability of each continuation after its context."""
    full = [c + k for c, k in seqs]
    width = max(len(s) for s in full)
    ids = torch.full((len(full), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(full), width), dtype=torch.long)
    for i, s in enumerate(full):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    out = []
    for i, (c, k) in enumerate(seqs):
        pos = torch.arange(len(c) - 1, len(c) + len(k) - 1)
        out.append(float(logp[i, pos, torch.tensor(k)].sum()))
    return out


def main():
    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=NAME, dtype=torch.float32).eval()
    probe = tok("The capital of France is")["input_ids"]
    adds_bos = tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id]
    print(f"tokenizer {type(tok).__name__}: bos {tok.bos_token!r} ({tok.bos_token_id}), "
          f"adds BOS: {adds_bos}; pad id {tok.pad_token_id}")

    items = load_items()
    tokenize(tok, items)
    seqs = [(it["context_ids"], k) for it in items for k in it["cont_ids"]]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
    scores = [0.0] * len(seqs)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    t0 = time.time()
    for b in range(0, len(order), BATCH):
        chunk = order[b: b + BATCH]
        for i, s in zip(chunk, score_batch(model, [seqs[i] for i in chunk], pad_id)):
            scores[i] = s
        done = min(b + BATCH, len(order))
        print(f"\r{done}/{len(order)} sequences, {time.time() - t0:.1f}s", end="", flush=True)
    elapsed = time.time() - t0
    print()

    correct, margins, per_cat = [], [], {}
    for n, it in enumerate(items):
        s = scores[4 * n: 4 * n + 4]
        it["scores"] = s
        a = it["answer"]
        best = max(range(4), key=lambda j: (s[j], -j))
        margin = s[a] - max(s[j] for j in range(4) if j != a)
        margins.append(margin)
        ok = best == a
        if ok:
            correct.append(it["id"])
        c = per_cat.setdefault(it["category"], [0, 0])
        c[0] += ok
        c[1] += 1
    accuracy = len(correct) / len(items)
    mean_margin = sum(margins) / len(margins)

    # The fixture's items, scored one sequence at a time (no padding).
    fixture = []
    worst = 0.0
    for n, it in enumerate(items[:FIXTURE_ITEMS]):
        choices = []
        for j, k in enumerate(it["cont_ids"]):
            lp = score_batch(model, [(it["context_ids"], k)], pad_id)[0]
            worst = max(worst, abs(lp - it["scores"][j]))
            choices.append({"ids": k, "logprob": lp})
        fixture.append({"id": it["id"], "context_ids": it["context_ids"],
                        "choices": choices, "answer": it["answer"]})
    print(f"batched and unbatched log-probabilities differ by at most {worst:.2e}")
    assert worst < 1e-3

    out = {
        "generator": ("tools/reference/probe_fixtures.py: transformers "
                      f"{__import__('transformers').__version__}, torch {torch.__version__}, "
                      f"{NAME} dequantized to float32; context ids = tokenizer(prompt) "
                      "(no BOS), continuation ids = tokenizer(prompt + choice)[len(context):], "
                      "logprob = sum of log_softmax over the continuation tokens"),
        "file": PROBES,
        "items": fixture,
        "summary": {"items": len(items), "accuracy": accuracy, "mean_margin": mean_margin,
                    "correct_ids": correct},
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    print(f"scored {len(items)} items ({len(seqs)} sequences) in {elapsed:.1f}s "
          f"on {THREADS} threads")
    for cat, (r, n) in per_cat.items():
        print(f"  {cat:10s} {r:3d}/{n:3d} = {r / n:.3f}")
    print(f"accuracy {accuracy:.4f}, mean margin {mean_margin:.4f}")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
