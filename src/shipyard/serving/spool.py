"""The prediction log's spool: answered predictions on local disk until the database has them.

Without a spool, a server killed with SIGKILL loses what its writer thread had not written
yet (at most one flush interval of predictions). With ``[serving] prediction_log_spool``
(a folder), every logged prediction is also appended, encoded, to a segment file in that
folder *before* its answer is sent — one ``write`` system call into the operating system's
page cache, which survives the process being killed. The writer thread starts a new segment
before each flush and deletes a segment only once every row in it is committed to
``prediction_log``. A server starting on the same folder replays the segments that no
running server owns (their process is gone), skipping rows the database already has, so a
kill at any point loses nothing and duplicates nothing.

Segments are named ``PID-N.jsonl``; several worker processes share one folder safely (a
segment is claimed by renaming it before its replay).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import orjson

from shipyard.datasets.prediction_log import LogRow

logger = logging.getLogger("shipyard.serving.spool")

_SUFFIX = ".jsonl"


def _line(row: LogRow) -> bytes:
    model, version, rid, at, latency, inputs, outputs, shadow = row
    return (
        orjson.dumps([model, version, rid, at.isoformat(), latency, inputs, outputs, shadow])
        + b"\n"
    )


def _row(line: bytes) -> LogRow:
    model, version, rid, at, latency, inputs, outputs, shadow = orjson.loads(line)
    return (
        str(model),
        int(version),
        str(rid),
        datetime.fromisoformat(at),
        float(latency),
        str(inputs),
        str(outputs),
        bool(shadow),
    )


class Spool:
    """Segment files of encoded prediction-log rows in ``folder``, owned by this process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        self._number = 0
        self._lock = threading.Lock()
        self._fd = -1
        self._path: Path | None = None
        #: Segments no longer written to, oldest first, deleted once their rows are committed.
        self.closed: list[Path] = []
        self.rotate()

    def append(self, row: LogRow) -> None:
        """Write ``row`` to the current segment (into the OS page cache: survives SIGKILL)."""
        data = _line(row)
        with self._lock:
            os.write(self._fd, data)

    def rotate(self) -> None:
        """Start a new segment; the previous one joins :attr:`closed` until it is written."""
        self._number += 1
        path = self.folder / f"{self._pid}-{self._number}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with self._lock:
            old, old_path = self._fd, self._path
            self._fd, self._path = fd, path
        if old_path is not None:
            os.close(old)
            self.closed.append(old_path)

    def close(self) -> None:
        """Close the current segment (the app's shutdown, before the last flush)."""
        with self._lock:
            fd, path, self._fd, self._path = self._fd, self._path, -1, None
        if path is not None:
            os.close(fd)
            self.closed.append(path)


def replay(
    folder: Path,
    present: Callable[[Sequence[LogRow]], set[tuple[str, str, bool]]],
    append: Callable[[Sequence[LogRow]], int],
) -> int:
    """Write the rows of segments left by processes that are gone; the rows written.

    ``present`` says which (model, request id, shadow) of some rows the database already
    has (a crash after a commit but before the segment's deletion); those are skipped.
    """
    if not folder.is_dir():
        return 0
    written = 0
    for path in _orphans(folder):
        claimed = path.with_name(f"{path.name}.replay-{os.getpid()}")
        try:
            path.rename(claimed)  # only one process replays a segment
        except FileNotFoundError:
            continue
        rows = read_segment(claimed)
        if rows:
            known = present(rows)
            fresh = [r for r in rows if (r[0], r[2], r[7]) not in known]
            written += append(fresh) if fresh else 0
        claimed.unlink()
    if written:
        logger.warning(
            "wrote %d prediction log rows left in the spool by a stopped server", written
        )
    return written


def _orphans(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.iterdir()):
        owner = path.name.split("-", 1)[0]
        replaying = ".replay-" in path.name
        if replaying:
            owner = path.name.rsplit("-", 1)[1]
        if not owner.isdigit() or (not replaying and not path.name.endswith(_SUFFIX)):
            continue
        if not _alive(int(owner)):
            if replaying:  # a replay that died half-way: take it over
                path = path.rename(path.with_name(path.name.split(".replay-")[0]))
            yield path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a segment from a previous process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_segment(path: Path) -> list[LogRow]:
    """The rows of one segment (a last line cut short by a kill is left out: never answered)."""
    rows: list[LogRow] = []
    with path.open("rb") as stream:
        for number, line in enumerate(stream, 1):
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(_row(line))
            except (ValueError, TypeError):
                logger.warning("skipping unreadable line %d of %s", number, path)
    return rows
