"""The Dask engine: the same job, its chunks scored in parallel on a Dask cluster.

The model is never part of the task graph. A worker plugin opens the project's stores on
each worker (the metadata database and artifact store URLs travel, not the model) and
loads the job's model version once per worker; tasks find it there by job id. Each task
scores one chunk and writes its part to the job's work folder (shared storage for a real
cluster; the same folder for a ``LocalCluster``), so partitions never travel back through
the scheduler. Parquet inputs are read by the workers themselves (each task gets the file
list and its chunk number); CSV and SQL inputs, which can only be read front to back, are
read by the client and scattered to the workers chunk by chunk. At most two tasks per
worker thread are in flight, so the client's memory stays bounded too.

Outputs are identical to the local engine's (same chunks, same parts; only ``scored_at``
and ``batch_id`` differ between two jobs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.batch.inputs import BatchInput
from shipyard.batch.parts import write_part
from shipyard.batch.request import BatchRequest, Progress
from shipyard.batch.scoring import Scorer
from shipyard.core.exceptions import MissingDependencyError
from shipyard.registry import Registry

if TYPE_CHECKING:
    from distributed import WorkerPlugin
else:
    try:
        from distributed import WorkerPlugin
    except ImportError:  # the dask extra is not installed: _distributed() says so when used
        WorkerPlugin = object

LOCAL_CLUSTER = "local-cluster"
_ATTRIBUTE = "shipyard_scorers"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            "the dask engine needs Dask's distributed scheduler: pip install 'shipyard[dask]'"
        ) from exc
    return distributed


class ModelPlugin(WorkerPlugin):
    """Loads one job's model on every worker, once (a Dask ``WorkerPlugin``)."""

    def __init__(
        self,
        root: str,
        database_url: str,
        artifacts_url: str,
        ref: str,
        keys: list[str],
        batch_id: str,
    ) -> None:
        self.name = f"shipyard-model-{batch_id}"
        self.root = root
        self.database_url = database_url
        self.artifacts_url = artifacts_url
        self.ref = ref
        self.keys = keys
        self.batch_id = batch_id

    def setup(self, worker: Any) -> None:
        """Open the stores and load the model (called once per worker)."""
        from shipyard.core.settings import Settings, StoreSettings
        from shipyard.store import ArtifactStore, Database

        settings = Settings(
            root=Path(self.root),
            store=StoreSettings(database=self.database_url, artifacts=self.artifacts_url),
        )
        database = Database.open(settings.database_url)
        try:
            registry = Registry(database, ArtifactStore(settings.artifacts_url), settings)
            scorer = Scorer(registry.load(self.ref), self.keys, self.batch_id)
        finally:
            database.dispose()
        scorers = getattr(worker, _ATTRIBUTE, None)
        if scorers is None:
            scorers = {}
            setattr(worker, _ATTRIBUTE, scorers)
        scorers[self.batch_id] = scorer
        loads = getattr(worker, "shipyard_model_loads", 0)
        worker.shipyard_model_loads = loads + 1

    def teardown(self, worker: Any) -> None:
        """Forget the job's model."""
        getattr(worker, _ATTRIBUTE, {}).pop(self.batch_id, None)


def _scorer(batch_id: str) -> Scorer:
    worker = _distributed().get_worker()
    scorer: Scorer = getattr(worker, _ATTRIBUTE)[batch_id]
    return scorer


#: what a task hands back: rows written, and the warnings the model raised (Notes.take)
TaskResult = tuple[int, list[tuple[tuple[str, str], int]]]


def score_read_chunk(
    batch_id: str, source: BatchInput, index: int, chunk_rows: int, parts_dir: str
) -> TaskResult:
    """Task: read chunk ``index`` on the worker, score it, write its part."""
    table = source.read_chunk(index, chunk_rows)
    scorer = _scorer(batch_id)
    rows = write_part(parts_dir, index, scorer.score(table, index * chunk_rows))
    return rows, scorer.notes.take()


def score_given_chunk(
    batch_id: str, table: Any, index: int, first: int, parts_dir: str
) -> TaskResult:
    """Task: score a chunk the client scattered, write its part."""
    scorer = _scorer(batch_id)
    rows = write_part(parts_dir, index, scorer.score(table, first))
    return rows, scorer.notes.take()


@contextmanager
def connect(scheduler: str, workers: int) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster."""
    distributed = _distributed()
    if scheduler == LOCAL_CLUSTER:
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                # None still binds the scheduler's HTTP server to :8787, and warns when another
                # cluster holds it; a free port never clashes
                dashboard_address=":0",
                silence_logs=40,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    else:
        with distributed.Client(scheduler, timeout=30) as client:
            yield client


def run_dask(
    source: BatchInput,
    scorer: Scorer,
    registry: Registry,
    parts_dir: str,
    request: BatchRequest,
    skip: frozenset[int],
    progress: Progress | None,
    reused_rows: int = 0,
) -> int:
    """Score every chunk not in ``skip`` on Dask; the number of rows read."""
    distributed = _distributed()
    settings = registry.settings
    plugin = ModelPlugin(
        str(settings.root),
        settings.database_url,
        settings.artifacts_url,
        f"{scorer.name}:{scorer.version}",
        scorer.keys,
        scorer.batch_id,
    )
    assert request.scheduler is not None  # noqa: S101 - narrows the type; the caller guarantees it
    total = source.total_rows()
    written = reused_rows
    read = 0
    with connect(request.scheduler, request.workers) as client:
        client.register_plugin(plugin)
        slots = max(2, 2 * sum(client.nthreads().values()))
        running = distributed.as_completed()

        def collect(keep: int) -> None:
            """Wait for finished tasks until at most ``keep`` are in flight."""
            nonlocal written
            while running.count() > keep:
                rows, notes = next(running).result()
                written += rows
                scorer.notes.merge(notes)  # the job reports the workers' warnings too
                if progress is not None:
                    progress(written, total)

        try:
            if source.random_access and total is not None:
                for index in range(-(-total // request.chunk_rows)):
                    if index in skip:
                        continue
                    read += min(request.chunk_rows, total - index * request.chunk_rows)
                    running.add(client.submit(
                        score_read_chunk, scorer.batch_id, source, index, request.chunk_rows,
                        parts_dir, pure=False, key=f"shipyard-{scorer.batch_id}-{index}",
                    ))  # fmt: skip
                    collect(slots)
            else:
                for index, first, table in source.chunks(request.chunk_rows, skip):
                    read += table.num_rows
                    [scattered] = client.scatter([table], hash=False)
                    running.add(client.submit(
                        score_given_chunk, scorer.batch_id, scattered, index, first, parts_dir,
                        pure=False, key=f"shipyard-{scorer.batch_id}-{index}",
                    ))  # fmt: skip
                    collect(slots)
            collect(0)
        finally:
            client.unregister_worker_plugin(plugin.name)
    return read
