"""Benchmark batch scoring: ``shipyard predict`` and ``Project.predict`` Parquet → Parquet vs
in-process predict and MLflow.

Run from the repository root (needs the dev extras, which include MLflow and Dask)::

    .venv/bin/python bench/batch_bench.py                 # 1,000,000 rows, ~6 minutes
    .venv/bin/python bench/batch_bench.py --rows 200000 --repeat 1 --skip-dask

What it does, in a temporary folder that is removed at the end (no data is kept):

1. trains the serving benchmark's model (``serve_bench.train()``: a HistGradientBoostingClassifier,
   100 iterations, 20 float features, seeded data, fitted on a DataFrame), pickles it, registers
   it as ``hgb`` in a shipyard project, saves it with ``mlflow.sklearn.save_model`` and imports
   that folder as ``hgb-mlflow`` with ``shipyard models import-mlflow`` (as a user would);
2. writes seeded Parquet inputs of ``--rows`` rows (and half and double that) in row groups of
   100,000 rows; row group ``g`` of every file holds the same rows;
3. runs every contender in its own fresh subprocess (``--repeat`` times, round robin), so peak
   RSS is per contender and per run:

   - ``raw``: the pickled model and the whole input in memory first (not timed), then
     ``model.predict(X)`` and ``model.predict_proba(X)`` on the DataFrame;
   - ``shipyard``: ``project.predict("hgb", input, chunk_rows=...)`` (local engine) timed as a
     whole, with timers wrapped around its own functions (model load, read, ``Scorer.score``,
     ``LoadedModel.prepare``, the model's tree pass ``_raw_predict``, write, recording the
     dataset version); also at half and double the rows;
   - ``cli`` and ``cli-mlflow``: ``shipyard predict hgb --input FILE`` (and ``hgb-mlflow``), the
     command as users run it: a fresh process in the project folder, timed from its start
     (interpreter, imports, model load) to its exit;
   - ``phases``: the same functions one chunk and one step after the other (no threads), plus
     alternatives measured besides (numpy matrix, serving's HGB kernel, Parquet options);
   - ``mlflow``: ``mlflow.pyfunc.load_model`` (not timed), then ``pd.read_parquet`` →
     ``model.predict`` → ``DataFrame.to_parquet`` (timed);
   - ``dask``: ``project.predict(..., engine="dask", scheduler="local-cluster", workers=2)``,
     timed as a whole, without the LocalCluster's start-up and shut-down, and also without
     the model plugin (the model loaded on every worker);

   Before each run it waits (``--idle-wait``, at most 60 s) for other processes to leave the
   cores idle, and it reports the CPU they used meanwhile ("others' CPU"): the machine is
   shared, and an OpenMP team of two threads slows down a lot when another process takes a core;

4. prints one table (seconds as median and min-max, rows/s, ratios to raw ``predict`` and to
   MLflow, peak memory), the phase tables, and PASS/FAIL for the targets (``project.predict``
   ≥ 0.9x raw predict; the ``shipyard predict`` command, process start included, ≥ 0.85x; peak
   memory that does not grow with the input: at 4x the rows at most 1.10x the peak).

Every contender runs with the same ``OMP_NUM_THREADS`` (``--threads``, default: the number of
cores). Dask's nanny sets ``OMP_NUM_THREADS=1`` in its workers (``distributed.nanny.
pre-spawn-environ``): two one-thread workers use the same two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_contenders import CHILDREN, train_model, write_input
from shared_machine import (
    add_idle_wait,
    busy_cpu_seconds,
    children_cpu_seconds,
    code_version,
    wait_for_idle,
)

TARGET = 0.9  # shipyard local rows/s ÷ raw model.predict rows/s
CLI_TARGET = 0.85  # `shipyard predict` (a fresh process, start included) ÷ raw model.predict
MEMORY_GROWTH = 1.10  # peak RSS at double the rows ÷ peak RSS at half the rows


# ---------------------------------------------------------------- the parent


@dataclass
class Runs:
    """Every repeat of one contender at one size."""

    kind: str
    rows: int
    results: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.results if r.get(key) is not None]

    def median(self, key: str = "seconds") -> float:
        return statistics.median(self.values(key))

    def spread(self, key: str = "seconds") -> str:
        values = self.values(key)
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    def phase(self, name: str) -> list[float]:
        return [float(r["phases"].get(name, 0.0)) for r in self.results]


def setup(work: Path, rows: int, need_mlflow: bool) -> dict[str, Any]:
    """Model (pickle, shipyard registry, MLflow model folder) and the Parquet inputs.

    Run in a child process too: a child's ``ru_maxrss`` starts at the RSS of the process that
    forked it (Linux keeps the high-water mark across ``exec``), so the launcher stays small.
    """
    from shipyard import Project

    started = time.perf_counter()
    model, frame = train_model()
    with (work / "model.pkl").open("wb") as handle:
        pickle.dump(model, handle)
    with Project.init(work / "project", name="batch-bench") as project:
        project.registry.register("hgb", model, input_example=frame.head(5), trust=True)
    if need_mlflow:
        import mlflow.sklearn

        mlflow.sklearn.save_model(
            model,
            str(work / "mlflow-model"),
            input_example=frame.head(5),
            # we just trained it: trust the one type skops asks about for HGB models
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
        # as a user imports it: the command, in the project folder
        shipyard = str(Path(sys.executable).parent / "shipyard")
        subprocess.run(
            [shipyard, "models", "import-mlflow", str(work / "mlflow-model"), "--name",
             "hgb-mlflow", "--trust"],
            cwd=work / "project", check=True, capture_output=True,
        )  # fmt: skip
    for n in sorted({rows // 2, rows, rows * 2}):
        write_input(work / f"input-{n}.parquet", n)
    return {"seconds": time.perf_counter() - started, "peak_mb": 0.0}


def run_child(kind: str, work: Path, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """One contender in a fresh interpreter; its result dict.

    ``others_cores``: the CPU other processes of the machine used meanwhile, in cores (busy
    CPU seconds from ``/proc/stat`` minus the child's own, over the wall time).
    """
    if kind != "setup" and args.idle_wait > 0:
        wait_for_idle(args.idle_wait)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--work",
               str(work), "--rows", str(rows), "--chunk-rows", str(args.chunk_rows)]  # fmt: skip
    if args.skip_mlflow:
        command.append("--skip-mlflow")
    busy, own, started = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - started
    others = (busy_cpu_seconds() - busy) - (children_cpu_seconds() - own)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"{kind} at {rows} rows failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["others_cores"] = max(others, 0.0) / wall
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="input rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="shipyard chunk size")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of every run"
    )
    parser.add_argument("--skip-dask", action="store_true", help="do not measure the Dask engine")
    parser.add_argument("--skip-mlflow", action="store_true", help="do not measure MLflow")
    add_idle_wait(parser)
    parser.add_argument("--child", choices=[*CHILDREN, "setup"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "setup":
        result = setup(args.work, args.rows, not args.skip_mlflow)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.child:
        result = CHILDREN[args.child](args.work, args.rows, args.chunk_rows)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    half, double = args.rows // 2, args.rows * 2
    plan: list[tuple[str, int]] = [("raw", args.rows), ("shipyard", args.rows), ("cli", args.rows)]
    if not args.skip_mlflow:
        plan += [("mlflow", args.rows), ("cli-mlflow", args.rows)]
    if not args.skip_dask:
        plan.append(("dask", args.rows))
    plan += [("shipyard", half), ("shipyard", double), ("phases", args.rows)]
    runs = {key: Runs(*key) for key in plan}
    print(f"code: {code_version()}")
    print(
        f"{args.rows:,} rows (also {half:,} and {double:,} for shipyard), chunks of "
        f"{args.chunk_rows:,}, OMP_NUM_THREADS={args.threads}, {args.repeat} repeat(s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="shipyard-batch-bench-") as tmp:
        work = Path(tmp)
        done = run_child("setup", work, args.rows, args)
        print(f"setup (train, register, write inputs): {done['seconds']:.1f} s", flush=True)
        for repeat in range(args.repeat):
            for kind, rows in plan:
                result = run_child(kind, work, rows, args)
                runs[kind, rows].results.append(result)
                print(
                    f"  [{repeat + 1}/{args.repeat}] {kind:8} {rows:>9,} rows "
                    f"{result['seconds']:7.2f} s  peak {result['peak_mb']:6.0f} MB  "
                    f"others {result['others_cores']:.2f} cores",
                    flush=True,
                )
    launcher = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"launcher peak RSS {launcher:.0f} MB (the floor of every child's ru_maxrss)")
    return report(runs, args)


def phase_table(
    runs: Runs,
    order: Sequence[str],
    derived: dict[str, Callable[[dict[str, float], dict[str, Any]], float]],
    wall: float,
    total: str,
) -> None:
    """Print one phase table: calls, seconds (median, min-max) and share of ``wall``."""
    print("| phase | calls | seconds | share |")
    print("|---|---:|---:|---:|")
    calls = runs.results[0].get("calls", {})
    for name in order:
        if name in derived:
            values = [derived[name](r["phases"], r) for r in runs.results]
        else:
            values = runs.phase(name)
        median = statistics.median(values)
        shown = name.replace("  ", "&nbsp;&nbsp;")
        print(f"| {shown} | {calls.get(name, '')} | {median:.3f} ({min(values):.3f}-"
              f"{max(values):.3f}) | {median / wall:.0%} |")  # fmt: skip
    print(f"| **{total}** | | {wall:.3f} | 100% |")


def report(runs: dict[tuple[str, int], Runs], args: argparse.Namespace) -> int:
    """Print the tables and the verdicts; exit status 0 (both verdicts are printed)."""
    rows = args.rows
    raw = runs["raw", rows]
    raw_rps = rows / raw.median()
    mlflow = runs.get(("mlflow", rows))
    mlflow_rps = rows / mlflow.median() if mlflow else None

    def line(name: str, r: Runs, seconds: list[float], peak: str) -> str:
        median = statistics.median(seconds)
        rps = r.rows / median
        versus = f"{rps / mlflow_rps:.2f}x" if mlflow_rps else ""
        spread = f"{median:.2f} ({min(seconds):.2f}-{max(seconds):.2f})"
        others = r.values("others_cores")
        load = f"{statistics.median(others):.2f} ({max(others):.2f})"
        return (
            f"| {name} | {r.rows:,} | {spread} | {rps:,.0f} | {rps / raw_rps:.2f}x | {versus} "
            f"| {peak} | {load} |"
        )

    def peak(r: Runs, key: str = "peak_mb") -> str:
        values = r.values(key)
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    print()
    print(f"Seconds: median (min-max) of {args.repeat} run(s), each in a fresh process.")
    print()
    print(
        "| contender | rows | seconds | rows/s | vs raw predict | vs MLflow | peak RSS MB "
        "| others' CPU, cores (max) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(line("raw `model.predict(X)` (X in memory)", raw, raw.values("seconds"), peak(raw)))
    print(line("raw `model.predict_proba(X)`", raw, raw.values("proba_seconds"), "same run"))
    for n in (rows // 2, rows, rows * 2):
        r = runs["shipyard", n]
        print(line("shipyard local, whole `project.predict`", r, r.values("seconds"), peak(r)))
        if n == rows:
            score = r.phase("score (calling thread)")
            print(line("shipyard local, score phase only", r, score, "same run"))
    commands = (("cli", "`shipyard predict hgb` (fresh process, start included)"),
                ("cli-mlflow", "`shipyard predict` of the MLflow import, same"))  # fmt: skip
    for kind, name in commands:
        command = runs.get((kind, rows))
        if command:
            print(line(name, command, command.values("seconds"), peak(command)))
    if mlflow:
        print(line("MLflow pyfunc, read → predict → write", mlflow, mlflow.values("seconds"),
                   peak(mlflow)))  # fmt: skip
    dask = runs.get(("dask", rows))
    if dask:
        tree = f"{peak(dask, 'tree_peak_mb')} total"
        print(line("shipyard Dask, 2-worker LocalCluster", dask, dask.values("seconds"), tree))
        net = [
            r["seconds"] - r.get("startup_seconds", 0.0) - r.get("shutdown_seconds", 0.0)
            for r in dask.results
        ]
        print(line("shipyard Dask, without cluster start/stop", dask, net, "same run"))
        scoring = [n - r.get("plugin_seconds", 0.0) for n, r in zip(net, dask.results, strict=True)]
        print(line("shipyard Dask, also without model load on workers", dask, scoring, "same run"))
    print()
    print(
        f"raw: base RSS (model loaded, before the input) {peak(raw, 'base_mb')} MB; reading "
        f"the input into pandas (not timed) {raw.spread('read_seconds')} s"
    )
    ship = runs["shipyard", rows]
    print(
        f"shipyard local: base RSS (project open, before the job) {peak(ship, 'base_mb')} MB; "
        f"imports done before the timed call (sklearn, skops, shipyard.batch; a cold CLI "
        f"pays them inside it) {ship.spread('import_seconds')} s"
    )
    if mlflow:
        print(f"MLflow: base RSS (mlflow imported, model loaded) {peak(mlflow, 'base_mb')} MB")
    if dask:
        print(
            f"Dask: client process peak {peak(dask)} MB, largest worker "
            f"{peak(dask, 'children_max_mb')} MB, workers together (sampled) "
            f"{peak(dask, 'children_sum_peak_mb')} MB; cluster start-up "
            f"{dask.spread('startup_seconds')} s, model plugin (load on every worker) "
            f"{dask.spread('plugin_seconds')} s, shut-down {dask.spread('shutdown_seconds')} s"
        )
    cli = runs["cli", rows]
    print(
        f"`shipyard predict`: the job itself (its --json seconds) {cli.spread('job_seconds')} s; "
        f"process start, imports and recording before and after it {cli.spread('start_seconds')} s"
    )
    notes = {note for r in cli.results for note in r.get("notes", [])}
    print(f"`shipyard predict` notes (the model's warnings, once each): {sorted(notes) or 'none'}")
    named = (("shipyard", ship), ("shipyard predict", cli), ("MLflow", mlflow), ("Dask", dask),
             ("shipyard predict (MLflow import)", runs.get(("cli-mlflow", rows))))  # fmt: skip
    for name, r in named:
        if r is not None:
            checks = {x.get("labels_equal") for x in r.results}
            print(f"{name} labels equal raw model.predict: {checks}")

    print()
    print(f"Where shipyard's time goes (local engine, {rows:,} rows, timers around its own code;")
    print("reader and writer threads overlap the calling thread, so threads' sums exceed wall;")
    print("the public predict/predict_proba include their own _raw_predict pass, run on the")
    print("first chunk's check; the tree pass runs on the scoring threads, per block, while the")
    print("calling thread waits for it inside 'score'):")
    print()
    wall = ship.median()
    inner = ["  prepare (signature validation)", "  model trees (_raw_predict, every pass)"]
    public = ["  model.predict_proba (public)", "  model.predict (public)"]
    outer = ["model load", "chunks: read/score/write overlapped",
             "stage parts (hash, copy into artifacts)", "commit dataset version"]  # fmt: skip
    derived = {
        "  rest of score (check, to_pandas, link + labels, output table)": lambda got, _r: (
            got["score (calling thread)"] - sum(got.get(n, 0.0) for n in inner)
        ),
        "other (job records, input identity, part checks)": lambda got, r: (
            r["seconds"] - sum(got.get(n, 0.0) for n in outer)
        ),
    }
    order = ["model load", "  skops load (of model load)", "chunks: read/score/write overlapped",
             "read (reader thread)", "score (calling thread)",
             "  tree pass (scoring threads, per block)", *inner, *public,
             "  rest of score (check, to_pandas, link + labels, output table)",
             "write (writer thread)",
             "stage parts (hash, copy into artifacts)", "commit dataset version",
             "other (job records, input identity, part checks)"]  # fmt: skip
    phase_table(ship, order, derived, wall, "whole `project.predict`")

    phases = runs["phases", rows]
    print()
    print(f"Shipyard's steps one after the other (no threads, {rows:,} rows, chunks of "
          f"{args.chunk_rows:,}, the real functions with timers):")  # fmt: skip
    print()
    inner = ["  check_columns", *inner]
    derived = {
        "  rest of score (select + to_pandas, link + labels, output table)": lambda got, _r: (
            got["score (Scorer.score)"] - sum(got.get(n, 0.0) for n in inner)
        )
    }
    order = ["model load", "read chunk (Parquet → Arrow)", "score (Scorer.score)", *inner,
             *public, *derived, "write part (zstd, atomic rename)"]  # fmt: skip
    phase_table(phases, order, derived, phases.median(), "sum")
    print()
    print("Measured besides on every chunk (not in the sum):")
    print()
    print("| step | seconds | rows/s |")
    print("|---|---:|---:|")
    for name in phases.results[0]["phases"]:
        if name.startswith(("apart:", "alt:")):
            values = phases.phase(name)
            median = statistics.median(values)
            print(f"| {name} | {median:.3f} ({min(values):.3f}-{max(values):.3f}) | "
                  f"{rows / median:,.0f} |")  # fmt: skip
    same = {r.get("kernel_same_answers") for r in phases.results}
    print(f"kernel labels and probabilities identical to Scorer.score's: {same}")
    if mlflow:
        print()
        print("MLflow phases (median s): " + ", ".join(
            f"{name} {statistics.median(mlflow.phase(name)):.3f}"
            for name in mlflow.results[0]["phases"]
        ))  # fmt: skip
    print()
    ratio = (rows / ship.median()) / raw_rps
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"target: shipyard local >= {TARGET}x raw model.predict rows/s: {verdict} "
          f"({ratio:.2f}x; {rows / ship.median():,.0f} vs {raw_rps:,.0f} rows/s)")  # fmt: skip
    best = (rows / min(ship.values("seconds"))) / (rows / min(raw.values("seconds")))
    print(f"        on the fastest run of each: {best:.2f}x")
    for kind in ("cli", "cli-mlflow"):
        command = runs.get((kind, rows))
        if command is None:
            continue
        ratio = (rows / command.median()) / raw_rps
        verdict = "PASS" if ratio >= CLI_TARGET else "FAIL"
        best = (rows / min(command.values("seconds"))) / (rows / min(raw.values("seconds")))
        print(f"target: `shipyard predict` ({kind}, a fresh process, start included) >= "
              f"{CLI_TARGET}x raw model.predict rows/s: {verdict} ({ratio:.2f}x; fastest runs "
              f"{best:.2f}x)")  # fmt: skip
    small = runs["shipyard", rows // 2].median("peak_mb")
    large = runs["shipyard", rows * 2].median("peak_mb")
    grows = large / small
    verdict = "PASS" if grows <= MEMORY_GROWTH else "FAIL"
    print(f"target: shipyard local peak RSS does not grow with the input (at 4x the rows <= "
          f"{MEMORY_GROWTH:.2f}x): {verdict} ({small:,.0f} MB at {rows // 2:,} rows, "
          f"{large:,.0f} MB at {rows * 2:,} rows: {grows:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
