"""The serving app factory: ``create_app(registry, refs)`` builds one FastAPI app.

The app's lifespan loads and warms up every model before the app reports ready, and on
shutdown answers every queued request before stopping the batchers (uvicorn first stops
accepting connections and waits for in-flight requests). Everything the app holds —
models, metrics, the dataset and predictions stores — is one typed ``ServerState`` on
``app.state.server`` (:mod:`shipyard.serving.state`); nothing is
global, so tests build as many apps as they like. Routes:

- ``/health/live`` (always 200) and ``/health/ready`` (503 until every model is warm);
- ``/metrics`` (Prometheus: serving metrics and the newest monitoring report of each model,
  :mod:`shipyard.serving.monitor_metrics`);
- the native protocol under ``/v1`` (:mod:`shipyard.serving.protocols.native`);
- the exposure API under ``/v1`` (:mod:`shipyard.serving.data.exposure`): stored predictions
  (``/v1/predictions``, ``/v1/predictions/jobs``) and dataset versions and their rows
  (``/v1/datasets/...``), read from the server state's predictions and dataset stores;
- ``POST /v1/feedback`` (:mod:`shipyard.serving.data.feedback`): ground truth for logged or batch
  predictions, for monitoring;
- MLflow's scoring protocol: ``/invocations``, ``/ping``, ``/health``, ``/version``
  (:mod:`shipyard.serving.protocols.mlflow`);
- ``/ui``: the web console (:mod:`shipyard.serving.console`; ``GET /`` leads there), unless
  ``ServeSettings.console`` is off;
- with ``ServeSettings.grpc_port``, the Open Inference Protocol v2 over gRPC on that port, in
  the same event loop (:mod:`shipyard.serving.protocols.grpc`; ``app.state.grpc`` is its
  server): listening once the models are warm, as uvicorn does (so with several workers
  sharing the port, connections reach only ready ones), stopped first on shutdown.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.core.exceptions import ConfigError, MissingDependencyError, ShipyardError
from shipyard.datasets import Datasets
from shipyard.datasets.predictions import PredictionStore
from shipyard.registry import Registry
from shipyard.registry.tokens import TokenStore
from shipyard.serving.auth import Authenticator
from shipyard.serving.data.exposure import router as exposure_router
from shipyard.serving.data.feedback import router as feedback_router
from shipyard.serving.errors import http_error_handler, validation_error_handler
from shipyard.serving.http import ServingMiddleware, json_response, shipyard_error_handler
from shipyard.serving.limits import RequestGuard
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.models import ModelManager
from shipyard.serving.monitor_metrics import MonitoringCollector
from shipyard.serving.openapi import install_openapi
from shipyard.serving.predlog import PredictionLog
from shipyard.serving.protocols.fastpath import ServingApp
from shipyard.serving.protocols.mlflow import router as mlflow_router
from shipyard.serving.protocols.native import router as native_router
from shipyard.serving.protocols.v2 import v2_router
from shipyard.serving.routing import CLIENT_REQUEST_ID
from shipyard.serving.settings import ServeSettings
from shipyard.serving.state import ServerState, server_state

if TYPE_CHECKING:
    from shipyard.serving.protocols.grpc import GrpcServer

#: Where the web console is mounted.
CONSOLE = "/ui"


def create_app(
    registry: Registry,
    refs: Sequence[str],
    settings: ServeSettings | None = None,
    *,
    console_only: bool = False,
) -> FastAPI:
    """An app serving the model references ``refs`` from ``registry``.

    ``console_only`` (``shipyard ui``): no model, ``refs`` empty; the console, the read APIs,
    health and metrics only.
    """
    settings = settings or ServeSettings()
    metrics = ServingMetrics()
    models = ModelManager(
        registry,
        refs,
        settings.batching,
        metrics,
        threads=max(1, settings.threads),
        model_threads=max(0, settings.model_threads),
        routing=settings.routing,
        compile_to=settings.compile,
        allow_empty=console_only,
    )

    database = registry.database
    metrics.registry.register(MonitoringCollector(database))
    prediction_log = (
        PredictionLog(
            database,
            metrics.registry,
            max_queue=settings.prediction_log_queue,
            max_rows=settings.prediction_log_max_rows,
            spool=Path(settings.prediction_log_spool) if settings.prediction_log_spool else None,
        )
        if settings.prediction_log
        else None
    )
    auth = (
        Authenticator(TokenStore(database), settings.token_refresh_s, settings.token_grace_s)
        if settings.auth
        else None
    )
    datasets = Datasets(database, registry.artifacts, registry.settings.actor)
    state = ServerState(
        models=models,
        metrics=metrics,
        settings=settings,
        registry=registry,
        datasets=datasets,
        predictions=PredictionStore(database, datasets),
        prediction_log=prediction_log,
        auth=auth,
    )
    grpc_port = settings.grpc_port
    grpc_server = _grpc_server(state, settings, grpc_port) if grpc_port is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if auth is not None:
            await auth.start()
        if prediction_log is not None:
            prediction_log.start()
        await models.start()
        models.shadow_log = prediction_log
        if settings.freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            if grpc_server is not None:
                await grpc_server.start()
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            await models.stop()
            if prediction_log is not None:
                await asyncio.to_thread(prediction_log.close)
            if auth is not None:
                await auth.stop()

    routed = bool(settings.routing.canary or settings.routing.shadow)
    app = (_RoutedApp if routed else _BoundedApp)(
        title="shipyard model server",
        summary=(
            "shipyard's native API, MLflow's scoring protocol, the Open Inference Protocol v2 "
            "and Prometheus metrics."
        ),
        lifespan=lifespan,
    )
    app.state.server = state
    app.state.grpc = grpc_server
    app.guard = RequestGuard(settings.limits, metrics)
    app.add_exception_handler(ShipyardError, shipyard_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)  # 404, 405: shipyard's body
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(
        ServingMiddleware, metrics=metrics, auth=auth, public_url=settings.public_url
    )
    app.add_api_route("/health/live", live, methods=["GET"], tags=["health"])
    app.add_api_route("/health/ready", _ready_route(models, auth), methods=["GET"], tags=["health"])
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], tags=["operations"])
    app.include_router(native_router)
    app.include_router(exposure_router)
    app.include_router(feedback_router)
    app.include_router(mlflow_router)
    app.include_router(v2_router(models, "shipyard", _version()))
    install_openapi(app)  # bodies, every status, security, media types
    if settings.console:
        app.mount(CONSOLE, _DeferredConsole(state), name="console")
        app.add_api_route("/", _to_console, methods=["GET"], include_in_schema=False)
    return app


class _DeferredConsole:
    """The web console, imported and built on its first request.

    Its pages, templates and forms cost ~0.08 s to import that a replica answering only
    predictions never needs: the server is ready that much sooner. The first ``/ui``
    request builds it in a worker thread, so the event loop keeps answering.
    """

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await asyncio.to_thread(self._build)
        await self._app(scope, receive, send)

    def _build(self) -> ASGIApp:
        from shipyard.serving.console import console_app

        return console_app(self._state)


async def _to_console() -> Response:
    """``GET /``: the web console."""
    return RedirectResponse(f"{CONSOLE}/", status_code=307)


class _BoundedApp(ServingApp):
    """Bounds every request's body first (:class:`~shipyard.serving.limits.RequestGuard`)."""

    guard: RequestGuard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request (the fast path or FastAPI) with its body bounded."""
        await self.guard(super().__call__, scope, receive, send)


class _RoutedApp(_BoundedApp):
    """Notes the client's ``x-request-id`` first: canary splits and shadow logs use it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with its client request id in :data:`CLIENT_REQUEST_ID`."""
        client_id = None
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"x-request-id":
                    client_id = value.decode("latin-1")
                    break
        token = CLIENT_REQUEST_ID.set(client_id)
        try:
            await super().__call__(scope, receive, send)
        finally:
            CLIENT_REQUEST_ID.reset(token)


def _grpc_server(state: ServerState, settings: ServeSettings, port: int) -> GrpcServer:
    """The app's gRPC service, imported only when asked for: grpcio is an optional extra."""
    try:
        from shipyard.serving.protocols.grpc import GrpcServer
    except ImportError as exc:
        raise MissingDependencyError(
            f"serving gRPC (--grpc-port, [serving] grpc_port) needs grpcio and protobuf ({exc}); "
            "install them with: pip install 'shipyard[grpc]'"
        ) from exc
    except TypeError as exc:  # protobuf refuses a second definition of the inference.* messages
        raise ConfigError(
            f"cannot serve gRPC from this process ({exc}): a library imported here "
            "(tritonclient.grpc, kserve, mlserver) registered the Open Inference Protocol's "
            "messages first; serve gRPC from a process that does not import one"
        ) from exc
    return GrpcServer(
        state,
        settings.grpc_host,
        port,
        server_name="shipyard",
        server_version=_version(),
        reuse_port=settings.grpc_reuse_port,
        client_request_id=CLIENT_REQUEST_ID,
    )


def _version() -> str:
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


async def live() -> Response:
    """The process is up (it may still be loading models)."""
    return json_response({"status": "live"})


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the app's metrics in Prometheus text format."""
    return Response(server_state(request.app).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _ready_route(
    models: ModelManager, auth: Authenticator | None
) -> Callable[[], Awaitable[Response]]:
    """``GET /health/ready`` over the concrete manager: while loading it lists the references."""

    async def ready() -> Response:
        """200 once every model is loaded and warmed up (and the tokens are fresh), else 503."""
        stale = auth.stale if auth is not None else None
        if stale is not None:
            return json_response({"status": "tokens stale", "reason": stale}, 503)
        if not models.ready():
            return json_response(
                {"status": "loading", "models": models.refs, "served": models.describe_served()},
                503,
            )
        return json_response(
            {"status": "ready", "models": [f"{m.name}:{m.version}" for m in models.served()]}
        )

    return ready
