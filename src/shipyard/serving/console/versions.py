"""A model and its versions: ``/ui/models/{name}``, ``…/versions/{version}``, ``…/compare``.

- The model page lists its versions (paged, newest first, with their stage badges), its
  aliases and its decision history (paged separately: ``?hoffset=``).
- A version page shows its metrics, params, signature, lineage (git commit, datasets, the
  run that made it), its business value with the ``[value]`` assumptions behind it, every
  gate's rules with their outcome evaluated now (read-only: nothing is promoted or
  recorded), the decisions about it, and the forms that take a decision (admin sessions
  only; see :mod:`.actions`). ``?compare=N`` adds a side-by-side comparison.
- The compare page puts two versions side by side (metrics and value); by default the
  newest version against the one in production.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.registry.promotions import STAGES
from shipyard.registry.records import RuleResult, VersionInfo
from shipyard.serving.console.board import (
    STAGE_TITLES,
    VALUE_METRICS,
    drift_of,
    fragment_of,
    served_versions,
    value_metrics,
    value_settings,
)
from shipyard.serving.console.deps import reader
from shipyard.serving.console.render import Paging, page
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import ConsoleState, console_state

router = APIRouter()

#: Metrics where less is better (the comparison colours their difference the other way).
LOWER_IS_BETTER = frozenset(
    {"log_loss", "brier", "rmse", "mse", "mae", "mape", "payback_periods", "latency_ms"}
)
#: Decisions per page of a history.
HISTORY_PAGE = 25


#: What ``?done=`` (set by a decision's redirect) says on the page; anything else says nothing.
DONE = {
    "approved-value": "the business value is approved (tag business_value=approved, recorded)",
    "promoted": "promoted through the gate (recorded)",
    "forced": "promotion forced past the gate (recorded with its reason)",
    "rolled-back": "rolled back to the previous version (recorded with its reason)",
    "archived": "version archived (recorded)",
}


def done_of(request: Request) -> tuple[str, str] | None:
    """The decision just taken, from ``?done=``: ``(key, message)``, or None."""
    key = request.query_params.get("done", "")
    return (key, DONE[key]) if key in DONE else None


def history_paging(request: Request) -> Paging:
    """The decision history's page: ``?hoffset=`` (its own offset beside the versions')."""
    raw = request.query_params.get("hoffset", "") or "0"
    try:
        offset = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"hoffset={raw[:40]!r} is not a whole number") from None
    if not 0 <= offset <= 10**9:
        raise InvalidArgumentError(f"hoffset={offset} is out of range: use 0 to {10**9}")
    return Paging(offset=offset, limit=HISTORY_PAGE)


def gates_of(console: ConsoleState, version: VersionInfo) -> list[dict[str, Any]]:
    """Every gate with its rules evaluated now for ``version`` (read-only), in road order."""
    registry = console.server.registry
    gates = registry.settings.gates
    order = [stage for stage in STAGES if stage in gates] + sorted(set(gates) - set(STAGES))
    result = []
    for alias in order:
        gate = gates[alias]
        results: list[RuleResult] = registry.check_gate(version.ref, alias)
        failed = [r for r in results if not r.passed]
        result.append(
            {
                "alias": alias,
                "rules": list(gate.rules),
                "require_tags": dict(gate.require_tags),
                "results": results,
                "passes": not failed,
                "failed": failed,
                "holds": alias in version.aliases,
            }
        )
    return result


def compare_rows(a: VersionInfo, b: VersionInfo | None) -> dict[str, list[dict[str, Any]]]:
    """The metrics of ``a`` and ``b`` side by side: ``{"quality": rows, "value": rows}``."""
    other = b.metrics if b is not None else {}
    names = sorted(set(a.metrics) | set(other))
    rows: dict[str, list[dict[str, Any]]] = {"quality": [], "value": []}
    for name in names:
        left, right = a.metrics.get(name), other.get(name)
        diff = left - right if left is not None and right is not None else None
        kind = "value" if name in VALUE_METRICS else "quality"
        better = None
        if diff is not None and diff != 0:
            better = (diff < 0) if name in LOWER_IS_BETTER else (diff > 0)
        rows[kind].append({"metric": name, "a": left, "b": right, "diff": diff, "better": better})
    return rows


def _version(console: ConsoleState, name: str, version: int) -> VersionInfo:
    return console.server.registry.get(f"{name}:{version}")


def _production(console: ConsoleState, name: str) -> VersionInfo | None:
    try:
        return console.server.registry.get(f"{name}@production")
    except NotFoundError:
        return None


def version_context(
    request: Request, name: str, version: int, *, compare: int | None = None
) -> dict[str, Any]:
    """Everything the version page shows (also what a refused decision renders again)."""
    console = console_state(request)
    registry = console.server.registry
    info = _version(console, name, version)
    production = _production(console, name)
    hpaging = history_paging(request)
    events, total = registry.history_page(
        name, offset=hpaging.offset, limit=hpaging.limit, version=version
    )
    against: VersionInfo | None = None
    if compare is not None:
        against = _version(console, name, compare)
    settings = value_settings(console)
    lineage = dict(info.lineage)
    session = request.scope.get("state", {}).get("console_session")
    stages = [s for s in STAGES if s not in info.aliases]
    return {
        "name": name,
        "v": info,
        "production": production,
        "stages": stages,
        "default_stage": next(
            (s for s in STAGES if s not in info.aliases and STAGES.index(s) > _rank(info)),
            stages[-1] if stages else "production",
        ),
        "stage_titles": STAGE_TITLES,
        "value": value_metrics(info.metrics),
        "value_settings": settings,
        "currency": settings.currency if settings else "",
        "period": settings.period if settings else "period",
        "confidence": settings.confidence if settings else None,
        "quality": {k: v for k, v in info.metrics.items() if k not in VALUE_METRICS},
        "gates": gates_of(console, info),
        "lineage": lineage,
        "git": lineage.get("git") or {},
        "datasets": lineage.get("datasets") or {},
        "run_id": lineage.get("run_id"),
        "events": events,
        "events_total": total,
        "hpaging": hpaging,
        "hnext": hpaging.next_offset(len(events), total),
        "against": against,
        "rows": compare_rows(info, against) if against is not None else None,
        "can_decide": bool(session is not None and session.is_admin),
        "done": done_of(request),
        "refusal": None,
        "served": served_versions(console).get(name, []),
    }


def _rank(info: VersionInfo) -> int:
    held = [STAGES.index(a) for a in info.aliases if a in STAGES]
    return max(held) if held else -1


@router.get("/models/{name}")
def model_page(
    request: Request, name: str, session: Annotated[Session | None, Depends(reader)]
) -> Response:
    """A model: its versions (paged), its aliases and its decision history (paged)."""
    console = console_state(request)
    registry = console.server.registry
    paging = Paging.from_request(request)
    versions, total = registry.list_versions_page(name, offset=paging.offset, limit=paging.limit)
    hpaging = history_paging(request)
    events, events_total = registry.history_page(name, offset=hpaging.offset, limit=hpaging.limit)
    context = {
        "name": name,
        "versions": versions,
        "total": total,
        "paging": paging,
        "next_offset": paging.next_offset(len(versions), total),
        "events": events,
        "events_total": events_total,
        "hpaging": hpaging,
        "hnext": hpaging.next_offset(len(events), events_total),
        "aliases": registry.aliases(name),
        "stage_titles": STAGE_TITLES,
        "drift": drift_of(console).get(name),
        "served": served_versions(console).get(name, []),
        "can_decide": bool(session is not None and session.is_admin),
        "done": done_of(request),
    }
    block = fragment_of(request, "lists")
    return page(request, "model.html", context, fragment=block)


@router.get("/models/{name}/versions/{version}")
def version_page(
    request: Request,
    name: str,
    version: int,
    session: Annotated[Session | None, Depends(reader)],
    compare: int | None = None,
) -> Response:
    """One version: metrics, params, signature, lineage, value, gates, decisions."""
    del session
    context = version_context(request, name, version, compare=compare)
    return page(request, "version.html", context, fragment=fragment_of(request, "history"))


@router.get("/models/{name}/compare")
def compare_page(
    request: Request,
    name: str,
    session: Annotated[Session | None, Depends(reader)],
    a: int | None = None,
    b: int | None = None,
) -> Response:
    """Two versions side by side: ``a`` (default the newest) against ``b`` (production)."""
    del session
    console = console_state(request)
    registry = console.server.registry
    left = _version(console, name, a) if a is not None else registry.get(name)
    if b is not None:
        right: VersionInfo | None = _version(console, name, b)
    else:
        right = _production(console, name)
    settings = value_settings(console)
    context = {
        "name": name,
        "a": left,
        "b": right,
        "rows": compare_rows(left, right),
        "a_value": value_metrics(left.metrics),
        "b_value": value_metrics(right.metrics) if right is not None else {},
        "currency": settings.currency if settings else "",
        "period": settings.period if settings else "period",
        "confidence": settings.confidence if settings else None,
    }
    return page(request, "compare.html", context)
