"""Benchmark batch scoring: ``Project.predict`` Parquet → Parquet vs in-process predict and MLflow.

Run from the repository root (needs the dev extras, which include MLflow and Dask)::

    .venv/bin/python bench/batch_bench.py                 # 1,000,000 rows, ~6 minutes
    .venv/bin/python bench/batch_bench.py --rows 200000 --repeat 1 --skip-dask

What it does, in a temporary folder that is removed at the end (no data is kept):

1. trains the serving benchmark's model (``serve_bench.train()``: a HistGradientBoostingClassifier,
   100 iterations, 20 float features, seeded data, fitted on a DataFrame), pickles it, registers
   it as ``hgb`` in a shipyard project and saves it with ``mlflow.sklearn.save_model``;
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
   MLflow, peak memory), the phase tables, and PASS/FAIL for the targets (≥ 0.9x raw predict;
   peak memory that does not grow with the input: at 4x the rows at most 1.10x the peak).

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEATURES = 20
SEED = 0
ROW_GROUP = 100_000
TARGET = 0.9  # shipyard local rows/s ÷ raw model.predict rows/s
MEMORY_GROWTH = 1.10  # peak RSS at double the rows ÷ peak RSS at half the rows
MB = 1024 * 1024


# ---------------------------------------------------------------- shared helpers


def _train() -> tuple[Any, Any]:
    """The serving benchmark's model and training frame."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve_bench import train

    return train()


def write_input(path: Path, rows: int) -> None:
    """``rows`` seeded standard-normal rows of ``f0 … f19`` in row groups of 100,000."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"f{i}" for i in range(FEATURES)]
    schema = pa.schema([(name, pa.float64()) for name in names])
    with pq.ParquetWriter(path, schema) as writer:
        for group, start in enumerate(range(0, rows, ROW_GROUP)):
            n = min(ROW_GROUP, rows - start)
            values = np.random.default_rng([SEED + 1, group]).normal(size=(n, FEATURES))
            table = pa.table({name: values[:, i] for i, name in enumerate(names)}, schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)


class MemorySampler:
    """Peak RSS of this process plus all its descendants, sampled every 20 ms (psutil)."""

    def __init__(self, every: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self.tree_peak = 0
        self.children_peak = 0
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                own = self._process.memory_info().rss
                others = 0
                for child in self._process.children(recursive=True):
                    with suppress(psutil.Error):
                        others += child.memory_info().rss
            except psutil.Error:
                continue
            self.tree_peak = max(self.tree_peak, own + others)
            self.children_peak = max(self.children_peak, others)
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def rss_mb() -> float:
    """Current RSS of this process."""
    import psutil

    return float(psutil.Process().memory_info().rss / MB)


def peaks(sampler: MemorySampler) -> dict[str, float]:
    """Peak memory of this process (exact) and of its process tree (sampled), in MB."""
    sampler.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest child
    return {
        "peak_mb": own,
        "children_max_mb": children,
        "tree_peak_mb": max(sampler.tree_peak / MB, own),
        "children_sum_peak_mb": sampler.children_peak / MB,
    }


class Timers:
    """Seconds and calls per named phase, from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.wrapped_on = True  # False: wrapped functions run untimed (the alternatives)
        self._lock = threading.Lock()

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds[name] += elapsed
                self.calls[name] += 1

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Replace ``owner.attribute`` by a timed call of itself."""
        inner: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.wrapped_on:
                return inner(*args, **kwargs)
            with self.time(name):
                return inner(*args, **kwargs)

        setattr(owner, attribute, timed)


def check_labels(work: Path, rows: int, labels: Any) -> bool | None:
    """Whether ``labels`` equal raw ``model.predict`` on the same rows (None: not measured yet)."""
    import numpy as np

    reference = work / f"labels-raw-{rows}.npy"
    if not reference.exists():
        return None
    return bool(np.array_equal(np.load(reference), np.asarray(labels)))


# ---------------------------------------------------------------- contenders (child processes)


def child_raw(work: Path, rows: int, _chunk_rows: int) -> dict[str, Any]:
    """In-process ``model.predict`` / ``predict_proba`` on the whole input, already in memory."""
    import numpy as np
    import pandas as pd

    sampler = MemorySampler()
    with (work / "model.pkl").open("rb") as handle:
        model = pickle.load(handle)
    base = rss_mb()
    started = time.perf_counter()
    frame = pd.read_parquet(work / f"input-{rows}.parquet")
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    labels = model.predict(frame)
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    probabilities = model.predict_proba(frame)
    proba_s = time.perf_counter() - started
    out = {"seconds": predict_s, "proba_seconds": proba_s, "read_seconds": load_s,
           "base_mb": base, **peaks(sampler)}  # fmt: skip
    del probabilities
    reference = work / f"labels-raw-{rows}.npy"
    if not reference.exists():
        np.save(reference, labels)
    return out


def _shipyard_run(work: Path, rows: int, chunk_rows: int, engine: str) -> dict[str, Any]:
    started = time.perf_counter()  # imports a cold process would pay inside project.predict
    import sklearn.ensemble

    import shipyard.batch.dask_engine as dask_engine
    import shipyard.batch.run as batch_run
    import shipyard.flavors.sklearn as sklearn_flavor
    from shipyard import Project
    from shipyard.batch.inputs import ParquetInput
    from shipyard.batch.scoring import Scorer
    from shipyard.datasets import Datasets
    from shipyard.flavors.base import LoadedModel
    from shipyard.registry import Registry

    imports = time.perf_counter() - started
    sampler = MemorySampler()
    timers = Timers()
    timers.wrap(Registry, "load", "model load")
    timers.wrap(sklearn_flavor, "load_skops", "  skops load (of model load)")
    timers.wrap(ParquetInput, "read_chunk", "read (reader thread)")
    timers.wrap(Scorer, "score", "score (calling thread)")
    timers.wrap(LoadedModel, "prepare", "  prepare (signature validation)")
    hgb = sklearn.ensemble.HistGradientBoostingClassifier
    timers.wrap(hgb, "predict_proba", "  model.predict_proba (public)")
    timers.wrap(hgb, "predict", "  model.predict (public)")
    timers.wrap(hgb, "_raw_predict", "  model trees (_raw_predict, every pass)")
    timers.wrap(batch_run, "write_part", "write (writer thread)")
    timers.wrap(batch_run, "run_local", "chunks: read/score/write overlapped")
    timers.wrap(Datasets, "stage_parts", "stage parts (hash, copy into artifacts)")
    timers.wrap(Datasets, "commit", "commit dataset version")
    cluster: dict[str, float] = {}
    if engine == "dask":
        timers.wrap(dask_engine, "run_dask", "chunks on Dask (incl. cluster)")
        connect = dask_engine.connect

        @contextmanager
        def timed_connect(scheduler: str, workers: int) -> Iterator[Any]:
            started = time.perf_counter()
            with connect(scheduler, workers) as client:
                client.wait_for_workers(workers)
                cluster["startup_seconds"] = time.perf_counter() - started
                register = client.register_plugin

                def timed_register(*args: Any, **kwargs: Any) -> Any:
                    began = time.perf_counter()
                    try:
                        return register(*args, **kwargs)
                    finally:
                        cluster["plugin_seconds"] = time.perf_counter() - began

                client.register_plugin = timed_register
                try:
                    yield client
                finally:
                    closing = time.perf_counter()
            cluster["shutdown_seconds"] = time.perf_counter() - closing

        dask_engine.connect = timed_connect
    with Project(work / "project") as project:
        base = rss_mb()
        options: dict[str, Any] = {"chunk_rows": chunk_rows, "engine": engine}
        if engine == "dask":
            options |= {"scheduler": "local-cluster", "workers": 2}
        started = time.perf_counter()
        result = project.predict("hgb", str(work / f"input-{rows}.parquet"), **options)
        seconds = time.perf_counter() - started
        memory = peaks(sampler)
        dataset = result.job.dataset
        assert dataset is not None
        labels = project.datasets.read(dataset, columns=["prediction"])["prediction"]
    assert result.job.rows == rows, result.job.rows
    return {"seconds": seconds, "base_mb": base, **memory, **cluster, "import_seconds": imports,
            "phases": dict(timers.seconds), "calls": dict(timers.calls),
            "labels_equal": check_labels(work, rows, labels.to_numpy())}  # fmt: skip


def child_shipyard(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """``project.predict`` with the local engine, Parquet → predictions zone."""
    return _shipyard_run(work, rows, chunk_rows, "local")


def child_dask(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """``project.predict`` with the Dask engine on a 2-worker LocalCluster."""
    return _shipyard_run(work, rows, chunk_rows, "dask")


def child_phases(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """Shipyard's per-chunk work one step after the other (no threads), each step timed.

    The real ``Scorer.score``, ``ParquetInput.read_chunk`` and ``write_part`` run on every
    chunk, with timers wrapped around what ``score`` calls (``check_columns``,
    ``LoadedModel.prepare``, the model's ``predict_proba`` and ``predict``). Lines starting
    ``apart:`` or ``alt:`` are measured besides, on the same chunk, and are not in the sum:
    ``select + to_pandas`` alone, and alternatives for the suggestions (a numpy array instead
    of a DataFrame, one raw pass of serving's HistGradientBoosting kernel giving both labels
    and probabilities, other Parquet compressions).
    """
    import numpy as np
    import pyarrow.parquet as pq
    import sklearn.ensemble

    import shipyard.flavors.sklearn  # noqa: F401  (imported before, as in the real run)
    from shipyard import Project
    from shipyard.batch.inputs import ParquetInput
    from shipyard.batch.parts import write_part
    from shipyard.batch.scoring import Scorer
    from shipyard.flavors.base import LoadedModel
    from shipyard.flavors.kernels import HistGradientBoostingKernel

    sampler = MemorySampler()
    timers = Timers()
    hgb = sklearn.ensemble.HistGradientBoostingClassifier
    timers.wrap(Scorer, "check_columns", "  check_columns")
    timers.wrap(LoadedModel, "prepare", "  prepare (signature validation)")
    timers.wrap(hgb, "predict_proba", "  model.predict_proba (public)")
    timers.wrap(hgb, "predict", "  model.predict (public)")
    timers.wrap(hgb, "_raw_predict", "  model trees (_raw_predict, every pass)")
    with Project(work / "project") as project, timers.time("model load"):
        loaded = project.registry.load("hgb")
    scorer = Scorer(loaded, (), "phases")
    native = loaded.predictor.native
    kernel = HistGradientBoostingKernel.build(native)
    source = ParquetInput.open(work / f"input-{rows}.parquet")
    out_dir = Path(tempfile.mkdtemp(prefix="phases-", dir=work))
    same_answers = True
    constant = ["model", "model_version", "scored_at", "batch_id"]
    for index in range(-(-rows // chunk_rows)):
        first = index * chunk_rows
        with timers.time("read chunk (Parquet → Arrow)"):
            table = source.read_chunk(index, chunk_rows)
        with timers.time("score (Scorer.score)"):
            scored = scorer.score(table, first)
        with timers.time("write part (zstd, atomic rename)"):
            write_part(str(out_dir), index, scored)
        # measured besides, not in the sum
        timers.wrapped_on = False
        with timers.time("apart: select + to_pandas"):
            frame = table.select(scorer.features).to_pandas()
        with timers.time("alt: Arrow → numpy matrix"):
            matrix = np.column_stack([table.column(name).to_numpy() for name in scorer.features])
        with timers.time("alt: predict_proba on the numpy matrix"):
            native.predict_proba(matrix)
        if kernel is not None:
            with timers.time("alt: one kernel pass → labels and probabilities"):
                probabilities = kernel.predict_proba(matrix)
                labels = native.classes_[np.argmax(probabilities, axis=1)]
            same_answers &= bool(
                np.array_equal(labels, scored.column("prediction").to_numpy())
                and np.array_equal(probabilities[:, 1], scored.column("proba_1").to_numpy())
            )
        with timers.time("alt: write part with snappy"):
            pq.write_table(scored, out_dir / "snappy.parquet", compression="snappy")
        with timers.time("alt: write part uncompressed"):
            pq.write_table(scored, out_dir / "none.parquet", compression="none")
        with timers.time("alt: write part zstd, dictionary only for constant columns"):
            pq.write_table(scored, out_dir / "dict.parquet", compression="zstd",
                           use_dictionary=constant)  # fmt: skip
        timers.wrapped_on = True
        del frame
    memory = peaks(sampler)
    shutil.rmtree(out_dir, ignore_errors=True)
    summed = ("model load", "read chunk (Parquet → Arrow)", "score (Scorer.score)",
              "write part (zstd, atomic rename)")  # fmt: skip
    return {"seconds": sum(timers.seconds[name] for name in summed),
            "phases": dict(timers.seconds), "calls": dict(timers.calls),
            "kernel_same_answers": same_answers if kernel is not None else None,
            **memory}  # fmt: skip


def child_mlflow(work: Path, rows: int, _chunk_rows: int) -> dict[str, Any]:
    """The usual pyfunc batch recipe: read Parquet with pandas, predict, write with pandas."""
    import numpy as np
    import pandas as pd

    sampler = MemorySampler()
    started = time.perf_counter()
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(work / "mlflow-model"))
    load_s = time.perf_counter() - started
    base = rss_mb()
    out = work / f"mlflow-{os.getpid()}.parquet"
    started = time.perf_counter()
    frame = pd.read_parquet(work / f"input-{rows}.parquet")
    read_s = time.perf_counter() - started
    predictions = model.predict(frame)
    predict_s = time.perf_counter() - started - read_s
    pd.DataFrame({"prediction": np.asarray(predictions)}).to_parquet(out)
    seconds = time.perf_counter() - started
    memory = peaks(sampler)
    out.unlink()
    return {"seconds": seconds, "base_mb": base, **memory,
            "phases": {"import + load_model (not timed)": load_s, "read_parquet": read_s,
                       "pyfunc predict": predict_s,
                       "to_parquet": seconds - read_s - predict_s},
            "labels_equal": check_labels(work, rows, np.asarray(predictions))}  # fmt: skip


CHILDREN: dict[str, Callable[[Path, int, int], dict[str, Any]]] = {
    "raw": child_raw,
    "shipyard": child_shipyard,
    "phases": child_phases,
    "mlflow": child_mlflow,
    "dask": child_dask,
}


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
    model, frame = _train()
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
    for n in sorted({rows // 2, rows, rows * 2}):
        write_input(work / f"input-{n}.parquet", n)
    return {"seconds": time.perf_counter() - started, "peak_mb": 0.0}


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_idle(limit: float, busy: float = 0.3) -> float:
    """Wait (at most ``limit`` s) until other processes use < ``busy`` cores; the load seen."""
    deadline = time.monotonic() + limit
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        cores = busy_cpu_seconds() - before
        if cores < busy or time.monotonic() > deadline:
            return cores
        time.sleep(2.0)


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


def code_version() -> str:
    """The commit measured, and the files of ``src`` that differ from it (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in status.splitlines()]
    return f"{head}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


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
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for other processes to use "
        "< 0.3 cores (0: do not wait)",
    )
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
    plan: list[tuple[str, int]] = [("raw", args.rows), ("shipyard", args.rows)]
    if not args.skip_mlflow:
        plan.append(("mlflow", args.rows))
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
    for name, r in (("shipyard", ship), ("MLflow", mlflow), ("Dask", dask)):
        if r is not None:
            checks = {x.get("labels_equal") for x in r.results}
            print(f"{name} labels equal raw model.predict: {checks}")

    print()
    print(f"Where shipyard's time goes (local engine, {rows:,} rows, timers around its own code;")
    print("reader and writer threads overlap the calling thread, so threads' sums exceed wall;")
    print("the public predict/predict_proba include their own _raw_predict pass):")
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
             "read (reader thread)", "score (calling thread)", *inner, *public,
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
