"""Decisions the console takes through the registry: approving a value, rolling back,
archiving (all recorded in the decision history), the read-only gate check, and the paged
queries of models, versions and decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from shipyard import ConflictError, InvalidArgumentError, NotFoundError, Project
from shipyard.core.clock import utcnow

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def _register(project: Project, trained: Trained, auc: float, name: str = "churn") -> str:
    """A new version of ``name``: registered once, then copied (registering takes seconds)."""
    reg = project.registry
    try:
        first = reg.get(f"{name}:1")
    except NotFoundError:
        model, frame, _ = trained
        return reg.register(
            name, model, input_example=frame.head(20), trust=True, metrics={"roc_auc": auc}
        ).ref
    fields = {
        key: value
        for key, value in first.to_dict().items()
        if key in ("flavor", "flavor_config", "artifact_digest", "signature", "input_example")
        or key in ("params", "lineage", "description", "created_by")
    }
    fields.update(metrics={"roc_auc": auc}, tags={}, status="active", created_at=utcnow())
    return reg._insert_version(name, fields).ref


def test_approving_the_value_tags_the_version_and_is_recorded(
    project: Project, trained: Trained
) -> None:
    reg = project.registry
    ref = _register(project, trained, 0.9)
    failed = [r.rule for r in reg.check_gate(ref, "production") if not r.passed]
    assert failed == ["tag business_value = approved"]
    assert reg.history("churn") == []  # checking a gate records nothing

    event = reg.approve_value(ref, note="finance signed off", actor="console:ops")
    assert (event.alias, event.to_version, event.outcome) == ("business_value", 1, "approved")
    assert (event.actor, event.reason) == ("console:ops", "finance signed off")
    assert reg.get(ref).tags["business_value"] == "approved"
    assert all(r.passed for r in reg.check_gate(ref, "production"))
    assert reg.check_gate(ref, "poc") == []  # no gate
    assert reg.promote(ref, "production").outcome == "promoted"
    assert [e.outcome for e in reg.history("churn")] == ["approved", "promoted"]


def test_rollback_goes_back_one_holder_at_a_time_and_is_recorded(
    project: Project, trained: Trained
) -> None:
    reg = project.registry
    refs = [_register(project, trained, auc) for auc in (0.85, 0.86, 0.87)]
    with pytest.raises(ConflictError, match="no production version"):
        reg.rollback("churn", reason="oops")
    for ref in refs:
        reg.approve_value(ref)
        reg.promote(ref, "production")
    with pytest.raises(InvalidArgumentError, match="needs a reason"):
        reg.rollback("churn", reason="  ")

    event = reg.rollback("churn", reason="v3 misbehaves", actor="console:ops")
    assert (event.from_version, event.to_version, event.outcome) == (3, 2, "rollback")
    assert (event.reason, event.actor, event.forced) == ("v3 misbehaves", "console:ops", False)
    assert reg.get("churn@production").version == 2
    assert reg.rollback("churn", reason="v2 too").to_version == 1
    with pytest.raises(ConflictError, match="no previous version"):
        reg.rollback("churn", reason="and again")
    assert reg.get("churn@production").version == 1


def test_rollback_refuses_an_archived_previous_version(project: Project, trained: Trained) -> None:
    reg = project.registry
    first, second = (_register(project, trained, auc) for auc in (0.85, 0.86))
    reg.promote(first, "prototype")
    reg.promote(second, "prototype")
    reg.archive(first, reason="superseded")
    with pytest.raises(ConflictError, match="archived"):
        reg.rollback("churn", "prototype", reason="back")
    assert reg.get("churn@prototype").ref == second


def test_archiving_and_restoring_are_recorded(project: Project, trained: Trained) -> None:
    reg = project.registry
    ref = _register(project, trained, 0.85)
    reg.archive(ref, reason="worse than 2", actor="console:ops")
    reg.archive(ref, reason="no change: already archived")
    reg.archive(ref, restore=True)
    events = reg.history("churn")
    assert [(e.alias, e.from_version, e.to_version, e.outcome) for e in events] == [
        ("status", 1, None, "archived"),
        ("status", None, 1, "restored"),
    ]
    assert (events[0].reason, events[0].actor) == ("worse than 2", "console:ops")


def test_paged_queries_are_newest_first_with_their_totals(
    project: Project, trained: Trained
) -> None:
    reg = project.registry
    for auc in (0.81, 0.82, 0.83, 0.84, 0.85):
        reg.promote(_register(project, trained, auc), "prototype")
    _register(project, trained, 0.8, name="fraud")

    versions, total = reg.list_versions_page("churn", offset=1, limit=2)
    assert ([v.version for v in versions], total) == ([4, 3], 5)
    assert reg.list_versions_page("churn", offset=2, limit=2)[0][0].version == 3
    events, total = reg.history_page("churn", offset=0, limit=2)
    assert ([e.to_version for e in events], total) == ([5, 4], 5)
    mine, total = reg.history_page("churn", version=3)
    assert ({(e.from_version, e.to_version) for e in mine}, total) == ({(2, 3), (3, 4)}, 2)
    models, total = reg.list_models_page(offset=1, limit=1)
    assert ([m.name for m in models], total) == (["fraud"], 2)
    assert models[0].version_count == 1
    assert reg.aliases("churn") == {"prototype": 5}
    with pytest.raises(NotFoundError):
        reg.history_page("nope")
