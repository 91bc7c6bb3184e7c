"""Alert rules: parsed from shipyard.toml, sent once per condition to a webhook on loopback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tests.helpers import make_settings, monitoring_report
from tests.monitoring.conftest import Receiver, Trained, checked, drifted_rows, reference_rows

from shipyard import Project
from shipyard.core.exceptions import ConfigError
from shipyard.monitoring.alerts import parse_rules
from shipyard.monitoring.settings import AlertRuleConfig, load_monitoring
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import ColumnQuality, QualityReport
from shipyard.statistics.report import MonitoringReport, Performance


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
        first = checked(project, project.monitor("churn", current=window(tmp_path, "a", True)))
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


def f1_change(relative: float) -> MonitoringReport:
    """A report whose F1 changed by ``relative`` from the registration's."""
    compared = {"f1": {"current": 0.6 * (1 + relative), "baseline": 0.6,
                       "change": 0.6 * relative, "relative_change": relative}}  # fmt: skip
    return monitoring_report(performance=Performance("classification", 80, comparison=compared))


def test_change_rule_holds_when_f1_drops_by_more_than_five_percent() -> None:
    [rule] = parse_rules([AlertRuleConfig(name="f1-down", when="change(f1) < -0.05")])
    assert rule.holds(f1_change(-0.08)) is True
    assert rule.holds(f1_change(-0.01)) is False
    assert rule.holds(monitoring_report(performance=None)) is None  # no ground truth: cannot tell


def every_quantity() -> MonitoringReport:
    """A report with a number for every kind of rule (and some it cannot measure)."""
    tenure = ColumnDrift("tenure", "numeric", "wasserstein", 0.4, 0.1, True, "profile", 0.0)
    plan = ColumnDrift("plan", "categorical", "jensenshannon", math.nan, 0.1, False, "raw", None)
    output = ColumnDrift("prediction", "categorical", "jensenshannon", 0.2, 0.1, True, "raw", None)
    columns = (ColumnQuality("tenure", 0, 0.0, 0, 0, 0), ColumnQuality("plan", 12, 0.12, 0, 0, 3))
    f1 = {"current": 0.55, "baseline": 0.6, "change": -0.05, "relative_change": -0.05 / 0.6}
    accuracy = {"current": 0.7, "baseline": 0.0, "change": 0.7}  # no relative change from 0
    performance = Performance(
        "classification",
        40,
        {"f1": 0.55, "accuracy": 0.7},
        {"f1": 0.6, "accuracy": 0.0},
        {"f1": f1, "accuracy": accuracy},
        value={"net_per_period": -10.0, "currency": "EUR"},
    )
    return monitoring_report(
        drift=DriftReport((tenure, plan), 0.5, True, 0.5, 100, 100),
        prediction_drift=DriftReport((output,), 1.0, True, 0.5, 100, 100),
        quality=QualityReport(100, columns, 4, (), (), (), 15, 0.15),
        performance=performance,
        psi={"tenure": 0.3},
    )


@pytest.mark.parametrize(
    ("when", "value", "holds"),
    [
        ("dataset_drift", 1.0, True),
        ("prediction_drift", 1.0, True),
        ("drift_share >= 0.5", 0.5, True),
        ("prediction_drift_share > 0.5", 1.0, True),
        ("failing_share > 0.2", 0.15, False),
        ("duplicates > 3", 4.0, True),
        ("missing_share > 0.1", 0.12, True),
        ("missing_share(tenure) > 0.1", 0.0, False),
        ("score(tenure) > 0.3", 0.4, True),
        ("score(plan) > 0.3", None, None),  # a NaN score is not measured
        ("psi(tenure) > 0.25", 0.3, True),
        ("psi(plan) > 0.25", None, None),  # no rule asked for it
        ("change(f1) < -0.05", -0.05 / 0.6, True),
        ("change(accuracy) < -0.05", None, None),
        ("value(net_per_period) < 0", -10.0, True),
        ("value(currency) < 0", None, None),  # text, not a number
        ("f1 < 0.6", 0.55, True),
        ("roc_auc < 0.6", None, None),
    ],
)
def test_each_quantity_is_read_from_the_typed_report(
    when: str, value: float | None, holds: bool | None
) -> None:
    [rule] = parse_rules([AlertRuleConfig(when=when)])
    report = every_quantity()
    assert rule.value(report) == (pytest.approx(value) if value is not None else None)
    assert rule.holds(report) is holds


@pytest.mark.parametrize("when", ["prediction_drift", "prediction_drift_share > 0", "f1 < 1"])
def test_without_outputs_or_ground_truth_a_rule_cannot_tell(when: str) -> None:
    [rule] = parse_rules([AlertRuleConfig(when=when)])
    assert rule.holds(monitoring_report(prediction_drift=None, performance=None)) is None


def test_bad_monitoring_settings_are_refused(tmp_path: Path) -> None:
    toml = '[monitoring]\nwebhook = "slack"\nmethods = { tenure = "magic" }\n'
    settings = make_settings(tmp_path, "sqlite://", toml)
    with pytest.raises(ConfigError, match="not an http") as caught:
        load_monitoring(settings)
    assert "'magic' is not a drift method" in str(caught.value)
