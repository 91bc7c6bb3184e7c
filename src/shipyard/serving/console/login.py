"""The login page (an API token in, a session cookie out) and logging out."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shipyard.serving.console.deps import any_form, reader
from shipyard.serving.console.render import page, url_in
from shipyard.serving.console.session import COOKIE, LoginRequired, Session
from shipyard.serving.console.state import console_state

router = APIRouter()


def safe_next(request: Request, target: str) -> str:
    """``target`` when it is a console path of this server, else the board (no open redirect)."""
    root = request.scope.get("root_path", "")
    if target.startswith(f"{root}/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_in(request, "/")


@router.get("/login")
def login_form(request: Request, next: str = "", expired: bool = False) -> Response:
    """The login form: paste an API token (it says who is logged in already, if anyone)."""
    message = "Your session ended: log in again." if expired else ""
    with contextlib.suppress(LoginRequired):  # a stale cookie: the form is the way out
        request.scope.setdefault("state", {})["console_session"] = console_state(
            request
        ).sessions.read(request)
    return page(request, "login.html", {"next": next, "message": message, "error": ""})


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    """Check the token; on success set the session cookie and go where the user was going."""
    sessions = console_state(request).sessions
    try:
        _session, cookie = await run_in_threadpool(sessions.login, token)
    except LoginRequired as exc:
        context = {"next": next, "message": "", "error": exc.message}
        return page(request, "login.html", context, status=401)
    response = RedirectResponse(safe_next(request, next), status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=sessions.max_age,
        path=request.scope.get("root_path", "") or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, decided: Annotated[tuple[Session, dict[str, str]], Depends(any_form)]
) -> Response:
    """End the session (any token may log out; the CSRF field is still checked)."""
    del decided
    return _logged_out(request)


@router.get("/logout")
def logout_page(request: Request, session: Annotated[Session | None, Depends(reader)]) -> Response:
    """A confirmation form (logging out is a POST, so another site cannot do it for you)."""
    del session
    return page(request, "logout.html")


def _logged_out(request: Request) -> Response:
    response = RedirectResponse(url_in(request, "/login"), status_code=303)
    response.delete_cookie(COOKIE, path=request.scope.get("root_path", "") or "/")
    return response
