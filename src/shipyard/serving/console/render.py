"""Rendering the console's pages: one Jinja2 environment, the shared filters, paging.

Every page is a template under ``templates/`` extending ``base.html``; a route returns
:func:`page` with its context. Links are built with ``url('/path')`` so the console works
under any mount point or proxy prefix (the ASGI ``root_path``). A request sent by htmx
(header ``HX-Request``) for a fragment gets only the block the template names in
``fragment`` (see :func:`page`), so a "next page" link reloads a table, not the page; the
same link works without JavaScript as a plain link.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from shipyard.core.exceptions import InvalidArgumentError

_ENV = Environment(
    loader=PackageLoader("shipyard.serving.console", "templates"),
    autoescape=select_autoescape(("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Rows per page unless ``?limit=`` says otherwise, and the most a page may hold.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def number(value: Any, digits: int = 3) -> str:
    """A metric for people: ``0.8123`` → ``0.812``, ``12345.6`` → ``12,346``; ``—`` if absent."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    return (
        f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    )


def money(value: Any, currency: str = "") -> str:
    """An amount with its currency: ``12,345 EUR``; ``—`` if absent."""
    if value is None:
        return "—"
    text = f"{float(value):,.0f}"
    return f"{text} {currency}".strip()


def when(value: datetime | None) -> str:
    """A UTC timestamp as ``2026-12-03 14:05:09 UTC``; ``—`` if absent."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``2 h 01 min``; ``—`` if absent."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_ENV.filters.update(number=number, money=money, when=when, duration=duration)


@dataclass(frozen=True)
class Paging:
    """One page of a list: ``offset`` and ``limit`` from the query string, range-checked."""

    offset: int = 0
    limit: int = PAGE_SIZE

    @classmethod
    def from_request(cls, request: Request, default: int = PAGE_SIZE) -> Paging:
        """The ``?offset=&limit=`` of ``request``; a bad value is a 400 naming it."""
        return cls(
            offset=_int_param(request, "offset", 0, 0, 10**9),
            limit=_int_param(request, "limit", default, 1, MAX_PAGE_SIZE),
        )

    def next_offset(self, shown: int, total: int | None = None) -> int | None:
        """The next page's offset, or None on the last page (``shown`` rows on this one)."""
        if shown < self.limit:
            return None
        if total is not None and self.offset + shown >= total:
            return None
        return self.offset + self.limit

    @property
    def previous_offset(self) -> int | None:
        """The previous page's offset, or None on the first page."""
        return None if self.offset == 0 else max(0, self.offset - self.limit)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise InvalidArgumentError(f"{name}={value} is out of range: use {low} to {high}")
    return value


def url_in(request: Request, path: str, **query: Any) -> str:
    """The console URL of ``path`` (e.g. ``/models/churn``) as seen by the browser."""
    from urllib.parse import urlencode

    root = request.scope.get("root_path", "")
    params = {k: v for k, v in query.items() if v is not None and v != ""}
    return f"{root}{path}" + (f"?{urlencode(params)}" if params else "")


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    fragment: str | None = None,
) -> HTMLResponse:
    """Render ``template`` for ``request``; only its block ``fragment`` for an htmx request."""
    from shipyard.serving.console.state import console_state

    console = console_state(request)
    values = {
        "request": request,
        "url": lambda path, **query: url_in(request, path, **query),
        "session": request.scope.get("state", {}).get("console_session"),
        "auth_on": console.sessions.auth,
        "project": console.project_name,
        **(context or {}),
    }
    tmpl = _ENV.get_template(template)
    if fragment is not None and request.headers.get("hx-request") == "true":
        block = tmpl.blocks[fragment]
        html = "".join(block(tmpl.new_context(values)))
    else:
        html = tmpl.render(values)
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


#: Every console page: no framing by other sites, no sniffing, only our own scripts.
_SECURITY_HEADERS = {
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'"
    ),
    "cache-control": "no-store",
}
