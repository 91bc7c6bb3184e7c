"""Read timeouts per connection: uvicorn's httptools protocol with header and body deadlines.

uvicorn times out idle keep-alive connections only (``timeout_keep_alive``, and it stops
that timer on the first byte of a request): a client that connects and sends nothing, or
part of its headers, or part of its body, holds its connection (and, for a body, the
request's task) for ever. :class:`TimedHttpToolsProtocol` closes such a connection:

- ``header_timeout_s`` after connecting, or after a request's first byte on a kept-alive
  connection, unless its headers are complete;
- ``body_timeout_s`` after the headers, unless the whole body arrived.

A request that started arriving is answered ``408`` with shipyard's error body first (a
connection that sent nothing is just closed). Time the server spends not reading (flow
control paused reading while the app catches up) never counts against the client. A
request arriving in one piece (the usual small prediction call) arms no timer at all.

``shipyard serve`` runs uvicorn with :func:`timed_protocol` (``uvicorn.Config(http=...)``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.serving.http import dump_json, header_request_id, new_request_id
from shipyard.serving.limits import RequestLimits, how_to_raise

logger = logging.getLogger("shipyard.serving")

# What the connection is reading.
_CONNECTED, _HEADERS, _BODY, _DONE = range(4)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol closing connections whose request is not sent in time."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float = 30.0,
        body_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._phase = _CONNECTED
        self._timer: asyncio.TimerHandle | None = None
        self._timed = _DONE  # the phase the running timer watches

    # -- phases (httptools calls these while parsing) ---------------------------------------

    def on_message_begin(self) -> None:
        """A request starts: its headers are due."""
        super().on_message_begin()
        self._phase = _HEADERS

    def on_headers_complete(self) -> None:
        """The headers arrived: the body is due."""
        super().on_headers_complete()
        self._phase = _BODY

    def on_message_complete(self) -> None:
        """The whole request arrived."""
        super().on_message_complete()
        self._phase = _DONE

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A client connected: its first request is due within the header timeout."""
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(_CONNECTED, self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection closed."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``, then watch what is still missing (nothing: no timer)."""
        super().data_received(data)
        phase = self._phase
        if phase == _DONE:
            if self._timer is not None:
                self._disarm()
        elif phase == _HEADERS:
            if self._timed not in (_CONNECTED, _HEADERS):  # a new request on a kept connection
                self._arm(_HEADERS, self.header_timeout)
        elif self._timed != _BODY:
            self._arm(_BODY, self.body_timeout)

    def _arm(self, phase: int, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timed = phase
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timed = _DONE

    def _expired(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self._phase == _DONE:
            self._timed = _DONE
            return
        if self.flow is not None and self.flow.read_paused:
            # The server stopped reading (the app is catching up): not the client's delay.
            self._arm(
                self._timed, self.body_timeout if self._timed == _BODY else self.header_timeout
            )
            return
        phase = self._phase
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if phase == _BODY:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self._answer_408(
                    f"the request body did not arrive within {self.body_timeout:g} s",
                    "body_timeout_s",
                    header_request_id(cast("dict[str, Any]", self.scope)),
                )
                cycle.disconnected = True  # the app's receive() answers http.disconnect
                cycle.message_event.set()
            logger.info("closed the connection of %s: request body not received in time", client)
        elif phase == _HEADERS:
            self._answer_408(
                f"the request headers did not arrive within {self.header_timeout:g} s",
                "header_timeout_s",
                new_request_id(),
            )
            logger.info("closed the connection of %s: request headers not received in time", client)
        self._timed = _DONE
        transport.close()

    def _answer_408(self, what: str, setting: str, rid: str) -> None:
        body = dump_json(
            {
                "error": f"{what}; send the whole request at once, or raise the timeout with "
                f"{how_to_raise(setting)}",
                "type": "RequestTimeoutError",
                "request_id": rid,
            }
        )
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\nx-request-id: %s\r\n\r\n%s"
            % (len(body), rid.encode("latin-1"), body)
        )


def timed_protocol(limits: RequestLimits) -> type[asyncio.Protocol]:
    """What to pass as ``uvicorn.Config(http=...)``: the protocol with ``limits``' timeouts.

    A :func:`functools.partial` of the class (uvicorn only calls it), so it pickles to
    ``--workers`` processes.
    """
    factory = functools.partial(
        TimedHttpToolsProtocol,
        header_timeout=limits.header_timeout_s,
        body_timeout=limits.body_timeout_s,
    )
    return cast("type[asyncio.Protocol]", factory)
