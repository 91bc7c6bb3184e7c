"""Bounds on what one request may cost the server, enforced before the work they bound.

:class:`RequestLimits` (``ServeSettings.limits``: ``[serving.limits]`` in shipyard.toml and
``shipyard serve`` flags) holds them; each refusal is a :class:`PayloadTooLargeError` (413)
that names the limit and how to raise it.

- **Body bytes**, by :class:`RequestGuard`, which the app runs in front of everything (the
  fast path included): a ``Content-Length`` above ``max_body_bytes`` is answered 413 before a
  byte of the body is read (and the connection closed); a chunked body is counted as it
  streams in and refused the moment it passes the limit.
- **Inflated bytes**: :func:`inflate` undoes gzip / deflate incrementally and stops once the
  output passes ``max_decompressed_bytes``, so a 1 MB body inflating to 1 GB costs at most
  the limit.
- **Rows, columns, text length**: :func:`run_handler` hands a protocol handler the models
  through a thin :class:`ServedModel` wrapper (:func:`limited`, which gRPC uses too) whose
  ``validate`` checks the table the protocol built, in bulk (``len`` of the mapping, of one
  column, of the names; text cells only for bodies long enough to hold a value past the
  limit), before casting, predicting or logging. A CSV body's header line is counted before
  pandas parses it.
- **Parsing off the event loop**: a body above ``thread_parse_bytes`` (or any gzip / deflate
  body) runs its handler in a worker thread, on an event loop of its own, the predict call
  going back to the server's loop; small bodies stay inline (the fast path). Routes that
  parse their own body (feedback) call :func:`parse_off_loop`, the same rule.
- **Read timeouts** (``header_timeout_s``, ``body_timeout_s``): at the connection, in
  :mod:`shipyard.serving.read_timeouts` (uvicorn's protocol class, as ``shipyard serve`` runs it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Annotated, Any, Protocol, TypeVar

import anyio.to_thread
import numpy as np
from pydantic import BaseModel, ByteSize, ConfigDict, Field
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.core.exceptions import InvalidArgumentError, PayloadTooLargeError
from shipyard.core.schema import Signature
from shipyard.serving.base import ModelLookup, Prediction, ServedModel
from shipyard.serving.http import dump_json, header_request_id, record_request
from shipyard.serving.metrics import ServingMetrics

KIB, MIB = 1024, 1024 * 1024
_Size = Annotated[ByteSize, Field(gt=0)]
R = TypeVar("R")


class RequestLimits(BaseModel):
    """How big and how slow one request may be (``[serving.limits]``, ``shipyard serve`` flags).

    Sizes take a number of bytes or a text such as ``"64MiB"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the most bytes of a request body, as received (413 above)
    max_body_bytes: _Size = ByteSize(32 * MIB)
    #: the most bytes a gzip / deflate body may inflate to (413 above)
    max_decompressed_bytes: _Size = ByteSize(64 * MIB)
    #: the most rows in one prediction request
    max_rows: int = Field(default=100_000, gt=0)
    #: the most columns (inputs) in one prediction request
    max_columns: int = Field(default=4_096, gt=0)
    #: the most characters of one text cell or column name
    max_string_length: int = Field(default=65_536, gt=0)
    #: seconds a client has to send a request's headers (from its first byte, or from
    #: connecting); then the connection is closed (408 when part of a request arrived)
    header_timeout_s: float = Field(default=30.0, gt=0)
    #: seconds a client has to send a request's body once its headers arrived (408 after)
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: bodies above this many bytes (and every gzip / deflate body) are parsed in a thread
    thread_parse_bytes: ByteSize = Field(default=ByteSize(MIB), ge=0)


#: ``shipyard serve`` flag of each setting (the toml key is the field's name).
FLAGS = {
    "max_body_bytes": "--max-body-bytes",
    "max_decompressed_bytes": "--max-decompressed-bytes",
    "max_rows": "--max-rows",
    "max_columns": "--max-columns",
    "max_string_length": "--max-string-length",
    "header_timeout_s": "--header-timeout",
    "body_timeout_s": "--body-timeout",
    "thread_parse_bytes": "--thread-parse-bytes",
}


def how_to_raise(setting: str) -> str:
    """Where the limit ``setting`` is set, for messages."""
    return f"`shipyard serve {FLAGS[setting]}` or `{setting}` in [serving.limits] of shipyard.toml"


def human_size(size: int) -> str:
    """``33554432`` → ``"32 MiB"`` (exact units only, else bytes)."""
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def too_large(what: str, limit: int, setting: str, advice: str) -> PayloadTooLargeError:
    """The 413 for ``what`` passing ``limit`` (set by ``setting``)."""
    return PayloadTooLargeError(
        f"{what}, above this server's limit of {limit:,}; {advice}, or raise the limit with "
        f"{how_to_raise(setting)}"
    )


def body_too_large(limit: int) -> PayloadTooLargeError:
    """The 413 for a body above ``max_body_bytes``."""
    return PayloadTooLargeError(
        f"the request body is larger than this server's limit of {human_size(limit)}; send "
        f"fewer rows per request, or raise the limit with {how_to_raise('max_body_bytes')}"
    )


# -- the body, as it streams in ---------------------------------------------------------------


class RequestGuard:
    """Refuses a body above ``max_body_bytes`` before the app reads it (and, chunked, while it
    streams in); answers a client that went away mid-body with silence instead of a traceback.

    Called by the app in front of everything else (the fast path and FastAPI).
    """

    def __init__(self, limits: RequestLimits, metrics: ServingMetrics) -> None:
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` on the request with its body bounded."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                # The server checks the body against its declared length; only that is needed.
                if value.isdigit() and int(value) > limit:
                    await self.refuse(scope, send, body_too_large(limit), time.perf_counter())
                    return
                try:
                    await app(scope, receive, send)
                except ClientDisconnect:
                    return  # the client went away (or timed out) mid-body: no one to answer
                return
        await self._counted(app, scope, receive, send, limit)

    async def _counted(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int
    ) -> None:
        started = time.perf_counter()
        received = 0
        answered = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            await app(scope, counted, watched)
        except PayloadTooLargeError as exc:  # raised by counted() past the app's handlers
            if answered:
                raise
            await self.refuse(scope, send, exc, started)
        except ClientDisconnect:
            return

    async def refuse(
        self, scope: Scope, send: Send, error: PayloadTooLargeError, started: float
    ) -> None:
        """Answer 413 with shipyard's error body and close the connection."""
        rid = header_request_id(scope)
        body = dump_json({"error": error.message, "type": type(error).__name__, "request_id": rid})
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                    (b"x-request-id", rid.encode("latin-1")),
                    (b"connection", b"close"),  # the rest of the body is not read
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        seconds = time.perf_counter() - started
        record_request(self.metrics, scope, "", "", error.status_code, seconds, rid)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed (``gzip`` or ``deflate``), refused once past ``limit`` bytes.

    Incremental: at most ``limit + 1`` bytes are ever produced, whatever the body inflates to.
    """
    decompressor = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgumentError(f"the {encoding} request body is corrupt: {exc}") from exc
    if len(out) > limit:
        raise PayloadTooLargeError(
            f"the {encoding} request body inflates to more than this server's limit of "
            f"{human_size(limit)}; send fewer rows per request, or raise the limit with "
            f"{how_to_raise('max_decompressed_bytes')}"
        )
    if not decompressor.eof:
        raise InvalidArgumentError(
            f"the {encoding} request body is corrupt: the compressed stream is truncated"
        )
    return out


# -- the table a protocol built ---------------------------------------------------------------


def check_columns(columns: Any, limits: RequestLimits, *, thorough: bool) -> None:
    """Refuse request columns (name → values) with too many columns or rows, or a column name
    too long. Counts in bulk: ``thorough`` (a body long enough to hold a long name or rows of
    unequal lengths) also measures every name and every column's length."""
    if type(columns) is not dict and not isinstance(columns, Mapping):
        return  # not a table: the model's validate says what is wrong
    width = len(columns)
    if width > limits.max_columns:
        check_width(width, limits)
    if not width:
        return
    if thorough:
        longest = max((len(name) for name in columns if isinstance(name, str)), default=0)
        if longest > limits.max_string_length:
            raise too_large(
                f"a column name is {longest:,} characters long",
                limits.max_string_length,
                "max_string_length",
                "use the model's column names",
            )
        rows = max(_length(values) for values in columns.values())
    else:
        rows = _length(next(iter(columns.values())))
    if rows > limits.max_rows:
        check_rows(rows, limits)


def check_width(columns: int, limits: RequestLimits) -> None:
    """Refuse a request of more than ``max_columns`` columns."""
    if columns > limits.max_columns:
        raise too_large(
            f"the request has {columns:,} columns",
            limits.max_columns,
            "max_columns",
            "send only the model's input columns",
        )


def check_rows(rows: int, limits: RequestLimits) -> None:
    """Refuse a request of more than ``max_rows`` rows."""
    if rows > limits.max_rows:
        raise too_large(
            f"the request has {rows:,} rows",
            limits.max_rows,
            "max_rows",
            "split it into requests of fewer rows (or score it as a batch job: shipyard predict)",
        )


def check_text(columns: Mapping[str, np.ndarray], limits: RequestLimits) -> None:
    """Refuse validated columns holding a text value longer than ``max_string_length``."""
    limit = limits.max_string_length
    for name, values in columns.items():
        kind = values.dtype.kind
        if kind == "U":
            longest = values.dtype.itemsize // 4
        elif kind == "S":
            longest = values.dtype.itemsize
        elif kind == "O":
            longest = max((len(v) for v in values.ravel() if isinstance(v, str | bytes)), default=0)
        else:
            continue
        if longest > limit:
            raise too_large(
                f"column {name!r} holds a value of {longest:,} characters",
                limit,
                "max_string_length",
                "send shorter text",
            )


def check_csv_header(body: bytes, limits: RequestLimits) -> None:
    """Refuse a CSV body whose header row names more than ``max_columns`` columns, before
    pandas builds them (a comma count; the header parsed only when that count is too high)."""
    end = body.find(b"\n")
    header = body if end < 0 else body[:end]
    if header.count(b",") < limits.max_columns:
        return
    text = header.decode("utf-8", errors="replace")
    names = next(csv.reader(io.StringIO(text)), [])
    if len(names) > limits.max_columns:
        raise too_large(
            f"the CSV header names {len(names):,} columns",
            limits.max_columns,
            "max_columns",
            "send only the model's input columns",
        )


def _length(values: Any) -> int:
    try:
        return len(values)
    except TypeError:  # a scalar (one row) or a 0-d array
        return 1


class _Limited:
    """A served model whose ``validate`` first checks the request's size (and whose
    ``predict``, when the handler runs in a worker thread, runs on the server's loop)."""

    __slots__ = ("_loop", "_thorough", "flavor", "limits", "model", "name", "signature", "version")

    def __init__(
        self,
        model: ServedModel,
        limits: RequestLimits,
        thorough: bool,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.model = model
        self.limits = limits
        self._thorough = thorough
        self._loop = loop
        self.name: str = model.name
        self.version: int = model.version
        self.flavor: str = model.flavor
        self.signature: Signature | None = model.signature

    def validate(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The model's validation, after the size checks."""
        check_columns(columns, self.limits, thorough=self._thorough)
        validated = self.model.validate(columns)
        if self._thorough:
            check_text(validated, self.limits)
        return validated

    def validate_records(self, records: list[Any]) -> dict[str, np.ndarray] | None:
        """The model's one-step cast of records, after the row and column counts."""
        check_rows(len(records), self.limits)
        if records and isinstance(records[0], dict):
            check_width(len(records[0]), self.limits)
        return self.model.validate_records(records)

    def predict(self, columns: Mapping[str, np.ndarray]) -> Coroutine[Any, Any, Prediction]:
        """The model's prediction (on the server's event loop)."""
        if self._loop is None:
            return self.model.predict(columns)
        return _on_loop(self._loop, self.model.predict(columns))

    def describe(self) -> dict[str, Any]:
        """The model's description."""
        return self.model.describe()


def limited(model: ServedModel, limits: RequestLimits, *, thorough: bool = True) -> ServedModel:
    """``model`` with its ``validate`` checking the rows, columns and text of a request against
    ``limits`` first, as the HTTP routes see it (for a transport without
    :func:`run_handler`: gRPC). ``thorough``: the request is long enough to hold a name or a
    value past ``max_string_length`` (see :func:`check_columns`)."""
    return _Limited(model, limits, thorough, None)


async def _on_loop(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, R]) -> R:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, loop))


class _LimitedLookup:
    """The served models, each behind :class:`_Limited`."""

    __slots__ = ("_loop", "_models", "_refusal", "_thorough", "limits")

    def __init__(
        self,
        models: ModelLookup,
        limits: RequestLimits,
        thorough: bool,
        loop: asyncio.AbstractEventLoop | None,
        refusal: PayloadTooLargeError | None = None,
    ) -> None:
        self._models = models
        self.limits = limits
        self._thorough = thorough
        self._loop = loop
        #: raised when the handler looks its model up: a refusal found before it ran, so it
        #: answers in the protocol's own error format
        self._refusal = refusal

    def _wrap(self, model: ServedModel) -> _Limited:
        if self._refusal is not None:
            raise self._refusal
        return _Limited(model, self.limits, self._thorough, self._loop)

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ServedModel:
        """See :meth:`ModelLookup.get`."""
        return self._wrap(self._models.get(name, version, alias))

    def resolve(self, ref: str) -> ServedModel:
        """See :meth:`ModelLookup.resolve`."""
        return self._wrap(self._models.resolve(ref))

    def first(self) -> ServedModel:
        """See :meth:`ModelLookup.first`."""
        return self._wrap(self._models.first())

    def served(self) -> list[ServedModel]:
        """See :meth:`ModelLookup.served`."""
        return [self._wrap(model) for model in self._models.served()]

    def describe_served(self) -> str:
        """See :meth:`ModelLookup.describe_served`."""
        return self._models.describe_served()

    def route(self, model: ServedModel) -> ServedModel:
        """See :meth:`ModelLookup.route`."""
        inner = model.model if isinstance(model, _Limited) else model
        return self._wrap(self._models.route(inner))

    def ready(self) -> bool:
        """See :meth:`ModelLookup.ready`."""
        return self._models.ready()


class Incoming(Protocol):
    """What :func:`run_handler` reads of a request (a protocol's ``Exchange``)."""

    body: bytes
    scope: Scope


async def run_handler(
    handler: Callable[..., Awaitable[R]],
    models: ModelLookup,
    limits: RequestLimits,
    exchange: Incoming,
    params: tuple[Any, ...],
) -> R:
    """``handler(models, exchange, *params)`` (a protocol's prediction handler) within ``limits``.

    The handler sees ``models`` through :class:`_LimitedLookup` (rows, columns and text
    checked when it validates); a body above ``thread_parse_bytes`` or compressed runs it in a
    worker thread on an event loop of its own, so its parsing never holds the server's loop.
    A CSV body naming too many columns is refused (when the handler looks its model up, so in
    its protocol's error format) before it is parsed.
    """
    body = exchange.body
    size = len(body)
    encoded = csv_body = False
    for key, value in exchange.scope["headers"]:
        if key == b"content-encoding":
            encoded = value not in (b"", b"identity")
        elif key == b"content-type":
            csv_body = value.startswith(b"text/csv")
    refusal = None
    if csv_body and size > 2 * limits.max_columns:
        try:
            check_csv_header(body, limits)
        except PayloadTooLargeError as exc:
            refusal = exc
    # a body shorter than the string limit cannot hold a name or a value past it
    thorough = encoded or size > limits.max_string_length
    if refusal is not None or not parses_in_thread(size, limits, encoded=encoded):
        lookup = _LimitedLookup(models, limits, thorough, None, refusal)
        return await handler(lookup, exchange, *params)
    lookup = _LimitedLookup(models, limits, True, asyncio.get_running_loop())
    return await anyio.to_thread.run_sync(_run_on_own_loop, handler, lookup, exchange, params)


def parses_in_thread(size: int, limits: RequestLimits, *, encoded: bool = False) -> bool:
    """Whether a body of ``size`` bytes is parsed in a worker thread: above
    ``thread_parse_bytes``, or compressed (``encoded``: it may inflate far past its size)."""
    return encoded or size > limits.thread_parse_bytes


async def parse_off_loop(body: bytes, parse: Callable[[bytes], R], limits: RequestLimits) -> R:
    """``parse(body)``: inline for a small body, in a worker thread for one above
    ``thread_parse_bytes`` (the rule :func:`run_handler` applies to the prediction routes), so
    parsing a big body never holds the event loop. For routes that parse a body themselves
    (``POST /v1/feedback``)."""
    if not parses_in_thread(len(body), limits):
        return parse(body)
    return await anyio.to_thread.run_sync(parse, body)


def _run_on_own_loop(
    handler: Callable[..., Awaitable[R]],
    models: ModelLookup,
    exchange: Incoming,
    params: tuple[Any, ...],
) -> R:
    async def call() -> R:
        return await handler(models, exchange, *params)

    return asyncio.run(call())
