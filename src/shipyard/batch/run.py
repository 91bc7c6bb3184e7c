"""``predict_batch``: score an input with a registered model, resumably, into the predictions store.

A job goes through four steps:

1. Its *spec* (model reference, input and its identity, output, chunk size, keys) is hashed;
   ``resume=True`` continues the newest unfinished job with the same spec, otherwise a new
   job is recorded in ``batch_jobs``.
2. Every chunk without a part in the job's work folder is read, scored and written as a part
   (:mod:`shipyard.batch.parts`). The local engine overlaps the three: a reader thread reads
   ahead, the calling thread scores, a writer thread writes behind — at most two chunks wait
   on either side, so memory depends on the chunk size, never on the input's size. The Dask
   engine (:mod:`shipyard.batch.dask_engine`) scores chunks on a cluster instead.
3. The parts are checked: chunks ``0 … n-1`` each once, as many rows as the input has.
4. The parts become a dataset version in the ``predictions`` zone, the export (CSV, SQL
   table) is written, and the job is marked succeeded. Each of these is idempotent, so a job
   killed at any instant and resumed ends with every input row scored exactly once.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shipyard.batch.inputs import BatchInput, InputSpec
from shipyard.batch.outputs import OutputSpec, check_output, parse_output, write_csv, write_sql
from shipyard.batch.parts import clear_temporary, done_parts, write_part
from shipyard.batch.request import BatchRequest, Progress
from shipyard.batch.scoring import Scorer
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
    try:
        result = _run(request, source, job, output, registry, datasets, store, work_dir, progress)
    except BaseException as exc:
        message = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
        store.update_job(job.id, status="failed", error=message, finished_at=utcnow())
        raise
    shutil.rmtree(work_dir, ignore_errors=True)  # its parts are blobs of the dataset now
    return BatchResult(result, resumed, time.perf_counter() - started)


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
) -> JobInfo:
    loaded = registry.load(f"{job.model}:{job.version}")  # a resumed job keeps its version
    scorer = Scorer(loaded, request.keys, job.id)
    source = spec.open(datasets=datasets, scratch=work_dir, column_types=scorer.float_features())
    store.update_job(job.id, input=source.describe(), status="running", error="")
    parts_dir = work_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    clear_temporary(str(parts_dir))
    done = done_parts(str(parts_dir))
    reused_rows = sum(done.values())
    if progress is not None:
        progress(reused_rows, source.total_rows())
    if request.engine == "dask":
        from shipyard.batch.dask_engine import run_dask

        read_rows = run_dask(
            source, scorer, registry, str(parts_dir), request, frozenset(done), progress,
            reused_rows,
        )  # fmt: skip
    else:
        read_rows = run_local(
            source, scorer, str(parts_dir), request.chunk_rows, frozenset(done), progress,
            reused_rows,
        )  # fmt: skip
    chunks, rows = _check_parts(parts_dir, source, request.chunk_rows, read_rows + reused_rows)
    staged = datasets.stage_parts(output.dataset, parts_dir)
    [dataset] = datasets.commit([staged], source=f"batch:{job.id}")
    if output.csv is not None:
        write_csv(parts_dir, output.csv)
    if output.sql_url is not None and output.table is not None:
        write_sql(parts_dir, output.sql_url, output.table, job.id)
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


def _prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(("error", exc))

    thread = threading.Thread(target=produce, name="shipyard-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


def run_local(
    source: BatchInput,
    scorer: Scorer,
    parts_dir: str,
    chunk_rows: int,
    skip: frozenset[int],
    progress: Progress | None,
    reused_rows: int = 0,
) -> int:
    """Score every chunk not in ``skip`` in this process; the number of rows read."""
    total = source.total_rows()
    written = reused_rows
    read = 0
    pending: list[Future[int]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="shipyard-batch-writer") as writer:
        for index, first, table in _prefetch(source.chunks(chunk_rows, skip), depth=1):
            read += table.num_rows
            scored = scorer.score(table, first)
            pending.append(writer.submit(write_part, parts_dir, index, scored))
            while len(pending) > 2 or (pending and pending[0].done()):
                written += pending.pop(0).result()
                if progress is not None:
                    progress(written, total)
        for future in pending:
            written += future.result()
            if progress is not None:
                progress(written, total)
    return read
