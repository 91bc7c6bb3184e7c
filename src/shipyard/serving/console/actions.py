"""Decisions taken from the console: approve a value, promote, force, roll back, archive.

Every route is a POST of a form from the model or version page, through
:func:`~shipyard.serving.console.deps.admin_form`: an ``admin`` session and the form's
``csrf`` field matching it, or 403 (no session at all: the login page). Each decision goes
through the registry, the same code as the CLI's, and is recorded in the same decision
history (``shipyard models history``) with ``console:<token name>`` as its actor.

On success the browser is sent back (303) to the page it came from with ``?done=<what>``.
A promotion the gate refuses renders the version page again with status 409 and a
``<section id="gate-refusal">`` listing every rule's outcome; the refusal is recorded.
Bad input (a forced promotion without a reason, an unknown stage) is a 400 page saying so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shipyard.core.exceptions import GateFailedError, InvalidArgumentError
from shipyard.registry.promotions import STAGES
from shipyard.serving.console.deps import admin_form
from shipyard.serving.console.render import page, url_in
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import console_state
from shipyard.serving.console.versions import version_context

router = APIRouter()

Decided = Annotated[tuple[Session, dict[str, str]], Depends(admin_form)]

#: The longest reason or note kept (a decision's record, not an essay).
MAX_REASON = 2000


def actor_of(session: Session) -> str:
    """Who took a decision: ``console:<token name>``."""
    return f"console:{session.name}"


def _text(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if len(value) > MAX_REASON:
        raise InvalidArgumentError(
            f"the {name} is {len(value):,} characters; keep it under {MAX_REASON:,}"
        )
    return value


def _back(request: Request, path: str, done: str) -> Response:
    return RedirectResponse(url_in(request, path, done=done), status_code=303)


def _version_path(name: str, version: int) -> str:
    return f"/models/{name}/versions/{version}"


@router.post("/models/{name}/versions/{version}/approve-value")
def approve_value(request: Request, name: str, version: int, decided: Decided) -> Response:
    """Sign off the version's business value (tag ``business_value=approved``, recorded)."""
    session, fields = decided
    registry = console_state(request).server.registry
    registry.approve_value(f"{name}:{version}", note=_text(fields, "note"), actor=actor_of(session))
    return _back(request, _version_path(name, version), "approved-value")


@router.post("/models/{name}/versions/{version}/promote")
def promote(request: Request, name: str, version: int, decided: Decided) -> Response:
    """Promote through the stage's gate; ``force=1`` overrides a refusal with a reason."""
    session, fields = decided
    stage = fields.get("to", "").strip()
    if stage not in STAGES:
        raise InvalidArgumentError(
            f"promote to {stage[:40]!r}? Choose a stage: {', '.join(STAGES)}"
        )
    reason = _text(fields, "reason")
    force = fields.get("force", "") in ("1", "on", "true")
    if force and not reason:
        raise InvalidArgumentError(
            "a forced promotion needs a reason: say why the gate is overridden (it is recorded)"
        )
    registry = console_state(request).server.registry
    ref = f"{name}:{version}"
    try:
        registry.promote(ref, stage, reason=reason, force=force, actor=actor_of(session))
    except GateFailedError as exc:
        context = version_context(request, name, version)
        events, _total = registry.history_page(name, limit=1, version=version)
        recorded = events[0] if events and events[0].outcome == "refused" else None
        results = list(recorded.gate) if recorded else registry.check_gate(ref, stage)
        failed = sum(1 for r in results if not r.passed) or len(exc.failures)
        message = f"{failed} of {len(results)} rule(s) failed; the refusal is recorded."
        context["refusal"] = {"stage": stage, "message": message, "results": results}
        return page(request, "version.html", context, status=409)
    return _back(request, _version_path(name, version), "forced" if force else "promoted")


@router.post("/models/{name}/rollback")
def rollback(request: Request, name: str, decided: Decided) -> Response:
    """Point ``stage`` (production) back at the version that held it before, recorded."""
    session, fields = decided
    stage = fields.get("stage", "").strip() or "production"
    if stage not in STAGES:
        raise InvalidArgumentError(f"roll back {stage[:40]!r}? Choose a stage: {', '.join(STAGES)}")
    reason = _text(fields, "reason")
    if not reason:
        raise InvalidArgumentError(
            "a rollback needs a reason: say why the stage goes back (it is recorded)"
        )
    registry = console_state(request).server.registry
    registry.rollback(name, stage, reason=reason, actor=actor_of(session))
    return _back(request, f"/models/{name}", "rolled-back")


@router.post("/models/{name}/versions/{version}/archive")
def archive(request: Request, name: str, version: int, decided: Decided) -> Response:
    """Archive the version (refused while it holds an alias), recorded with the reason."""
    session, fields = decided
    registry = console_state(request).server.registry
    registry.archive(f"{name}:{version}", reason=_text(fields, "reason"), actor=actor_of(session))
    return _back(request, _version_path(name, version), "archived")
