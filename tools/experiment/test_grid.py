"""Tests of grid.py's report and publishing, on fake runs (no cargo, no model).

    python3 -m unittest discover -s tools/experiment -p 'test_*.py'

Every test writes into a temporary folder; the repository's docs/ and README.md
are checked to stay as they were.
"""

import contextlib
import importlib.util
import io
import json
import math
import os
import random
import shutil
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ beside grid.py in the work tree
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("grid", os.path.join(HERE, "grid.py"))
grid = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grid)

PUBLISHED = [os.path.join(grid.ROOT, "docs", "experiment.md"),
             os.path.join(grid.ROOT, "docs", "experiment.svg"),
             os.path.join(grid.ROOT, "README.md")]
BEGIN, END = "<!-- experiment:begin -->", "<!-- experiment:end -->"


def fake_results(label, seed):
    """A results.json as the crate writes it: {"matrix": ResultMatrix, "summary": Summary}."""
    rng = random.Random(f"{label}:{seed}")
    base = [5.2 + rng.uniform(-0.01, 0.01), 3.9 + rng.uniform(-0.1, 0.1),
            4.1 + rng.uniform(-0.1, 0.1)]
    k = base[1] - rng.uniform(0.8, 1.1)
    after = [[base[0] + rng.uniform(0.1, 0.3), k, base[2] - rng.uniform(0.0, 0.2)],
             [base[0] + rng.uniform(0.2, 0.4), k + rng.uniform(-0.05, 0.05),
              base[2] - rng.uniform(1.0, 1.3)]]
    forgetting = after[1][1] - after[0][1]
    return {
        "matrix": {"method": label.split("-")[0], "columns": ["general", "kernel", "python"],
                   "domains": ["kernel", "python"], "base": base, "after": after},
        "summary": {"forgetting": [["kernel", forgetting]], "mean_forgetting": forgetting,
                    "backward_transfer": -forgetting,
                    "gain": [["kernel", base[1] - after[0][1]],
                             ["python", base[2] - after[1][2]]],
                    "general_change": after[1][0] - base[0]},
    }


def fake_knowledge(label, seed):
    """A knowledge.json as the crate writes it, for 6 items: the base row and two after."""
    rng = random.Random(f"knowledge:{label}:{seed}")
    base = [True, True, True, True, False, True]
    rows = [{"after": "base", "accuracy": 5 / 6, "mean_margin": 2.0, "forgotten": 0.0,
             "correct": base}]
    for after in ("kernel", "python"):
        correct = [c and rng.random() > 0.3 for c in base]
        lost = sum(1 for b, c in zip(base, correct) if b and not c)
        rows.append({"after": after, "accuracy": sum(correct) / 6,
                     "mean_margin": 2.0 - rng.uniform(0.3, 1.2), "forgotten": lost / 5,
                     "correct": correct})
    return {"items": [f"item-{i}" for i in range(6)], "categories": ["facts"] * 6,
            "rows": rows}


def make_runs(out, only=None, base=True):
    """Fake finished runs under `out`: every cell and seed of the profile's
    cells (grid.P), or those of `only`; with knowledge.json for SmolLM2's."""
    if base:
        os.makedirs(os.path.join(out, "base", "run"), exist_ok=True)
        with open(os.path.join(out, "base", "run", "command.json"), "w") as f:
            json.dump({"command": ["fake"], "seconds": 240.0}, f)
    for label, _, seeds, _ in grid.P.cells:
        if only is not None and label not in only:
            continue
        for seed in seeds:
            d = os.path.join(out, "runs", label, f"seed-{seed}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump(fake_results(label, seed), f, indent=2)
            if grid.P is grid.SMOLLM2_PROFILE:
                with open(os.path.join(d, "knowledge.json"), "w") as f:
                    json.dump(fake_knowledge(label, seed), f)
            with open(os.path.join(d, "command.json"), "w") as f:
                json.dump({"command": ["fake", label, str(seed)],
                           "seconds": 60.0 + 3 * len(label) + seed}, f)


def snapshot(paths):
    out = {}
    for p in paths:
        st = os.stat(p)
        with open(p, "rb") as f:
            out[p] = (f.read(), st.st_mtime_ns)
    return out


def run_main(*argv):
    """grid.main(argv) with its output captured: (exit code, stdout, message)."""
    buf = io.StringIO()
    code, msg = 0, ""
    with contextlib.redirect_stdout(buf):
        try:
            grid.main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            msg = e.code if isinstance(e.code, str) else ""
    return code, buf.getvalue(), msg


class GridReport(unittest.TestCase):
    def setUp(self):
        grid.P = grid.MINILM_PROFILE
        self.tmp = tempfile.mkdtemp(prefix="grid-test-")
        self.out = os.path.join(self.tmp, "out")
        self.docs = os.path.join(self.tmp, "docs")
        self.readme = os.path.join(self.tmp, "README.md")
        with open(self.readme, "w") as f:
            f.write(f"# Title\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
        self.published = snapshot(PUBLISHED)
        self.repo_docs = sorted(os.listdir(os.path.join(grid.ROOT, "docs")))

    def tearDown(self):
        shutil.rmtree(self.tmp)
        # Whatever a test did, the repository's published files are as they were.
        self.assertEqual(snapshot(PUBLISHED), self.published)
        self.assertEqual(sorted(os.listdir(os.path.join(grid.ROOT, "docs"))), self.repo_docs)

    def files(self, d):
        return sorted(os.path.relpath(os.path.join(r, n), d)
                      for r, _, ns in os.walk(d) for n in ns) if os.path.isdir(d) else []

    def test_partial_report_stays_in_out(self):
        make_runs(self.out, only=["ncl", "das-permuted"])
        code, stdout, _ = run_main("--report-only", "--out", self.out)
        self.assertEqual(code, 0)
        report = os.path.join(self.out, "report")
        self.assertEqual(self.files(report),
                         ["partial-experiment-tradeoff.svg", "partial-experiment.md",
                          "partial-experiment.svg"])
        self.assertIn("partial grid", stdout)
        self.assertIn("das (seeds 0,1,2,3,4)", stdout)
        self.assertIn("ewc (seed 0)", stdout)
        self.assertNotIn("ncl (seed", stdout)
        self.assertIn("wrote " + os.path.join(report, "partial-experiment.md"), stdout)
        with open(os.path.join(report, "partial-experiment.md")) as f:
            self.assertIn("**Partial grid**", f.read())

    def test_partial_never_replaces_complete_report(self):
        make_runs(self.out)
        self.assertEqual(run_main("--report-only", "--out", self.out)[0], 0)
        report = os.path.join(self.out, "report")
        complete = snapshot([os.path.join(report, "experiment.md"),
                             os.path.join(report, "experiment.svg")])
        shutil.rmtree(os.path.join(self.out, "runs", "das"))
        code, stdout, _ = run_main("--report-only", "--out", self.out)
        self.assertEqual(code, 0)
        self.assertEqual(snapshot(list(complete)), complete)
        self.assertIn("partial-experiment.md", self.files(report))
        self.assertIn("das (seeds 0,1,2,3,4)", stdout)

    def test_write_refuses_partial_grid(self):
        make_runs(self.out, only=["ncl", "das-permuted"])
        with open(self.readme, "rb") as f:
            before = f.read()
        for flags in (["--write", self.readme], ["--docs"]):
            code, _, msg = run_main("--report-only", "--out", self.out,
                                    "--docs-dir", self.docs, *flags)
            self.assertNotEqual(code, 0)
            self.assertIn("refusing", msg)
            self.assertIn("das (seeds 0,1,2,3,4)", msg)
            self.assertIn("das-intent-uniform (seeds 0,1,2)", msg)
            self.assertEqual(self.files(self.docs), [])
            with open(self.readme, "rb") as f:
                self.assertEqual(f.read(), before)

    def test_missing_base_is_partial(self):
        make_runs(self.out, base=False)
        code, _, msg = run_main("--report-only", "--out", self.out, "--docs-dir", self.docs,
                                "--docs")
        self.assertNotEqual(code, 0)
        self.assertIn("base model", msg)
        self.assertEqual(self.files(self.docs), [])

    def test_complete_grid_writes_docs_and_readme(self):
        make_runs(self.out)
        code, stdout, _ = run_main("--report-only", "--out", self.out,
                                   "--docs-dir", self.docs, "--write", self.readme)
        self.assertEqual(code, 0)
        res = grid.load(self.out)
        table = grid.report(self.out, res, 240.0)
        with open(os.path.join(self.docs, "experiment.md"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "# The experiment's figures\n\n" + table)
        with open(os.path.join(self.docs, "experiment.svg"), encoding="utf-8") as f:
            self.assertEqual(f.read(), grid.svg(res))
        with open(os.path.join(self.out, "report", "experiment.md"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "# The experiment's figures\n\n" + table)
        with open(self.readme, encoding="utf-8") as f:
            self.assertEqual(f.read(),
                             f"# Title\n\nbefore\n\n{BEGIN}\n{table}{END}\n\nafter\n")
        self.assertEqual(self.files(self.docs),
                         ["experiment-tradeoff.svg", "experiment.md", "experiment.svg"])
        with open(os.path.join(self.docs, "experiment-tradeoff.svg"), encoding="utf-8") as f:
            self.assertEqual(f.read(), grid.tradeoff_svg(res))
        for path in [os.path.join(self.docs, "experiment.md"),
                     os.path.join(self.docs, "experiment.svg"), self.readme]:
            self.assertIn("wrote " + path, stdout)
        # Writing again from the same runs changes no byte.
        again = snapshot([os.path.join(self.docs, "experiment.md"), self.readme])
        self.assertEqual(run_main("--report-only", "--out", self.out,
                                  "--docs-dir", self.docs, "--write", self.readme)[0], 0)
        self.assertEqual({p: v[0] for p, v in snapshot(list(again)).items()},
                         {p: v[0] for p, v in again.items()})

    def test_the_tradeoff_picture_draws_the_ncl_curve_and_every_cell(self):
        make_runs(self.out)
        res = grid.load(self.out)
        svg = grid.tradeoff_svg(res)
        self.assertTrue(svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"'))
        self.assertEqual(svg.count("<polyline"), 1)
        # The NCL curve passes through its three learning rates, by gain.
        curve = svg.split('<polyline points="')[1].split('"')[0].split()
        self.assertEqual(len(curve), 3)
        xs = [float(p.split(",")[0]) for p in curve]
        self.assertEqual(xs, sorted(xs))
        self.assertEqual(svg.count("<circle"), len(res))
        for label in res:
            self.assertIn(f">{label}</text>", svg)
        # Interval bars (two lines) for every cell with more than one seed.
        multi = sum(1 for runs in res.values() if len(runs) > 1)
        self.assertEqual(svg.count("<line") - 2, 2 * multi)

    def test_model_tag_names_its_own_files(self):
        make_runs(self.out)
        with open(self.readme, "a") as f:
            f.write("<!-- experiment-long:begin -->\n<!-- experiment-long:end -->\n")
        with open(self.readme) as f:
            untagged = f.read().split(END)[0]
        code, _, _ = run_main("--report-only", "--out", self.out, "--docs-dir", self.docs,
                              "--write", self.readme, "--model-tag", "long")
        self.assertEqual(code, 0)
        self.assertEqual(self.files(self.docs),
                         ["experiment-long-tradeoff.svg", "experiment-long.md",
                          "experiment-long.svg"])
        with open(self.readme) as f:
            s = f.read()
        self.assertEqual(s.split(END)[0], untagged)
        n = sum(len(c[2]) for c in grid.MINILM_CELLS)
        self.assertEqual(n, 63)
        self.assertIn(f"{n} runs", s.split("<!-- experiment-long:begin -->")[1])

    def test_a_tag_of_another_profile_is_refused(self):
        make_runs(self.out)
        code, _, _ = run_main("--report-only", "--out", self.out, "--docs-dir", self.docs,
                              "--docs", "--model-tag", "smollm2")
        self.assertEqual(code, 2)
        self.assertEqual(self.files(self.docs), [])
        grid.P = grid.SMOLLM2_PROFILE
        code, _, _ = run_main("--profile", "smollm2", "--report-only", "--out", self.out,
                              "--docs-dir", self.docs, "--docs", "--model-tag", "")
        self.assertEqual(code, 2)
        self.assertEqual(self.files(self.docs), [])

    def test_readme_without_markers_is_refused_first(self):
        make_runs(self.out)
        with open(self.readme, "w") as f:
            f.write("no markers\n")
        code, _, msg = run_main("--report-only", "--out", self.out, "--docs-dir", self.docs,
                                "--write", self.readme)
        self.assertNotEqual(code, 0)
        self.assertIn("lacks the markers", msg)
        self.assertEqual(self.files(self.docs), [])


class Verify(unittest.TestCase):
    """--verify: bad LABEL:SEED items and unfinished runs are refused by name
    before anything reruns; a rerun is compared byte for byte."""

    def setUp(self):
        grid.P = grid.MINILM_PROFILE
        self.tmp = tempfile.mkdtemp(prefix="grid-verify-test-")
        self.out = os.path.join(self.tmp, "out")
        make_runs(self.out, only=["ncl"])

    def tearDown(self):
        grid.P = grid.MINILM_PROFILE
        shutil.rmtree(self.tmp)

    def fake_run(self, label, seed, writes):
        """Makes runs/label/seed-N a finished run whose command is a fake binary
        that writes `writes` as results.json into its --out."""
        fake = os.path.join(self.tmp, "fake.py")
        with open(fake, "w") as f:
            f.write("import os, sys\n"
                    "out = sys.argv[sys.argv.index('--out') + 1]\n"
                    "os.makedirs(out, exist_ok=True)\n"
                    "open(os.path.join(out, 'results.json'), 'w').write(sys.argv[-1])\n")
        d = os.path.join(self.out, "runs", label, f"seed-{seed}")
        with open(os.path.join(d, "command.json"), "w") as f:
            json.dump({"command": [sys.executable, fake, "--out", "x", writes]}, f)
        with open(os.path.join(d, "results.json"), "w") as f:
            f.write("{}")
        return d

    def test_bad_items_are_refused_by_name(self):
        self.fake_run("ncl", 0, "{}")
        for argv, want in [(["--verify"], "name the runs"),
                           (["--verify", "ncl"], "'ncl': write LABEL:SEED"),
                           (["--verify", "ncl:x"], "'ncl:x': write LABEL:SEED"),
                           (["--verify", ":0"], "':0': write LABEL:SEED"),
                           (["--verify", "ncl:0", "das:0"], "das:0: runs/"),
                           (["--verify", "ncl:9"], "ncl:9: runs/")]:
            code, out, msg = run_main("--out", self.out, *argv)
            self.assertEqual(code, 1, argv)
            self.assertIn(want, msg.replace(grid.rel(self.out) + "/", ""), argv)
            self.assertEqual(out, "", argv)  # nothing reran
        self.assertFalse(os.path.exists(os.path.join(self.out, "verify")))

    def test_unknown_cells_and_odd_digits_are_refused(self):
        code, _, msg = run_main("--out", self.out, "--verify", "nlc:0")
        self.assertEqual(code, 1)
        self.assertIn("no cell 'nlc' in the minilm grid; the cells: ncl, das,", msg)
        code, _, msg = run_main("--out", self.out, "--verify", "/tmp/x:0")
        self.assertIn("no cell '/tmp/x'", msg)
        code, _, msg = run_main("--out", self.out, "--verify", "ncl:\u0663")
        self.assertEqual(code, 1)
        self.assertIn("write LABEL:SEED", msg)

    def test_a_command_that_is_not_a_list_is_refused(self):
        d = self.fake_run("ncl", 0, "{}")
        with open(os.path.join(d, "command.json"), "w") as f:
            json.dump({"command": "python3 fake.py --out x"}, f)
        code, _, msg = run_main("--out", self.out, "--verify", "ncl:0")
        self.assertEqual(code, 1)
        self.assertIn("command.json missing, unreadable or without --out", msg)

    def test_a_run_named_twice_reruns_once(self):
        self.fake_run("ncl", 0, "{}")
        code, out, _ = run_main("--out", self.out, "--verify", "ncl:0", "ncl:00")
        self.assertEqual(code, 0)
        self.assertEqual(out.count("ncl/seed-0/results.json: identical"), 1)

    def test_a_run_without_its_out_or_results_is_refused(self):
        d = os.path.join(self.out, "runs", "ncl", "seed-1")
        os.remove(os.path.join(d, "results.json"))
        code, _, msg = run_main("--out", self.out, "--verify", "ncl:1")
        self.assertEqual(code, 1)
        self.assertIn("results.json missing", msg)
        code, _, msg = run_main("--out", self.out, "--verify", "ncl:0")  # no --out in it
        self.assertEqual(code, 1)
        self.assertIn("ncl:0: ", msg)
        self.assertIn("command.json missing, unreadable or without --out", msg)

    def test_a_smollm2_run_needs_its_knowledge(self):
        grid.P = grid.SMOLLM2_PROFILE
        self.fake_run("ncl", 0, "{}")
        code, _, msg = run_main("--profile", "smollm2", "--out", self.out,
                                "--verify", "ncl:0")
        self.assertEqual(code, 1)
        self.assertIn("knowledge.json missing", msg)

    def test_reruns_compare_byte_for_byte(self):
        self.fake_run("ncl", 0, "{}")
        code, out, _ = run_main("--out", self.out, "--verify", "ncl:0")
        self.assertEqual(code, 0)
        self.assertIn("ncl/seed-0/results.json: identical", out)
        self.fake_run("ncl", 1, "{ }")
        code, out, msg = run_main("--out", self.out, "--verify", "ncl:01")
        self.assertEqual(code, 1)
        self.assertIn("ncl/seed-1/results.json: DIFFERENT", out)
        self.assertIn("not reproduced: ", msg)


class Targeting(unittest.TestCase):
    """The targeting table: paired t intervals, Holm across its rows, and the
    equivalence margin stated in grid.py."""

    def setUp(self):
        grid.P = grid.MINILM_PROFILE

    def shifted(self, control, by):
        """Results of `control`'s seeds with the general loss after python moved by `by[seed]`."""
        out = {}
        for seed in grid.SEEDS3:
            r = fake_results(control, seed)
            r["matrix"]["after"][1][0] += by[seed]
            out[seed] = (r, 60.0)
        return out

    def test_equivalence_and_holm(self):
        res = {c: {s: (fake_results(c, s), 60.0) for s in grid.SEEDS3}
               for c in ["das-permuted", "das-uniform"]}
        # das = das-permuted + 0.001 +- 0.0005: inside the 0.01 margin; against
        # das-uniform it differs by the two fake cells' own noise.
        near = {0: 0.0005, 1: 0.001, 2: 0.0015}
        res["das"] = self.shifted("das-permuted", near)
        table = grid.targeting(res)
        rows = {tuple(c.strip() for c in line.split("|")[2:4]): line.split("|")
                for line in table.splitlines() if line.startswith("| general change | das |")}
        row = rows[("das", "das-permuted")]
        self.assertEqual(row[5].strip(), "+0.0010")
        self.assertIn("equivalent", row[9])
        # Holm across the two rows: the larger p stays, the smaller doubles (capped at 1).
        p = {k: float(v[7]) for k, v in rows.items()}
        q = {k: float(v[8]) for k, v in rows.items()}
        lo, hi = sorted(p, key=p.get)
        self.assertAlmostEqual(q[lo], min(1.0, max(2 * p[lo], 0)), places=3)
        self.assertAlmostEqual(q[hi], max(q[lo], p[hi]), places=3)
        self.assertIn(f"±{grid.EQUIVALENCE_MARGIN}", table)

    def on_curve(self):
        """NCL's three rates on change = gain² / 10 (the gains shifted by 0.01
        a seed). DAS and its permuted control lie 0.05 below that curve, at
        gains 2 and 3; the uniform control 0.03 below it at 2.5."""
        def run(label, seed, gain, change):
            r = fake_results(label, seed)
            r["matrix"]["base"] = [5.0, 4.0, 4.0]
            r["matrix"]["after"][0][1] = 4.0 - gain / 2
            r["matrix"]["after"][1][2] = 4.0 - gain / 2
            r["matrix"]["after"][1][0] = 5.0 + change
            return r, 60.0
        points = {"ncl-lr-5e-5": (1.0, 0.1), "ncl-lr-7e-5": (2.0, 0.4), "ncl": (3.0, 0.9),
                  "das": (2.0, 0.35), "das-permuted": (3.0, 0.85),
                  "das-uniform": (2.5, 0.595)}
        return {label: {s: run(label, s, g + 0.01 * s, c + (g + 0.01 * s) ** 2 / 10 - g * g / 10)
                        for s in grid.SEEDS3}
                for label, (g, c) in points.items()}

    def test_the_parabola_column_reads_the_curve(self):
        # The uniform control at 2.5: 0.03 below the curve, 0.055 below the
        # straight line between NCL's points at 2 and 3 (0.65 against 0.625).
        table = grid.equal_gain(self.on_curve())
        row = next(line for line in table.splitlines() if line.startswith("| das-uniform |"))
        cells = [c.strip() for c in row.split("|")]
        self.assertEqual(cells[6], "-0.0550 ± 0.0000 *")
        self.assertEqual(cells[7], "-0.0300 ± 0.0000 *")

    def test_equal_gain_takes_out_what_learning_less_buys(self):
        # The raw difference between DAS and its permuted control is -0.5, at
        # equal gain none; DAS beats the uniform control by 0.02 at equal gain.
        res = self.on_curve()
        table = grid.targeting_at_equal_gain(res)
        self.assertIn("| general change | das | das-permuted | 0,1,2 | +0.0000 |", table)
        self.assertIn("| general change | das | das-uniform | 0,1,2 | -0.0200 |", table)
        self.assertIn("| general change | das | das-permuted | 0,1,2 | -0.50",
                      grid.targeting(res))
        del res["ncl-lr-5e-5"]
        self.assertEqual(grid.targeting_at_equal_gain(res), "")

    def test_one_seed_is_not_tested(self):
        res = {c: {0: (fake_results(c, 0), 60.0)} for c in ["das", "das-permuted"]}
        table = grid.targeting(res)
        self.assertIn("needs 2 seeds", table)


class SmolLM2(unittest.TestCase):
    """The SmolLM2 profile: knowledge figures from knowledge.json, its own
    files, targeting on the probes, stability, the probe subset, and runs
    that leave no checkpoint behind."""

    def setUp(self):
        grid.P = grid.SMOLLM2_PROFILE
        self.tmp = tempfile.mkdtemp(prefix="grid-smollm2-test-")
        self.out = os.path.join(self.tmp, "out")
        self.docs = os.path.join(self.tmp, "docs")
        self.published = snapshot(PUBLISHED)

    def tearDown(self):
        grid.P = grid.MINILM_PROFILE
        shutil.rmtree(self.tmp)
        self.assertEqual(snapshot(PUBLISHED), self.published)

    def test_knowledge_figures_are_the_base_row_minus_the_last(self):
        r = fake_results("ncl", 0)
        r["knowledge"] = fake_knowledge("ncl", 0)
        m = grid.metrics(r)
        base, last = r["knowledge"]["rows"][0], r["knowledge"]["rows"][-1]
        self.assertEqual(m["probe accuracy lost"], base["accuracy"] - last["accuracy"])
        self.assertEqual(m["probe margin lost"], base["mean_margin"] - last["mean_margin"])
        self.assertEqual(m["probes forgotten"], last["forgotten"])
        self.assertEqual(m["general change"],
                         r["matrix"]["after"][1][0] - r["matrix"]["base"][0])

    def test_complete_grid_publishes_its_own_files(self):
        make_runs(self.out)
        d = os.path.join(self.out, "runs", "das", "seed-0")
        with open(os.path.join(d, "importance-stability.json"), "w") as f:
            json.dump({"general": [{"name": "heads", "rows": [0.2, 0.4, None]},
                                   {"name": "intermediate", "rows": [0.1, 0.3]}]}, f)
        code, stdout, _ = run_main("--profile", "smollm2", "--report-only", "--out", self.out,
                                   "--docs-dir", self.docs, "--docs")
        self.assertEqual(code, 0, stdout)
        self.assertEqual(sorted(os.listdir(self.docs)),
                         ["experiment-smollm2-tradeoff.svg", "experiment-smollm2.md",
                          "experiment-smollm2.svg"])
        with open(os.path.join(self.docs, "experiment-smollm2.md"), encoding="utf-8") as f:
            md = f.read()
        self.assertIn("Knowledge probes (6 items): the base model's accuracy 0.8333", md)
        self.assertIn("64 runs", md)
        # Targeting on the probes, for DAS and the positive control, against both controls.
        for label, control in [("das", "das-permuted"), ("das", "das-uniform"),
                               ("das-oracle", "das-oracle-permuted"),
                               ("das-oracle", "das-oracle-uniform")]:
            self.assertIn(f"| probe margin lost | {label} | {control} | 0,1,2,3,4 |", md)
            self.assertIn(f"| probe accuracy lost | {label} | {control} | 0,1,2,3,4 |", md)
        self.assertIn(f"probe margin lost ±{grid.MARGIN_EQUIVALENCE} nats", md)
        # Equal gain along NCL's four learning rates, for every forgetting figure.
        for name in grid.P.forgetting:
            self.assertIn(f"At equal gain, {name}:", md)
        # The stability of the one run that recorded it: heads' mean of 0.2 and 0.4.
        self.assertIn("| das | 0 | general | heads | 0.300 |", md)
        self.assertIn("| das | 0 | general | intermediate | 0.200 |", md)
        # One tradeoff panel per forgetting figure, each with the NCL curve and every cell.
        with open(os.path.join(self.docs, "experiment-smollm2-tradeoff.svg")) as f:
            svg = f.read()
        self.assertEqual(svg.count("<polyline"), 3)
        self.assertEqual(svg.count("<circle"), 3 * len(grid.SMOLLM2_CELLS))
        self.assertIn("Probe accuracy lost against total domain gain", svg)

    def test_a_run_without_knowledge_is_missing(self):
        make_runs(self.out)
        os.remove(os.path.join(self.out, "runs", "kd", "seed-0", "knowledge.json"))
        with open(os.path.join(self.out, "runs", "das", "seed-1",
                               "importance-stability.json"), "w") as f:
            f.write("{not json")
        code, stdout, msg = run_main("--profile", "smollm2", "--report-only", "--out",
                                     self.out, "--docs-dir", self.docs, "--docs")
        self.assertNotEqual(code, 0)
        self.assertIn("1 of 64 runs missing: kd (seed 0)", msg)
        self.assertEqual(sorted(os.listdir(os.path.join(self.out, "report"))),
                         ["partial-experiment-smollm2-tradeoff.svg",
                          "partial-experiment-smollm2.md", "partial-experiment-smollm2.svg"])
        self.assertFalse(os.path.exists(self.docs))
        # The run with an unreadable stability file still counts.
        self.assertIn("| das | 0,1,2,3,4 |", stdout)

    def test_equal_gain_reads_the_segment_that_holds_the_gain(self):
        # NCL's four learning rates at total gains 1, 2, 3 and 4 with figures
        # 0.1, 0.2, 0.6 and 0.7: a gain of 2.5 lies on the middle segment.
        res = self.ncl_points([0.1, 0.2, 0.6, 0.7])
        for gain, want, beyond in [(2.5, 0.4, False), (1.5, 0.15, False), (3.5, 0.65, False),
                                   (0.5, 0.05, True), (4.5, 0.75, True)]:
            got, extrapolated = grid.ncl_at_gain(res, 0, gain, "probe margin lost")
            self.assertAlmostEqual(got, want, places=9)
            self.assertEqual(extrapolated, beyond)

    def ncl_points(self, lost):
        """NCL's four learning rates at total gains 1, 2, 3 and 4, probe margin lost as given."""
        res = {}
        for label, gain, y in zip(["ncl-lr-5e-5", "ncl-lr-1e-4", "ncl-lr-2e-4", "ncl"],
                                  [1.0, 2.0, 3.0, 4.0], lost):
            r = fake_results(label, 0)
            r["matrix"]["base"][1:] = [4.0, 4.0]
            r["matrix"]["after"][0][1] = 4.0 - gain / 2
            r["matrix"]["after"][1][2] = 4.0 - gain / 2
            r["knowledge"] = fake_knowledge(label, 0)
            r["knowledge"]["rows"][-1]["mean_margin"] = 2.0 - y
            res[label] = {0: (r, 60.0)}
        return res

    def test_the_parabola_is_the_least_squares_one(self):
        # Points on lost = gain² / 10: the parabola is that one, inside and
        # beyond the points, where the straight line is not.
        res = self.ncl_points([0.1, 0.4, 0.9, 1.6])
        for gain, want, line, beyond in [(2.6, 0.676, 0.7, False), (3.5, 1.225, 1.25, False),
                                         (4.5, 2.025, 1.95, True)]:
            got, extrapolated = grid.ncl_at_gain(res, 0, gain, "probe margin lost", curve=True)
            self.assertAlmostEqual(got, want, places=9)
            self.assertEqual(extrapolated, beyond)
            self.assertAlmostEqual(grid.ncl_at_gain(res, 0, gain, "probe margin lost")[0],
                                   line, places=9)
        # Points off every parabola, (0, 0, 0, 1): by the orthogonal polynomials
        # of 1..4 the fit is 1/4 + 3/10 u + 1/4 (u² - 5/4), u = gain - 5/2.
        res = self.ncl_points([0.0, 0.0, 0.0, 1.0])
        for gain, want in [(2.5, -0.0625), (1.0, 0.05), (2.0, -0.15), (4.0, 0.95)]:
            got, _ = grid.ncl_at_gain(res, 0, gain, "probe margin lost", curve=True)
            self.assertAlmostEqual(got, want, places=9)
        self.assertTrue(math.isnan(grid.parabola([(1.0, 0.0), (1.0, 1.0), (2.0, 0.0)], 1.5)))

    def test_probe_subset_is_every_third_item_written_once(self):
        with contextlib.redirect_stdout(io.StringIO()):
            path = grid.probe_subset(self.out)
        with open(grid.PROBES, encoding="utf-8") as f:
            items = [json.loads(line) for line in f if line.strip()]
        with open(path, encoding="utf-8") as f:
            subset = [json.loads(line) for line in f]
        self.assertEqual(len(items), 405)
        self.assertEqual(subset, items[::3])
        self.assertEqual(len(subset), 135)
        before = os.stat(path).st_mtime_ns
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            self.assertEqual(grid.probe_subset(self.out), path)
        self.assertEqual(os.stat(path).st_mtime_ns, before)
        self.assertEqual(buf.getvalue(), "")

    def test_runs_go_seed_by_seed_and_leave_no_checkpoint(self):
        fake = os.path.join(self.tmp, "fake_continual_domains")
        with open(fake, "w") as f:
            f.write("#!/usr/bin/env python3\n"
                    "import os, sys\n"
                    "out = sys.argv[sys.argv.index('--out') + 1]\n"
                    "os.makedirs(os.path.join(out, 'checkpoints', 'python'), exist_ok=True)\n"
                    "open(os.path.join(out, 'results.json'), 'w').write('{}')\n"
                    "print(' '.join(sys.argv[1:]))\n")
        os.chmod(fake, 0o755)
        bin_before = grid.BIN
        grid.BIN = fake
        try:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                grid.run_grid(self.out, "model.gguf", 1, ["replay-0.25", "kd"])
        finally:
            grid.BIN = bin_before
        starts = [line.strip() for line in buf.getvalue().splitlines() if "start" in line]
        self.assertEqual(starts[:3], ["start replay-0.25 seed 0", "start kd seed 0",
                                      "start replay-0.25 seed 1"])
        self.assertEqual(len(starts), 6)
        d = os.path.join(self.out, "runs", "replay-0.25", "seed-3")
        self.assertEqual(sorted(os.listdir(d)), ["command.json", "results.json", "run.log"])
        with open(os.path.join(d, "command.json")) as f:
            cmd = json.load(f)["command"]
        self.assertEqual(cmd[cmd.index("--replay-fraction") + 1], "0.25")
        self.assertEqual(cmd[cmd.index("--seed") + 1], "3")
        self.assertEqual(cmd[cmd.index("--knowledge") + 1],
                         grid.rel(os.path.join(self.out, "base", "probes.jsonl")))


if __name__ == "__main__":
    unittest.main()
