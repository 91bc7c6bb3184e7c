"""The parent side of step processes: start an attempt, collect its message, stop it.

Children are started with the ``spawn`` method (never ``fork``: the parent may hold
threads and database connections that must not be copied into a child).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from shipyard.pipelines.execute import StepTask, child_main

#: Seconds a child gets to exit after ``terminate`` before it is killed.
STOP_GRACE = 2.0


class Terminated(BaseException):
    """SIGTERM arrived while a run was going on."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(f"received {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Attempt:
    """One attempt of one step, running in a child process."""

    process: BaseProcess
    channel: Connection
    deadline: float | None

    @classmethod
    def start(cls, task: StepTask, timeout: float | None) -> Attempt:
        """Start a child running ``task``; ``timeout`` seconds from now it is overdue."""
        spawn = multiprocessing.get_context("spawn")
        receive, send = spawn.Pipe(duplex=False)
        process = spawn.Process(
            target=child_main, args=(task, send), name=f"shipyard-step-{task.step}"
        )
        process.start()
        send.close()  # the child holds the only writer: its exit reads as end-of-file here
        deadline = time.monotonic() + timeout if timeout else None
        return cls(process, receive, deadline)

    @property
    def overdue(self) -> bool:
        """True once the attempt ran past its timeout."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def ready(self, handles: set[Any]) -> bool:
        """True when the child sent its message or exited."""
        return self.channel in handles or self.process.sentinel in handles

    def collect(self) -> dict[str, Any]:
        """The child's message, or a failure saying how it died without one."""
        message: dict[str, Any] | None = None
        try:
            if self.channel.poll():
                message = self.channel.recv()
        except (EOFError, OSError):  # the child died before reporting
            message = None
        self.process.join(STOP_GRACE * 5)
        self.stop()
        return message if message is not None else {"ok": False, "error": self.death()}

    def death(self) -> str:
        """Why the child ended without a message."""
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"the step's process was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the step's process was killed by signal {-code}"
        return f"the step's process exited with code {code} without reporting a result"

    def stop(self) -> None:
        """Terminate the child, kill it if it does not go, and release the channel."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_GRACE)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.channel.close()


def wait_for(attempts: Iterable[Attempt], timeout: float) -> set[Any]:
    """Wait up to ``timeout`` seconds for any attempt to report or exit; return what is ready."""
    handles: list[Any] = []
    for attempt in attempts:
        handles += [attempt.channel, attempt.process.sentinel]
    if not handles:
        time.sleep(timeout)
        return set()
    return set(wait(handles, timeout=timeout))
