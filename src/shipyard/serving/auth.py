"""API tokens for the model server: scopes, hashed storage, and the per-request check.

A token is ``shp_`` followed by 43 random URL-safe characters (256 bits). Only its sha256
is stored (``api_tokens.token_hash``); the secret is shown once, by ``shipyard tokens
create``. Scopes:

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
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.types import Scope

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import ConflictError, InvalidArgumentError, NotFoundError
from shipyard.store import Database
from shipyard.store.tables import ApiToken

logger = logging.getLogger("shipyard.serving.auth")

SCOPES = ("predict", "read", "admin")
TOKEN_PREFIX = "shp_"
DEFAULT_REFRESH = 30.0
OPEN_PATHS = frozenset(
    ("/health/live", "/health/ready", "/ping", "/health", "/v2/health/live", "/v2/health/ready")
)
_TABLE = ApiToken.metadata.tables[ApiToken.__tablename__]


def hash_token(token: str | bytes) -> str:
    """The sha256 (hex) stored for ``token``."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


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
class TokenInfo:
    """What is known about a token (never its secret)."""

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``shipyard tokens list --json``)."""
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` deduplicated in a stable order; :class:`InvalidArgumentError` if unknown/empty."""
    chosen = list(dict.fromkeys(s.strip().lower() for s in scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown scope(s) {', '.join(map(repr, unknown))}; choose from {', '.join(SCOPES)}"
        )
    if not chosen:
        raise InvalidArgumentError(f"give a token at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in chosen)


def create_token(
    database: Database, name: str, scopes: Sequence[str], created_by: str
) -> tuple[str, TokenInfo]:
    """Make a token called ``name``: the secret (shown once, never stored) and its info."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidArgumentError("a token name must be 1 to 128 characters")
    chosen = check_scopes(scopes)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with database.session() as session:
        exists = session.execute(
            sa.select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        ).first()
        if exists is not None:
            raise ConflictError(
                f"an active token called {name!r} exists; revoke it first "
                f"(shipyard tokens revoke {name}) or choose another name"
            )
        row = ApiToken(
            name=name,
            token_hash=hash_token(secret),
            scopes=list(chosen),
            created_at=utcnow(),
            created_by=created_by,
        )
        session.add(row)
        session.flush()
        info = _info(row)
    return secret, info


def list_tokens(database: Database, *, include_revoked: bool = True) -> list[TokenInfo]:
    """Every token (oldest first), revoked ones too unless ``include_revoked`` is False."""
    query = sa.select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    with database.session() as session:
        return [_info(row) for row in session.scalars(query)]


def revoke_token(database: Database, name: str) -> TokenInfo:
    """Revoke the active token called ``name`` (servers drop it at their next refresh)."""
    with database.session() as session:
        row = session.scalars(
            sa.select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        ).first()
        if row is None:
            raise NotFoundError(f"no active token called {name!r}; see shipyard tokens list")
        row.revoked_at = utcnow()
        return _info(row)


@dataclass(frozen=True)
class _Active:
    id: int
    name: str
    scopes: frozenset[str]


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
    """The active tokens of one server, in memory, refreshed from the database."""

    def __init__(self, database: Database, refresh: float = DEFAULT_REFRESH) -> None:
        self.database = database
        self.refresh_interval = refresh
        self._tokens: dict[str, _Active] = {}
        self._used: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def token_count(self) -> int:
        """Active tokens known (as of the last refresh)."""
        return len(self._tokens)

    def load(self, used: Iterable[int] = ()) -> None:
        """Write ``last_used_at`` of the tokens ``used``, then reload the active tokens."""
        used = sorted(used)
        with self.database.engine.begin() as connection:
            if used:
                connection.execute(
                    sa.update(_TABLE).where(_TABLE.c.id.in_(used)).values(last_used_at=utcnow())
                )
            rows = connection.execute(
                sa.select(_TABLE.c.id, _TABLE.c.name, _TABLE.c.token_hash, _TABLE.c.scopes).where(
                    _TABLE.c.revoked_at.is_(None)
                )
            ).all()
        self._tokens = {
            token_hash: _Active(id_, name, frozenset(scopes))
            for id_, name, token_hash, scopes in rows
        }

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
        if header is None:
            return _deny(
                401, "missing API token: send the header 'Authorization: Bearer <token>'", scope
            )
        kind, _, token = header.partition(b" ")
        token = token.strip()
        if kind.lower() != b"bearer" or not token:
            return _deny(401, "the Authorization header must be 'Bearer <token>'", scope)
        active = self._tokens.get(hashlib.sha256(token).hexdigest())
        if active is None:
            return _deny(401, "invalid or revoked API token", scope)
        self._used.add(active.id)
        if required not in active.scopes and "admin" not in active.scopes:
            return _deny(
                403,
                f"token {active.name!r} lacks the {required!r} scope this route needs "
                f"(it has: {', '.join(sorted(active.scopes))})",
                scope,
            )
        return None
