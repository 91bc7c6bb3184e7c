"""``shipyard gate``: the go / no-go as a CI step — every format, every exit status, the
decision recorded with the CI's build; and ``models promote --dry-run``."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app
from shipyard.cli.gate import ci_context

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
runner = CliRunner()

GATES = """
[value]
currency = "EUR"
decisions_per_period = 20000

[value.classification]
true_positive = 120
false_positive = -15

[gates.production]
rules = [
    "roc_auc >= 0.80",
    "net_per_period >= production.net_per_period * 0.95",
]
require_tags = { business_value = "approved" }

[gates.prototype]
rules = ["roc_auc >= 0.75", "recall >= 0.1"]
"""

GOOD = {"roc_auc": 0.86, "net_per_period": 200_000.0, "recall": 0.5,
        "ebitda_low": 150_000.0, "ebitda_mid": 200_000.0, "ebitda_high": 250_000.0}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path, trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Path:
    """churn:1 in production; churn:2 better and approved; churn:3 worth far less; churn:4
    without the recall metric."""
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "SHIPYARD_USER"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    assert runner.invoke(app, ["init", str(root), "--name", "gate", "--bare"]).exit_code == 0
    config = root / "shipyard.toml"
    text = config.read_text().split("[gates.prototype]")[0]  # the template's empty gates
    config.write_text(text + GATES)
    model, frame, _ = trained
    approved = {"business_value": "approved"}
    with Project(root) as project:
        registry = project.registry
        first = {**GOOD, "net_per_period": 190_000.0}
        registry.register("churn", model, input_example=frame, trust=True, metrics=first,
                          tags=approved)  # fmt: skip
        registry.promote("churn:1", to="production")
        for metrics in (GOOD, {**GOOD, "net_per_period": 90_000.0}):
            registry.register("churn", model, input_example=frame, trust=True, metrics=metrics,
                              tags=approved)  # fmt: skip
        without_recall = {k: v for k, v in GOOD.items() if k != "recall"}
        registry.register("churn", model, input_example=frame, trust=True, metrics=without_recall)
    return root


def gate(root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["gate", *args, "--project", str(root)])
    return result.exit_code, result.stdout, result.stderr


def history(root: Path) -> list[dict[str, object]]:
    with Project(root) as project:
        return [event.to_dict() for event in project.registry.history("churn")]


def test_a_better_version_passes_and_a_worse_one_is_refused(folder: Path) -> None:
    code, out, _ = gate(folder, "churn:2", "--to", "production", "--no-record")
    assert code == 0, out
    assert "churn:2 → production: passed" in out
    code, out, _ = gate(folder, "churn:3", "--to", "production", "--no-record")
    assert code == 1
    assert "refused" in out
    assert "net_per_period = 90000, needs >= 180500" in " ".join(out.split())


def test_junit_has_one_case_per_rule_and_the_failures(folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "gate.xml"
    code, out, _ = gate(
        folder, "churn:3", "--to", "production", "--format", "junit", "--output", str(report)
    )
    assert code == 1
    assert str(report) in out
    suite = ET.fromstring(report.read_text())
    assert suite.tag == "testsuite"
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "roc_auc >= 0.80",
        "net_per_period >= production.net_per_period * 0.95",
        "tag business_value = approved",
    ]
    failure = cases[1].find("failure")
    assert failure is not None
    assert "needs >= 180500" in (failure.get("message") or "")


def test_markdown_shows_rules_and_business_value(folder: Path) -> None:
    code, out, _ = gate(folder, "churn:2", "--to", "production", "--format", "markdown",
                        "--no-record")  # fmt: skip
    assert code == 0
    assert out.startswith("### shipyard gate: `churn:2` → `production`: ✅ **passed**")
    assert "| `roc_auc >= 0.80` | ✅ passed |" in out
    assert "| EBITDA per period (interval) | 200,000 EUR (150,000 to 250,000) |" in out
    assert "Holder of production today: version 1" in out


def test_json_and_an_explicit_baseline(folder: Path) -> None:
    code, out, _ = gate(folder, "churn:2", "--to", "production", "--format", "json",
                        "--baseline", "churn:3", "--no-record")  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["outcome"] == "passed"
    assert report["baseline"] == 3
    assert report["holder"] == 1
    assert "(production is version 3)" in report["rules"][1]["detail"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("nothing:1", "--to", "production"), "nothing"),
        (("churn:99", "--to", "production"), "99"),
        (("churn:2", "--to", "staging"), "no gate for 'staging'"),
        (("churn:4", "--to", "prototype"), "missing metric(s) recall"),
        (("churn:2", "--to", "production", "--baseline", "other:1"), "not a version of"),
    ],
)
def test_what_cannot_be_judged_exits_2_saying_why(
    folder: Path, args: tuple[str, ...], words: str
) -> None:
    code, out, err = gate(folder, *args)
    assert code == 2, out + err
    assert words in err
    assert "Traceback" not in out + err
    assert all(event["outcome"] in ("promoted",) for event in history(folder))  # nothing recorded


def test_a_check_from_ci_is_recorded_with_its_build(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/churn")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef")
    assert gate(folder, "churn:3", "--to", "production")[0] == 1
    event = history(folder)[-1]
    assert event["outcome"] == "check-refused"
    assert event["alias"] == "production"
    assert event["actor"] == "octocat"
    assert event["to_version"] == 3
    assert event["from_version"] == 1
    reason = str(event["reason"])
    assert "GitHub Actions" in reason
    assert "commit 0123456789ab" in reason
    assert "https://github.com/acme/churn/actions/runs/42" in reason
    with Project(folder) as project:  # a check moves no alias
        assert project.registry.get("churn@production").version == 1
    monkeypatch.setenv("SHIPYARD_USER", "release-bot")
    assert gate(folder, "churn:2", "--to", "production")[0] == 0
    event = history(folder)[-1]
    assert event["outcome"] == "checked"
    assert event["actor"] == "release-bot"


def test_ci_context_of_jenkins_and_gitlab() -> None:
    jenkins = ci_context({"JENKINS_URL": "https://ci/", "BUILD_URL": "https://ci/job/7/",
                          "GIT_COMMIT": "abc", "BUILD_USER_ID": "ann"})  # fmt: skip
    assert jenkins["user"] == "ann"
    assert jenkins["reason"] == "gate check by Jenkins, commit abc, https://ci/job/7/"
    gitlab = ci_context({"GITLAB_CI": "true", "CI_JOB_URL": "https://gl/j/1",
                         "CI_COMMIT_SHA": "def", "GITLAB_USER_LOGIN": "bob"})  # fmt: skip
    assert gitlab["reason"] == "gate check by GitLab CI, commit def, https://gl/j/1"


def test_promote_dry_run_judges_without_promoting(folder: Path) -> None:
    result = runner.invoke(app, ["models", "promote", "churn:3", "--to", "production",
                                 "--dry-run", "--project", str(folder)])  # fmt: skip
    assert result.exit_code == 1
    assert "refused" in result.stdout
    result = runner.invoke(app, ["models", "promote", "churn:2", "--to", "production",
                                 "--dry-run", "--project", str(folder)])  # fmt: skip
    assert result.exit_code == 0
    with Project(folder) as project:
        assert project.registry.get("churn@production").version == 1
    assert [event["outcome"] for event in history(folder)] == ["promoted"]


def test_a_sign_off_not_given_yet_is_pending_with_the_flag_and_still_needed_to_promote(
    folder: Path, tmp_path: Path
) -> None:
    """churn:4 passes every metric rule of production but nobody approved its value yet."""
    code, out, _ = gate(folder, "churn:4", "--to", "production", "--no-record")
    assert code == 1
    assert "tag 'business_value' is missing" in " ".join(out.split())
    report = tmp_path / "gate.xml"
    code, out, _ = gate(folder, "churn:4", "--to", "production", "--pending-sign-offs",
                        "--format", "junit", "--output", str(report))  # fmt: skip
    assert code == 0, out
    assert "passed, waiting for sign-off (tag business_value = approved)" in " ".join(out.split())
    suite = ET.fromstring(report.read_text())
    assert (suite.get("failures"), suite.get("skipped")) == ("0", "1")
    skipped = suite.findall("testcase")[-1].find("skipped")
    assert skipped is not None
    assert (skipped.get("message") or "").startswith("pending: ")
    code, out, _ = gate(folder, "churn:4", "--to", "production", "--pending-sign-offs",
                        "--format", "markdown", "--no-record")  # fmt: skip
    assert out.startswith(
        "### shipyard gate: `churn:4` → `production`: ✅ **passed**, ⏳ waiting for sign-off"
    )
    assert "| `tag business_value = approved` | ⏳ pending |" in out
    code, out, _ = gate(folder, "churn:4", "--to", "production", "--pending-sign-offs",
                        "--format", "json", "--no-record")  # fmt: skip
    assert (json.loads(out)["outcome"], json.loads(out)["pending"]) == (
        "passed",
        ["tag business_value = approved"],
    )
    # The promotion itself still requires the sign-off.
    result = runner.invoke(app, ["models", "promote", "churn:4", "--to", "production",
                                 "--project", str(folder)])  # fmt: skip
    assert result.exit_code == 1
    # A sign-off refused by a person is not pending: it fails, flag or not.
    with Project(folder) as project:
        project.registry.set_tags("churn:4", {"business_value": "rejected"})
    code, out, _ = gate(folder, "churn:4", "--to", "production", "--pending-sign-offs",
                        "--no-record")  # fmt: skip
    assert code == 1
    assert "tag 'business_value' is 'rejected'" in " ".join(out.split())


def test_promoting_the_version_that_holds_the_stage_is_nothing_to_do(folder: Path) -> None:
    """A deploy run again (the same version already in production) succeeds, recording
    nothing."""
    before = history(folder)
    result = runner.invoke(app, ["models", "promote", "churn:1", "--to", "production",
                                 "--project", str(folder)])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "churn:1 already holds 'production': nothing to do" in result.stdout
    assert history(folder) == before
