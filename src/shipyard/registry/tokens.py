"""API tokens of the model server: their scopes, hashed storage and administration.

A token is ``shp_`` followed by 43 random URL-safe characters (256 bits). Only its sha256
is stored (``api_tokens.token_hash``); the secret is shown once, by ``shipyard tokens
create``. :class:`TokenStore` is the one reader and writer of the ``api_tokens`` table:
``shipyard tokens`` administers tokens through it, and the server's request-path check
(:class:`~shipyard.serving.auth.Authenticator`) reloads the active ones from it.
Scopes are described in :mod:`shipyard.serving.auth`, which enforces them.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import ConflictError, InvalidArgumentError, NotFoundError
from shipyard.store import Database
from shipyard.store.tables import ApiToken

SCOPES = ("predict", "read", "admin")
TOKEN_PREFIX = "shp_"  # noqa: S105 - not a password: a public prefix / mask
_TABLE = ApiToken.metadata.tables[ApiToken.__tablename__]


def hash_token(token: str | bytes) -> str:
    """The sha256 (hex) stored for ``token``."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


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


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token (never its secret)."""

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    #: The models it may predict on and label (None: every model).
    models: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``shipyard tokens list --json``)."""
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "models": list(self.models) if self.models is not None else None,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class ActiveToken:
    """An active token as the server's check needs it: its id, name and scopes."""

    id: int
    name: str
    scopes: frozenset[str]
    #: The models it may predict on and label (None: every model).
    models: frozenset[str] | None = None

    def allows_model(self, model: str) -> bool:
        """True when the token may predict on (and label) ``model``."""
        return self.models is None or model in self.models


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        models=tuple(row.models) if row.models is not None else None,
    )


class TokenStore:
    """The ``api_tokens`` table of one project: create, list, revoke, look up."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(
        self,
        name: str,
        scopes: Sequence[str],
        created_by: str,
        models: Sequence[str] | None = None,
    ) -> tuple[str, TokenInfo]:
        """Make a token called ``name``: the secret (shown once, never stored) and its info.

        ``models`` limits what it may predict on and label (None: every model).
        """
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidArgumentError("a token name must be 1 to 128 characters")
        chosen = check_scopes(scopes)
        allowed = None if models is None else list(dict.fromkeys(m.strip() for m in models))
        if allowed is not None and (not allowed or not all(allowed)):
            raise InvalidArgumentError("--model needs a model name (repeat it for several)")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.database.session() as session:
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
                models=allowed,
            )
            session.add(row)
            session.flush()
            info = _info(row)
        return secret, info

    def list(self, *, include_revoked: bool = True) -> builtins.list[TokenInfo]:
        """Every token (oldest first), revoked ones too unless ``include_revoked`` is False."""
        query = sa.select(ApiToken).order_by(ApiToken.id)
        if not include_revoked:
            query = query.where(ApiToken.revoked_at.is_(None))
        with self.database.session() as session:
            return [_info(row) for row in session.scalars(query)]

    def revoke(self, name: str) -> TokenInfo:
        """Revoke the active token called ``name`` (servers drop it at their next refresh)."""
        with self.database.session() as session:
            row = session.scalars(
                sa.select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
            ).first()
            if row is None:
                raise NotFoundError(f"no active token called {name!r}; see shipyard tokens list")
            row.revoked_at = utcnow()
            return _info(row)

    def lookup(self, token_hash: str) -> TokenInfo | None:
        """The active token whose sha256 is ``token_hash`` (``None``: unknown or revoked)."""
        query = sa.select(ApiToken).where(
            ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None)
        )
        with self.database.session() as session:
            row = session.scalars(query).first()
            return None if row is None else _info(row)

    def active(self, used: Iterable[int] = ()) -> dict[str, ActiveToken]:
        """Write ``last_used_at`` of the tokens ``used``, then every active token by its hash.

        One transaction on a bare connection (no ORM objects): the server calls it at every
        refresh.
        """
        used = sorted(used)
        with self.database.engine.begin() as connection:
            if used:
                connection.execute(
                    sa.update(_TABLE).where(_TABLE.c.id.in_(used)).values(last_used_at=utcnow())
                )
            rows = connection.execute(
                sa.select(
                    _TABLE.c.id,
                    _TABLE.c.name,
                    _TABLE.c.token_hash,
                    _TABLE.c.scopes,
                    _TABLE.c.models,
                ).where(_TABLE.c.revoked_at.is_(None))
            ).all()
        return {
            token_hash: ActiveToken(
                id_, name, frozenset(scopes), None if models is None else frozenset(models)
            )
            for id_, name, token_hash, scopes, models in rows
        }
