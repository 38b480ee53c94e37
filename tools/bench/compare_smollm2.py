"""Side by side on SmolLM2-135M-Instruct (the Q4_1 GGUF, dequantized to
float32): one update-masked causal-LM AdamW step and one importance pass
(gate gradients of the causal-LM loss), in softmask
(examples/bench_smollm2.rs in the build the README's commands make: the dev
profile, dependencies and softmask-kernels optimised; Flex, RAYON_NUM_THREADS=2) and in
PyTorch + transformers (tools/bench/torch_smollm2.py, 2 threads), for each
batch x seq shape; sides alternate over rounds, each process times --iters
iterations of both operations round-robin, and the table shows the medians of
the per-process medians. Then the peak resident memory of each operation:
one process per side, shape and operation that loads the model and runs it
twice (a warm-up and one timed), under /usr/bin/time -v. --write puts the
table into a Markdown file between the compare_smollm2.py markers (replacing
them, else before the line "## On a GPU").

  tools/fetch_smollm2.sh
  .venv/bin/python tools/bench/compare_smollm2.py [--rounds 3] [--iters 5] [--shapes 4x64,8x128] [--write BENCHMARKS.md]
  .venv/bin/python tools/bench/compare_smollm2.py --only-torch --shapes 4x64 --iters 1 --rounds 1   # no Rust side

--rust-cmd replaces the Rust binary by another command (split like a shell
line; no cargo build), --no-build skips the build.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (shared: env, run_json, cpu_model)

ROOT = compare.ROOT
RUST = os.path.join(ROOT, "target", "debug", "examples", "bench_smollm2")
TORCH = os.path.join(ROOT, "tools", "bench", "torch_smollm2.py")
GGUF = os.path.join(ROOT, ".cache", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
OPS = ["step", "importance"]
BEGIN, END = "<!-- compare_smollm2.py:begin -->", "<!-- compare_smollm2.py:end -->"
BEFORE = "## On a GPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--shapes", default="4x64,8x128", help="comma list of BATCHxSEQ")
    ap.add_argument("--gguf", default=GGUF)
    ap.add_argument("--write")
    ap.add_argument("--rust-cmd", help="run this instead of the Rust binary (implies --no-build)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only-torch", action="store_true", help="PyTorch side only (no build, no Rust)")
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    rust = shlex.split(args.rust_cmd) if args.rust_cmd else [RUST]
    if not (args.no_build or args.rust_cmd or args.only_torch):
        subprocess.run(["cargo", "build", "--example", "bench_smollm2"], cwd=ROOT, check=True)
    import torch
    import transformers

    def cmd(side, batch, seq, iters, ops):
        common = ["--gguf", args.gguf, "--batch", str(batch), "--seq", str(seq),
                  "--iters", str(iters), "--ops", ",".join(ops)]
        if side == "pytorch":
            return [sys.executable, TORCH, "--threads", "2"] + common
        return rust + common

    sides = ["pytorch"] if args.only_torch else ["pytorch", "flex"]
    med, rss = {}, {}
    for b, s in shapes:
        samples = {(op, side): [] for op in OPS for side in sides}
        for r in range(args.rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                for op, m in compare.run_json(cmd(side, b, s, args.iters, OPS))[0].items():
                    samples[(op, side)].append(m)
                    print(f"{b}x{s} round {r} {side:8} {op}: {m:.1f} ms", file=sys.stderr)
        for k, v in samples.items():
            med[(b, s) + k] = statistics.median(v)
        # Peak memory: one process per side and operation, a warm-up and one timed.
        for op in OPS:
            for side in sides:
                rss[(b, s, op, side)] = compare.run_json(cmd(side, b, s, 1, [op]), timed=True)[1]
                print(f"{b}x{s} {side:8} {op}: peak {rss[(b, s, op, side)]:.0f} MiB", file=sys.stderr)

    def cell(d, key, fmt="{:.0f}"):
        return fmt.format(d[key]) if d.get(key) is not None else "–"

    lines = [
        f"Machine: {compare.cpu_model()}, {os.cpu_count()} logical CPUs; PyTorch {torch.__version__} "
        f"with 2 threads, transformers {transformers.__version__} LlamaForCausalLM (sdpa attention); "
        f"softmask in the README's build (dev profile, dependencies optimised), Flex, "
        f"RAYON_NUM_THREADS=2. SmolLM2-135M-Instruct, Q4_1 GGUF "
        f"dequantized to float32 on both sides; random token ids, every token real. "
        f"Medians of {args.rounds} alternating rounds of {args.iters} iterations each.",
        "",
        "| shape | operation | PyTorch ms | Flex ms | Flex/PyTorch | PyTorch peak MiB | Flex peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b, s in shapes:
        for op in OPS:
            p, f = med[(b, s, op, "pytorch")], med.get((b, s, op, "flex"))
            ratio = f"{f / p:.2f}" if f is not None else "–"
            lines.append(f"| {b} x {s} | {op} | {p:.0f} | {cell(med, (b, s, op, 'flex'))} | {ratio} | "
                         f"{cell(rss, (b, s, op, 'pytorch'))} | {cell(rss, (b, s, op, 'flex'))} |")
    lines += ["", "`step`: forward, backward, AdamW (lr 1e-4, weight decay 0.01) and the update soft-mask "
              "over every head and intermediate unit (PyTorch copies the governed weights before the step). "
              "`importance`: gate gradients of the causal-LM loss (PyTorch with every parameter frozen). "
              "Peak memory: the maximum resident set of a process that loads the model and runs 2 of "
              "that operation alone (`/usr/bin/time -v`)."]
    report = "\n".join(lines)
    print(report)
    if args.write:
        compare.write_report(os.path.join(ROOT, args.write), report, (BEGIN, END), before=BEFORE)


if __name__ == "__main__":
    main()
