#!/usr/bin/env python3
"""PyTorch's side of the all-reduce measurement: torch.distributed with the
gloo backend (what DDP uses on CPUs) over loopback, summing float32 buffers
of all-MiniLM-L6-v2's and SmolLM2-135M's parameter counts, as
`examples/bench_allreduce.rs` does over MPI. Prints one Markdown row per size.

    .venv/bin/python tools/mpi/torch_allreduce.py --ranks 2 --reps 7
"""
import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = [("all-MiniLM-L6-v2", 22_713_216), ("SmolLM2-135M", 134_515_008)]


def worker(rank, ranks, reps, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    for name, n in SIZES:
        buf = torch.full((n,), rank + 0.5)
        times = []
        for _ in range(reps + 1):
            dist.barrier()
            t = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t)
        if rank == 0:
            queue.put((name, n, statistics.median(times[1:])))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, a.ranks, a.reps, a.port, queue))
             for r in range(a.ranks)]
    for p in procs:
        p.start()
    rows = [queue.get() for _ in SIZES]
    for p in procs:
        p.join()
    for name, n, t in rows:
        bus = 2 * (a.ranks - 1) / a.ranks * 4 * n / t / 1e9
        print(f"| {name} | {n} | {4 * n / 1e6:.1f} | {a.ranks} | {t * 1e3:.1f} | {bus:.2f} |")


if __name__ == "__main__":
    main()
