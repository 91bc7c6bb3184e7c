"""The two doors of every console route: :func:`reader` for pages, :func:`admin_form` for
decisions (see :mod:`shipyard.serving.console.session` for the rules)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from shipyard.serving.console.session import Session
from shipyard.serving.console.state import console_state


def reader(request: Request) -> Session | None:
    """FastAPI dependency of every page: the viewer's session (required when auth is on)."""
    session = console_state(request).sessions.viewer(request)
    request.scope.setdefault("state", {})["console_session"] = session
    return session


async def admin_form(request: Request) -> tuple[Session, dict[str, str]]:
    """The submitted form of a decision and its admin session (CSRF checked)."""
    return await _form(request, admin=True)


async def any_form(request: Request) -> tuple[Session, dict[str, str]]:
    """A submitted form and its session, whatever its scopes (CSRF checked): logging out."""
    return await _form(request, admin=False)


async def _form(request: Request, *, admin: bool) -> tuple[Session, dict[str, str]]:
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    sessions = console_state(request).sessions
    check = sessions.admin if admin else sessions.posted
    session = await run_in_threadpool(check, request, fields)
    request.scope.setdefault("state", {})["console_session"] = session
    return session, fields
