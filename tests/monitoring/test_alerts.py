"""Alert rules: parsed from shipyard.toml, sent once per condition to a webhook on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import make_settings
from tests.monitoring.conftest import Receiver, Trained, drifted_rows, reference_rows

from shipyard import Project
from shipyard.core.exceptions import ConfigError
from shipyard.monitoring.alerts import parse_rules
from shipyard.monitoring.settings import AlertRuleConfig, load_monitoring


def alerting_project(tmp_path: Path, trained: Trained, webhook: str) -> Project:
    toml = f"""
[project]
name = "alerts"

[monitoring]
webhook = "{webhook}"

[[monitoring.alerts]]
name = "drift"
when = "dataset_drift"

[[monitoring.alerts]]
name = "tenure-psi"
when = "psi(tenure) > 0.25"

[[monitoring.alerts]]
name = "plan-missing"
when = "missing_share(plan) > 0.1"
"""
    root = tmp_path / "proj"
    settings = make_settings(root, f"sqlite:///{root / 'meta.db'}", toml)
    project = Project(settings=settings)
    from tests.monitoring.conftest import register_with_reference

    register_with_reference(project, trained)
    return project


def window(tmp_path: Path, name: str, drifted: bool, missing_plan: bool = False) -> str:
    frame = drifted_rows(1500)[0] if drifted else reference_rows(1500, seed=21)[0]
    if missing_plan:
        frame.loc[: len(frame) // 4, "plan"] = None
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path)
    return str(path)


def test_one_alert_per_condition_until_it_clears(
    tmp_path: Path, trained: Trained, receiver: Receiver
) -> None:
    with alerting_project(tmp_path, trained, receiver.url) as project:
        first = project.monitor("churn", current=window(tmp_path, "a", drifted=True)).report
        states = {a["rule"]: a["state"] for a in first["alerts"]}
        assert states == {"drift": "fired", "tenure-psi": "fired", "plan-missing": "quiet"}
        assert first["psi"]["tenure"] > 0.25
        assert len(receiver.bodies) == 2
        body = next(b for b in receiver.bodies if b["shipyard"]["rule"] == "drift")
        assert body["text"].startswith("[shipyard] churn:1: drift")  # Slack's field
        assert body["shipyard"]["state"] == "firing"
        assert body["shipyard"]["model"] == "churn"

        second = project.monitor("churn", current=window(tmp_path, "b", drifted=True)).report
        assert {a["state"] for a in second["alerts"] if a["rule"] != "plan-missing"} == {"active"}
        assert len(receiver.bodies) == 2  # still drifting: nothing new sent

        clean = project.monitor("churn", current=window(tmp_path, "c", drifted=False)).report
        assert {a["rule"]: a["state"] for a in clean["alerts"]}["drift"] == "resolved"
        assert len(receiver.bodies) == 4  # drift and tenure-psi resolved
        assert {b["shipyard"]["state"] for b in receiver.bodies[2:]} == {"resolved"}

        project.monitor("churn", current=window(tmp_path, "d", drifted=True))
        assert len(receiver.bodies) == 6  # it fires again after it cleared


def test_missing_values_alert(tmp_path: Path, trained: Trained, receiver: Receiver) -> None:
    with alerting_project(tmp_path, trained, receiver.url) as project:
        report = project.monitor(
            "churn", current=window(tmp_path, "m", drifted=False, missing_plan=True)
        ).report
        states = {a["rule"]: a["state"] for a in report["alerts"]}
        assert states["plan-missing"] == "fired"


def test_an_unreachable_webhook_is_retried_on_the_next_run(
    tmp_path: Path, trained: Trained, receiver: Receiver
) -> None:
    with alerting_project(tmp_path, trained, "http://127.0.0.1:9/nothing-listens") as project:
        report = project.monitor("churn", current=window(tmp_path, "a", drifted=True)).report
        drift = next(a for a in report["alerts"] if a["rule"] == "drift")
        assert drift["state"] == "fired"
        assert drift["delivered"] is False
        again = project.monitor("churn", current=window(tmp_path, "b", drifted=True)).report
        assert next(a for a in again["alerts"] if a["rule"] == "drift")["state"] == "fired"


@pytest.mark.parametrize(
    ("when", "quantity", "argument"),
    [
        ("dataset_drift", "dataset_drift", None),
        ("psi(tenure) > 0.25", "psi", "tenure"),
        ("change(f1) < -0.05", "change", "f1"),
        ("missing_share > 0.1", "missing_share", None),
        ("f1 < 0.5", "f1", None),
        ("value(net_per_period) < 0", "value", "net_per_period"),
    ],
)
def test_rules_parse(when: str, quantity: str, argument: str | None) -> None:
    [rule] = parse_rules([AlertRuleConfig(when=when)])
    assert (rule.quantity, rule.argument, rule.name) == (quantity, argument, when)


@pytest.mark.parametrize("when", ["drift is bad", "psi(tenure) >", "psi > 0.2", "f1 <> 3"])
def test_bad_rules_say_how_to_write_one(when: str) -> None:
    with pytest.raises(ConfigError, match="is not a rule; write 'dataset_drift'"):
        parse_rules([AlertRuleConfig(when=when)])


def test_change_rule_holds_when_f1_drops_by_more_than_five_percent() -> None:
    [rule] = parse_rules([AlertRuleConfig(name="f1-down", when="change(f1) < -0.05")])
    report = {"performance": {"comparison": {"f1": {"relative_change": -0.08}}}}
    assert rule.holds(report) is True
    assert rule.holds({"performance": {"comparison": {"f1": {"relative_change": -0.01}}}}) is False
    assert rule.holds({"performance": None}) is None  # no ground truth: cannot tell


def test_bad_monitoring_settings_are_refused(tmp_path: Path) -> None:
    toml = '[monitoring]\nwebhook = "slack"\nmethods = { tenure = "magic" }\n'
    settings = make_settings(tmp_path, "sqlite://", toml)
    with pytest.raises(ConfigError, match="not an http") as caught:
        load_monitoring(settings)
    assert "'magic' is not a drift method" in str(caught.value)
