"""The web console: the whole road on one page per question, served under ``/ui``.

``shipyard serve`` mounts it (``[serving] console = false`` or ``--no-console`` leaves it
out) and ``shipyard ui`` serves it with no model. Pages are rendered on the server with
Jinja2 (:mod:`~shipyard.serving.console.render`); htmx (partial updates) and uPlot (charts)
are vendored under ``static/`` with their versions and checksums (``static/vendor.toml``),
so nothing comes from a CDN and nothing is built with Node. Every page reads well without
JavaScript.

Pages (each its own module, reading the domain stores through
:func:`~shipyard.serving.console.state.console_state`, never a table):

- ``/ui/`` — the road board (:mod:`.board`);
- ``/ui/models/{name}`` and ``/ui/models/{name}/versions/{version}`` — a model and one
  version: metrics, value, gates, decisions, comparison (:mod:`.versions`); the decisions'
  forms post to :mod:`.actions`;
- ``/ui/runs`` and ``/ui/runs/{run_id}`` (:mod:`.runs`);
- ``/ui/datasets…`` and ``/ui/predictions…`` (:mod:`.data`);
- ``/ui/monitoring…`` (:mod:`.monitoring`);
- ``/ui/login``, ``/ui/logout`` (:mod:`.login`; sessions: :mod:`.session`).

Errors are pages too: an unknown model or version, a bad parameter, a refused decision or
an expired session answers an HTML page with the status and what to do, never a trace.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from shipyard.core.exceptions import ShipyardError
from shipyard.datasets.alert_state import AlertStates
from shipyard.datasets.feedback import FeedbackStore
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.datasets.run_records import Runs
from shipyard.registry.tokens import TokenStore
from shipyard.serving.console import actions, board, data, login, monitoring, runs, versions
from shipyard.serving.console.render import page, url_in
from shipyard.serving.console.session import LoginRequired, Sessions, signing_key
from shipyard.serving.console.state import ConsoleState
from shipyard.serving.errors import describe_validation
from shipyard.serving.state import ServerState

logger = logging.getLogger("shipyard.serving.console")


def console_app(server: ServerState) -> FastAPI:
    """The console for ``server``'s registry and stores (``serving.app`` mounts it at ``/ui``)."""
    database = server.registry.database
    sessions = Sessions(
        TokenStore(database),
        signing_key(server.registry.settings.root),
        auth=server.auth is not None,
    )
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = ConsoleState(
        server=server,
        sessions=sessions,
        runs=Runs(database),
        monitor_results=MonitorResults(database),
        alerts=AlertStates(database),
        feedback=FeedbackStore(database),
        prediction_log=PredictionLogStore(database),
    )
    app.mount(
        "/static",
        StaticFiles(packages=[("shipyard.serving.console", "static")]),
        name="static",
    )
    for module in (login, board, versions, actions, runs, data, monitoring):
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(ShipyardError, _error_page)
    app.add_exception_handler(HTTPException, _http_error_page)
    app.add_exception_handler(RequestValidationError, _validation_page)
    return app


async def _login_required(request: Request, exc: Exception) -> Response:
    """To the login page, coming back here afterwards (htmx: a full-page redirect)."""
    assert isinstance(exc, LoginRequired)  # noqa: S101 - narrows the type; Starlette guarantees it
    query: dict[str, Any] = {"next": exc.next_url or ""}
    if exc.expired:
        query["expired"] = "1"
    target = url_in(request, "/login") + "?" + urlencode({k: v for k, v in query.items() if v})
    if request.method != "GET" and not exc.expired and not exc.next_url:
        # a form posted with no session at all: say so on the login page itself
        return page(
            request, "login.html", {"next": "", "message": "", "error": exc.message}, status=401
        )
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"hx-redirect": target})
    response = RedirectResponse(target, status_code=303)
    if exc.expired:
        response.delete_cookie("shipyard_session", path=request.scope.get("root_path", "") or "/")
    return response


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShipyardError)  # noqa: S101 - narrows the type; Starlette guarantees it
    return error_page(request, exc.status_code, type(exc).__name__, exc.message)


async def _http_error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - narrows the type; Starlette guarantees it
    if exc.status_code == 404:
        message = f"there is no console page at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_page(
        request, exc.status_code, "NotFound" if exc.status_code == 404 else "", message
    )


async def _validation_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - narrows the type
    return error_page(request, 400, "InvalidArgumentError", describe_validation(exc.errors()))


def error_page(request: Request, status: int, kind: str, message: str) -> Response:
    """The console's error page: the status, what was wrong, and a way back."""
    context = {"status": status, "kind": kind, "message": message[:2000]}
    return page(request, "error.html", context, status=status)
