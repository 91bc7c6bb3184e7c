"""Benchmark drift detection and monitoring as users run it.

shipyard's ``compare`` against Evidently's ``DataDriftPreset``, and the whole ``shipyard
monitor`` command (read both files, score them with the model, drift, prediction drift,
quality, store the report) as a fresh process.

Run from the repository root (``make bench-monitor`` also creates ``.venv-evidently``)::

    .venv/bin/python bench/monitor_bench.py                       # 1,000,000 rows, ~8 minutes
    .venv/bin/python bench/monitor_bench.py --rows 100000 --repeat 1
    .venv/bin/python bench/monitor_bench.py --skip-evidently      # shipyard only

What it does, in a temporary folder that is removed at the end:

1. writes the workload once (``bench/monitor_data.py``, in a child process): a reference and a
   current Parquet file of ``--rows`` rows each, 20 float64 and 5 string columns, from one
   seeded generator, with drift in 7 columns by construction; and a project (``project/``)
   where ``drift:1`` is registered for those 25 columns: a scikit-learn pipeline (mean
   imputation of the 20 numbers, logistic regression; the 5 text columns are inputs it
   ignores) fitted on 20,000 reference rows, a model cheap to score so the engine shows;
2. runs every contender in its own fresh process (``--repeat`` times, round robin), after
   waiting (``--idle-wait``, at most 60 s) for other processes to leave the cores idle:

   - ``evidently``: ``bench/monitor_evidently.py`` in ``.venv-evidently`` (Evidently 0.7 needs
     pandas < 3): ``pd.read_parquet`` + ``Dataset.from_pandas`` with an explicit
     ``DataDefinition`` (timed apart, as "load"), then ``Report([DataDriftPreset()]).run``
     with the default methods and thresholds (timed);
   - ``shipyard``: ``shipyard.statistics.drift.compare([reference], [current])`` timed as a
     whole (it reads the Parquet files itself); imports are done before the timer;
   - ``command``: ``.venv/bin/shipyard monitor drift:1 --reference reference.parquet
     --current current.parquet --json`` in the project folder, what a user types: the
     process's wall time (start to exit, imports included) and peak RSS;
   - ``monitor``: ``Project.monitor`` with the same arguments, in process, timed after the
     imports and the model's load;
   - ``model``: the model alone on both files' rows, in the chunks and the way the monitor
     scores them (the signature's check, labels and probabilities): the model's part;
   - ``imports``: a fresh process importing what the command imports before it reads data
     (the CLI, the project, the monitoring engine, the sklearn flavor), timed;

   peak memory is the child's own ``ru_maxrss`` as ``wait4`` returns it to this launcher (a
   child's high-water mark starts at the RSS of the process that forked it: the launcher
   imports nothing heavy);
3. prints the timing table (median of the repeats, min-max), the largest absolute difference
   between the two tools' per-column scores for each method, every column whose method
   differs, the per-column table, and PASS/FAIL for the targets of issue 6 (shipyard ≤ 3 s,
   ≤ 500 MB, scores equal to Evidently's within 1e-6 where both compute the statistic from
   raw rows) and of issue 13 (the command ≤ 3 s and ≤ 900 MB as a fresh process, its drift
   scores those of ``compare``). The exit status is 0 whatever the verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor_report import MODEL, report
from shared_machine import add_idle_wait, busy_cpu_seconds, code_version, wait_for_idle

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ROWS = 20_000


# one spelling per method: registered names, Evidently's display names, common aliases
def child_setup(work: Path, rows: int) -> dict[str, Any]:
    """Write the two Parquet files and the project (in a child, so the launcher stays small)."""
    from monitor_data import write_pair

    started = time.perf_counter()
    reference, current = write_pair(work, rows)
    register_model(work / "project", reference)
    return {
        "seconds": time.perf_counter() - started,
        "bytes": reference.stat().st_size + current.stat().st_size,
    }


def register_model(folder: Path, reference: Path) -> None:
    """A project where ``drift:1`` takes the 25 columns (see the module docstring)."""
    import numpy as np
    import pyarrow.parquet as pq
    from monitor_data import CATEGORICAL, NUMERIC
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from shipyard import Project

    frame = pq.read_table(reference).slice(0, TRAIN_ROWS).to_pandas()[NUMERIC + CATEGORICAL]
    rng = np.random.default_rng(7)
    logit = frame["n0"] + 0.5 * frame["n6"] - 0.3
    target = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    numbers = make_column_transformer((SimpleImputer(), NUMERIC))
    model = make_pipeline(numbers, LogisticRegression(max_iter=500)).fit(frame, target)
    name, version = MODEL.split(":")
    with Project.init(folder, name="monitor-bench") as project:
        info = project.registry.register(name, model, input_example=frame.head(5), trust=True)
    if info.version != int(version):
        raise RuntimeError(f"expected {MODEL} but registered {name}:{info.version}")


def child_monitor(work: Path) -> dict[str, Any]:
    """``Project.monitor`` in process, timed after the imports and the model's load."""
    started = time.perf_counter()
    from shipyard import Project
    from shipyard.monitoring import run  # noqa: F401  (the engine's imports, before the timer)

    imports = time.perf_counter() - started
    with Project(work / "project") as project:
        project.registry.load(MODEL)  # the flavor's imports, before the timer
        started = time.perf_counter()
        outcome = project.monitor(MODEL, **_files(work))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "import_seconds": imports,
        "scores": {c["column"]: c["score"] for c in outcome.report["columns"]},
    }


def child_model(work: Path) -> dict[str, Any]:
    """The model alone on both files' rows, in the monitor's chunks, as the monitor scores
    them (``scoring.answers``: the signature's check, then labels and probabilities; one
    pass through a pipeline's transformers for both)."""
    import pyarrow.parquet as pq

    from shipyard import Project
    from shipyard.monitoring.scoring import CHUNK_ROWS, answers

    with Project(work / "project") as project:
        loaded = project.registry.load(MODEL)
    columns = loaded.signature.columns if loaded.signature is not None else None
    seconds, rows = 0.0, 0
    for path in _files(work).values():
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            frame = batch.to_pandas()
            started = time.perf_counter()
            answers(loaded, frame)
            seconds += time.perf_counter() - started
            rows += len(frame)
    return {"seconds": seconds, "rows": rows}


def child_imports() -> dict[str, Any]:
    """What the command imports before it reads data, in a fresh process."""
    started = time.perf_counter()
    import shipyard.cli.app
    import shipyard.flavors.sklearn
    import shipyard.monitoring.run
    import shipyard.project  # noqa: F401

    return {"seconds": time.perf_counter() - started}


def _files(work: Path) -> dict[str, str]:
    return {
        "reference": str(work / "reference.parquet"),
        "current": str(work / "current.parquet"),
    }


def child_shipyard(work: Path) -> dict[str, Any]:
    """``compare([reference], [current])``, timed; the per-column results."""
    started = time.perf_counter()
    import shipyard
    from shipyard.statistics.drift import compare

    imports = time.perf_counter() - started
    reference, current = str(work / "reference.parquet"), str(work / "current.parquet")
    started = time.perf_counter()
    report = compare([reference], [current])
    seconds = time.perf_counter() - started
    columns = {
        c.column: {
            "method": c.method,
            "kind": c.kind,
            "score": float(c.score),
            "threshold": c.threshold,
            "drifted": bool(c.drifted),
            "source": c.source,
            "bound": c.bound,
        }
        for c in report.columns
    }
    return {
        "seconds": seconds,
        "import_seconds": imports,
        "version": getattr(shipyard, "__version__", "?"),
        "columns": columns,
        "drift_share": float(report.drift_share),
        "dataset_drift": bool(report.dataset_drift),
        "self_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------- the launcher


def run_child(
    command: list[str], args: argparse.Namespace, wait: bool = True, cwd: Path | None = None
) -> dict[str, Any]:
    """Run one child; its JSON result (last stdout line) plus peak RSS and others' CPU.

    ``peak_mb`` is the child's ``ru_maxrss`` from ``wait4`` (Linux: KiB), its process tree's
    largest member; ``others_cores`` the CPU other processes of the machine used meanwhile.
    """
    if wait and args.idle_wait > 0:
        wait_for_idle(args.idle_wait)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy, started = busy_cpu_seconds(), time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd or ROOT)
        timer = threading.Timer(args.timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        own = usage.ru_utime + usage.ru_stime
        others = busy_cpu_seconds() - busy - own
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(command)} failed ({process.returncode}):\n{stdout[-2000:]}{stderr[-4000:]}"
        )
    result: dict[str, Any]
    if command[0].endswith("shipyard"):  # the command's --json report, over many lines
        report = json.loads(stdout)
        scores = {c["column"]: c["score"] for c in report["columns"]}
        result = {"seconds": wall, "scores": scores}
    else:
        result = json.loads(lines[-1])
    result |= {
        "peak_mb": usage.ru_maxrss / 1024,
        "wall": wall,
        "cpu_seconds": own,
        "others_cores": max(others, 0.0) / wall,
    }
    return result


def commands(work: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """The command line of every contender measured."""
    me = str(Path(__file__).resolve())
    plan: dict[str, list[str]] = {}
    if not args.skip_evidently:
        script = str(ROOT / "bench/monitor_evidently.py")
        plan["evidently"] = [
            str(args.evidently_python),
            script,
            str(work / "reference.parquet"),
            str(work / "current.parquet"),
        ]
    if not args.skip_shipyard:
        plan["shipyard"] = [sys.executable, me, "--child", "shipyard", "--work", str(work)]
    if not args.skip_command:
        files = _files(work)
        plan["command"] = [
            str(Path(sys.executable).parent / "shipyard"),
            "monitor",
            MODEL,
            "--reference",
            files["reference"],
            "--current",
            files["current"],
            "--json",
        ]
        for kind in ("monitor", "model", "imports"):
            plan[kind] = [sys.executable, me, "--child", kind, "--work", str(work)]
    return plan


def machine() -> str:
    """Date, cores and CPU model, for the record."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}; {os.cpu_count()} cores ({model}); Linux {platform.release()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender")
    parser.add_argument("--skip-evidently", action="store_true", help="do not run Evidently")
    parser.add_argument(
        "--skip-shipyard", action="store_true", help="do not run shipyard's compare"
    )
    parser.add_argument(
        "--skip-command",
        action="store_true",
        help="do not run the shipyard monitor command (nor its in-process, model and imports runs)",
    )
    parser.add_argument(
        "--evidently-python",
        type=Path,
        default=ROOT / ".venv-evidently/bin/python",
        help="the interpreter of Evidently's virtualenv (make .venv-evidently/bin/python)",
    )
    add_idle_wait(parser)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument(
        "--child",
        choices=["setup", "shipyard", "monitor", "model", "imports"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "setup":
        print(json.dumps(child_setup(args.work, args.rows)), flush=True)
        return 0
    children = {
        "shipyard": lambda: child_shipyard(args.work),
        "monitor": lambda: child_monitor(args.work),
        "model": lambda: child_model(args.work),
        "imports": child_imports,
    }
    if args.child in children:
        print(json.dumps(children[args.child]()), flush=True)
        return 0
    if not args.skip_evidently and not args.evidently_python.exists():
        parser.error(
            f"{args.evidently_python} not found: run `make .venv-evidently/bin/python` "
            "or pass --skip-evidently"
        )

    print(f"machine: {machine()}")
    print(f"code: {code_version()}")
    print(
        f"{args.rows:,} reference + {args.rows:,} current rows, 20 float64 + 5 string "
        f"columns, {args.repeat} repeat(s), each run in a fresh process; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-monitor-bench-") as tmp:
        work = Path(tmp)
        me = str(Path(__file__).resolve())
        setup = [sys.executable, me, "--child", "setup", "--work", tmp, "--rows", str(args.rows)]
        done = run_child(setup, args, wait=False)
        print(
            f"workload written in {done['seconds']:.1f} s ({done['bytes'] / 2**20:.0f} MB of "
            f"Parquet)",
            flush=True,
        )
        plan = commands(work, args)
        for repeat in range(args.repeat):
            for kind, command in plan.items():
                result = run_child(
                    command, args, cwd=work / "project" if kind == "command" else None
                )
                runs.setdefault(kind, []).append(result)
                load = f" + load {result['load_seconds']:.2f} s" if "load_seconds" in result else ""
                print(
                    f"  [{repeat + 1}/{args.repeat}] {kind:9} {result['seconds']:8.2f} s{load}"
                    f"  peak {result['peak_mb']:6.0f} MB  process CPU {result['cpu_seconds']:.1f} s"
                    f"  others {result['others_cores']:.2f} cores",
                    flush=True,
                )
    launcher = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"launcher peak RSS {launcher:.0f} MB (the floor of every child's ru_maxrss)")
    report(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
