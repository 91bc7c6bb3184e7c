"""Promotions through stage gates, aliases and the decision history, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from shipyard import ConfigError, ConflictError, GateFailedError, InvalidArgumentError, Project
from shipyard.core.settings import GateSettings
from shipyard.registry import Rule, evaluate_gate

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def _register(project: Project, trained: Trained, auc: float, **tags: str) -> str:
    model, frame, _ = trained
    info = project.registry.register(
        "churn", model, input_example=frame, trust=True, metrics={"roc_auc": auc}, tags=tags
    )
    return info.ref


def test_the_road_through_the_gates(project: Project, trained: Trained) -> None:
    reg = project.registry
    weak = _register(project, trained, 0.65)
    good = _register(project, trained, 0.86, business_value="approved")
    assert reg.promote(weak, "poc").outcome == "promoted"  # poc has no gate
    with pytest.raises(GateFailedError, match=r"roc_auc >= 0\.70") as refused:
        reg.promote(weak, "prototype", reason="try")
    assert [f["rule"] for f in refused.value.failures] == ["roc_auc >= 0.70"]
    event = reg.promote(good, "prototype")
    assert [r.status for r in event.gate] == ["passed"]
    event = reg.promote(good, "production", reason="beats baseline")
    # The relative rule has nothing to compare with on the first promotion.
    assert [r.status for r in event.gate] == ["passed", "skipped", "passed"]
    assert reg.get("churn@production").ref == good
    assert reg.get("churn@production").aliases == ("production", "prototype")

    history = reg.history("churn")
    assert [(e.alias, e.outcome) for e in history] == [
        ("poc", "promoted"),
        ("prototype", "refused"),
        ("prototype", "promoted"),
        ("production", "promoted"),
    ]
    assert history[1].reason == "try"
    assert history[1].actor == "tester"
    assert history[1].gate[0].status == "failed"
    assert history[3].reason == "beats baseline"
    assert [e.outcome for e in reg.history("churn", alias="prototype")] == ["refused", "promoted"]


def test_a_challenger_must_not_be_worse_than_production(project: Project, trained: Trained) -> None:
    reg = project.registry
    champion = _register(project, trained, 0.86, business_value="approved")
    reg.promote(champion, "production")
    worse = _register(project, trained, 0.84, business_value="approved")
    with pytest.raises(GateFailedError, match=r"production\.roc_auc - 0\.01") as refused:
        reg.promote(worse, "production")
    assert "needs >= 0.85 (production is version 1)" in str(refused.value)
    close = _register(project, trained, 0.855, business_value="approved")
    event = reg.promote(close, "production")
    assert (event.from_version, event.to_version) == (1, 3)


def test_required_tags_and_forcing(project: Project, trained: Trained) -> None:
    reg = project.registry
    untagged = _register(project, trained, 0.9)
    with pytest.raises(GateFailedError, match="business_value"):
        reg.promote(untagged, "production")
    with pytest.raises(InvalidArgumentError, match="--force needs --reason"):
        reg.promote(untagged, "production", force=True)
    event = reg.promote(untagged, "production", force=True, reason="CEO sign-off by mail")
    assert event.outcome == "forced"
    assert event.forced
    assert reg.history("churn")[-1].reason == "CEO sign-off by mail"
    reg.set_tags(untagged, {"business_value": "approved"})
    second = _register(project, trained, 0.9, business_value="approved")
    assert reg.promote(second, "production").outcome == "promoted"


def test_aliases_are_recorded_and_stages_need_promote(project: Project, trained: Trained) -> None:
    reg = project.registry
    first = _register(project, trained, 0.8)
    second = _register(project, trained, 0.81)
    reg.set_alias(first, "champion")
    reg.set_alias(second, "challenger", reason="A/B")
    assert reg.get("churn@challenger").ref == second
    with pytest.raises(ConflictError, match="promote"):
        reg.set_alias(first, "production")
    moved = reg.set_alias(second, "champion")
    assert (moved.from_version, moved.to_version) == (1, 2)
    removed = reg.remove_alias("churn", "challenger")
    assert removed.outcome == "removed"
    assert reg.list_models()[0].aliases == {"champion": 2}
    with pytest.raises(ConflictError, match="already holds"):
        reg.promote(second, "champion")


@pytest.mark.parametrize(
    ("text", "metrics", "holder", "status"),
    [
        ("auc >= 0.8", {"auc": 0.8}, None, "passed"),
        ("auc > 0.8", {"auc": 0.8}, None, "failed"),
        ("rmse <= 3", {"rmse": 2.5}, None, "passed"),
        ("auc >= 0.8", {}, None, "failed"),
        ("auc >= production.auc * 0.99", {"auc": 0.891}, (4, {"auc": 0.9}), "passed"),
        ("auc >= production.auc * 0.99", {"auc": 0.89}, (4, {"auc": 0.9}), "failed"),
        ("rmse <= production.rmse + 0.5", {"rmse": 2.0}, (1, {"rmse": 1.6}), "passed"),
        ("rmse <= production.rmse", {"rmse": 2.0}, None, "skipped"),
        ("rmse <= production.rmse", {"rmse": 2.0}, (1, {}), "failed"),
        ("auc >= 1e-1", {"auc": float("nan")}, None, "failed"),
    ],
)
def test_rules(
    text: str,
    metrics: dict[str, float],
    holder: tuple[int, dict[str, float]] | None,
    status: str,
) -> None:
    assert Rule.parse(text).evaluate(metrics, lambda _alias: holder).status == status


@pytest.mark.parametrize("text", ["auc", "auc >= high", "auc => 0.8", "__import__('os') >= 1"])
def test_malformed_rules_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="not understood"):
        Rule.parse(text)


def test_required_tags_accept_any_value_with_a_star() -> None:
    gate = GateSettings(require_tags={"owner": "*", "value": "approved"})
    results = evaluate_gate(gate, {}, {"owner": "ann", "value": "pending"}, lambda _a: None)
    assert [r.status for r in results] == ["passed", "failed"]


def test_alias_versions_read_the_aliases_now(project: Project, trained: Trained) -> None:
    reg = project.registry
    first = _register(project, trained, 0.86, business_value="approved")
    second = _register(project, trained, 0.87, business_value="approved")
    reg.promote(first, "production")
    reg.set_alias(second, "champion")
    wanted = [("churn", "production"), ("churn", "champion"), ("churn", "nowhere")]
    wanted += [("nobody", "production")]
    assert reg.alias_versions(wanted) == {("churn", "production"): 1, ("churn", "champion"): 2}
    reg.promote(second, "production")
    now = reg.alias_versions(wanted)
    assert now[("churn", "production")] == 2
    assert ("churn", "nowhere") not in now
    assert ("nobody", "production") not in now
    assert reg.alias_versions([]) == {}
