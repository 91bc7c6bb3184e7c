"""The live view of a run: one line per step with status, attempt and duration.

On a terminal it is a table redrawn in place (``rich.live``); elsewhere (a log file, CI)
every change of status is printed as one plain line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from shipyard.datasets.run_records import (
    CACHED,
    FAILED,
    KILLED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    RunInfo,
)

STYLES = {
    SUCCEEDED: "green",
    CACHED: "cyan",
    FAILED: "red",
    KILLED: "red",
    SKIPPED: "yellow",
    RUNNING: "bold",
    "retrying": "yellow",
}


@dataclass
class _Line:
    status: str = PENDING
    attempt: int = 0
    started: float | None = None
    ended: float | None = None
    note: str = ""

    def duration(self) -> str:
        if self.started is None:
            return ""
        end = self.ended if self.ended is not None else time.monotonic()
        return f"{end - self.started:.1f}s"


class RunDisplay:
    """Shows a run's progress on ``console`` (nothing at all when ``console`` is None)."""

    def __init__(self, console: Console | None, pipeline: str, run_id: str, steps: list[str]):
        self.console = console
        self.pipeline = pipeline
        self.run_id = run_id
        self.lines = {name: _Line() for name in steps}
        self._live: Live | None = None

    def __enter__(self) -> RunDisplay:
        if self.console is None:
            return self
        if self.console.is_terminal:
            self._live = Live(
                console=self.console, get_renderable=self._table, refresh_per_second=8
            )
            self._live.start()
        else:
            self.console.print(f"run {self.run_id} of pipeline {self.pipeline}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def update(self, step: str, status: str, *, attempt: int | None = None, note: str = "") -> None:
        """Record a new status of ``step`` and show it."""
        line = self.lines[step]
        now = time.monotonic()
        if status == RUNNING and line.started is None:
            line.started = now
        if status not in (RUNNING, "retrying", PENDING):
            line.ended = now
            if line.started is None:
                line.started = now
        line.status = status
        line.attempt = attempt if attempt is not None else line.attempt
        line.note = note
        if self.console is not None and self._live is None:
            self.console.print(self._plain(step, line), soft_wrap=True)

    def _plain(self, step: str, line: _Line) -> str:
        parts = [f"  {step}: {styled(line.status)}"]
        if line.attempt > 1 or line.status == "retrying":
            parts.append(f"attempt {line.attempt}")
        if line.status not in (RUNNING, PENDING, CACHED) and line.duration():
            parts.append(line.duration())
        if line.note:
            parts.append(escape(line.note))
        return "  ".join(parts)

    def _table(self) -> Table:
        table = Table(title=f"{self.pipeline} · run {self.run_id}", title_justify="left")
        for column in ("step", "status", "attempt", "time", ""):
            table.add_column(column)
        for step, line in self.lines.items():
            table.add_row(
                step,
                styled(line.status),
                str(line.attempt) if line.attempt else "",
                "" if line.status == CACHED else line.duration(),
                escape(line.note),
            )
        return table

    def summary(self, info: RunInfo) -> None:
        """The closing lines: how many steps ran, were reused or failed, and the run id."""
        if self.console is None:
            return
        ran = info.count(SUCCEEDED)
        cached = [s.step for s in info.steps if s.status == CACHED]
        failed = info.count(FAILED) + info.count(KILLED)
        text = (
            f"run {info.id} {styled(info.status)}: {ran} ran, {len(cached)} cached, {failed} failed"
        )
        if info.count(SKIPPED):
            text += f", {info.count(SKIPPED)} skipped"
        if info.duration is not None:
            text += f" in {info.duration:.1f}s"
        self.console.print(text, soft_wrap=True)
        if cached:
            self.console.print(f"  reused from cache: {', '.join(cached)}", soft_wrap=True)


def styled(status: str) -> str:
    """``status`` in rich markup, coloured by what it means."""
    style = STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status
