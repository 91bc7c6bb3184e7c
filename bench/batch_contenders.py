"""The contenders of ``bench/batch_bench.py``, each run in a child process of its own.

``batch_bench.py --child KIND`` calls ``CHILDREN[KIND]``; this module holds what a child does
(train, write the input, measure one contender with its timers and memory sampler) so the
launcher stays a small process (see ``batch_bench.py``). Heavy libraries are imported inside
the functions, never at import time.
"""

from __future__ import annotations

import os
import pickle
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

FEATURES = 20
SEED = 0
ROW_GROUP = 100_000
MB = 1024 * 1024


# ---------------------------------------------------------------- shared helpers


def train_model() -> tuple[Any, Any]:
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
    from shipyard.batch.modes import KernelMode
    from shipyard.batch.scoring import Pending, Scorer
    from shipyard.datasets import Datasets
    from shipyard.flavors.base import LoadedModel
    from shipyard.registry import Registry

    imports = time.perf_counter() - started
    sampler = MemorySampler()
    timers = Timers()
    timers.wrap(Registry, "load", "model load")
    timers.wrap(sklearn_flavor, "load_skops", "  skops load (of model load)")
    timers.wrap(ParquetInput, "read_chunk", "read (reader thread)")
    # the calling thread starts a chunk (its blocks go to the scoring threads) and later
    # waits for it and builds its table: both are its share of scoring
    timers.wrap(Scorer, "start", "score (calling thread)")
    timers.wrap(Pending, "result", "score (calling thread)")
    timers.wrap(KernelMode, "_raw", "  tree pass (scoring threads, per block)")
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


def _cli(work: Path, rows: int, chunk_rows: int, model: str) -> dict[str, Any]:
    """``shipyard predict MODEL --input FILE`` as a user types it: a fresh process in the
    project folder, timed from its start (imports, model load) to its exit."""
    import subprocess

    source = work / f"input-{rows}.parquet"
    command = [str(Path(sys.executable).parent / "shipyard"), "predict", model, "--input",
               str(source), "--chunk-rows", str(chunk_rows), "--json"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work / "project", capture_output=True, text=True)
    seconds = time.perf_counter() - started
    # this child imports nothing heavy before: its largest child is the command
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    result = json_loads(done.stdout)
    import numpy as np

    from shipyard import Project

    with Project(work / "project") as project:
        labels = project.datasets.read(result["dataset"], columns=["prediction"])["prediction"]
    return {"seconds": seconds, "peak_mb": peak, "job_seconds": result["seconds"],
            "start_seconds": seconds - result["seconds"], "notes": result.get("notes", []),
            "labels_equal": check_labels(work, rows, np.asarray(labels))}  # fmt: skip


def json_loads(text: str) -> Any:
    """The JSON document printed last (``--json``), whatever came before it."""
    import json

    return json.loads(text[text.index("{") :])


def child_cli(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """``shipyard predict hgb`` (registered natively) in a fresh process."""
    return _cli(work, rows, chunk_rows, "hgb")


def child_cli_mlflow(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """``shipyard predict hgb-mlflow`` (imported with ``shipyard models import-mlflow``)."""
    return _cli(work, rows, chunk_rows, "hgb-mlflow")


CHILDREN: dict[str, Callable[[Path, int, int], dict[str, Any]]] = {
    "cli": child_cli,
    "cli-mlflow": child_cli_mlflow,
    "raw": child_raw,
    "shipyard": child_shipyard,
    "phases": child_phases,
    "mlflow": child_mlflow,
    "dask": child_dask,
}
