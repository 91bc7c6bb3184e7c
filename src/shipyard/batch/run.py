"""``predict_batch``: score an input with a registered model, resumably, into the predictions store.

A job goes through four steps:

1. Its *spec* (model reference, input and its identity, output, chunk size, keys) is hashed;
   ``resume=True`` continues the newest unfinished job with the same spec, otherwise a new
   job is recorded in ``batch_jobs``.
2. Every chunk without a part in the job's work folder is read, scored and written as a part
   (:mod:`shipyard.batch.parts`). The local engine overlaps the three: a reader thread reads
   ahead (it starts before the model is loaded, so the first chunk is ready when the model
   is), the scorer works on one chunk while the next one's rows queue behind it on the same
   threads, and a writer thread writes behind. At most two chunks wait on either side, so
   memory depends on the chunk size, never on the input's size. Parquet inputs are read for
   the model's features and the keys only. The Dask engine
   (:mod:`shipyard.batch.dask_engine`) scores chunks on a cluster instead.
3. The parts are checked: chunks ``0 … n-1`` each once, as many rows as the input has.
4. The parts become a dataset version in the ``predictions`` zone, the export (``--output``:
   a file, a folder, a SQL table; :mod:`shipyard.batch.outputs`) is written, and the job is
   marked succeeded. Each of these is idempotent, so a job killed at any instant and resumed
   ends with every input row scored exactly once.

Warnings the model raised are reported once each in :attr:`BatchResult.notes`, not per chunk.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow as pa

from shipyard.batch.exports import export
from shipyard.batch.inputs import BatchInput, Chunk, InputSpec
from shipyard.batch.outputs import OutputSpec, check_output, parse_output
from shipyard.batch.parts import clear_temporary, done_parts, write_part
from shipyard.batch.request import BatchRequest, Progress
from shipyard.batch.scoring import Pending, Scorer
from shipyard.core.clock import utcnow
from shipyard.core.exceptions import DataSourceError, ShipyardError
from shipyard.datasets import Datasets
from shipyard.datasets.predictions import JobInfo, PredictionStore
from shipyard.registry import Registry

T = TypeVar("T")


@dataclass
class BatchResult:
    """What a finished job did."""

    job: JobInfo
    resumed: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: warnings the model raised while scoring, once each (``Category: message (N times)``)
    notes: tuple[str, ...] = ()

    @property
    def rows_per_s(self) -> float:
        """Rows scored by this run (not reused) per second of wall time."""
        scored = self.job.rows - self.job.rows_reused
        return scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard predict --json``)."""
        return {
            **self.job.to_dict(),
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "notes": list(self.notes),
            **self.extra,
        }


def predict_batch(
    request: BatchRequest,
    *,
    registry: Registry,
    datasets: Datasets,
    store: PredictionStore,
    work_root: Path,
    progress: Progress | None = None,
) -> BatchResult:
    """Run (or resume) one batch scoring job and return its record."""
    started = time.perf_counter()
    info = registry.get(request.ref)
    output = parse_output(request.output, request.table, info.name)
    source = InputSpec.parse(request.input, request.query)  # refused before a job is recorded
    check_output(output)
    identity = source.identity(datasets)
    spec = [request.ref, identity, output.describe(), output.dataset, request.chunk_rows,
            list(request.keys)]  # fmt: skip
    spec_hash = hashlib.sha256(json.dumps(spec).encode()).hexdigest()
    job = store.resumable(spec_hash) if request.resume else None
    resumed = job is not None
    if job is None:
        job_id = uuid.uuid4().hex[:16]
        job = store.create_job(
            id=job_id,
            spec_hash=spec_hash,
            ref=request.ref,
            model=info.name,
            version=info.version,
            input="",
            output=output.describe(),
            engine=request.engine,
            chunk_rows=request.chunk_rows,
            key_columns=list(request.keys),
            work_dir=str(work_root / job_id),
            created_by=datasets.actor,
        )
    work_dir = Path(job.work_dir)
    notes: list[str] = []
    try:
        result = _run(
            request, source, job, output, registry, datasets, store, work_dir, progress, notes
        )
    except BaseException as exc:
        message = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
        store.update_job(job.id, status="failed", error=message, finished_at=utcnow())
        raise
    shutil.rmtree(work_dir, ignore_errors=True)  # its parts are blobs of the dataset now
    return BatchResult(result, resumed, time.perf_counter() - started, notes=tuple(notes))


def _run(
    request: BatchRequest,
    spec: InputSpec,
    job: JobInfo,
    output: OutputSpec,
    registry: Registry,
    datasets: Datasets,
    store: PredictionStore,
    work_dir: Path,
    progress: Progress | None,
    notes: list[str],
) -> JobInfo:
    ref = f"{job.model}:{job.version}"  # a resumed job keeps its version
    signature = registry.get(ref).signature
    features = signature.columns if signature is not None else []
    inputs = signature.inputs if signature is not None else ()
    floats = {c.name: pa.float64() for c in inputs if c.dtype.startswith("float")}
    source = spec.open(
        datasets=datasets,
        scratch=work_dir,
        column_types=floats,
        columns=[*features, *(k for k in request.keys if k not in features)] or None,
    )
    store.update_job(job.id, input=source.describe(), status="running", error="")
    parts_dir = work_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    clear_temporary(str(parts_dir))
    done = done_parts(str(parts_dir))
    reused_rows = sum(done.values())
    if progress is not None:
        progress(reused_rows, source.total_rows())
    local = request.engine != "dask"
    # the reader starts before the model loads: the first chunk is read meanwhile
    reader = Prefetcher(source.chunks(request.chunk_rows, frozenset(done)), 1) if local else None
    try:
        scorer = Scorer(registry.load(ref), request.keys, job.id)
        if reader is not None:
            read_rows = run_local(
                source, scorer, str(parts_dir), request.chunk_rows, frozenset(done), progress,
                reused_rows, chunks=reader,
            )  # fmt: skip
        else:
            from shipyard.batch.dask_engine import run_dask

            read_rows = run_dask(
                source, scorer, registry, str(parts_dir), request, frozenset(done), progress,
                reused_rows,
            )  # fmt: skip
    finally:
        if reader is not None:
            reader.close()
    notes.extend(scorer.notes.lines())
    chunks, rows = _check_parts(parts_dir, source, request.chunk_rows, read_rows + reused_rows)
    staged = datasets.stage_parts(output.dataset, parts_dir)
    [dataset] = datasets.commit([staged], source=f"batch:{job.id}")
    export(output, parts_dir, job.id)
    return store.update_job(
        job.id,
        status="succeeded",
        rows=rows,
        rows_reused=reused_rows,
        chunks=chunks,
        chunks_reused=len(done),
        dataset_zone=dataset.zone,
        dataset_name=dataset.name,
        dataset_version=dataset.version,
        finished_at=utcnow(),
    )


def _check_parts(
    parts_dir: Path, source: BatchInput, chunk_rows: int, seen_rows: int
) -> tuple[int, int]:
    """(chunks, rows) once every chunk is scored exactly once; else say what is wrong."""
    done = done_parts(str(parts_dir))
    if not done:
        raise DataSourceError(f"the input {source.describe()} has no rows to score")
    chunks = max(done) + 1
    missing = sorted(set(range(chunks)) - set(done))
    if missing:
        raise ShipyardError(
            f"chunks {missing[:5]} of the job are missing; run the same command with --resume"
        )
    rows = sum(done.values())
    total = source.total_rows()
    expected = total if total is not None else seen_rows
    short = [i for i, n in done.items() if i < chunks - 1 and n != chunk_rows]
    if rows != expected or short:
        raise ShipyardError(
            f"the job's parts hold {rows} rows but the input has {expected}; the input changed "
            "while it was scored: run the job again without --resume"
        )
    return chunks, rows


class Prefetcher(Generic[T]):
    """``items`` produced by a background thread (started at once), at most ``depth`` ahead
    of the consumer; :meth:`close` stops it."""

    def __init__(self, items: Iterator[T], depth: int) -> None:
        self._items = items
        self._handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, name="shipyard-batch-reader", daemon=True
        )
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._items:
                while not self._stop.is_set():
                    try:
                        self._handoff.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._handoff.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._handoff.put(("error", exc))

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        """Stop reading ahead (what was read is dropped)."""
        self._stop.set()
        deadline = time.monotonic() + 5  # a chunk being read is finished, then dropped
        while self._thread.is_alive() and time.monotonic() < deadline:
            with suppress(queue.Empty):  # unblock a producer waiting on a full queue
                self._handoff.get(timeout=0.05)


def run_local(
    source: BatchInput,
    scorer: Scorer,
    parts_dir: str,
    chunk_rows: int,
    skip: frozenset[int],
    progress: Progress | None,
    reused_rows: int = 0,
    *,
    chunks: Prefetcher[Chunk] | None = None,
) -> int:
    """Score every chunk not in ``skip`` in this process; the number of rows read.

    ``chunks``: a reader already started on ``source.chunks(chunk_rows, skip)``.
    """
    total = source.total_rows()
    written = reused_rows
    read = 0
    scoring: deque[tuple[int, Pending]] = deque()
    writes: deque[Future[int]] = deque()
    reader = chunks if chunks is not None else Prefetcher(source.chunks(chunk_rows, skip), 1)

    def collect(keep: int) -> None:
        nonlocal written
        while len(writes) > keep or (writes and writes[0].done()):
            written += writes.popleft().result()
            if progress is not None:
                progress(written, total)

    try:
        with (
            scorer.notes.capture(),
            ThreadPoolExecutor(1, thread_name_prefix="shipyard-batch-writer") as writer,
        ):
            try:
                for index, first, table in reader:
                    read += table.num_rows
                    scoring.append((index, scorer.start(table, first)))
                    if len(scoring) > 1:  # the newer chunk keeps the scorer busy meanwhile
                        done, pending = scoring.popleft()
                        writes.append(writer.submit(write_part, parts_dir, done, pending.result()))
                    collect(2)
            except BaseException:
                for done, pending in scoring:  # chunks scored before the failure: for --resume
                    with suppress(Exception):
                        writes.append(writer.submit(write_part, parts_dir, done, pending.result()))
                raise
            while scoring:
                done, pending = scoring.popleft()
                writes.append(writer.submit(write_part, parts_dir, done, pending.result()))
            collect(0)
    finally:
        reader.close()
        scorer.close()
    return read
