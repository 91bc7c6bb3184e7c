"""``shipyard serve``: serve registered models over HTTP with uvicorn (uvloop + httptools).

With no reference on the command line the models come from shipyard.toml::

    [serving]
    models = ["churn@production"]

uvicorn's own access log is off: the server writes one JSON line per request to the
``shipyard.access`` logger (printed on stderr unless ``--no-access-log``). On SIGINT or
SIGTERM uvicorn stops accepting connections, lets in-flight requests finish (up to
``--graceful-timeout`` seconds), then the app answers what is queued and stops.

Every answered prediction is written to the metadata database's ``prediction_log`` table
(``--no-prediction-log`` or ``[serving] prediction_log = false`` turns it off). API tokens
(``shipyard tokens create``) are required with ``--auth`` or ``[serving] auth = true``.

Hot swap, canary and shadow (:mod:`shipyard.serving.routing`): ``--poll-seconds`` (default
5; 0: off) between checks of the served aliases, ``--canary churn=churn:3:10``,
``--shadow churn=churn@challenger``, or ``[serving.canary.churn]`` / ``[serving.shadow.churn]``.

``--model-threads`` (default 1) caps OpenMP / BLAS threads per predict call, for the whole
process and in each prediction thread. Measured on 2 cores with a HistGradientBoosting
model, its default OpenMP team (one thread per core) fighting the event loop made single-row
latency 2-3x worse; batches of a few dozen rows gain nothing from more threads.

``--grpc-port 8001`` (or ``[serving] grpc_port``) also serves the Open Inference Protocol v2
over gRPC on that port (``tritonclient.grpc``, KServe's client), in the same process and event
loop as HTTP; with ``--workers`` > 1 every worker listens on it (SO_REUSEPORT). It needs the
``grpc`` extra: ``pip install 'shipyard[grpc]'``.

Request limits (``[serving.limits]`` or flags, :mod:`shipyard.serving.limits`): body bytes
(``--max-body-bytes``, default 32 MiB), inflated bytes (``--max-decompressed-bytes``, 64 MiB),
rows (``--max-rows``, 100,000), columns (``--max-columns``, 4,096), text length
(``--max-string-length``, 65,536) and header / body read timeouts (``--header-timeout``,
``--body-timeout``, 30 s each, :mod:`shipyard.serving.read_timeouts`).

The port is bound before any model loads: a port in use is one line, at once. A model that
does not load (a corrupt artifact) is one line too, exit status 1, never uvicorn's traceback.

``--compile onnx`` converts scikit-learn, LightGBM and XGBoost models to ONNX at load and
serves them with onnxruntime, only where the converted model's answers match the original's
on the input example (:mod:`shipyard.serving.compile`); ``GET /v1/models`` shows each model's
``input_mode`` (``onnx`` when adopted).
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.context import open_project
from shipyard.core.exceptions import (
    ConfigError,
    FlavorError,
    InvalidArgumentError,
    MissingDependencyError,
    ShipyardError,
)
from shipyard.render import console

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from shipyard.core.settings import Settings


class CompileTarget(StrEnum):
    """What ``--compile`` converts models to."""

    onnx = "onnx"


#: Environment variable carrying the server's configuration to worker processes.
SERVE_ENV = "SHIPYARD_SERVE_CONFIG"


def configured_refs(settings: Settings) -> list[str]:
    """``[serving] models`` of the project's settings (empty when not set)."""
    from shipyard.core.settings import CONFIG_FILE

    models = settings.serving.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] models must be a list of references "
            f'such as ["churn@production"] but got {models!r}'
        )
    return list(models)


def configure_logging(access_log: bool) -> None:
    """Print the ``shipyard.access`` JSON lines (and serving messages) on stderr."""
    for name, level in (("shipyard.access", logging.INFO), ("shipyard.serving", logging.INFO)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(level if access_log or name != "shipyard.access" else logging.WARNING)
        logger.propagate = False


def app_from_environment() -> FastAPI:
    """The app a uvicorn worker process builds (``--workers`` > 1), from :data:`SERVE_ENV`."""
    from shipyard.flavors.kernels import limit_model_threads
    from shipyard.project import Project
    from shipyard.serving import WorkerConfig, create_app

    config = WorkerConfig.model_validate_json(os.environ[SERVE_ENV])
    configure_logging(config.access_log)
    project = Project(config.project)
    limit_model_threads(config.serve.model_threads)
    return create_app(project.registry, config.refs, config.serve)


def serve_command(
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="Models to serve (churn@production, fraud:3); default: shipyard.toml."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Most rows per predict call.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="Longest wait for a batch to fill under load (ms).")
    ] = 2.0,
    graceful_timeout: Annotated[
        int, typer.Option(min=0, help="Seconds in-flight requests get to finish on shutdown.")
    ] = 30,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request on stderr.")] = True,
    model_threads: Annotated[
        int,
        typer.Option(
            min=0,
            help="Native threads (OpenMP / BLAS) per predict call; 0: the libraries' default.",
        ),
    ] = 1,
    prediction_log: Annotated[
        bool | None,
        typer.Option(
            "--prediction-log/--no-prediction-log",
            help="Log every prediction to the database (default: [serving] prediction_log, on).",
            show_default=False,
        ),
    ] = None,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="Require API tokens (shipyard tokens create) (default: [serving] auth, off).",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        list[str] | None,
        typer.Option(
            help="Send a share of a model's requests to a challenger: NAME=TARGET:PERCENT, "
            "e.g. churn=churn:3:10 (repeatable; default: [serving.canary.NAME]).",
        ),
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option(
            help="Mirror a model's requests to a shadow, answering from the champion: "
            "NAME=TARGET, e.g. churn=churn:3 (repeatable; default: [serving.shadow.NAME]).",
        ),
    ] = None,
    poll_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Seconds between checks of the served aliases for hot swap; 0: off "
            "(default: [serving] poll_seconds, 5).",
            show_default=False,
        ),
    ] = None,
    compile_to: Annotated[
        CompileTarget | None,
        typer.Option(
            "--compile",
            help="Convert scikit-learn / LightGBM / XGBoost models to ONNX at load and serve "
            "them with onnxruntime where the answers match on the input example.",
            show_default=False,
        ),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Also serve the Open Inference Protocol v2 over gRPC on this port "
            "(default: [serving] grpc_port, off).",
            show_default=False,
        ),
    ] = None,
    max_body_bytes: Annotated[
        str | None,
        typer.Option(
            help="Largest request body, e.g. 64MiB (default: [serving.limits], 32MiB).",
            show_default=False,
        ),
    ] = None,
    max_decompressed_bytes: Annotated[
        str | None,
        typer.Option(
            help="Largest size a gzip/deflate body may inflate to (default: 64MiB).",
            show_default=False,
        ),
    ] = None,
    max_rows: Annotated[
        int | None,
        typer.Option(min=1, help="Most rows per request (default: 100000).", show_default=False),
    ] = None,
    max_columns: Annotated[
        int | None,
        typer.Option(min=1, help="Most columns per request (default: 4096).", show_default=False),
    ] = None,
    max_string_length: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Longest text value or column name, in characters (default: 65536).",
            show_default=False,
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Seconds a client has to send a request's headers (default: 30).",
            show_default=False,
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Seconds a client has to send a request's body (default: 30).",
            show_default=False,
        ),
    ] = None,
    thread_parse_bytes: Annotated[
        str | None,
        typer.Option(
            help="Bodies larger than this are parsed off the event loop (default: 1MiB).",
            show_default=False,
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Project folder (default: found from here up)."),
    ] = None,
) -> None:
    """Serve models over HTTP: shipyard's API, MLflow's scoring protocol, /metrics."""
    started = collector_off(ctx)  # until the models are warm (the app says so)
    import uvicorn

    from shipyard.core.settings import CONFIG_FILE
    from shipyard.flavors.kernels import limit_model_threads
    from shipyard.serving import WorkerConfig, create_app, resolve_serve_settings
    from shipyard.serving.read_timeouts import timed_protocol

    project = open_project(ctx, project_dir)  # freezes the libraries imported so far
    chosen = list(refs or []) or configured_refs(project.settings)
    if not chosen:
        raise ConfigError(
            "no models to serve: pass references (shipyard serve churn@production) or list "
            f'them in {project.root / CONFIG_FILE} under [serving] models = ["churn@production"]'
        )
    for ref in chosen:
        project.registry.get(ref)  # fail now, with a clear message, on a wrong reference
    settings = resolve_serve_settings(
        project.settings,
        prediction_log=prediction_log,
        auth=auth,
        canary=canary or (),
        shadow=shadow or (),
        poll_seconds=poll_seconds,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        model_threads=model_threads,
        freeze_gc=True,
        compile=compile_to.value if compile_to else None,
        grpc_port=grpc_port,
        grpc_host=host,
        grpc_reuse_port=workers > 1,
        limits={
            "max_body_bytes": max_body_bytes,
            "max_decompressed_bytes": max_decompressed_bytes,
            "max_rows": max_rows,
            "max_columns": max_columns,
            "max_string_length": max_string_length,
            "header_timeout_s": header_timeout,
            "body_timeout_s": body_timeout,
            "thread_parse_bytes": thread_parse_bytes,
        },
    )
    if settings.grpc_port is not None:
        try:  # the optional extra, checked here before any worker process starts
            import grpc  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "--grpc-port needs grpcio and protobuf; install them with: "
                "pip install 'shipyard[grpc]'"
            ) from exc
    listener = bind_port(host, port)  # before any model loads: a port in use fails at once
    configure_logging(access_log)
    if settings.auth:
        console.print("auth: on (Authorization: Bearer <token>; shipyard tokens create)")
    console.print(f"serving {', '.join(chosen)} on http://{host}:{port} ({workers} worker(s))")
    if settings.console:
        console.print(f"console: http://{host}:{port}/ui/")
    if settings.grpc_port is not None:
        console.print(f"gRPC (Open Inference Protocol v2) on {host}:{settings.grpc_port}")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": timed_protocol(settings.limits),
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": graceful_timeout,
    }
    limit_model_threads(model_threads)  # the process default, before any model is loaded
    if workers == 1:
        guarded = StartupGuard(create_app(project.registry, chosen, settings), started)
        server = uvicorn.Server(uvicorn.Config(guarded, **common))
        logging.getLogger("uvicorn.error").addFilter(guarded.quiet_failure)
        try:
            server.run(sockets=[listener])
        except SystemExit:
            if guarded.error is None:
                raise
        finally:
            listener.close()
        if isinstance(guarded.error, ShipyardError):
            raise guarded.error
        if guarded.error is not None:
            raise startup_error(guarded.error) from guarded.error
        return
    listener.close()  # uvicorn binds it again, once, for its worker processes
    started()  # this process only watches its workers
    config = WorkerConfig(
        project=str(project.root), refs=chosen, access_log=access_log, serve=settings
    )
    os.environ[SERVE_ENV] = config.model_dump_json()
    uvicorn.run(
        "shipyard.cli.serve:app_from_environment",
        factory=True,
        workers=workers,
        # a worker imports its libraries and loads its models before it answers uvicorn's
        # health pings: the default 5 s kills (and restarts, forever) a worker on a busy host
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **common,
    )


#: How long uvicorn waits for a worker process to answer its health ping.
WORKER_HEALTHCHECK_S = 120


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds it), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidArgumentError(
                f"port {port} on {host} is already in use (another server?); stop it or serve "
                "on another port with --port"
            ) from exc
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host or "
            "--port"
        ) from exc
    listener.set_inheritable(True)
    return listener


def collector_off(ctx: typer.Context) -> Callable[[], None]:
    """Turn Python's cyclic garbage collector off while a server starts; return the function
    that turns it back on (given to :class:`StartupGuard`: once the models are warm).

    Starting imports the libraries and loads the models: hundreds of thousands of objects,
    none of them garbage, which the collector would scan over and over (the app collects
    once, then freezes what is alive, when its models are warm). When the command ends
    the collector is back on in any case (a failed start, the server stopped).
    """
    enabled = gc.isenabled()
    gc.disable()

    def resume() -> None:
        if enabled:
            gc.enable()

    ctx.call_on_close(resume)
    return resume


class StartupGuard:
    """The app as uvicorn runs it, keeping a failed startup (a model that does not load) as
    :attr:`error` for the CLI to report in one line, instead of uvicorn's traceback."""

    def __init__(self, app: ASGIApp, on_started: Callable[[], None] | None = None) -> None:
        self.app = app
        #: called once the app's startup is complete (its models loaded and warm)
        self.on_started = on_started
        #: what made the app's startup fail, if it failed
        self.error: Exception | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on a failed startup, tell uvicorn without the traceback."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        started = False

        async def quiet(message: Message) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
                if self.on_started is not None:
                    self.on_started()
            elif message["type"] == "lifespan.startup.failed":
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet)
        except Exception as exc:
            if started:
                raise
            self.error = exc  # reported by the CLI once uvicorn has stopped

    def quiet_failure(self, record: logging.LogRecord) -> bool:
        """A logging filter: drop uvicorn's own line about the failure the CLI reports."""
        return self.error is None or "startup failed" not in record.getMessage()


def startup_error(error: Exception) -> ShipyardError:
    """The one-line error for a server whose models did not load (for a reason other than a
    :class:`ShipyardError`, which says it itself)."""
    return FlavorError(
        f"a model could not be loaded to serve ({type(error).__name__}: {error}); its artifact "
        "may be corrupt: register the model again, or serve another version"
    )
