"""Adaptive micro-batching: concurrent requests to one model become one ``predict`` call.

Each model has one :class:`MicroBatcher`: requests (already validated columns) go into an
asyncio queue; one worker task takes what is queued — up to ``max_batch`` rows — joins the
columns, runs the model in a thread executor (the event loop keeps serving while it runs)
and hands each request its own slice of the answer.

The wait is adaptive. When the queue is idle the first request runs at once (a lone
client pays no batching delay); only while requests keep arriving together (the previous
batch held more than one) does the worker wait, up to ``max_wait``, for stragglers — and
only until the batch holds as many requests as the previous one: with N clients in
lock-step the batch leaves as soon as all N are in, instead of idling out ``max_wait``.
Requests also pile up naturally while a batch is predicting, so the next batch is larger
under load.

A bad request is rejected at validation, before it reaches the queue, so it never fails its
neighbours; a model exception fails only the requests of that one batch (status 500).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from shipyard.core.exceptions import ShipyardError
from shipyard.serving.base import Prediction
from shipyard.serving.columns import concat_columns

logger = logging.getLogger("shipyard.serving")

#: Runs the model on one batch of validated columns (called in a worker thread).
BatchFunction = Callable[[dict[str, np.ndarray]], Prediction]


class ModelFailedError(ShipyardError):
    """The model raised while predicting a batch; only that batch's requests fail."""

    status_code = 500


class BatcherClosedError(ShipyardError):
    """The batcher is stopping (server shutdown, or its model was swapped out): try again."""

    status_code = 503


@dataclass(frozen=True)
class BatchSettings:
    """How a model's requests are merged: at most ``max_batch`` rows, waiting ``max_wait`` s."""

    max_batch: int = 64
    max_wait: float = 0.002

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 but got {self.max_batch}")
        if self.max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds but got {self.max_wait}")


@dataclass
class _Request:
    columns: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[Prediction]
    key: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.key = tuple(self.columns)


class MicroBatcher:
    """Merges concurrent :meth:`submit` calls into batches for ``run``.

    ``on_batch(rows, requests)`` is called after each batch (metrics); ``label`` names the
    model in error messages. Call :meth:`start` inside a running loop and :meth:`stop` to
    finish every queued request and end the worker.
    """

    def __init__(
        self,
        run: BatchFunction,
        executor: Executor,
        settings: BatchSettings | None = None,
        *,
        label: str = "model",
        on_batch: Callable[[int, int], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self.settings = settings or BatchSettings()
        self.label = label
        self._on_batch = on_batch
        self._on_error = on_error
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False  # set by stop(): nothing may queue behind the stop marker
        self._expected = 1  # requests in the previous batch: how many to wait for
        self.batches = 0  # predict calls made, for tests and diagnostics
        self.requests = 0

    def start(self) -> None:
        """Start the worker task (in the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name=f"batcher:{self.label}"
            )

    async def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        if self._worker is None or self._closing:
            return
        self._closing = True
        await self._queue.put(None)
        await self._worker
        self._worker = None
        self._closing = False

    @property
    def accepting(self) -> bool:
        """True while :meth:`submit` takes requests (started, not stopping)."""
        return self._worker is not None and not self._closing

    async def submit(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        """Predict validated columns as part of the next batch."""
        if self._worker is None or self._closing:
            raise BatcherClosedError(
                f"{self.label} is not accepting requests (the server is stopping or the model "
                "was swapped out); retry"
            )
        rows = len(next(iter(columns.values())))
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(columns, rows, future))
        return await future

    async def _work(self) -> None:
        queue = self._queue
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            rows = first.rows
            deadline = asyncio.get_running_loop().time() + self.settings.max_wait
            while rows < self.settings.max_batch:
                if queue.empty():
                    waiting = len(batch) < self._expected
                    item = await self._straggler(deadline) if waiting else None
                    if item is None:
                        break
                else:
                    item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                rows += item.rows
            self._expected = len(batch)
            await self._predict(batch)

    async def _straggler(self, deadline: float) -> _Request | None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            async with asyncio.timeout(remaining):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is None:  # keep the stop marker for the main loop
            self._queue.put_nowait(None)
        return item

    async def _predict(self, batch: list[_Request]) -> None:
        groups: dict[tuple[str, ...], list[_Request]] = {}
        for request in batch:
            groups.setdefault(request.key, []).append(request)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            live = [r for r in group if not r.future.done()]  # drop clients that went away
            if not live:
                continue
            try:
                columns = concat_columns([r.columns for r in live])
                result = await loop.run_in_executor(self._executor, self._run, columns)
            except Exception as exc:
                logger.exception("%s failed on a batch of %d request(s)", self.label, len(live))
                if self._on_error is not None:
                    self._on_error()
                error = ModelFailedError(
                    f"{self.label} failed while predicting a batch of {len(live)} request(s): "
                    f"{type(exc).__name__}: {exc}"
                )
                for request in live:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            self.batches += 1
            self.requests += len(live)
            if self._on_batch is not None:
                self._on_batch(sum(r.rows for r in live), len(live))
            _deliver(live, result)


def _deliver(requests: list[_Request], result: Prediction) -> None:
    """Give each request its own rows of the batch's answer."""
    if len(requests) == 1:
        if not requests[0].future.done():
            requests[0].future.set_result(result)
        return
    start = 0
    for request in requests:
        stop = start + request.rows
        if not request.future.done():
            request.future.set_result(
                Prediction(
                    predictions=result.predictions[start:stop],
                    probabilities=(
                        result.probabilities[start:stop]
                        if result.probabilities is not None
                        else None
                    ),
                    classes=result.classes,
                )
            )
        start = stop
