"""Side by side: the benchmark workloads in PyTorch and in softmask, one run.

Builds the Rust runner (cargo build --release --example bench_workload), then
for each workload runs PyTorch (CPU, 2 threads) and softmask on the Flex and
the NdArray device (2 rayon threads). Each process interleaves the four
operations round-robin; sides alternate over several rounds, so that a noisy
machine weighs on all alike. Prints a markdown
table of medians and Rust/PyTorch ratios, the masking overhead (masked step
vs plain step) on each side, and the peak resident memory of the wide
workload (/usr/bin/time -v around each side's process).

  python3 tools/bench/compare.py            # needs torch: pip install -r tools/reference/requirements.txt
  python3 tools/bench/compare.py --write BENCHMARKS.md
  python3 tools/bench/compare.py --malloc-tuned --write BENCHMARKS.md   # second table, same glibc tunables on both sides
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUST_BIN = os.path.join(ROOT, "target", "release", "examples", "bench_workload")
TORCH_SCRIPT = os.path.join(ROOT, "tools", "bench", "torch_workloads.py")
OPS = ["importance", "step_gradient", "step_update", "step_plain"]
ITERS = {"notebook": (300, 30), "wide": (10, 2)}
DEVICES = ["flex", "ndarray"]


MALLOC_TUNED = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824"
TUNED = False


def env():
    e = dict(os.environ)
    e["RAYON_NUM_THREADS"] = "2"
    e["OMP_NUM_THREADS"] = "2"
    if TUNED:
        # The same for both sides: glibc keeps freed memory instead of
        # returning large blocks to the kernel and faulting them in again.
        e["GLIBC_TUNABLES"] = MALLOC_TUNED
    return e


def run_json(cmd, timed=False):
    """Runs one process; returns {op: median_ms} and, when timed, its peak RSS in MiB."""
    if timed:
        cmd = ["/usr/bin/time", "-v"] + cmd
    p = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    medians = {}
    for line in p.stdout.strip().splitlines():
        out = json.loads(line)
        medians[out["op"]] = out["median_ms"]
    rss = None
    if timed:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        rss = int(m.group(1)) / 1024 if m else None
    return medians, rss


def torch_cmd(workload, ops, iters, warmup):
    return [sys.executable, TORCH_SCRIPT, "--workload", workload, "--ops", ",".join(ops),
            "--iters", str(iters), "--warmup", str(warmup), "--threads", "2"]


def rust_cmd(workload, ops, device, iters, warmup):
    return [RUST_BIN, "--workload", workload, "--ops", ",".join(ops), "--device", device,
            "--iters", str(iters), "--warmup", str(warmup)]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement")
    ap.add_argument("--write", help="also write the report to this markdown file")
    ap.add_argument("--workloads", default="notebook,wide")
    ap.add_argument("--malloc-tuned", action="store_true",
                    help=f"run both sides with GLIBC_TUNABLES={MALLOC_TUNED}")
    args = ap.parse_args()
    global TUNED
    TUNED = args.malloc_tuned

    subprocess.run(["cargo", "build", "--release", "--example", "bench_workload"], cwd=ROOT, check=True)
    import torch  # noqa: F401  (fail early with a clear message when torch is missing)

    workloads = args.workloads.split(",")
    sides = ["pytorch"] + DEVICES
    med = {}
    for w in workloads:
        iters, warmup = ITERS[w]
        samples = {(op, s): [] for op in OPS for s in sides}
        for r in range(args.rounds):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                cmd = torch_cmd(w, OPS, iters, warmup) if s == "pytorch" else rust_cmd(w, OPS, s, iters, warmup)
                for op, m in run_json(cmd)[0].items():
                    samples[(op, s)].append(m)
        for op in OPS:
            for s in sides:
                med[(w, op, s)] = statistics.median(samples[(op, s)])
            print(f"{w:9} {op:14} " + "  ".join(f"{s} {med[(w, op, s)]:9.3f} ms" for s in sides), file=sys.stderr)

    memory = {}
    if "wide" in workloads:
        for op in ["importance", "step_update"]:
            memory[(op, "pytorch")] = run_json(torch_cmd("wide", [op], 5, 1), timed=True)[1]
            for d in DEVICES:
                memory[(op, d)] = run_json(rust_cmd("wide", [op], d, 5, 1), timed=True)[1]

    import torch
    lines = []
    if TUNED:
        lines.append(f"Both sides with `GLIBC_TUNABLES={MALLOC_TUNED}`.")
        lines.append("")
    lines.append(f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs; "
                 f"PyTorch {torch.__version__} with torch.set_num_threads(2); "
                 f"softmask with RAYON_NUM_THREADS=2. Medians of {args.rounds} alternating rounds, "
                 f"each the median of {ITERS['notebook'][0]} (notebook) or {ITERS['wide'][0]} (wide) iterations "
                 f"of the four operations interleaved in one process per side.")
    lines.append("")
    lines.append("| workload | operation | PyTorch ms | Flex ms | Flex/PyTorch | NdArray ms | NdArray/PyTorch |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for w in workloads:
        for op in OPS:
            p = med[(w, op, "pytorch")]
            row = [w, op, f"{p:.3f}"]
            for d in DEVICES:
                v = med[(w, op, d)]
                row += [f"{v:.3f}", f"{v / p:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Masking overhead, (masked step - plain step) / plain step:")
    lines.append("")
    lines.append("| workload | mask | PyTorch | Flex | NdArray |")
    lines.append("|---|---|---:|---:|---:|")
    for w in workloads:
        for op, label in [("step_gradient", "gradient"), ("step_update", "update")]:
            cells = []
            for s in sides:
                plain = med[(w, "step_plain", s)]
                cells.append(f"{100 * (med[(w, op, s)] - plain) / plain:+.1f}%")
            lines.append(f"| {w} | {label} | " + " | ".join(cells) + " |")
    if memory:
        lines.append("")
        lines.append("Peak resident memory of the wide workload (`/usr/bin/time -v`, whole process, MiB):")
        lines.append("")
        lines.append("| operation | PyTorch | Flex | NdArray |")
        lines.append("|---|---:|---:|---:|")
        for op in ["importance", "step_update"]:
            lines.append(f"| {op} | " + " | ".join(f"{memory[(op, s)]:.0f}" for s in sides) + " |")
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_report(os.path.join(ROOT, args.write), report)


BEGIN, END = "<!-- compare.py:begin -->", "<!-- compare.py:end -->"


def write_report(path, report, markers=None, before=None):
    """Replaces the text between the markers (the rest of the file is kept);
    without them, puts the block before the line `before` if the file has it,
    else at the end. `markers` defaults to this script's."""
    if markers is None:
        markers = (BEGIN.replace("begin", "tuned-begin"), END.replace("end", "tuned-end")) if TUNED else (BEGIN, END)
    begin, end = markers
    block = f"{begin}\n{report}\n{end}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif before and f"\n{before}\n" in text:
        at = text.index(f"\n{before}\n") + 1
        text = text[:at] + block + "\n\n" + text[at:]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

if __name__ == "__main__":
    main()
