"""A run's heartbeat: proof, written every few seconds, that its process is still alive.

The runner writes ``runs.heartbeat_at`` from a daemon thread while a run goes on
(``[runs] heartbeat_seconds``). A process killed with SIGKILL, or a machine that went
away, stops writing it; the next ``shipyard run``, ``shipyard runs list`` or scheduler
start finds the run ``running`` with a heartbeat older than ``[runs] stale_after_seconds``
and marks it ``failed`` (:meth:`~shipyard.datasets.run_records.Runs.fail_stale`).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from shipyard.core.settings import Settings
from shipyard.datasets.run_records import Runs

log = logging.getLogger(__name__)


def fail_stale_runs(runs: Runs, settings: Settings) -> list[str]:
    """Mark failed the runs whose process stopped (no heartbeat within the project's limit)."""
    marked = runs.fail_stale(timedelta(seconds=settings.runs.stale_after_seconds))
    for run_id in marked:
        log.warning("run %s lost its process (no heartbeat): marked failed", run_id)
    return marked


class Heartbeat:
    """Writes ``run_id``'s heartbeat every ``interval`` seconds while the block runs."""

    def __init__(self, runs: Runs, run_id: str, interval: float) -> None:
        self.runs = runs
        self.run_id = run_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"shipyard-heartbeat-{run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            try:
                if not self.runs.beat(self.run_id) and not warned:
                    warned = True
                    log.warning(
                        "run %s is no longer recorded as running (marked failed after its "
                        "heartbeat stalled?); it goes on and records its outcome at the end",
                        self.run_id,
                    )
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("writing the heartbeat of run %s failed", self.run_id, exc_info=True)
