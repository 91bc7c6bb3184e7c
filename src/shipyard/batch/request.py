"""What a batch job is asked to do (``BatchRequest``), shared by both engines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipyard.core.exceptions import InvalidArgumentError

ENGINES = ("local", "dask")
DEFAULT_CHUNK_ROWS = 100_000
#: progress(rows scored so far, including reused ones; total rows when known)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class BatchRequest:
    """What ``shipyard predict`` was asked to do."""

    ref: str
    input: str
    query: str | None = None
    output: str | None = None
    table: str | None = None
    keys: tuple[str, ...] = ()
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    resume: bool = False
    engine: str = "local"
    #: a Dask scheduler address, or ``local-cluster`` for a LocalCluster of ``workers`` workers
    scheduler: str | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise InvalidArgumentError(f"chunk rows must be at least 1 but got {self.chunk_rows}")
        if self.workers < 1:  # a LocalCluster of no workers never runs a task: the job hangs
            raise InvalidArgumentError(f"workers must be at least 1 but got {self.workers}")
        if self.engine not in ENGINES:
            raise InvalidArgumentError(
                f"engine must be one of {', '.join(ENGINES)} but got {self.engine!r}"
            )
        if self.engine == "dask" and not self.scheduler:
            raise InvalidArgumentError(
                "the dask engine needs --scheduler ADDRESS (tcp://host:8786) or local-cluster"
            )
        if self.scheduler and self.engine != "dask":
            raise InvalidArgumentError("--scheduler goes with --engine dask")
