"""The per-request API token check of the model server, and the scopes routes need.

Tokens are made, listed and revoked through :class:`~shipyard.registry.tokens.TokenStore`
(``shipyard tokens …``); only their sha256 is stored. Scopes:

- ``predict``: the prediction routes (native ``…/predict``, MLflow's ``POST /invocations``,
  v2 ``…/infer``) and ``POST /v1/feedback`` (whoever may ask for predictions may send
  their ground truth);
- ``read``: everything else that is not a health check — ``GET /v1/models``, v2 server and
  model metadata and model readiness, ``/metrics``, ``/version``, the OpenAPI pages;
- ``admin``: every scope.

Health routes (``/health/live``, ``/health/ready``, ``/ping``, ``/health``,
``/v2/health/live``, ``/v2/health/ready``) stay open so probes need no secret.

The server keeps the active tokens in memory (sha256 → token) and reloads them every
``refresh`` seconds, so checking a request is one header scan, one sha256 and one dict
lookup — no query — and a revoked token stops working within one refresh. Tokens used since
the last refresh get their ``last_used_at`` written at the next one. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Scope

from shipyard.registry.tokens import ActiveToken, TokenStore

logger = logging.getLogger("shipyard.serving.auth")

DEFAULT_REFRESH = 30.0
OPEN_PATHS = frozenset(
    ("/health/live", "/health/ready", "/ping", "/health", "/v2/health/live", "/v2/health/ready")
)


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None for the open health routes."""
    if path in OPEN_PATHS:
        return None
    if method == "POST" and (
        path in ("/invocations", "/v1/feedback")
        or (path.startswith("/v1/models/") and path.endswith("/predict"))
        or (path.startswith("/v2/models/") and path.endswith("/infer"))
    ):
        return "predict"
    return "read"


@dataclass(frozen=True)
class Denial:
    """A refused request: its status, JSON body and headers."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


_CHALLENGE = (b"www-authenticate", b"Bearer")


def _deny(status: int, message: str, scope: Scope) -> Denial:
    rid = scope.get("state", {}).get("request_id")
    content: dict[str, Any] = {"error": message}
    if rid:
        content["request_id"] = rid
    headers = [_CHALLENGE] if status == 401 else []
    return Denial(status, orjson.dumps(content), headers)


class Authenticator:
    """The active tokens of one server, in memory, refreshed from the token store."""

    def __init__(self, store: TokenStore, refresh: float = DEFAULT_REFRESH) -> None:
        self.store = store
        self.refresh_interval = refresh
        self._tokens: dict[str, ActiveToken] = {}
        self._used: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def token_count(self) -> int:
        """Active tokens known (as of the last refresh)."""
        return len(self._tokens)

    def load(self, used: Iterable[int] = ()) -> None:
        """Write ``last_used_at`` of the tokens ``used``, then reload the active tokens."""
        self._tokens = self.store.active(used)

    async def refresh(self) -> None:
        """Reload the tokens now (off the event loop)."""
        used, self._used = self._used, set()
        await asyncio.to_thread(self.load, used)

    async def start(self) -> None:
        """Load the tokens, then refresh them every ``refresh_interval`` seconds."""
        await asyncio.to_thread(self.load)
        if not self._tokens:
            logger.warning(
                "auth is on but there is no active API token: every protected route answers "
                "401; create one with: shipyard tokens create NAME --scope predict"
            )
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        """Stop refreshing; record the last uses."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.refresh()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:  # keep the tokens we have: a database hiccup locks no one out
                logger.exception("could not refresh the API tokens; keeping the previous set")

    def check(self, scope: Scope) -> Denial | None:
        """None when the request may proceed, else the 401 / 403 answer."""
        required = required_scope(scope["method"], scope["path"])
        if required is None:
            return None
        header: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        refusal = self.verify(header, required)
        return None if refusal is None else _deny(*refusal, scope)

    def verify(self, header: bytes | None, required: str) -> tuple[int, str] | None:
        """None when the ``Authorization`` value ``header`` grants ``required``, else the
        status (401 / 403) and why: the one token rule of every transport (HTTP, gRPC)."""
        if header is None:
            return 401, "missing API token: send the header 'Authorization: Bearer <token>'"
        kind, _, token = header.partition(b" ")
        token = token.strip()
        if kind.lower() != b"bearer" or not token:
            return 401, "the Authorization header must be 'Bearer <token>'"
        active = self._tokens.get(hashlib.sha256(token).hexdigest())
        if active is None:
            return 401, "invalid or revoked API token"
        self._used.add(active.id)
        if required not in active.scopes and "admin" not in active.scopes:
            return 403, (
                f"token {active.name!r} lacks the {required!r} scope this route needs "
                f"(it has: {', '.join(sorted(active.scopes))})"
            )
        return None
