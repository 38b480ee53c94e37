#!/usr/bin/env python3
"""Does soft-masking protect knowledge? The experiment grid, in one command per model.

    tools/fetch_minilm.sh && tools/fetch_domains.sh
    python3 tools/experiment/grid.py --write README.md

    tools/fetch_smollm2.sh && tools/fetch_domains.sh
    python3 tools/experiment/grid.py --profile smollm2 --write README.md

1. Builds `examples/continual_domains` with the README's build (`cargo build`).
2. Makes the base model once. `--profile minilm` (the default):
   all-MiniLM-L6-v2 (which ships no MLM head) pre-trained with MLM on the
   general corpus (fortunes) by the crate, so the model has general
   knowledge to lose; its held-out paragraphs are never trained on.
   `--profile smollm2`: SmolLM2-135M-Instruct as shipped, which knows
   things; its knowledge is read by a fixed third of the shipped probe set
   (`base/probes.jsonl`).
3. Runs every cell of the profile's grid (methods, controls at equal
   damping, baselines, variants) for its seeds through the same two real
   domains (Linux kernel docs, then Python docs), seed by seed across the
   cells, each run with one thread (`RAYON_NUM_THREADS=1`): results are
   bit-identical whatever `--jobs` is. A run whose `results.json` exists with
   the same command is not run again, so a stopped grid resumes.
4. Aggregates mean +- sd over seeds and paired differences (same seed)
   against NCL and against the cell's two controls into the `--out` folder:
   `report/experiment.md` (with the targeting table: 95 % t intervals,
   Holm's correction, equivalence margins stated below; the same comparison
   at equal gain, each side set against NCL at its own gain; forgetting at
   equal gain along NCL's learning rates, by the straight line between two
   of them and by the least-squares parabola through all; split-half
   stability of importance),
   the result-matrix plot `report/experiment.svg`, and
   `report/experiment-tradeoff.svg`: each forgetting figure (general change;
   for SmolLM2 also probe accuracy and margin lost) against total domain
   gain, NCL's learning rates as a line, every cell a point with 95 % t
   intervals. A partial grid (`--only`, missing runs) writes
   `report/partial-experiment.*` instead, never replacing a complete report,
   and lists the missing cells and seeds.
5. Only with `--docs` or `--write README.md`, and only from a complete grid,
   writes the published figures `docs/experiment.md` and `docs/experiment.svg`
   (`--docs-dir` elsewhere) and, with `--write`, the table between the README's
   `experiment:begin/end` markers. The SmolLM2 profile's files are
   `experiment-smollm2.*` and its markers `experiment-smollm2:begin/end`
   (`--model-tag` names another). Every file written is printed.
6. `--verify LABEL:SEED ...` reruns finished runs into `verify/` and checks
   that `results.json` (and `knowledge.json`, `importance-stability.json`)
   come out byte for byte the same.

Only the standard library is used.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402  (t intervals, Holm's correction)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "docs")
BIN = os.path.join(ROOT, "target", "debug", "examples", "continual_domains")
DOMAINS = os.path.join(ROOT, ".cache", "domains")
MINILM = os.path.join(ROOT, ".cache", "all-MiniLM-L6-v2")
SMOLLM2 = os.path.join(ROOT, ".cache", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROBES = os.path.join(ROOT, "data", "probes", "general_knowledge.jsonl")

# The base model: MLM pre-training of MiniLM on the general corpus.
BASE_ARGS = [
    "--method", "ncl", "--domain", "pretrain=" + os.path.join(DOMAINS, "fortunes"),
    "--general", os.path.join(DOMAINS, "fortunes"), "--steps", "400", "--seq-len", "64",
    "--lr", "2e-4", "--max-chunks", "4000", "--seed", "0",
]
BASE_THREADS = "2"

# Stated before any result was seen: a difference in general change (held-out
# MLM loss, nats) between a method and its control at equal damping smaller
# than this is too small to matter. It is about a tenth of what DAS's damping
# saves against NCL here (0.12) and 3 % of NCL's general change (0.38).
EQUIVALENCE_MARGIN = 0.01

# Stated for SmolLM2 before any of its grid's results was read, from the
# pilot (docs/experiment-smollm2-pilot.md: 40 steps per domain, all 405
# items), where NCL at 3e-4 lost 0.76 nats of the probes' mean margin and
# 0.04 of their accuracy by the end: a method and its control within 0.1
# nats of margin or 0.02 of accuracy (about 3 of the grid's 135 items)
# protect knowledge equally for any practical purpose. The grid's runs are
# shorter (16 steps per domain), so its NCL may lose less than the pilot's;
# the margins are absolute and stay as stated. General change is not tested
# for SmolLM2: the pilot showed the held-out general loss falls while the
# probes lose a fifth of what the model knew, so it is reported, not judged.
MARGIN_EQUIVALENCE = 0.1
ACCURACY_EQUIVALENCE = 0.02

SEEDS3 = [0, 1, 2]
SEEDS5 = [0, 1, 2, 3, 4]


class Profile:
    """One model's grid: its base model, the runs' shared arguments, its
    cells, the figures it reports and the comparisons it tests."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# label, arguments, seeds, the (permuted, uniform) controls it is compared with.
MINILM_CELLS = [
    ("ncl", ["--method", "ncl"], SEEDS5, None),
    ("das", ["--method", "das"], SEEDS5, ("das-permuted", "das-uniform")),
    ("das-permuted", ["--method", "das-permuted"], SEEDS5, None),
    ("das-uniform", ["--method", "das-uniform"], SEEDS5, None),
    # Learning less: NCL at lower learning rates, to read forgetting at equal gain.
    ("ncl-lr-7e-5", ["--method", "ncl", "--lr", "7e-5"], SEEDS5, None),
    ("ncl-lr-5e-5", ["--method", "ncl", "--lr", "5e-5"], SEEDS5, None),
    # The positive control: general importance from the general corpus's own
    # MLM loss, the knowledge being scored.
    ("das-oracle", ["--method", "das-oracle"], SEEDS5,
     ("das-oracle-permuted", "das-oracle-uniform")),
    ("das-oracle-permuted", ["--method", "das-oracle-permuted"], SEEDS5, None),
    ("das-oracle-uniform", ["--method", "das-oracle-uniform"], SEEDS5, None),
    ("das-gradient", ["--method", "das", "--mask-mode", "gradient"], [0], None),
    ("ncl-sgd", ["--method", "ncl", "--optimizer", "sgd", "--lr", "0.002"], [0], None),
    ("das-gradient-sgd",
     ["--method", "das", "--mask-mode", "gradient", "--optimizer", "sgd", "--lr", "0.002"],
     [0], None),
    ("dga", ["--method", "dga"], [0], None),
    ("ewc", ["--method", "ewc"], [0], None),
    ("das-one-sided", ["--method", "das", "--normalization", "one-sided"], [0], None),
    ("das-per-example",
     ["--method", "das", "--sign", "absolute", "--importance-batch-size", "1",
      "--importance-batches", "64"], [0], None),
    ("das-strength-0.5", ["--method", "das", "--strength", "0.5"], [0], None),
    ("das-ungoverned-0.5", ["--method", "das", "--ungoverned-damping", "0.5"], [0], None),
    # The paper's intent in full: per-example absolute gradients, one-sided
    # normalisation; with its own controls.
    ("das-intent",
     ["--method", "das", "--sign", "absolute", "--importance-batch-size", "1",
      "--importance-batches", "64", "--normalization", "one-sided"],
     SEEDS3, ("das-intent-permuted", "das-intent-uniform")),
    ("das-intent-permuted",
     ["--method", "das-permuted", "--sign", "absolute", "--importance-batch-size", "1",
      "--importance-batches", "64", "--normalization", "one-sided"], SEEDS3, None),
    ("das-intent-uniform",
     ["--method", "das-uniform", "--sign", "absolute", "--importance-batch-size", "1",
      "--importance-batches", "64", "--normalization", "one-sided"], SEEDS3, None),
]

SMOLLM2_CELLS = [
    # NCL at four learning rates: the equal-gain curve (the methods run at 3e-4).
    ("ncl", ["--method", "ncl"], SEEDS5, None),
    ("ncl-lr-2e-4", ["--method", "ncl", "--lr", "2e-4"], SEEDS5, None),
    ("ncl-lr-1e-4", ["--method", "ncl", "--lr", "1e-4"], SEEDS5, None),
    # Added after seed 0 showed DAS's total gain below NCL's at 1e-4: a point
    # below it, so that equal gain is read between NCL's points, not beyond.
    ("ncl-lr-5e-5", ["--method", "ncl", "--lr", "5e-5"], SEEDS5, None),
    ("das", ["--method", "das"], SEEDS5, ("das-permuted", "das-uniform")),
    ("das-permuted", ["--method", "das-permuted"], SEEDS5, None),
    ("das-uniform", ["--method", "das-uniform"], SEEDS5, None),
    # The positive control: general importance from the general corpus's own
    # causal-LM loss.
    ("das-oracle", ["--method", "das-oracle"], SEEDS5,
     ("das-oracle-permuted", "das-oracle-uniform")),
    ("das-oracle-permuted", ["--method", "das-oracle-permuted"], SEEDS5, None),
    ("das-oracle-uniform", ["--method", "das-oracle-uniform"], SEEDS5, None),
    # The baselines every continual pre-training user compares with.
    ("replay-0.25", ["--method", "replay", "--replay-fraction", "0.25"], SEEDS5, None),
    ("replay-0.5", ["--method", "replay", "--replay-fraction", "0.5"], SEEDS5, None),
    ("kd", ["--method", "kd"], [0], None),
    ("dga", ["--method", "dga"], [0], None),
    ("ewc", ["--method", "ewc"], [0], None),
    ("das-ungoverned-0.5", ["--method", "das", "--ungoverned-damping", "0.5"], [0], None),
]


def minilm_base(out):
    """The base model folder (weights, config, tokenizer), made once."""
    model = os.path.join(out, "base", "model")
    run_dir = os.path.join(out, "base", "run")
    cmd = [BIN, "--model", MINILM, "--out", run_dir] + BASE_ARGS
    if done(run_dir, cmd) and os.path.exists(os.path.join(model, "model.safetensors")):
        return model
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.time()
    print("base model: MLM pre-training on the general corpus", flush=True)
    if run_logged(cmd, run_dir, BASE_THREADS).wait() != 0:
        sys.exit(f"the base run failed; see {rel(run_dir)}/run.log")
    ckpts = sorted(d for d in os.listdir(os.path.join(run_dir, "checkpoints"))
                   if not d.startswith("."))
    last = os.path.join(run_dir, "checkpoints", ckpts[-1])
    shutil.rmtree(model, ignore_errors=True)
    os.makedirs(model)
    for name in ["config.json", "model.safetensors"]:
        shutil.copy(os.path.join(last, name), model)
    for name in os.listdir(MINILM):
        if name.startswith("tokenizer") or name in ("vocab.txt", "special_tokens_map.json"):
            shutil.copy(os.path.join(MINILM, name), model)
    record(run_dir, cmd, time.time() - start)
    return model


def probe_subset(out):
    """Every third item of the shipped probe set (135 of 405), in
    base/probes.jsonl: three probe evaluations of all 405 items would cost
    more than a run's training. A fixed, stated subset, not the items the
    base model gets right, so accuracy is read on the same footing as in
    the pilot; "forgotten" still counts only the items the base model knew."""
    path = os.path.join(out, "base", "probes.jsonl")
    with open(PROBES, encoding="utf-8") as f:
        items = [line for line in f if line.strip()]
    text = "".join(line if line.endswith("\n") else line + "\n" for line in items[::3])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    write_atomic(path, text)
    return path


def smollm2_base(out):
    """SmolLM2-135M-Instruct as shipped (the GGUF of tools/fetch_smollm2.sh):
    no pre-training of ours; the probe subset is written once."""
    if not os.path.exists(SMOLLM2):
        sys.exit(f"{rel(SMOLLM2)} is missing: run tools/fetch_smollm2.sh")
    probe_subset(out)
    run_dir = os.path.join(out, "base", "run")
    if base_seconds(out) is None:
        os.makedirs(run_dir, exist_ok=True)
        record(run_dir, ["as shipped", rel(SMOLLM2)], 0.0)
    return SMOLLM2


def minilm_metrics(r):
    """The figures of one MiniLM run, by name."""
    m = r["matrix"]
    cols = m["columns"]
    g, k, p = cols.index("general"), cols.index("kernel"), cols.index("python")
    after, base = m["after"], m["base"]
    return {
        "general after kernel": after[0][g],
        "general after python": after[1][g],
        "general change": after[1][g] - base[g],
        "kernel forgetting": after[1][k] - after[0][k],
        "kernel gain": base[k] - after[0][k],
        "python gain": base[p] - after[1][p],
    }


def smollm2_metrics(r):
    """The figures of one SmolLM2 run: MiniLM's, and the knowledge probes'
    losses from the base model to the end (knowledge.json)."""
    out = minilm_metrics(r)
    rows = r["knowledge"]["rows"]
    base, last = rows[0], rows[-1]
    out["probe accuracy lost"] = base["accuracy"] - last["accuracy"]
    out["probe margin lost"] = base["mean_margin"] - last["mean_margin"]
    out["probes forgotten"] = last["forgotten"]
    return out


# Both models' domains, in order (Debian's Linux kernel docs, then its Python
# docs), and their general text (Debian's fortunes; its held-out split is the
# general evaluation).
DOMAIN_SEQUENCE = [
    "--domain", "kernel=" + os.path.join(DOMAINS, "linux-doc"),
    "--domain", "python=" + os.path.join(DOMAINS, "python-doc"),
    "--general", os.path.join(DOMAINS, "fortunes"),
]

MINILM_PROFILE = Profile(
    name="minilm", tag="",
    model="all-MiniLM-L6-v2 pre-trained with MLM on fortunes (the base run)",
    make_base=minilm_base,
    common=lambda out: DOMAIN_SEQUENCE + [
        "--steps", "40", "--seq-len", "64", "--batch-size", "8", "--lr", "1e-4",
        "--importance-batches", "8", "--max-chunks", "400",
    ],
    cells=MINILM_CELLS,
    ncl_curve=["ncl", "ncl-lr-7e-5", "ncl-lr-5e-5"],
    ncl_rates="1e-4, 7e-5 and 5e-5",
    metrics=minilm_metrics,
    names=["general after kernel", "general after python", "general change",
           "kernel forgetting", "kernel gain", "python gain"],
    loss="MLM",
    # (metric, equivalence margin, unit): the targeting table's comparisons.
    targets=[("general change", EQUIVALENCE_MARGIN, "nats")],
    forgetting=["general change"],
    # The files besides results.json a finished run must have.
    requires=[],
    keep_checkpoints=True,
)

SMOLLM2_PROFILE = Profile(
    name="smollm2", tag="smollm2",
    model="SmolLM2-135M-Instruct as shipped (Q4_1 GGUF, dequantized to float32)",
    make_base=smollm2_base,
    common=lambda out: DOMAIN_SEQUENCE + [
        "--knowledge", os.path.join(out, "base", "probes.jsonl"),
        "--steps", "16", "--seq-len", "64", "--batch-size", "4", "--lr", "3e-4",
        "--importance-batches", "4", "--max-chunks", "96", "--checkpoint-every", "0",
    ],
    cells=SMOLLM2_CELLS,
    ncl_curve=["ncl", "ncl-lr-2e-4", "ncl-lr-1e-4", "ncl-lr-5e-5"],
    ncl_rates="3e-4, 2e-4, 1e-4 and 5e-5",
    metrics=smollm2_metrics,
    names=["general change", "kernel forgetting", "kernel gain", "python gain",
           "probe accuracy lost", "probe margin lost", "probes forgotten"],
    loss="causal-LM",
    targets=[("probe margin lost", MARGIN_EQUIVALENCE, "nats"),
             ("probe accuracy lost", ACCURACY_EQUIVALENCE, "of the items")],
    forgetting=["probe margin lost", "probe accuracy lost", "general change"],
    requires=["knowledge.json"],
    # A SmolLM2 checkpoint is half a gigabyte; results do not need it.
    keep_checkpoints=False,
)

PROFILES = {p.name: p for p in (MINILM_PROFILE, SMOLLM2_PROFILE)}
# The profile the functions below read; main() sets it from --profile.
P = MINILM_PROFILE


def rel(path):
    return os.path.relpath(path, ROOT)


def run_logged(cmd, out_dir, threads):
    """Runs `cmd` with `threads` rayon threads; its output goes to out_dir/run.log."""
    env = dict(os.environ, RAYON_NUM_THREADS=threads)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "run.log"), "w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def done(out_dir, cmd):
    """Whether out_dir holds a finished run of exactly `cmd`."""
    try:
        with open(os.path.join(out_dir, "command.json")) as f:
            same = json.load(f)["command"] == [rel(c) if os.path.isabs(c) else c for c in cmd]
        return same and all(os.path.exists(os.path.join(out_dir, name))
                            for name in ["results.json"] + P.requires)
    except (OSError, ValueError, KeyError):
        return False


def record(out_dir, cmd, seconds):
    with open(os.path.join(out_dir, "command.json"), "w") as f:
        json.dump({"command": [rel(c) if os.path.isabs(c) else c for c in cmd],
                   "seconds": seconds}, f, indent=1)


def run_grid(out, base, jobs, only):
    todo = []
    for label, args, seeds, _ in P.cells:
        if only and label not in only:
            continue
        for seed in seeds:
            run_dir = os.path.join(out, "runs", label, f"seed-{seed}")
            cmd = ([BIN, "--model", base, "--out", run_dir] + P.common(out) + args
                   + ["--seed", str(seed)])
            if not done(run_dir, cmd):
                todo.append((label, seed, run_dir, cmd))
    # Seed by seed across the cells: a grid stopped early still compares
    # every cell on the seeds it finished.
    order = {label: i for i, (label, _, _, _) in enumerate(P.cells)}
    todo.sort(key=lambda t: (t[1], order[t[0]]))
    print(f"{len(todo)} runs to do, {jobs} at a time", flush=True)
    running = []
    failed = []
    while todo or running:
        while todo and len(running) < jobs:
            label, seed, run_dir, cmd = todo.pop(0)
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"  start {label} seed {seed}", flush=True)
            running.append((label, seed, run_dir, cmd, time.time(), run_logged(cmd, run_dir, "1")))
        time.sleep(1)
        for r in list(running):
            label, seed, run_dir, cmd, start, proc = r
            if proc.poll() is None:
                continue
            running.remove(r)
            took = time.time() - start
            if proc.returncode == 0:
                if not P.keep_checkpoints:
                    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
                record(run_dir, cmd, took)
                print(f"  done {label} seed {seed} in {took:.0f} s", flush=True)
            else:
                failed.append(f"{label} seed {seed} ({rel(run_dir)}/run.log)")
    if failed:
        sys.exit("runs failed: " + ", ".join(failed))


# ---------------------------------------------------------------- the report

def load(out):
    """label -> {seed: (results dict, seconds)}; a run's knowledge.json and
    importance-stability.json, where it wrote them, under the keys
    "knowledge" and "stability" of its results."""
    res = {}
    for label, _, seeds, _ in P.cells:
        for seed in seeds:
            d = os.path.join(out, "runs", label, f"seed-{seed}")
            try:
                with open(os.path.join(d, "results.json")) as f:
                    r = json.load(f)
                with open(os.path.join(d, "command.json")) as f:
                    secs = json.load(f)["seconds"]
                if "knowledge.json" in P.requires:
                    with open(os.path.join(d, "knowledge.json")) as f:
                        r["knowledge"] = json.load(f)
            except (OSError, ValueError, KeyError):
                continue  # not finished: listed as missing
            try:
                with open(os.path.join(d, "importance-stability.json")) as f:
                    r["stability"] = json.load(f)
            except (OSError, ValueError):
                pass  # none estimated, or unreadable: the stability table goes without it
            res.setdefault(label, {})[seed] = (r, secs)
    return res


def metrics(r):
    """The figures of one run, by name (the profile's)."""
    return P.metrics(r)


def fmt(values, digits=4):
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def paired(res, a, b, name):
    seeds = sorted(set(res.get(a, {})) & set(res.get(b, {})))
    diffs = [metrics(res[a][s][0])[name] - metrics(res[b][s][0])[name] for s in seeds]
    return diffs


def verdict(diffs):
    """' *' when a paired t-test puts the mean difference away from 0 at 95 %
    (its t interval excludes 0), for any number of seeds from 2."""
    t = stats.paired_t(diffs)
    if t is None:
        return ""
    _, (lo, hi), _ = t
    return " *" if lo < hi and (lo > 0 or hi < 0) else ""


def report(out, res, base_secs):
    labels = [c[0] for c in P.cells if c[0] in res]
    first = next(iter(res["ncl"].values()))[0] if "ncl" in res else None
    base_general = first["matrix"]["base"][0] if first else float("nan")
    lines = []
    lines.append(
        f"Model: {P.model}. Held-out {P.loss} loss of the base model on the general "
        f"corpus: {base_general:.4f}. Lower loss is better; forgetting and general change "
        "are rises in loss (lower is better), gains are falls (higher is better).")
    if first and "knowledge" in first:
        k = first["knowledge"]["rows"][0]
        lines.append(
            f"Knowledge probes ({len(first['knowledge']['items'])} items): the base model's "
            f"accuracy {k['accuracy']:.4f}, mean margin {k['mean_margin']:.4f} nats; "
            "accuracy and margin lost are the base model's minus the final model's "
            "(lower is better), \"probes forgotten\" the fraction of the items the base "
            "model got right that the final model gets wrong.")
    lines.append("Mean ± sd over the seeds listed.\n")
    lines.append("| method | seeds | " + " | ".join(P.names) + " | minutes per run |")
    lines.append("|---|---|" + "---:|" * (len(P.names) + 1))
    for label in labels:
        runs = res[label]
        seeds = sorted(runs)
        ms = [metrics(runs[s][0]) for s in seeds]
        secs = statistics.fmean(runs[s][1] for s in seeds) / 60
        lines.append(f"| {label} | {','.join(map(str, seeds))} | "
                     + " | ".join(fmt([m[n] for m in ms]) for n in P.names)
                     + f" | {secs:.1f} |")
    lines.append("")
    compared = P.forgetting + [n for n in ("general change", "kernel forgetting",
                                            "kernel gain", "python gain")
                               if n not in P.forgetting]
    lines.append("Paired differences (same seed; the row's method minus the other), mean ± sd "
                 "over the shared seeds; `*` marks a difference a paired t-test "
                 "puts away from zero at 95 % (needs 2 seeds or more). Negative is better "
                 "for what is lost or changed, positive for gains.\n")
    lines.append("| method | against | seeds | " + " | ".join(compared) + " |")
    lines.append("|---|---|---|" + "---:|" * len(compared))
    for label, _, _, controls in P.cells:
        if label not in res:
            continue
        others = [] if label.startswith("ncl") else ["ncl"]
        if controls:
            others += P.ncl_curve[1:] + list(controls)
        if label.endswith("-sgd") and label != "ncl-sgd":
            others = ["ncl-sgd"]
        for other in others:
            if other not in res:
                continue
            seeds = sorted(set(res[label]) & set(res[other]))
            cells = []
            for n in compared:
                d = paired(res, label, other, n)
                cells.append(fmt(d) + verdict(d))
            lines.append(f"| {label} | {other} | {','.join(map(str, seeds))} | "
                         + " | ".join(cells) + " |")
    lines.append("")
    lines.append(targeting(res))
    lines.append(targeting_at_equal_gain(res))
    for name in P.forgetting:
        lines.append(equal_gain(res, name))
    lines.append(stability(res))
    total = sum(s for runs in res.values() for _, s in runs.values()) / 60
    n_runs = sum(len(r) for r in res.values())
    lines.append("")
    base = ("no base model run" if base_secs is None
            else f"{base_secs / 60:.0f} minutes for the base model")
    lines.append(f"{n_runs} runs, {total:.0f} minutes of run time in all "
                 f"(one thread each), plus {base}.")
    return "\n".join(lines) + "\n"


def control_pairs(res):
    """(figure, margin, unit, method, control) for each of the profile's
    target figures and each method with results against each of its
    controls with results: the comparisons the targeting tables make."""
    for name, margin, unit in P.targets:
        for label, _, _, controls in P.cells:
            for other in (controls or ()):
                if label in res and other in res:
                    yield name, margin, unit, label, other


def targeting(res):
    """Each method against its controls at equal damping, on each of the
    profile's target figures: the 95 % t interval of the paired difference,
    its p-value, Holm's correction across every comparison of the table,
    and whether the 90 % interval lies within that figure's equivalence
    margin (two one-sided tests at 5 %)."""
    rows = []
    for name, margin, _, label, other in control_pairs(res):
        diffs = paired(res, label, other, name)
        seeds = sorted(set(res[label]) & set(res[other]))
        rows.append((name, margin, label, other, seeds, diffs,
                     stats.paired_t(diffs), stats.paired_t(diffs, level=0.90)))
    if not rows:
        return ""
    tested = [r[6][2] for r in rows if r[6] is not None]
    adjusted = iter(stats.holm(tested))
    margins = "; ".join(f"{name} ±{margin} {unit}" for name, margin, unit in P.targets)
    out = ["Targeting against its controls (the method minus the control, same seed). "
           "Holm's correction runs across every comparison in this table; the equivalence "
           f"margins were fixed before the results ({margins}): \"equivalent\" when the "
           "90 % t interval lies within the margin (two one-sided tests at 5 %), "
           "\"differs\" when Holm's p is below 0.05.\n",
           "| figure | method | control | seeds | difference | 95 % t interval | p | "
           "Holm's p | verdict |",
           "|---|---|---|---|---:|---|---:|---:|---|"]
    for name, margin, label, other, seeds, diffs, t95, t90 in rows:
        if t95 is None:
            out.append(f"| {name} | {label} | {other} | {','.join(map(str, seeds))} | "
                       f"{fmt(diffs)} | — | — | — | needs 2 seeds |")
            continue
        mean, (lo, hi), p = t95
        q = next(adjusted)
        words = []
        if q < 0.05:
            words.append("differs")
        if stats.equivalent(t90[1], margin):
            words.append("equivalent")
        out.append(f"| {name} | {label} | {other} | {','.join(map(str, seeds))} | "
                   f"{mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {p:.3f} | {q:.3f} | "
                   f"{' and '.join(words) or 'undecided'} |")
    return "\n".join(out) + "\n"


def targeting_at_equal_gain(res):
    """Each method against its controls once each has been set against NCL
    at its own gain (on the parabola): what targeting buys beyond learning
    less or more than the control. Read beside the targeting table, not in
    its Holm family (fixed before the results)."""
    if not all(c in res for c in P.ncl_curve):
        return ""
    out = ["Targeting at equal gain: the method's difference from NCL at its own total "
           "gain minus the control's at the control's (both on the parabola through NCL's "
           "points), same seed, so that a method which beats its control only by learning "
           "less shows no difference here († where a gain lies beyond NCL's). 95 % t "
           "intervals; descriptive, outside the Holm family above.\n",
           "| figure | method | control | seeds | difference | 95 % t interval | p |",
           "|---|---|---|---|---:|---|---:|"]
    rows = 0
    for name, _, _, label, other in control_pairs(res):
        seeds = sorted(s for s in set(res[label]) & set(res[other])
                       if all(s in res[c] for c in P.ncl_curve))
        diffs, extra = [], False
        for s in seeds:
            a, b = metrics(res[label][s][0]), metrics(res[other][s][0])
            na, ea = ncl_at_gain(res, s, total_gain(a), name, True)
            nb, eb = ncl_at_gain(res, s, total_gain(b), name, True)
            diffs.append(a[name] - na - b[name] + nb)
            extra |= ea or eb
        t = stats.paired_t(diffs)
        if t is None:
            continue
        mean, (lo, hi), p = t
        out.append(f"| {name} | {label} | {other} | {','.join(map(str, seeds))} | "
                   f"{mean:+.4f}{' †' if extra else ''} | [{lo:+.4f}, {hi:+.4f}] | {p:.3f} |")
        rows += 1
    return "\n".join(out) + "\n" if rows else ""


def total_gain(m):
    return m["kernel gain"] + m["python gain"]


def parabola(pts, x):
    """The least-squares parabola through the points (x, y) at `x`: through
    each of them when there are three; nan with fewer than three distinct x."""
    if len({g for g, _ in pts}) < 3:
        return float("nan")
    mid = statistics.fmean(g for g, _ in pts)  # centred, for a well-posed system
    s = [sum((g - mid) ** k for g, _ in pts) for k in range(5)]
    t = [sum(y * (g - mid) ** k for g, y in pts) for k in range(3)]
    a = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]

    def det(m):
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))

    d = det(a)
    # Cramer's rule: the k-th coefficient replaces column k by t.
    coef = [det([[t[r] if c == k else a[r][c] for c in range(3)] for r in range(3)]) / d
            for k in range(3)]
    u = x - mid
    return coef[0] + coef[1] * u + coef[2] * u * u


def ncl_at_gain(res, seed, gain, name="general change", curve=False):
    """`name` of NCL, same seed, at total gain `gain`, by linear
    interpolation along its learning rates, or with `curve` on the
    least-squares parabola through all of them; and whether it
    extrapolated."""
    ms = [metrics(res[c][seed][0]) for c in P.ncl_curve]
    pts = sorted((total_gain(m), m[name]) for m in ms)
    outside = not pts[0][0] <= gain <= pts[-1][0]
    if curve:
        return parabola(pts, gain), outside
    # The segment that holds `gain`; the first or last one beyond the ends.
    i = next((j for j in range(1, len(pts) - 1) if gain < pts[j][0]), len(pts) - 1)
    (g0, c0), (g1, c1) = pts[i - 1], pts[i]
    if g1 == g0:
        return float("nan"), True
    return c0 + (c1 - c0) * (gain - g0) / (g1 - g0), outside


def equal_gain(res, name="general change"):
    """Each method's `name` against NCL's at the same total gain."""
    if not all(c in res for c in P.ncl_curve):
        return ""
    out = [f"At equal gain, {name}: each method's against that of NCL, "
           "same seed, at the same total gain (kernel + python), interpolated along NCL's "
           f"learning rates {P.ncl_rates} († where the gain lies outside their range "
           "and the line is extended). Negative means less lost than plain fine-tuning "
           "that learns as much. Where NCL's curve bends, the straight line between "
           "two of its points misjudges it (where it bends upwards, the line lies above "
           "the curve and flatters every method); the last column reads NCL off the "
           "least-squares parabola through all its points instead (through each of them "
           "when there are three; † again beyond them, where a parabola swings faster "
           "than a line).\n",
           f"| method | seeds | total gain | {name} | NCL at that gain | difference "
           "| difference, parabola |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for label, _, _, _ in P.cells:
        if label not in res or label in P.ncl_curve or label.endswith("-sgd"):
            continue
        seeds = sorted(s for s in res[label] if all(s in res[c] for c in P.ncl_curve))
        if not seeds:
            continue
        gains, changes, ncls, diffs, bent, extra = [], [], [], [], [], False
        for s in seeds:
            m = metrics(res[label][s][0])
            g = total_gain(m)
            c, e = ncl_at_gain(res, s, g, name)
            gains.append(g)
            changes.append(m[name])
            ncls.append(c)
            diffs.append(m[name] - c)
            bent.append(m[name] - ncl_at_gain(res, s, g, name, curve=True)[0])
            extra |= e
        beyond = " †" if extra else ""
        out.append(f"| {label} | {','.join(map(str, seeds))} | {fmt(gains)} | {fmt(changes)} | "
                   f"{fmt(ncls)}{beyond} | {fmt(diffs)}{verdict(diffs)} "
                   f"| {fmt(bent)}{verdict(bent)}{beyond} |")
    return "\n".join(out) + "\n"


def stability(res):
    """Split-half stability of every importance a cell estimated: Spearman's
    rank correlation between the importances of two disjoint halves of its
    batches, per gate layer, averaged over the layers, then mean ± sd over
    the seeds (importance-stability.json)."""
    rows = []
    for label, _, _, _ in P.cells:
        runs = res.get(label, {})
        seeds = sorted(s for s in runs if "stability" in runs[s][0])
        if not seeds:
            continue
        per = {}
        for s in seeds:
            for which, gates in runs[s][0]["stability"].items():
                for g in gates:
                    vals = [v for v in g["rows"] if v is not None]
                    if vals:
                        per.setdefault((which, g["name"]), {})[s] = statistics.fmean(vals)
        for (which, gate), by_seed in per.items():
            rows.append(f"| {label} | {','.join(map(str, sorted(by_seed)))} | {which} | "
                        f"{gate} | {fmt(list(by_seed.values()), 3)} |")
    if not rows:
        return ""
    return "\n".join(
        ["Importance you can trust or not: split-half stability, Spearman's rank correlation "
         "between the importances of two disjoint halves of the batches, per gate layer, "
         "averaged over the layers (0 is chance, 1 the same ranking), mean ± sd over "
         "seeds.\n",
         "| method | seeds | importance | gates | split-half ρ |",
         "|---|---|---|---|---:|"] + rows) + "\n"


def svg(res):
    """One panel per method: mean held-out loss change against the base model,
    rows the stages, columns the evaluation sets."""
    labels = [c[0] for c in P.cells if c[0] in res]
    cw, ch, pad, top = 62, 22, 14, 58
    per_row = 4
    pw = 90 + 3 * cw
    ph = top + 2 * ch + 20
    rows = (len(labels) + per_row - 1) // per_row
    width, height = per_row * (pw + pad) + pad, rows * (ph + pad) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{pad}" y="20" font-size="14">Held-out loss change against the base '
             'model (mean over seeds; red: worse, blue: better)</text>']
    for i, label in enumerate(labels):
        x0 = pad + (i % per_row) * (pw + pad)
        y0 = 34 + (i // per_row) * (ph + pad)
        runs = res[label]
        mats = [runs[s][0]["matrix"] for s in sorted(runs)]
        cols = mats[0]["columns"]
        parts.append(f'<text x="{x0}" y="{y0 + 14}" font-weight="bold">{label} '
                     f'({len(mats)} seed{"s" if len(mats) > 1 else ""})</text>')
        for c, name in enumerate(cols):
            parts.append(f'<text x="{x0 + 90 + c * cw + cw / 2}" y="{y0 + top - 6}" '
                         f'text-anchor="middle">{name}</text>')
        for r, stage in enumerate(mats[0]["domains"]):
            y = y0 + top + r * ch
            parts.append(f'<text x="{x0}" y="{y + 15}">after {stage}</text>')
            for c in range(len(cols)):
                v = statistics.fmean(m["after"][r][c] - m["base"][c] for m in mats)
                t = max(-1.0, min(1.0, v / 1.5))
                if t >= 0:
                    fill = f"rgb(255,{int(255 * (1 - t))},{int(255 * (1 - t))})"
                else:
                    fill = f"rgb({int(255 * (1 + t))},{int(255 * (1 + t))},255)"
                parts.append(f'<rect x="{x0 + 90 + c * cw}" y="{y}" width="{cw - 2}" '
                             f'height="{ch - 2}" fill="{fill}"/>')
                parts.append(f'<text x="{x0 + 90 + c * cw + cw / 2 - 1}" y="{y + 15}" '
                             f'text-anchor="middle">{v:+.3f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# The size of one panel of the trade-off picture.
PANEL = (760, 520)


def tradeoff_svg(res):
    """Each of the profile's forgetting figures (y; up is knowledge lost)
    against total domain gain (x; kernel + python gain), one panel each side
    by side: NCL's learning-rate curve as a line, every other cell a point
    with 95 % t-interval bars over its seeds (none for a single seed),
    labelled, so a method below the NCL line protects more at equal
    learning."""
    panels = [tradeoff_panel(res, name) for name in P.forgetting]
    panels = [p for p in panels if p]
    if not panels:
        return ""
    w, h = PANEL
    width = w * len(panels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{h}" fill="white"/>']
    for i, panel in enumerate(panels):
        parts.append(f'<g transform="translate({i * w},0)">')
        parts += panel
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def tradeoff_panel(res, name):
    """The parts of one panel of tradeoff_svg: `name` against total gain."""
    points = {}
    for label in [c[0] for c in P.cells if c[0] in res]:
        ms = [metrics(res[label][s][0]) for s in sorted(res[label])]
        xs = [total_gain(m) for m in ms]
        ys = [m[name] for m in ms]

        def spread(v):
            t = stats.paired_t(v)
            return (statistics.fmean(v), None if t is None else t[1])
        points[label] = (spread(xs), spread(ys))
    if not points:
        return []
    lows = [lo for (x, xi), (y, yi) in points.values() for lo in (xi or (x, x))]
    xlo, xhi = min(lows), max(hi for (x, xi), _ in points.values() for hi in (xi or (x, x)))
    ylo = min(lo for _, (y, yi) in points.values() for lo in (yi or (y, y)))
    yhi = max(hi for _, (y, yi) in points.values() for hi in (yi or (y, y)))
    xpad, ypad = (xhi - xlo) * 0.08 or 0.1, (yhi - ylo) * 0.08 or 0.1
    xlo, xhi, ylo, yhi = xlo - xpad, xhi + xpad, ylo - ypad, yhi + ypad
    (w, h), left, top, right, bottom = PANEL, 70, 40, 170, 50

    def px(x):
        return left + (x - xlo) / (xhi - xlo) * (w - left - right)

    def py(y):
        return top + (yhi - y) / (yhi - ylo) * (h - top - bottom)
    parts = [f'<text x="{left}" y="20" font-size="14">{name.capitalize()} against total '
             'domain gain (mean and 95 % t interval over seeds)</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">'
             'total domain gain (kernel + python; right is more learned)</text>',
             f'<text x="16" y="{(top + h - bottom) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(top + h - bottom) / 2})">{name} '
             '(up is knowledge lost)</text>']
    for k in range(5):
        x, y = xlo + (xhi - xlo) * k / 4, ylo + (yhi - ylo) * k / 4
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 14}" text-anchor="middle">{x:.3f}</text>')
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3f}</text>')
    curve = [points[c] for c in P.ncl_curve if c in points]
    if len(curve) > 1:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for (x, _), (y, _) in sorted(curve))
        parts.append(f'<polyline points="{path}" fill="none" stroke="#888" stroke-width="2"/>')
    for label, ((x, xi), (y, yi)) in points.items():
        colour = "#888" if label in P.ncl_curve else (
            "#b00" if label.endswith(("-permuted", "-uniform")) else "#03c")
        if xi:
            parts.append(f'<line x1="{px(xi[0]):.1f}" y1="{py(y):.1f}" x2="{px(xi[1]):.1f}" '
                         f'y2="{py(y):.1f}" stroke="{colour}"/>')
        if yi:
            parts.append(f'<line x1="{px(x):.1f}" y1="{py(yi[0]):.1f}" x2="{px(x):.1f}" '
                         f'y2="{py(yi[1]):.1f}" stroke="{colour}"/>')
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}" fill="{colour}">{label}</text>')
    parts.append(f'<text x="{w - right + 10}" y="{top + 10}" fill="#888">grey: NCL by learning rate</text>')
    parts.append(f'<text x="{w - right + 10}" y="{top + 26}" fill="#03c">blue: methods</text>')
    parts.append(f'<text x="{w - right + 10}" y="{top + 42}" fill="#b00">red: controls</text>')
    return parts


def write_atomic(path, text):
    """Writes `text` to a temporary name beside `path`, then renames it into
    place: a reader sees the old file or the new one, never half of it."""
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    print(f"wrote {shown(path)}", flush=True)


def shown(path):
    """`path` relative to the repository when inside it, else absolute."""
    r = os.path.relpath(path, ROOT)
    return path if r.startswith("..") else r


def markers(tag):
    name = "experiment" + (f"-{tag}" if tag else "")
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def check_markers(path, begin, end):
    """The text of `path`, after checking it holds the markers in order."""
    try:
        with open(path, encoding="utf-8") as f:
            s = f.read()
    except OSError as e:
        sys.exit(f"--write {path}: {e.strerror}")
    a, b = s.find(begin), s.find(end)
    if a < 0 or b < a:
        sys.exit(f"{path} lacks the markers {begin} and {end}")
    return s


def write_between(path, begin, end, text):
    s = check_markers(path, begin, end)
    a, b = s.find(begin), s.find(end)
    write_atomic(path, s[: a + len(begin)] + "\n" + text + s[b:])


def missing_runs(res):
    """The cells and seeds of the profile's cells without results: label -> seeds."""
    missing = {}
    for label, _, seeds, _ in P.cells:
        lack = [s for s in seeds if s not in res.get(label, {})]
        if lack:
            missing[label] = lack
    return missing


def describe(missing, base_secs):
    """What a partial grid lacks, in words: the cells and their seeds."""
    parts = [] if base_secs is not None else ["the base model's run (base/run/command.json)"]
    parts += [f"{label} (seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))})"
              for label, seeds in missing.items()]
    n = sum(len(seeds) for seeds in missing.values())
    return f"{n} of {sum(len(c[2]) for c in P.cells)} runs missing: " + ", ".join(parts)


def base_seconds(out):
    try:
        with open(os.path.join(out, "base", "run", "command.json")) as f:
            return json.load(f)["seconds"]
    except (OSError, ValueError, KeyError):
        return None


def publish(out, docs_dir, tag, readme, docs):
    """Aggregates the runs under `out` into out/report/; with `docs` (or a
    `readme`), and only from a complete grid, also into `docs_dir` and between
    the README's markers. Returns the table."""
    name = "experiment" + (f"-{tag}" if tag else "")
    title = "# The experiment's figures" + (f" ({tag})" if tag else "") + "\n\n"
    if readme:
        check_markers(readme, *markers(tag))
    base_secs = base_seconds(out)
    res = load(out)
    missing = missing_runs(res)
    complete = not missing and base_secs is not None
    note = "" if complete else describe(missing, base_secs)
    table = report(out, res, base_secs)
    report_dir = os.path.join(out, "report")
    os.makedirs(report_dir, exist_ok=True)
    if complete:
        write_atomic(os.path.join(report_dir, name + ".md"), title + table)
        write_atomic(os.path.join(report_dir, name + ".svg"), svg(res))
        write_atomic(os.path.join(report_dir, name + "-tradeoff.svg"), tradeoff_svg(res))
        for ext in (".md", ".svg", "-tradeoff.svg"):
            stale = os.path.join(report_dir, "partial-" + name + ext)
            if os.path.exists(stale):
                os.remove(stale)
                print(f"removed {shown(stale)} (the grid is complete now)", flush=True)
    else:
        write_atomic(os.path.join(report_dir, "partial-" + name + ".md"),
                     title + f"**Partial grid**: {note}.\n\n" + table)
        write_atomic(os.path.join(report_dir, "partial-" + name + ".svg"), svg(res))
        write_atomic(os.path.join(report_dir, "partial-" + name + "-tradeoff.svg"),
                     tradeoff_svg(res))
    print(table, flush=True)
    if not complete:
        print(f"partial grid, {note}", flush=True)
        print(f"the report went to {shown(report_dir)}/partial-{name}.*; "
              f"a complete report there and the files in {shown(docs_dir)} are untouched",
              flush=True)
        if readme or docs:
            sys.exit(f"refusing to write {shown(docs_dir)}"
                     + (f" and {shown(readme)}" if readme else "")
                     + f" from a partial grid: {note}")
        return table
    if readme or docs:
        os.makedirs(docs_dir, exist_ok=True)
        write_atomic(os.path.join(docs_dir, name + ".md"), title + table)
        write_atomic(os.path.join(docs_dir, name + ".svg"), svg(res))
        write_atomic(os.path.join(docs_dir, name + "-tradeoff.svg"), tradeoff_svg(res))
    if readme:
        write_between(readme, *markers(tag), table)
    return table


def reap(procs):
    """Removes the checkpoints of finished reruns where the profile keeps none."""
    if P.keep_checkpoints:
        return
    for _, scratch, proc in procs:
        if proc.poll() is not None:
            shutil.rmtree(os.path.join(scratch, "checkpoints"), ignore_errors=True)


def verify_targets(out, items):
    """The finished runs --verify's LABEL:SEED items name, as (label, seed, run
    folder, recorded command); every item is checked before anything reruns,
    and the first bad one stops the script with a message naming it."""
    if not items:
        sys.exit("--verify: name the runs to rerun as LABEL:SEED, say ncl:0 das:0")
    labels = [c[0] for c in P.cells]
    targets, seen = [], set()
    for item in items:
        label, colon, seed = item.rpartition(":")
        if not colon or not label or not re.fullmatch("[0-9]+", seed):
            sys.exit(f"--verify {item!r}: write LABEL:SEED, say ncl:0")
        if label not in labels:
            sys.exit(f"--verify {item}: no cell {label!r} in the {P.name} grid; "
                     f"the cells: {', '.join(labels)}")
        if (label, int(seed)) in seen:
            continue  # one rerun per run: two would share a scratch folder
        seen.add((label, int(seed)))
        run_dir = os.path.join(out, "runs", label, f"seed-{int(seed)}")
        try:
            with open(os.path.join(run_dir, "command.json")) as f:
                cmd = json.load(f)["command"]  # paths relative to ROOT, where it runs
            if (not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd)
                    or cmd.index("--out") + 1 >= len(cmd)):
                raise ValueError("not a command with --out and its folder")
        except (OSError, ValueError, KeyError, TypeError):
            cmd = None
        unfinished = [n for n in ["results.json"] + P.requires
                      if not os.path.exists(os.path.join(run_dir, n))]
        problems = ([] if cmd is not None else
                    ["command.json missing, unreadable or without --out"])
        problems += [f"{n} missing" for n in unfinished]
        if problems:
            sys.exit(f"--verify {item}: {rel(run_dir)} holds no finished run of the grid "
                     f"({'; '.join(problems)}); run the grid first")
        targets.append((label, int(seed), run_dir, cmd))
    return targets


def verify(out, which, jobs):
    """Reruns finished runs with their recorded command into out/verify/ and
    compares results.json, and knowledge.json and importance-stability.json
    where the run wrote them, byte for byte."""
    procs = []
    for label, seed, run_dir, cmd in verify_targets(out, which):
        scratch = os.path.join(out, "verify", label, f"seed-{seed}")
        shutil.rmtree(scratch, ignore_errors=True)
        i = cmd.index("--out")
        cmd[i + 1] = scratch
        while len([p for p in procs if p[2].poll() is None]) >= jobs:
            time.sleep(1)
            reap(procs)
        procs.append((run_dir, scratch, run_logged(cmd, scratch, "1")))
    bad = []
    for run_dir, scratch, proc in procs:
        proc.wait()
        reap(procs)
        names = [n for n in ("results.json", "knowledge.json", "importance-stability.json")
                 if n == "results.json" or os.path.exists(os.path.join(run_dir, n))]
        for name in names:
            with open(os.path.join(run_dir, name), "rb") as f:
                want = f.read()
            try:
                with open(os.path.join(scratch, name), "rb") as f:
                    got = f.read()
            except OSError:
                got = None
            same = got == want
            print(f"{rel(run_dir)}/{name}: {'identical' if same else 'DIFFERENT'}")
            if not same:
                bad.append(f"{rel(run_dir)}/{name}")
    if bad:
        sys.exit("not reproduced: " + ", ".join(bad))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="the runs and their report (report/); default "
                                  "runs/experiment for minilm, runs/experiment-TAG for "
                                  "another profile or tag (runs/experiment-smollm2)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (results do not change)")
    ap.add_argument("--only", nargs="*", help="run only these cells")
    ap.add_argument("--report-only", action="store_true", help="aggregate what exists")
    ap.add_argument("--write", metavar="README",
                    help="a README to put the table into (between markers); implies --docs")
    ap.add_argument("--docs", action="store_true",
                    help="write the published figures (docs/experiment.md, .svg, "
                         "-tradeoff.svg; docs/experiment-smollm2.* for smollm2); "
                         "refused unless the grid is complete")
    ap.add_argument("--docs-dir", default=DOCS, help="where --docs writes (default docs/)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="minilm",
                    help="the model's grid: minilm (all-MiniLM-L6-v2, docs/experiment.*) "
                         "or smollm2 (SmolLM2-135M-Instruct, docs/experiment-smollm2.*)")
    ap.add_argument("--model-tag",
                    help="names the figures and markers: experiment-TAG.md/.svg, "
                         "experiment-TAG:begin/end (default: the profile's, none for minilm)")
    ap.add_argument("--verify", nargs="*", metavar="LABEL:SEED",
                    help="rerun these finished runs into a scratch folder and check that "
                         "results.json (and knowledge.json, importance-stability.json) "
                         "come out byte for byte the same")
    a = ap.parse_args(argv)
    global P
    P = PROFILES[a.profile]
    tag = P.tag if a.model_tag is None else a.model_tag
    taken = [p.name for p in PROFILES.values() if p is not P and p.tag == tag]
    if taken:
        ap.error(f"--model-tag {tag!r} names the {taken[0]} grid's files; give another")
    if tag and not all(c.isalnum() or c in "-_." for c in tag):
        ap.error(f"--model-tag {tag!r}: letters, digits, '-', '_' and '.' only")
    out = os.path.abspath(a.out or os.path.join(ROOT, "runs",
                                                "experiment" + (f"-{tag}" if tag else "")))
    if a.verify is not None:
        verify(out, a.verify, a.jobs)
        return
    labels = [c[0] for c in P.cells]
    unknown = [label for label in a.only or [] if label not in labels]
    if unknown:
        ap.error(f"--only: no cell {', '.join(unknown)}; the cells: {', '.join(labels)}")
    readme = os.path.abspath(a.write) if a.write else None
    if readme:
        check_markers(readme, *markers(tag))  # before an hour of runs, not after
    if not a.report_only:
        subprocess.run(["cargo", "build", "--example", "continual_domains"], cwd=ROOT,
                       check=True)
        base = P.make_base(out)
        run_grid(out, base, a.jobs, a.only)
    publish(out, os.path.abspath(a.docs_dir), tag, readme, a.docs)


if __name__ == "__main__":
    main()
