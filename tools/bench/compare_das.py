"""Side by side: one DAS step (MLM + contrastive + update-masked AdamW), the
plain update-masked MLM step and the MLM-proxy importance pass on
all-MiniLM-L6-v2 at batch 8 x seq 128, in
softmask (examples/bench_das.rs, release, Flex) and in PyTorch + transformers
(tools/bench/torch_das.py), 2 threads each, sides alternating over rounds.
Prints medians, ratios and peak resident memory; --write puts the table into
BENCHMARKS.md between its das markers.

  python3 tools/bench/compare_das.py [--rounds 3] [--iters 5] [--write BENCHMARKS.md]
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (shared: env, run_json, cpu_model)

ROOT = compare.ROOT
RUST = os.path.join(ROOT, "target", "release", "examples", "bench_das")
TORCH = os.path.join(ROOT, "tools", "bench", "torch_das.py")
OPS = ["das_step", "mlm_step", "importance"]
BEGIN, END = "<!-- compare_das.py:begin -->", "<!-- compare_das.py:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--write")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--example", "bench_das"], cwd=ROOT, check=True)
    import torch

    def cmd(side, iters):
        if side == "pytorch":
            return [sys.executable, TORCH, "--iters", str(iters), "--threads", "2"]
        return [RUST, "--iters", str(iters), "--device", side]

    sides = ["pytorch", "flex"]
    samples = {(op, s): [] for op in OPS for s in sides}
    for r in range(args.rounds):
        for s in (sides if r % 2 == 0 else sides[::-1]):
            for op, m in compare.run_json(cmd(s, args.iters))[0].items():
                samples[(op, s)].append(m)
                print(f"round {r} {s:8} {op}: {m:.1f} ms", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in samples.items()}
    # Peak memory per operation: one process per side and operation.
    rss = {(op, s): compare.run_json(cmd(s, 2) + ["--ops", op], timed=True)[1]
           for op in OPS for s in sides}
    lines = [
        f"Machine: {compare.cpu_model()}, {os.cpu_count()} logical CPUs; PyTorch {torch.__version__} "
        f"with 2 threads, transformers' BertForMaskedLM; softmask release build, Flex, "
        f"RAYON_NUM_THREADS=2. all-MiniLM-L6-v2, batch 8 x seq 128, dropout 0.1 on both sides. "
        f"Medians of {args.rounds} alternating rounds of {args.iters} steps each.",
        "",
        "| operation | PyTorch ms | Flex ms | Flex/PyTorch | PyTorch peak MiB | Flex peak MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op in OPS:
        p, f = med[(op, "pytorch")], med[(op, "flex")]
        lines.append(f"| {op} | {p:.0f} | {f:.0f} | {f / p:.2f} | "
                     f"{rss[(op, 'pytorch')]:.0f} | {rss[(op, 'flex')]:.0f} |")
    lines += ["", "Peak memory: the maximum resident set of a process that loads the model "
              "and runs 2 of that operation alone (`/usr/bin/time -v`)."]
    report = "\n".join(lines)
    print(report)
    if args.write:
        compare.write_report(os.path.join(ROOT, args.write), report, (BEGIN, END))


if __name__ == "__main__":
    main()
