#!/usr/bin/env python3
"""Data-parallel throughput on one machine: 2 ranks x 1 thread against
1 process x 2 threads, each with and without gradient accumulation over 4
batches, for all-MiniLM-L6-v2 (MLM) and SmolLM2-135M (causal LM), NCL
training through `continual_domains`.

Tokens per second come from each run's log.jsonl (rank 0's step events:
every step's tokens over its wall seconds, all-reduce included), without the
first two steps (the allocator warming up); peak memory is each process's
maximum resident set (/usr/bin/time). The sides alternate, `--rounds`
times; medians printed as a Markdown table.

    cargo build --features mpi --example continual_domains
    python3 tools/mpi/bench_scaling.py --rounds 3
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/debug/examples/continual_domains")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "RAYON_NUM_THREADS",
          "-x", "OMPI_MCA_btl_vader_single_copy_mechanism"]
MODELS = {
    "all-MiniLM-L6-v2": (os.path.join(ROOT, ".cache/all-MiniLM-L6-v2"),
                         ["--batch-size", "8", "--seq-len", "128", "--steps", "10"]),
    "SmolLM2-135M": (os.path.join(ROOT, ".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
                     ["--batch-size", "4", "--seq-len", "64", "--steps", "6"]),
}


def run(model, extra, ranks, threads, out):
    """(tokens per second, peak MiB of the largest process) of one run."""
    path, sizes = MODELS[model]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads),
               OMPI_MCA_btl_vader_single_copy_mechanism="none")
    args = [BIN, "--model", path, "--domain",
            "kernel=" + os.path.join(ROOT, ".cache/domains/linux-doc"),
            "--method", "ncl", "--importance-batches", "1", "--max-chunks", "200",
            "--checkpoint-every", "0", "--out", out] + sizes + extra
    timed = ["/usr/bin/time", "-f", "peak-kb %M"] + args
    if ranks > 1:
        cmd = MPIRUN + ["-np", str(ranks)] + timed[:3] + [BIN, "--distributed"] + args[1:]
    else:
        cmd = timed
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    steps = [json.loads(l)["data"] for l in open(os.path.join(out, "log.jsonl"))
             if '"event":"step"' in l]
    steps = steps[2:]
    tps = sum(s["tokens"] for s in steps) / sum(s["seconds"] for s in steps)
    peaks = [int(m) / 1024 for m in re.findall(r"peak-kb (\d+)", p.stderr)]
    return tps, max(peaks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    a = ap.parse_args()
    rows = []
    for model in a.models:
        order = [(1, 2, 1), (2, 1, 1), (1, 2, 4), (2, 1, 4)]
        sides = {side: [] for side in order}
        for r in range(a.rounds):
            for ranks, threads, k in (order if r % 2 == 0 else order[::-1]):
                extra = ["--accumulate", str(k)] if k > 1 else []
                with tempfile.TemporaryDirectory() as out:
                    sides[(ranks, threads, k)].append(run(model, extra, ranks, threads, out + "/run"))
        one = statistics.median(t for t, _ in sides[(1, 2, 1)])
        for (ranks, threads, k), got in sides.items():
            tps = statistics.median(t for t, _ in got)
            peak = statistics.median(m for _, m in got)
            rows.append(f"| {model} | {ranks} x {threads} | {k} | {tps:.0f} | {tps / one:.2f} | {peak:.0f} |")
    print("| model | ranks x threads | batches per step | tokens/s (median) | vs 1 x 2 | peak MiB per process |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
