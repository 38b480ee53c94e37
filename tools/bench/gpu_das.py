"""On a machine with a GPU: the BERT benches (DAS step, update-masked MLM
step, MLM-proxy importance pass on all-MiniLM-L6-v2, batch 8 x seq 128) on
each GPU device, with absolute times and throughput, into BENCHMARKS.md
between its gpu markers.

  tools/fetch_minilm.sh
  python3 tools/bench/gpu_das.py [--devices cuda,wgpu] [--iters 10] [--batch 8] [--seq 128] [--write BENCHMARKS.md]

Builds examples/bench_das in release with the features the devices need
(`cuda`, `wgpu`), runs it once per device and names the GPU (nvidia-smi, or
vulkaninfo for wgpu). A device that cannot start is reported with the
backend's message and left out of the table.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "examples", "bench_das")
BEGIN, END = "<!-- gpu_das.py:begin -->", "<!-- gpu_das.py:end -->"
OPS = ["das_step", "mlm_step", "importance"]


def gpu_name(device):
    queries = {
        "cuda": ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        "wgpu": ["vulkaninfo", "--summary"],
    }
    cmd = queries.get(device.split(":")[0].replace("wgpu-cpu", "wgpu"))
    if cmd is None:
        return "unknown"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if cmd[0] == "nvidia-smi":
        return out.strip().splitlines()[0] if out.strip() else "unknown"
    names = [l.split("=", 1)[1].strip() for l in out.splitlines() if "deviceName" in l]
    return ", ".join(names) or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cuda,wgpu")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--write")
    a = ap.parse_args()
    devices = a.devices.split(",")
    features = sorted({d.split(":")[0].replace("wgpu-cpu", "wgpu") for d in devices})
    subprocess.run(["cargo", "build", "--release", "--features", ",".join(features),
                    "--example", "bench_das"], cwd=ROOT, check=True)
    rows = []
    for d in devices:
        p = subprocess.run([BIN, "--device", d, "--iters", str(a.iters), "--batch", str(a.batch),
                            "--seq", str(a.seq)], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{d}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'failed'}",
                  file=sys.stderr)
            continue
        res = {j["op"]: j for j in map(json.loads, p.stdout.strip().splitlines())}
        name = gpu_name(d)
        for op in OPS:
            ms = res[op]["median_ms"]
            rows.append(f"| {d} | {name} | {op} | {ms:.1f} | {a.batch * a.seq / ms * 1e3:.0f} |")
            print(rows[-1])
    if not rows:
        sys.exit("no device ran")
    text = "\n".join([
        f"all-MiniLM-L6-v2, batch {a.batch} x seq {a.seq}, release build, median of "
        f"{a.iters} steps after one warm-up (`python3 tools/bench/gpu_das.py`).",
        "",
        "| device | GPU | operation | ms | tokens/s |",
        "|---|---|---|---:|---:|",
        *rows,
    ]) + "\n"
    if a.write:
        path = os.path.join(ROOT, a.write)
        s = open(path).read()
        i, j = s.find(BEGIN), s.find(END)
        if i < 0 or j < i:
            sys.exit(f"{a.write} lacks {BEGIN} ... {END}")
        s = s[: i + len(BEGIN)] + "\n" + text + s[j:]
        with open(path + ".tmp", "w") as f:
            f.write(s)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
