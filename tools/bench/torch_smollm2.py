"""SmolLM2-135M-Instruct in PyTorch + transformers, timed: the same work as
examples/bench_smollm2.rs. The model is the Q4_1 GGUF dequantized to float32
by transformers (a LlamaForCausalLM: 30 layers, 9 query and 3 key/value heads
of 64, intermediate 1536, vocabulary 49152, tied embeddings), in train mode
(it has no dropout). The batch is token ids drawn uniformly from the whole
vocabulary (torch.Generator seeded with --seed), every token real, the labels
the ids themselves (causal-LM loss, transformers shifts them).

* `step`: one update-masked causal-LM AdamW step (lr 1e-4, eps 1e-8, weight
  decay 0.01): forward, backward, a copy of the governed weights, AdamW, then
  theta_old + (1 - I) * (theta_new - theta_old) for a fixed importance I in
  [0, 1) as in tools/reference/llama_fixtures.py: q_proj rows and o_proj
  columns by query head, k_proj/v_proj rows by the largest importance in
  their group of query heads, gate_proj/up_proj rows and down_proj columns by
  intermediate unit. The copy is inside the time: it is what update masking
  costs in PyTorch.
* `importance`: one importance pass: every parameter frozen (requires_grad
  False), gates heads [30, 9] on the input of o_proj and intermediate
  [30, 1536] on the input of down_proj (forward pre-hooks, installed for
  this operation only), causal-LM loss, backward, |gate gradient| summed.

One warm-up, then --iters timed iterations of each operation, round-robin in
one process. Prints a JSON line per operation: side, op, iters, median_ms,
min_ms, batch, seq.

  .venv/bin/python tools/bench/torch_smollm2.py [--gguf .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
      [--batch 4] [--seq 64] [--iters 5] [--ops step,importance] [--threads 2] [--seed 0]
  .venv/bin/python tools/bench/torch_smollm2.py --check

--check (batch 2 x seq 16, no timing) takes ids and importance from formulas
the Rust side can reproduce: id[r][t] = (r * 1009 + t * 7919 + 13) % 49152,
I[l][u] = ((l * 7 + u * 5 + 1) % 11) / 11 for heads and + 2 for the
intermediate units; it prints the loss before the step, the loss of the same
batch after one update-masked step, and the summed |gate gradients|.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = os.path.join(ROOT, ".cache", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
OPS = ("step", "importance")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=GGUF)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--ops", default="step,importance", help="comma-separated: step, importance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="batch 2 x seq 16 from formulas; print the losses")
    args = ap.parse_args()
    ops = args.ops.split(",")
    bad = [op for op in ops if op not in OPS]
    if bad:
        sys.exit(f"--ops: unknown {bad}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = os.path.abspath(args.gguf)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    model.train()
    cfg = model.config
    L, H, I, V = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size
    hd = cfg.hidden_size // H
    group = H // cfg.num_key_value_heads

    if args.check:
        args.batch, args.seq = 2, 16
        ids = torch.tensor([[(r * 1009 + t * 7919 + 13) % V for t in range(args.seq)] for r in range(args.batch)])
        imp_h = torch.tensor([[((l * 7 + u * 5 + 1) % 11) / 11 for u in range(H)] for l in range(L)])
        imp_i = torch.tensor([[((l * 7 + u * 5 + 2) % 11) / 11 for u in range(I)] for l in range(L)])
    else:
        g = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, V, (args.batch, args.seq), generator=g)
        imp_h, imp_i = torch.rand(L, H, generator=g), torch.rand(L, I, generator=g)
    mask = torch.ones_like(ids)

    # The update mask's (name, keep) pairs, keep broadcastable to the weight.
    masks = []
    for i in range(L):
        pre = f"model.layers.{i}"
        q = (1 - imp_h[i]).repeat_interleave(hd)
        kv = (1 - imp_h[i].reshape(-1, group).max(1).values).repeat_interleave(hd)
        keep = 1 - imp_i[i]
        masks += [(f"{pre}.self_attn.q_proj.weight", q.unsqueeze(1)),
                  (f"{pre}.self_attn.k_proj.weight", kv.unsqueeze(1)),
                  (f"{pre}.self_attn.v_proj.weight", kv.unsqueeze(1)),
                  (f"{pre}.self_attn.o_proj.weight", q.unsqueeze(0)),
                  (f"{pre}.mlp.gate_proj.weight", keep.unsqueeze(1)),
                  (f"{pre}.mlp.up_proj.weight", keep.unsqueeze(1)),
                  (f"{pre}.mlp.down_proj.weight", keep.unsqueeze(0))]
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.01)

    def loss_of():
        return model(input_ids=ids, attention_mask=mask, labels=ids).loss

    def step():
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        old = {n: params[n].detach().clone() for n, _ in masks}
        opt.step()
        with torch.no_grad():
            for n, keep in masks:
                p = params[n]
                p.copy_(old[n] + keep * (p - old[n]))
        return (time.perf_counter() - start) * 1e3, loss.item()

    totals = {"heads": torch.zeros(L, H), "intermediate": torch.zeros(L, I)}

    def importance():
        """|gate gradients| of the causal-LM loss, parameters frozen."""
        for p in model.parameters():
            p.requires_grad_(False)
        heads = torch.ones(L, H, requires_grad=True)
        inter = torch.ones(L, I, requires_grad=True)
        hooks = []
        for i, layer in enumerate(model.model.layers):
            hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
                lambda _m, a, i=i: (a[0] * heads[i].repeat_interleave(hd),)))
            hooks.append(layer.mlp.down_proj.register_forward_pre_hook(
                lambda _m, a, i=i: (a[0] * inter[i],)))
        start = time.perf_counter()
        loss_of().backward()
        totals["heads"] += heads.grad.abs()
        totals["intermediate"] += inter.grad.abs()
        elapsed = (time.perf_counter() - start) * 1e3
        for h in hooks:
            h.remove()
        for p in model.parameters():
            p.requires_grad_(True)
        return elapsed

    if args.check:
        importance()
        _, before = step()
        with torch.no_grad():
            after = loss_of().item()
        print(json.dumps({"side": "pytorch", "check": True, "batch": args.batch, "seq": args.seq,
                          "loss": round(before, 6), "loss_after_step": round(after, 6),
                          "importance_heads_sum": round(totals["heads"].sum().item(), 6),
                          "importance_intermediate_sum": round(totals["intermediate"].sum().item(), 6)}))
        return

    times = {op: [] for op in ops}
    for i in range(args.iters + 1):
        for op in times:
            t = importance() if op == "importance" else step()[0]
            if i > 0:
                times[op].append(t)
    for op, t in times.items():
        print(json.dumps({"side": "pytorch", "op": op, "iters": args.iters,
                          "median_ms": round(statistics.median(t), 1), "min_ms": round(min(t), 1),
                          "batch": args.batch, "seq": args.seq}))


if __name__ == "__main__":
    main()
