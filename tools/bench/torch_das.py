"""One DAS training step on a real BERT in PyTorch + transformers, timed: the
same work as examples/bench_das.rs. MLM (15% masked, 80/10/10) plus the
contrastive term (two dropout views and an importance-gated view of the
original tokens, mean-pooled, temperature 0.05), then AdamW and the update
soft-mask in the semantic head layout. Also the plain update-masked MLM step,
and the MLM-proxy importance pass: gate gradients of the MLM loss with every
parameter frozen (requires_grad False), the cheapest way in PyTorch.
Prints a JSON line per operation with the median wall time.

  python tools/bench/torch_das.py [--model .cache/all-MiniLM-L6-v2] [--iters 5] [--batch 8] [--seq 128] [--threads 2]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "all-MiniLM-L6-v2"))
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", default="das_step,mlm_step,importance",
                    help="comma-separated: das_step, mlm_step, importance")
    args = ap.parse_args()
    ops = args.ops.split(",")
    bad = [op for op in ops if op not in ("das_step", "mlm_step", "importance")]
    if bad:
        sys.exit(f"--ops: unknown {bad}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(args.model)
    model.train()
    cfg = model.config
    tok = AutoTokenizer.from_pretrained(args.model)
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg.vocab_size, (args.batch, args.seq), generator=g)
    ids[:, 0] = 101
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    head_dim = cfg.hidden_size // H

    def pattern(rows, units):
        n = torch.arange(rows * units)
        return ((n * 7 % 11).float() / 11.0).reshape(rows, units)

    imp = {"heads": pattern(L, H), "intermediate": pattern(L, cfg.intermediate_size),
           "output": pattern(L, cfg.hidden_size)}
    gates = {"on": False, "values": imp}
    for i, layer in enumerate(model.bert.encoder.layer):
        layer.attention.output.dense.register_forward_pre_hook(
            lambda _m, a, i=i: (a[0] * gates["values"]["heads"][i].repeat_interleave(head_dim),) if gates["on"] else None)
        layer.intermediate.dense.register_forward_hook(
            lambda _m, _a, o, i=i: o * gates["values"]["intermediate"][i] if gates["on"] else o)
        layer.output.dense.register_forward_hook(
            lambda _m, _a, o, i=i: o * gates["values"]["output"][i] if gates["on"] else o)

    # The update mask's (name, keep) pairs, keep broadcastable to the parameter.
    masks = []
    for i in range(L):
        pre = f"bert.encoder.layer.{i}"
        heads = (1 - imp["heads"][i]).repeat_interleave(head_dim)
        for part in ("query", "key", "value"):
            masks += [(f"{pre}.attention.self.{part}.weight", heads.unsqueeze(1)),
                      (f"{pre}.attention.self.{part}.bias", heads)]
        masks.append((f"{pre}.attention.output.dense.weight", heads.unsqueeze(0)))
        for name, m in (("intermediate", imp["intermediate"][i]), ("output", imp["output"][i])):
            keep = 1 - m
            masks += [(f"{pre}.{name}.dense.weight", keep.unsqueeze(1)), (f"{pre}.{name}.dense.bias", keep)]
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, eps=1e-8, weight_decay=0.01)
    mask = torch.ones_like(ids)

    def pooled(gated):
        gates["on"] = gated
        h = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        gates["on"] = False
        m = mask.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def unit(z):
        return z / z.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def step(das):
        batch = collator([{"input_ids": r} for r in ids.tolist()])
        start = time.perf_counter()
        loss = model(input_ids=batch["input_ids"], attention_mask=mask, labels=batch["labels"]).loss
        if das:
            z1, z2, z3 = pooled(False), pooled(False), pooled(True)
            logits = unit(z1) @ torch.cat([unit(z2), unit(z3)], 0).T / 0.05
            loss = loss + F.cross_entropy(logits, torch.arange(z1.shape[0]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        old = {n: params[n].detach().clone() for n, _ in masks}
        opt.step()
        with torch.no_grad():
            for n, keep in masks:
                p = params[n]
                p.copy_(old[n] + keep * (p - old[n]))
        return (time.perf_counter() - start) * 1e3

    def importance():
        """Gate gradients of the MLM loss, parameters frozen."""
        batch = collator([{"input_ids": r} for r in ids.tolist()])
        ones = {k: torch.ones_like(v, requires_grad=True) for k, v in imp.items()}
        for p in model.parameters():
            p.requires_grad_(False)
        start = time.perf_counter()
        gates["on"], gates["values"] = True, ones
        loss = model(input_ids=batch["input_ids"], attention_mask=mask, labels=batch["labels"]).loss
        loss.backward()
        gates["on"], gates["values"] = False, imp
        elapsed = (time.perf_counter() - start) * 1e3
        for p in model.parameters():
            p.requires_grad_(True)
        return elapsed

    times = {op: [] for op in ops}
    for i in range(args.iters + 1):
        for op in times:
            t = importance() if op == "importance" else step(op == "das_step")
            if i > 0:
                times[op].append(t)
    for op, t in times.items():
        print(json.dumps({"side": "pytorch", "op": op, "iters": args.iters,
                          "median_ms": round(statistics.median(t), 1), "min_ms": round(min(t), 1)}))


if __name__ == "__main__":
    main()
