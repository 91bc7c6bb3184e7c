"""The road board (``GET /ui/``): every model as a card in the column of its highest stage.

A card shows the version holding that stage, the production version, a few key metrics,
the business value (EBITDA per period with its interval, ROI, payback), the drift status of
the newest monitoring report and whether this server serves the model. Models are paged by
name (``?offset=&limit=``); a model holding no stage sits in the ``unstaged`` section.

The helpers shared with the model and version pages (value settings, metric choice) live
here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import ConfigError
from shipyard.registry.promotions import STAGES
from shipyard.registry.records import ModelInfo
from shipyard.serving.console.deps import reader
from shipyard.serving.console.render import Paging, page
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import ConsoleState, console_state
from shipyard.value.model import METRIC_NAMES
from shipyard.value.settings import ValueSettings

router = APIRouter()

#: Cards per board page unless ``?limit=`` says otherwise.
BOARD_PAGE = 60
#: Model-quality metrics a card shows first, when a version has them.
KEY_METRICS = ("roc_auc", "accuracy", "f1", "r2", "rmse", "mae")
#: Business value metrics (what ``shipyard.value`` stores on a version).
VALUE_METRICS = (*METRIC_NAMES, "uplift_per_period")
STAGE_TITLES = {"poc": "POC", "prototype": "Prototype", "production": "Production"}


@dataclass(frozen=True)
class Drift:
    """The newest monitoring report of a model, in a few words."""

    status: str  # "drifted", "stable" or "unknown"
    drift_share: float | None = None
    computed_at: datetime | None = None


@dataclass(frozen=True)
class Card:
    """One model on the board."""

    name: str
    stage: str  # the highest stage it holds, or "none"
    version: int | None  # the version holding that stage (else the newest active)
    production: int | None
    aliases: dict[str, int]
    version_count: int
    metrics: list[tuple[str, float]]
    value: dict[str, float] = field(default_factory=dict)
    drift: Drift = Drift("unknown")
    served: list[int] = field(default_factory=list)


def value_settings(console: ConsoleState) -> ValueSettings | None:
    """The project's ``[value]`` settings, or None when it declares none."""
    table = console.server.registry.settings.value
    if not table:
        return None
    try:
        return ValueSettings.from_table(table)
    except ConfigError:  # the project validates it on open; a page never fails on it
        return None


def key_metrics(metrics: Mapping[str, float], count: int = 3) -> list[tuple[str, float]]:
    """Up to ``count`` model-quality metrics: the usual ones first, never value metrics."""
    chosen = [(name, metrics[name]) for name in KEY_METRICS if name in metrics]
    others = [
        (name, value)
        for name, value in sorted(metrics.items())
        if name not in KEY_METRICS and name not in VALUE_METRICS
    ]
    return (chosen + others)[:count]


def value_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The business value metrics of a version (empty when it has none)."""
    return {name: float(metrics[name]) for name in VALUE_METRICS if name in metrics}


def highest_stage(aliases: Mapping[str, int]) -> str:
    """The last of :data:`STAGES` the model holds, or ``"none"``."""
    held = [stage for stage in STAGES if stage in aliases]
    return held[-1] if held else "none"


def drift_of(console: ConsoleState) -> dict[str, Drift]:
    """The drift status of every model with a monitoring report (one query)."""
    newest = console.monitor_results.newest()
    found: dict[str, dict[str, float]] = {}
    for value in newest.values:
        if value.kind == "dataset" and value.column == "":
            found.setdefault(value.model, {})[value.metric] = value.value
    result: dict[str, Drift] = {}
    for model, at in newest.computed_at.items():
        numbers = found.get(model, {})
        drifted = numbers.get("dataset_drift")
        status = "unknown" if drifted is None else ("drifted" if drifted >= 0.5 else "stable")
        result[model] = Drift(status, numbers.get("drift_share"), at)
    return result


def served_versions(console: ConsoleState) -> dict[str, list[int]]:
    """The versions this server serves, by model name (none for ``shipyard ui``)."""
    served: dict[str, list[int]] = {}
    for model in console.server.models.served():
        served.setdefault(model.name, []).append(model.version)
    return {name: sorted(versions) for name, versions in served.items()}


def fragment_of(request: Request, *blocks: str) -> str | None:
    """The block an htmx request asks for (its ``HX-Target`` id), when it is one of ``blocks``.

    Anything else (a plain link, htmx restoring its history) gets the whole page.
    """
    if request.headers.get("hx-history-restore-request") == "true":
        return None
    target = request.headers.get("hx-target", "")
    return target if target in blocks else None


def _card_version(model: ModelInfo) -> int | None:
    """The version a card shows: the one holding its highest stage, else the newest active."""
    stage = highest_stage(model.aliases)
    return model.aliases.get(stage) if stage != "none" else model.latest_version


def _card(
    model: ModelInfo,
    version: int | None,
    metrics: Mapping[str, float],
    drift: Mapping[str, Drift],
    served: Mapping[str, list[int]],
) -> Card:
    return Card(
        name=model.name,
        stage=highest_stage(model.aliases),
        version=version,
        production=model.aliases.get("production"),
        aliases=dict(model.aliases),
        version_count=model.version_count,
        metrics=key_metrics(metrics),
        value=value_metrics(metrics),
        drift=drift.get(model.name, Drift("unknown")),
        served=list(served.get(model.name, [])),
    )


@router.get("/")
def board(request: Request, session: Annotated[Session | None, Depends(reader)]) -> Response:
    """The road board: every model in its stage column, with value, drift and serving."""
    del session
    console = console_state(request)
    registry = console.server.registry
    paging = Paging.from_request(request, default=BOARD_PAGE)
    models, total = registry.list_models_page(offset=paging.offset, limit=paging.limit)
    drift = drift_of(console) if models else {}
    served = served_versions(console)
    shown = {model.name: _card_version(model) for model in models}
    metrics = registry.version_metrics(
        (name, number) for name, number in shown.items() if number is not None
    )
    columns: dict[str, list[Card]] = {stage: [] for stage in (*STAGES, "none")}
    for model in models:
        number = shown[model.name]
        found = metrics.get((model.name, number)) if number is not None else None
        columns[highest_stage(model.aliases)].append(
            _card(model, number, found or {}, drift, served)
        )
    settings = value_settings(console)
    context: dict[str, Any] = {
        "stages": STAGES,
        "stage_titles": STAGE_TITLES,
        "columns": columns,
        "total": total,
        "paging": paging,
        "next_offset": paging.next_offset(len(models), total),
        "currency": settings.currency if settings else "",
        "period": settings.period if settings else "period",
        "confidence": settings.confidence if settings else None,
    }
    return page(request, "board.html", context, fragment=fragment_of(request, "board"))
