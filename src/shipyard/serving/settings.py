"""The server's configuration: one Pydantic model, resolved here for the CLI and notebooks.

:func:`resolve_serve_settings` reads ``[serving]`` of shipyard.toml (``prediction_log``,
``auth``, canary / shadow tables, ``poll_seconds``, ``grpc_port``, the ``[serving.limits]``
table of request limits) and applies what the caller gives on top, so ``shipyard serve`` and
a notebook calling ``create_app`` get the same settings.
Worker processes (``--workers`` > 1) receive a :class:`WorkerConfig` as JSON
(``model_dump_json`` / ``model_validate_json``), never a hand-made mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.core.exceptions import ConfigError, InvalidArgumentError
from shipyard.core.settings import CONFIG_FILE, Settings
from shipyard.serving.batching import BatchSettings
from shipyard.serving.limits import FLAGS, RequestLimits
from shipyard.serving.routing import (
    RoutingSettings,
    parse_canary_option,
    parse_routing,
    parse_shadow_option,
)


class ServeSettings(BaseModel):
    """How the server batches and predicts.

    ``max_batch`` rows per predict call, waiting at most ``max_wait_ms`` ms for a batch to
    fill under load; ``threads`` prediction threads; ``model_threads`` caps each model's
    native thread pools (OpenMP / BLAS) per prediction thread (0: the libraries' default);
    ``freeze_gc`` moves everything alive once the models are warm (loaded libraries, models)
    out of the garbage collector's reach (:func:`gc.freeze`), so full collections under
    load scan only what requests allocate instead of stalling the loop for ~100 ms (what
    ``shipyard serve`` does; off by default for apps built in tests).
    ``prediction_log`` writes every answered prediction to the metadata database
    (:mod:`shipyard.serving.predlog`) through a queue of ``prediction_log_queue`` entries,
    at most ``prediction_log_max_rows`` rows of each request (the first ones);
    ``prediction_log_spool`` (a folder) keeps them on disk until the database has them, so a
    killed server loses none (:mod:`shipyard.serving.spool`);
    ``auth`` requires API tokens (:mod:`shipyard.serving.auth`), reloaded every
    ``token_refresh_s`` seconds; if refreshing fails for ``token_grace_s`` more, protected
    routes answer 503 (fail closed). ``public_url`` (``[serving] public_url``) is where
    redirects point (``None``: a relative ``Location``; never the request's ``Host``).
    ``compile`` (``"onnx"``) converts each scikit-learn / LightGBM / XGBoost model to ONNX
    at load and serves it with onnxruntime when its answers match on the input example
    (:mod:`shipyard.serving.compile`); ``None``: models run as registered.
    ``grpc_port`` also serves the Open Inference Protocol v2 over gRPC on ``grpc_host``
    (:mod:`shipyard.serving.protocols.grpc`; ``None``: off); ``grpc_reuse_port`` lets several
    worker processes listen on that one port (SO_REUSEPORT), what ``--workers`` > 1 sets.
    ``limits`` bound each request: body and inflated bytes, rows, columns, text length, read
    timeouts, and the body size parsed off the event loop (:mod:`shipyard.serving.limits`).
    ``console`` mounts the web console at ``/ui`` (:mod:`shipyard.serving.console`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch: int = 64
    max_wait_ms: float = 2.0
    threads: int = 2
    model_threads: int = 1
    freeze_gc: bool = False
    #: canary / shadow routes and alias polling (hot swap), see :mod:`shipyard.serving.routing`
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    prediction_log: bool = True
    prediction_log_queue: int = 10_000
    prediction_log_max_rows: int = Field(default=1_000, ge=1)
    prediction_log_spool: str | None = None
    auth: bool = False
    token_refresh_s: float = 30.0
    token_grace_s: float = Field(default=60.0, ge=0)
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    compile: str | None = None
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_reuse_port: bool = False
    limits: RequestLimits = Field(default_factory=RequestLimits)
    console: bool = True

    @property
    def batching(self) -> BatchSettings:
        """The micro-batcher settings these give."""
        return BatchSettings(max_batch=self.max_batch, max_wait=self.max_wait_ms / 1000)


class WorkerConfig(BaseModel):
    """What a uvicorn worker process needs to build the same app as the parent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    refs: list[str]
    access_log: bool = True
    serve: ServeSettings = Field(default_factory=ServeSettings)


def _flag(settings: Settings, key: str, given: bool | None, default: bool) -> bool:
    if given is not None:
        return given
    value = settings.serving.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] {key} must be true or false but got "
            f"{value!r}"
        )
    return value


def _count(settings: Settings, key: str, default: int) -> int:
    value = settings.serving.get(key, default)
    if type(value) is not int or value < 1:
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] {key} must be a whole number from 1 "
            f"but got {value!r}"
        )
    return value


def _folder(settings: Settings, key: str) -> str | None:
    value = settings.serving.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] {key} must be a folder path such as "
            f"'.shipyard/spool' but got {value!r:.80}"
        )
    return str(settings.root / value)


def _public_url(settings: Settings) -> str | None:
    value = settings.serving.get("public_url")
    if value is not None and not (
        isinstance(value, str) and value.startswith(("http://", "https://"))
    ):
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] public_url must be the URL clients use, "
            f"such as 'https://models.example.com', but got {value!r:.80}"
        )
    return value.rstrip("/") if value else None


def _port(settings: Settings, key: str) -> int | None:
    value = settings.serving.get(key)
    if value is not None and (type(value) is not int or not 0 < value < 65536):
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: [serving] {key} must be a port number "
            f"(1-65535) but got {value!r}"
        )
    return value


def resolve_serve_settings(
    settings: Settings,
    *,
    prediction_log: bool | None = None,
    auth: bool | None = None,
    canary: Iterable[str] = (),
    shadow: Iterable[str] = (),
    poll_seconds: float | None = None,
    grpc_port: int | None = None,
    limits: Mapping[str, Any] | None = None,
    console: bool | None = None,
    **given: object,
) -> ServeSettings:
    """The project's ``[serving]`` settings with what the caller gives on top.

    ``prediction_log`` and ``auth`` (``None``: ``[serving]``, else on / off), ``canary``
    (``NAME=TARGET:PERCENT``) and ``shadow`` (``NAME=TARGET``) options merged over the
    ``[serving.canary.NAME]`` / ``[serving.shadow.NAME]`` tables, ``poll_seconds`` over
    ``[serving] poll_seconds``, ``grpc_port`` (``None``: ``[serving] grpc_port``, else off),
    ``limits`` (:class:`RequestLimits` fields, ``None`` values left out) over
    ``[serving.limits]``, ``console`` (``None``: ``[serving] console``, else on / off); any
    other :class:`ServeSettings` field as a keyword.
    """
    configured = parse_routing(settings.serving, str(settings.root / CONFIG_FILE))
    routing = configured.merged(
        canary=dict(parse_canary_option(text) for text in canary),
        shadow=dict(parse_shadow_option(text) for text in shadow),
        poll_seconds=poll_seconds,
    )
    return ServeSettings.model_validate(
        {
            "prediction_log_max_rows": _count(settings, "prediction_log_max_rows", 1_000),
            "public_url": _public_url(settings),
            "prediction_log_spool": _folder(settings, "prediction_log_spool"),
            **given,
            "routing": routing,
            "prediction_log": _flag(settings, "prediction_log", prediction_log, True),
            "auth": _flag(settings, "auth", auth, False),
            "console": _flag(settings, "console", console, True),
            "grpc_port": grpc_port if grpc_port is not None else _port(settings, "grpc_port"),
            "limits": resolve_limits(settings, limits or {}),
        }
    )


def resolve_limits(settings: Settings, given: Mapping[str, Any]) -> RequestLimits:
    """``[serving.limits]`` with the flags ``given`` (setting name → value or ``None``) on top."""
    source = f"{settings.root / CONFIG_FILE}: [serving.limits]"
    table = settings.serving.get("limits", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f'{source} must be a table such as max_body_bytes = "32MiB"')
    try:
        configured = RequestLimits.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid: {_problems(exc, lambda key: key)}") from exc
    chosen = {key: value for key, value in given.items() if value is not None}
    try:
        return RequestLimits.model_validate({**configured.model_dump(), **chosen})
    except ValidationError as exc:
        raise InvalidArgumentError(_problems(exc, lambda key: FLAGS.get(key, key))) from exc


def _problems(exc: ValidationError, name: Any) -> str:
    return "; ".join(
        f"{name('.'.join(str(p) for p in error['loc']))}: {error['msg']} "
        f"(got {error.get('input')!r:.60})"
        for error in exc.errors()
    )
