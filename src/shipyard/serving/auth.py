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
``/v2/health/live``, ``/v2/health/ready``) stay open so probes need no secret. The web
console under ``/ui`` checks its own signed session cookie (a browser sends no header), with
the same tokens and scopes: :mod:`shipyard.serving.console`.

The server keeps the active tokens in memory (sha256 → token) and reloads them every
``refresh`` seconds, so checking a request is one header scan, one sha256 and one dict
lookup — no query — and a revoked token stops working within one refresh. Tokens used since
the last refresh get their ``last_used_at`` written at the next one. Tokens are never logged.
The lookup is by the token's sha256, never by comparing secrets, so its timing says nothing
about any stored token.

Refreshing fails closed: if the token store cannot be read for longer than ``grace``
seconds past a refresh (the database is down), a revocation could be missed, so every
protected route answers 503 and ``/health/ready`` says why until a refresh succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Scope

from shipyard.core.exceptions import ForbiddenError
from shipyard.registry.tokens import ActiveToken, TokenStore

logger = logging.getLogger("shipyard.serving.auth")

DEFAULT_REFRESH = 30.0
DEFAULT_GRACE = 60.0
OPEN_PATHS = frozenset(
    ("/health/live", "/health/ready", "/ping", "/health", "/v2/health/live", "/v2/health/ready")
)


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None for the open health routes."""
    if path in OPEN_PATHS or path == "/ui" or path.startswith("/ui/"):
        return None  # the web console checks its own session (shipyard.serving.console)
    if method == "POST" and (
        path in ("/invocations", "/v1/feedback")
        or (path.startswith("/v1/models/") and path.endswith("/predict"))
        or (path.startswith("/v2/models/") and path.endswith("/infer"))
    ):
        return "predict"
    return "read"


@dataclass(frozen=True)
class Denial:
    """A refused request: its status, JSON body (``{"error", "type", "request_id"}``) and
    headers."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


_CHALLENGE = (b"www-authenticate", b"Bearer")
#: The ``type`` of each refusal's body, named as the server's other errors are (an exception
#: class name: a per-model refusal is a :class:`ForbiddenError` too).
REFUSAL_TYPES = {
    401: "UnauthorizedError",
    403: ForbiddenError.__name__,
    503: "ServiceUnavailableError",
}


def _deny(status: int, message: str, scope: Scope) -> Denial:
    """The refusal in the server's one error body, ``{"error", "type", "request_id"}``."""
    rid = scope.get("state", {}).get("request_id")
    content: dict[str, Any] = {"error": message, "type": REFUSAL_TYPES[status]}
    if rid:
        content["request_id"] = rid
    headers = [_CHALLENGE] if status == 401 else []
    return Denial(status, orjson.dumps(content), headers)


class Authenticator:
    """The active tokens of one server, in memory, refreshed from the token store."""

    def __init__(
        self, store: TokenStore, refresh: float = DEFAULT_REFRESH, grace: float = DEFAULT_GRACE
    ) -> None:
        self.store = store
        self.refresh_interval = refresh
        self.grace = grace
        self._loaded_at = time.monotonic()
        self._failing_since: float | None = None
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
        self._loaded_at = time.monotonic()
        self._failing_since = None

    @property
    def stale(self) -> str | None:
        """Why the token set can no longer be trusted (no refresh for too long), or None."""
        age = time.monotonic() - self._loaded_at
        if age <= self.refresh_interval + self.grace:
            return None
        return (
            f"the API tokens could not be refreshed from the database for {age:.0f} s "
            "(a revoked token might still be accepted), so protected routes are refused "
            "until the database answers again"
        )

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
            except Exception:  # keep the tokens for the grace period, then fail closed
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    logger.exception(
                        "could not refresh the API tokens; keeping the previous set for at "
                        "most %.0f s, then refusing protected routes until a refresh succeeds",
                        self.grace,
                    )

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
        refusal, token = self.identify(header, required)
        if refusal is not None:
            return _deny(*refusal, scope)
        scope.setdefault("state", {})["token"] = token  # for the per-model check
        return None

    def verify(self, header: bytes | None, required: str) -> tuple[int, str] | None:
        """None when the ``Authorization`` value ``header`` grants ``required``, else the
        status (401 / 403 / 503) and why."""
        return self.identify(header, required)[0]

    def identify(
        self, header: bytes | None, required: str
    ) -> tuple[tuple[int, str] | None, ActiveToken | None]:
        """The refusal (status and why) or None, and the token when it is granted: the one
        token rule of every transport (HTTP, gRPC)."""
        refusal = self._refusal(header, required)
        if isinstance(refusal, ActiveToken):
            return None, refusal
        return refusal, None

    def _refusal(self, header: bytes | None, required: str) -> tuple[int, str] | ActiveToken:
        stale = self.stale
        if stale is not None:
            return 503, stale
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
        return active


def model_refusal(token: ActiveToken | None, model: str) -> ForbiddenError | None:
    """The 403 when ``token`` is limited to other models than ``model`` (None: allowed)."""
    if token is None or token.allows_model(model):
        return None
    return ForbiddenError(
        f"token {token.name!r} may only be used for the model(s) "
        f"{', '.join(sorted(token.models or ()))}, not {model!r}; create a token with "
        f"--model {model} (or without --model) for it"
    )
