"""The console's sessions: an API token in, a signed HTTP-only cookie out; CSRF on every form.

A browser sends no ``Authorization`` header, so the console has its own login: the login
page takes an API token (``shipyard tokens create NAME --scope admin``), checks it in the
token store and sets the ``shipyard_session`` cookie — signed with
:mod:`itsdangerous`, ``HttpOnly``, ``SameSite=Lax``, ``Secure`` over HTTPS, valid
:data:`MAX_AGE` seconds. The cookie holds the token's sha256 (never the token), its name
and scopes, and the session's CSRF secret. Every request re-reads the token's row by that
sha256, so a revoked token ends its sessions at once.

Rights, as the CLI's scopes:

- reading needs the ``read`` scope (or ``admin``) when the server runs with auth on, and
  nothing when auth is off;
- every decision (approve a value, promote, force, roll back, archive) needs an ``admin``
  token, whether auth is on or off — a decision is recorded with the token's name as actor.

Every form carries the session's CSRF secret in a hidden ``csrf`` field; a POST whose field
does not match (in constant time) is refused.

The signing key is ``$SHIPYARD_CONSOLE_SECRET`` when set (give every replica the same one),
else a random key kept in ``.shipyard/console.key`` of the project (mode 0600), made on
first use; if that folder cannot be written, a per-process key (sessions end at restart).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request

from shipyard.core.exceptions import ForbiddenError, ShipyardError
from shipyard.registry.tokens import TokenStore, hash_token

logger = logging.getLogger("shipyard.serving.console")

COOKIE = "shipyard_session"
#: How long a session lasts, in seconds (8 hours: one working day).
MAX_AGE = 8 * 3600
SECRET_ENV = "SHIPYARD_CONSOLE_SECRET"  # noqa: S105 - the variable's name, not a secret
_SALT = "shipyard.console.session"


class LoginRequired(ShipyardError):
    """The page needs a session (or a session with more rights): go to the login page."""

    status_code = 401

    def __init__(self, message: str, *, next_url: str = "", expired: bool = False) -> None:
        super().__init__(message)
        self.next_url = next_url
        self.expired = expired


@dataclass(frozen=True)
class Session:
    """A logged-in browser: the token's name, scopes and sha256, and the CSRF secret."""

    name: str
    scopes: frozenset[str]
    token_hash: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        """True when the token may take decisions."""
        return "admin" in self.scopes

    def can_read(self) -> bool:
        """True when the token may read the console's pages."""
        return bool({"read", "admin"} & self.scopes)


def signing_key(root: Path | None) -> str:
    """The key that signs session cookies (see the module's docstring)."""
    from_env = os.environ.get(SECRET_ENV, "").strip()
    if from_env:
        return from_env
    if root is not None:
        path = root / ".shipyard" / "console.key"
        try:
            if path.is_file():
                key = path.read_text(encoding="ascii").strip()
                if len(key) >= 32:
                    return key
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(key + "\n")
            return key
        except OSError as exc:
            logger.warning(
                "cannot keep the console's session key in %s (%s): using a per-process key, "
                "so sessions end when the server restarts; set %s to keep them",
                path,
                exc,
                SECRET_ENV,
            )
    return secrets.token_urlsafe(48)


class Sessions:
    """Makes and checks session cookies against the token store."""

    def __init__(self, tokens: TokenStore, key: str, *, auth: bool, max_age: int = MAX_AGE):
        self.tokens = tokens
        self.auth = auth
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)

    def login(self, token: str) -> tuple[Session, str]:
        """The session for API token ``token`` and its cookie value; refuses a bad token."""
        token = token.strip()
        if not token:
            raise LoginRequired("paste an API token (shipyard tokens create NAME --scope admin)")
        digest = hash_token(token)
        info = self.tokens.lookup(digest)
        if info is None or not info.active:
            raise LoginRequired("invalid or revoked API token")
        session = Session(info.name, frozenset(info.scopes), digest, secrets.token_urlsafe(24))
        payload = {"n": session.name, "s": sorted(session.scopes), "h": digest, "c": session.csrf}
        return session, self._serializer.dumps(payload)

    def read(self, request: Request) -> Session | None:
        """The request's session, or None without a cookie.

        An expired or tampered cookie, or one whose token was revoked since, raises
        :class:`LoginRequired` saying so.
        """
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            payload: Any = self._serializer.loads(raw, max_age=self.max_age)
        except SignatureExpired as exc:
            raise LoginRequired(
                "your session expired: log in again", next_url=_here(request), expired=True
            ) from exc
        except BadSignature as exc:
            raise LoginRequired(
                "your session cookie is not valid (the server's key changed?): log in again",
                next_url=_here(request),
                expired=True,
            ) from exc
        try:
            session = Session(
                str(payload["n"]), frozenset(payload["s"]), str(payload["h"]), str(payload["c"])
            )
        except (KeyError, TypeError) as exc:
            raise LoginRequired("your session cookie is not valid: log in again") from exc
        info = self.tokens.lookup(session.token_hash)
        if info is None or not info.active:
            raise LoginRequired(
                f"the token {session.name!r} of your session was revoked: log in again",
                next_url=_here(request),
                expired=True,
            )
        return session

    def viewer(self, request: Request) -> Session | None:
        """The session of a reader: required (with ``read`` or ``admin``) when auth is on."""
        session = self.read(request)
        if not self.auth:
            return session
        if session is None:
            raise LoginRequired(
                "log in with an API token to read the console", next_url=_here(request)
            )
        if not session.can_read():
            raise ForbiddenError(
                f"token {session.name!r} lacks the 'read' scope the console needs "
                f"(it has: {', '.join(sorted(session.scopes))})"
            )
        return session

    def posted(self, request: Request, form: dict[str, Any]) -> Session:
        """The session of a submitted form, its CSRF field checked (any scope)."""
        session = self.read(request)
        if session is None:
            raise LoginRequired(
                "this form needs a session: log in first",
                next_url=request.headers.get("referer", ""),
            )
        sent = str(form.get("csrf", ""))
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise ForbiddenError(
                "the form's CSRF token is missing or does not match your session: reload the "
                "page and try again"
            )
        return session

    def admin(self, request: Request, form: dict[str, Any]) -> Session:
        """The session of a decision: an ``admin`` token, and the form's CSRF field matching."""
        session = self.posted(request, form)
        if not session.is_admin:
            raise ForbiddenError(
                f"token {session.name!r} lacks the 'admin' scope decisions need "
                f"(it has: {', '.join(sorted(session.scopes))}); log in with an admin token"
            )
        return session


def _here(request: Request) -> str:
    """The path (and query) of ``request``, to come back to after logging in."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")
