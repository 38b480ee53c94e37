"""The benchmark workloads in PyTorch, written the notebook's way.

One process runs operations of one workload, interleaved round-robin, and
prints the median wall time per iteration of each as a JSON line (the shape
examples/bench_workload.rs prints), so that tools/bench/compare.py runs both
sides alike, under /usr/bin/time -v too.

  python tools/bench/torch_workloads.py --workload wide --ops step_plain,step_update --iters 20
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WORKLOADS = {
    "notebook": dict(vocab=300, embed=50, hidden=[30, 10], batch=2, seq=50),
    "wide": dict(vocab=5000, embed=256, hidden=[1024, 256], batch=32, seq=128),
}
OPS = ["importance", "step_gradient", "step_update", "step_plain"]


class NNSoftmask(nn.Module):
    """The notebook's network with the workload's sizes (dropout 0.2)."""

    def __init__(self, vocab, embed, hidden):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, embed)
        self.fc1 = nn.Linear(embed, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.head = nn.Linear(hidden[1], 1)
        self.dropout = nn.Dropout(0.2)
        self.sigmoid = nn.Sigmoid()
        self.return_representation = False

    def forward(self, x, f1_mask=None, f2_mask=None):
        x = self.word_embeddings(x)
        if f1_mask is None:
            x = self.dropout(F.relu(self.fc1(x)))
        else:
            x = self.dropout(F.relu(self.fc1(x) * f1_mask))
        if f2_mask is None:
            x = self.dropout(F.relu(self.fc2(x)))
        else:
            x = self.dropout(F.relu(self.fc2(x) * f2_mask))
        if self.return_representation:
            return x
        return self.sigmoid(self.head(x).mean(1))


def kd_loss(y_s, y_t):
    p_s = F.log_softmax(y_s, dim=1)
    p_t = F.softmax(y_t, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") / y_s.shape[0]


def setup(w, op):
    torch.manual_seed(0)
    model = NNSoftmask(w["vocab"], w["embed"], w["hidden"])
    duplicate = NNSoftmask(w["vocab"], w["embed"], w["hidden"])
    input_ids = torch.randint(0, w["vocab"], (w["batch"], w["seq"]))
    labels = torch.tensor([[float(i % 2)] for i in range(w["batch"])])
    impt = [torch.rand(h) for h in w["hidden"]]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    criterion = nn.BCELoss()

    if op == "importance":
        model.return_representation = True
        duplicate.return_representation = True
        masks = [torch.ones(1, h, requires_grad=True) for h in w["hidden"]]
        totals = [torch.zeros(1, h) for h in w["hidden"]]

        def run():
            # The notebook's importance step: both models' parameter gradients
            # are computed too, and nothing is zeroed.
            outputs = model(input_ids, *masks)
            duplicate_outputs = duplicate(input_ids, *masks)
            loss = kd_loss(duplicate_outputs, outputs)
            loss.backward()
            for t, m in zip(totals, masks):
                t += m.grad.clone().detach()
        return run

    fcs = [model.fc1, model.fc2]
    keep = [1 - i for i in impt]

    def run():
        outputs = model(input_ids)
        loss = criterion(outputs, labels)
        loss.backward()
        if op == "step_gradient":
            for fc, m in zip(fcs, keep):
                fc.weight.grad *= m.unsqueeze(1)
                fc.bias.grad *= m
        if op == "step_update":
            old = [(fc.weight.detach().clone(), fc.bias.detach().clone()) for fc in fcs]
        optimizer.step()
        if op == "step_update":
            with torch.no_grad():
                for fc, m, (w0, b0) in zip(fcs, keep, old):
                    fc.weight.copy_(w0 + m.unsqueeze(1) * (fc.weight - w0))
                    fc.bias.copy_(b0 + m * (fc.bias - b0))
        optimizer.zero_grad()
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=WORKLOADS, default="notebook")
    ap.add_argument("--ops", default="step_update", help="comma list of " + ",".join(OPS))
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ops = args.ops.split(",")
    if any(op not in OPS for op in ops) or args.iters < 1:
        ap.error(f"--ops takes a comma list of {OPS}; --iters at least 1")
    runs = [setup(WORKLOADS[args.workload], op) for op in ops]
    times = [[] for _ in ops]
    for i in range(args.warmup + args.iters):
        for run, t in zip(runs, times):
            start = time.perf_counter()
            run()
            if i >= args.warmup:
                t.append((time.perf_counter() - start) * 1e3)
    for op, t in zip(ops, times):
        t.sort()
        print(json.dumps({"side": "pytorch", "workload": args.workload, "op": op,
                          "device": "cpu", "iters": args.iters, "threads": torch.get_num_threads(),
                          "torch": torch.__version__,
                          "median_ms": round(t[len(t) // 2], 4), "min_ms": round(t[0], 4)}))


if __name__ == "__main__":
    main()
