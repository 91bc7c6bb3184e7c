"""Which model answers: canary splits, shadow mirrors, alias polling, and their settings.

Three ways a server changes which version answers, all configured per served model name:

- **hot swap**: a served alias reference (``churn@production``) follows the registry; the
  manager polls the aliases' version numbers every ``poll_seconds``
  (:func:`alias_versions`, one indexed query for all, off the event loop) and swaps in the new
  version once it is loaded and warm (:meth:`~shipyard.serving.models.ModelManager.check_aliases`);
- **canary**: ``percent`` % of the requests for a model go to a challenger reference
  (:class:`Canary`), chosen by a hash of the client's ``x-request-id`` when it sends one
  (the same id always lands on the same version), else at random;
- **shadow**: every request the champion answers is also sent, in the background, to a
  shadow reference (:class:`ShadowMirror`); the answers are compared and counted, never
  returned, and a slow or failing shadow never delays or fails the champion's answer.

Configured in shipyard.toml::

    [serving]
    poll_seconds = 5

    [serving.canary.churn]
    target = "churn:3"       # or "churn@challenger"
    percent = 10

    [serving.shadow.churn]
    target = "churn@challenger"

or on the command line: ``--canary churn=churn:3:10``, ``--shadow churn=churn:3``,
``--poll-seconds 5`` (a command-line entry replaces the file's for the same model).

Metrics (in the app's own registry, next to :class:`~shipyard.serving.metrics.ServingMetrics`):

- ``shipyard_model_swaps_total{model,outcome="swapped|failed"}``
- ``shipyard_shadow_requests_total{model,shadow_version,agreement="same|different|error"}``
- ``shipyard_shadow_dropped_total{model}``: mirrors skipped because too many were pending.

The canary split shows in ``shipyard_requests_total`` (labelled by the answering version).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.core.exceptions import ConfigError
from shipyard.core.refs import ModelRef
from shipyard.registry import Registry
from shipyard.serving.answers import SHADOW, agree
from shipyard.serving.base import Prediction, ServedModel

logger = logging.getLogger("shipyard.serving")

#: The client's ``x-request-id`` of the request being routed (``None``: it sent none).
CLIENT_REQUEST_ID: ContextVar[str | None] = ContextVar("shipyard_client_request_id", default=None)

#: Shadow predictions allowed to wait at once per model; more are dropped and counted.
MAX_PENDING_SHADOWS = 256

_CANARY_SYNTAX = "NAME=TARGET:PERCENT, e.g. churn=churn:3:10 or churn=churn@challenger:10"
_SHADOW_SYNTAX = "NAME=TARGET, e.g. churn=churn:3 or churn=churn@challenger"


class CanarySettings(BaseModel):
    """``[serving.canary.NAME]``: send ``percent`` % of NAME's requests to ``target``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    percent: float = Field(ge=0, le=100)


class ShadowSettings(BaseModel):
    """``[serving.shadow.NAME]``: mirror every request NAME's champion answers to ``target``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str


class RoutingSettings(BaseModel):
    """Canary and shadow routes by served model name, and the alias polling interval.

    ``poll_seconds`` = 0 turns hot swap off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    canary: dict[str, CanarySettings] = Field(default_factory=dict)
    shadow: dict[str, ShadowSettings] = Field(default_factory=dict)
    poll_seconds: float = Field(default=5.0, ge=0)

    def targets(self) -> list[ModelRef]:
        """Every canary and shadow target reference, parsed, in order, once."""
        found = [ModelRef.parse(c.target) for c in self.canary.values()]
        found += [ModelRef.parse(s.target) for s in self.shadow.values()]
        return list(dict.fromkeys(found))

    def merged(
        self,
        canary: Mapping[str, CanarySettings] | None = None,
        shadow: Mapping[str, ShadowSettings] | None = None,
        poll_seconds: float | None = None,
    ) -> RoutingSettings:
        """These settings with command-line entries on top (same model name: replaced)."""
        return RoutingSettings(
            canary={**self.canary, **(canary or {})},
            shadow={**self.shadow, **(shadow or {})},
            poll_seconds=self.poll_seconds if poll_seconds is None else poll_seconds,
        )


def parse_routing(serving: Mapping[str, Any], source: str = "shipyard.toml") -> RoutingSettings:
    """The routing tables of a ``[serving]`` table (other keys are left to their owners)."""
    tables: dict[str, Any] = {}
    for kind, model in (("canary", CanarySettings), ("shadow", ShadowSettings)):
        raw = serving.get(kind, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{source}: [serving.{kind}] must be a table of model names, e.g. "
                f"[serving.{kind}.churn], but got {raw!r}"
            )
        parsed: dict[str, Any] = {}
        for name, table in raw.items():
            try:
                parsed[name] = model.model_validate(table)
                _check_ref(parsed[name].target, f"{source}: [serving.{kind}.{name}] target")
            except ValidationError as exc:
                raise ConfigError(
                    f"{source}: [serving.{kind}.{name}] is invalid: {_problems(exc)}"
                ) from exc
        tables[kind] = parsed
    try:
        return RoutingSettings(
            canary=tables["canary"],
            shadow=tables["shadow"],
            poll_seconds=serving.get("poll_seconds", 5.0),
        )
    except ValidationError as exc:
        raise ConfigError(f"{source}: [serving] poll_seconds is invalid: {_problems(exc)}") from exc


def parse_canary_option(text: str) -> tuple[str, CanarySettings]:
    """``churn=churn:3:10`` → ``("churn", CanarySettings(target="churn:3", percent=10))``."""
    name, _, rest = text.partition("=")
    target, _, percent = rest.rpartition(":")
    if not name or not target or not percent:
        raise ConfigError(f"--canary expects {_CANARY_SYNTAX} but got {text!r}")
    _check_ref(target, f"--canary {text!r}: target")
    try:
        return name.strip(), CanarySettings(target=target.strip(), percent=float(percent))
    except (ValueError, ValidationError) as exc:
        raise ConfigError(
            f"--canary expects {_CANARY_SYNTAX} with PERCENT from 0 to 100 but got {text!r}"
        ) from exc


def parse_shadow_option(text: str) -> tuple[str, ShadowSettings]:
    """``churn=churn:3`` → ``("churn", ShadowSettings(target="churn:3"))``."""
    name, _, target = text.partition("=")
    if not name.strip() or not target.strip():
        raise ConfigError(f"--shadow expects {_SHADOW_SYNTAX} but got {text!r}")
    _check_ref(target, f"--shadow {text!r}: target")
    return name.strip(), ShadowSettings(target=target.strip())


def _check_ref(text: str, where: str) -> None:
    try:
        ModelRef.parse(text.strip())
    except Exception as exc:
        raise ConfigError(
            f"{where} must be a model reference (NAME, NAME:VERSION or NAME@ALIAS) "
            f"but got {text!r}: {exc}"
        ) from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'table'}: {e['msg']}" for e in exc.errors()
    )


def alias_versions(registry: Registry, refs: Iterable[ModelRef]) -> dict[ModelRef, int]:
    """The version number each alias reference (``churn@production``) points at now.

    References to an alias that does not exist (or to no alias) are left out. One query
    for all of them (:meth:`~shipyard.registry.Registry.alias_versions`).
    """
    pairs = {ref: (ref.name, ref.alias) for ref in refs if ref.alias is not None}
    found = registry.alias_versions(pairs.values())
    return {ref: found[pair] for ref, pair in pairs.items() if pair in found}


class RoutingMetrics:
    """The hot swap and shadow counters, registered in the app's metrics registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry(auto_describe=True)
        self.swaps = Counter(
            "shipyard_model_swaps_total",
            "Hot swaps after an alias moved, by model and outcome (swapped or failed).",
            ["model", "outcome"],
            registry=registry,
        )
        self.shadow = Counter(
            "shipyard_shadow_requests_total",
            "Requests mirrored to a shadow model, by whether its answer agreed.",
            ["model", "shadow_version", "agreement"],
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "shipyard_shadow_dropped_total",
            "Requests not mirrored because too many shadow predictions were pending.",
            ["model"],
            registry=registry,
        )


class Canary:
    """Sends ``percent`` % of a model's requests to a challenger."""

    __slots__ = ("_threshold", "percent", "target")

    def __init__(self, target: str, percent: float) -> None:
        self.target = target
        self.percent = percent
        self._threshold = round(percent * 100)  # out of 10,000 hash buckets

    def takes(self, request_id: str | None) -> bool:
        """Whether this request goes to the challenger (stable for a given request id)."""
        if request_id is None:
            return random.random() * 100 < self.percent  # noqa: S311 - canary traffic split, not cryptography
        digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % 10_000 < self._threshold


class ShadowLog(Protocol):
    """Where shadow answers are logged (the prediction log, :mod:`shipyard.serving.predlog`)."""

    def record(
        self,
        model: str,
        version: int,
        request_id: str,
        latency: float,
        columns: Mapping[str, Any],
        prediction: Prediction,
        *,
        shadow: bool = False,
    ) -> None:
        """Queue one answered prediction; never blocks."""
        ...


class ShadowMirror:
    """Mirrors the requests one champion answers to a shadow model, in the background.

    ``shadow`` gives the model serving the shadow reference *now* (it may be hot-swapped);
    with a ``log`` each shadow answer is also logged, flagged ``shadow``, under the client's
    request id (empty when the client sent none).
    """

    def __init__(
        self,
        name: str,
        target: str,
        shadow: Callable[[], ServedModel],
        metrics: RoutingMetrics,
        max_pending: int = MAX_PENDING_SHADOWS,
    ) -> None:
        self.name = name
        self.target = target
        self._shadow = shadow
        self._metrics = metrics
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self.log: ShadowLog | None = None

    def mirror(self, columns: Mapping[str, np.ndarray], answer: Prediction) -> None:
        """Send ``columns`` to the shadow model later; compare with the champion's ``answer``."""
        if len(self._pending) >= self._max_pending:
            self._metrics.shadow_dropped.labels(self.name).inc()
            return
        request_id = CLIENT_REQUEST_ID.get() or ""
        task = asyncio.get_running_loop().create_task(self._run(columns, answer, request_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(
        self, columns: Mapping[str, np.ndarray], answer: Prediction, request_id: str
    ) -> None:
        version = self.target
        try:
            started = time.perf_counter()
            model = self._shadow()
            version = str(model.version)
            validated = model.validate(columns)
            got = await model.predict(validated)
            same = agree(got.predictions, answer.predictions, SHADOW)
            agreement = "same" if same else "different"
            if self.log is not None:
                latency = time.perf_counter() - started
                self.log.record(
                    model.name, model.version, request_id, latency, validated, got, shadow=True
                )
        except Exception as exc:  # a shadow's failure is counted, never seen by clients
            logger.debug("shadow %s of %s failed: %s", self.target, self.name, exc)
            agreement = "error"
        self._metrics.shadow.labels(self.name, version, agreement).inc()

    async def drain(self) -> None:
        """Wait for every pending shadow prediction."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
