"""``shipyard gate REF --to STAGE``: the go / no-go of a stage as a CI step.

The stage's gate is evaluated for the version without promoting it; the exit status says
the verdict: **0** passed, **1** refused, **2** error (an unknown model or version, a stage
with no gate, a metric a rule needs that the version or its baseline lacks — a check that
cannot be made fails closed, and says which). The report comes as text, JSON, JUnit XML
(one test case per rule, for Jenkins' ``junit`` step or GitLab's ``reports: junit``) or
Markdown (a table for a pull-request comment or ``$GITHUB_STEP_SUMMARY``), on stdout or
into ``--output FILE``.

Unless ``--no-record``, the check is recorded in the model's decision history
(``shipyard models history``): who (``SHIPYARD_USER``, else the CI's user, else the login),
the commit and the CI build's URL when the CI gives them (GitHub Actions, GitLab CI,
Jenkins), and every rule's outcome.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from xml.etree import ElementTree as ET

import typer

from shipyard.cli.context import ProjectOption, open_project
from shipyard.core.exceptions import ShipyardError
from shipyard.render import console, err_console, gate_lines, print_json

if TYPE_CHECKING:
    from shipyard.registry import GateCheck

#: Exit statuses of ``shipyard gate``.
PASSED, REFUSED, ERROR = 0, 1, 2


class Format(StrEnum):
    """Report formats of ``shipyard gate``."""

    text = "text"
    json = "json"
    junit = "junit"
    markdown = "markdown"


def gate_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to judge (churn:3, churn@challenger).")],
    to: Annotated[str, typer.Option("--to", help="The stage whose gate judges it.")],
    baseline: Annotated[
        str | None,
        typer.Option(help="Compare relative rules with this version, not the stage's holder."),
    ] = None,
    output_format: Annotated[
        Format, typer.Option("--format", help="Report format.", case_sensitive=False)
    ] = Format.text,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file (default: stdout).")
    ] = None,
    record: Annotated[
        bool, typer.Option(help="Record the check in the model's decision history.")
    ] = True,
    pending_sign_offs: Annotated[
        bool,
        typer.Option(
            "--pending-sign-offs",
            help="Report required tags not set yet (a person's sign-off, like business_value"
            " = approved) as pending, not refused: the promotion still requires them.",
        ),
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Evaluate a stage's gate for a version without promoting it: exit 0 pass, 1 refused,
    2 error."""
    try:
        opened = open_project(ctx, project)
        check = opened.registry.gate_check(
            ref, to, baseline=baseline, pending_sign_offs=pending_sign_offs
        )
        if check.missing:
            raise _Missing(check)
        if record:
            context = ci_context(os.environ)
            opened.registry.record_gate_check(
                check, reason=context["reason"], actor=opened.settings.user or context["user"]
            )
        currency = str((opened.settings.value or {}).get("currency", ""))
    except _Missing as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(ERROR) from None
    except ShipyardError as exc:
        err_console.print(f"error: {exc.message}", soft_wrap=True, markup=False)
        raise typer.Exit(ERROR) from None
    report = render(check, output_format, currency)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report, encoding="utf-8")
        summary = _verdict(check)
        console.print(
            f"{check.name}:{check.version} {summary} the {check.stage} gate: {output}",
            soft_wrap=True,
        )
    elif output_format is Format.text:
        _print_text(check)
    elif output_format is Format.json:
        print_json(check.to_dict())
    else:
        typer.echo(report, nl=False)
    raise typer.Exit(PASSED if check.passed else REFUSED)


class _Missing(Exception):
    def __init__(self, check: GateCheck) -> None:
        super().__init__(
            f"cannot judge {check.name}:{check.version} at the {check.stage} gate: missing "
            f"metric(s) {', '.join(check.missing)}; record them at registration (a check "
            "that cannot be made fails)"
        )


def render(check: GateCheck, output_format: Format, currency: str = "") -> str:
    """The report of ``check`` in ``output_format`` (text: one line per rule)."""
    if output_format is Format.json:
        import json

        return json.dumps(check.to_dict(), indent=2) + "\n"
    if output_format is Format.junit:
        return junit(check)
    if output_format is Format.markdown:
        return markdown(check, currency)
    lines = [f"{check.name}:{check.version} → {check.stage}: {_verdict(check)}"]
    lines += [f"  {r.status:7} {r.rule}: {r.detail}" for r in check.results]
    return "\n".join(lines) + "\n"


def _print_text(check: GateCheck) -> None:
    style = "green" if check.passed else "red"
    against = f" (compared with version {check.baseline})" if check.baseline else ""
    console.print(
        f"{check.name}:{check.version} → {check.stage}: [{style}]{_verdict(check)}[/{style}]"
        f"{against}"
    )
    gate_lines(check.results)


def _verdict(check: GateCheck) -> str:
    if not check.passed:
        return "refused"
    if check.pending:
        return f"passed, waiting for sign-off ({'; '.join(check.pending)})"
    return "passed"


def junit(check: GateCheck) -> str:
    """JUnit XML: one test suite (the gate), one test case per rule."""
    failures = sum(1 for r in check.results if r.status == "failed")
    skipped = sum(1 for r in check.results if r.status in ("skipped", "pending"))
    suite = ET.Element(
        "testsuite",
        name=f"shipyard gate {check.stage}",
        tests=str(len(check.results)),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("model", check.name),
        ("version", str(check.version)),
        ("stage", check.stage),
        ("baseline", "" if check.baseline is None else str(check.baseline)),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for result in check.results:
        case = ET.SubElement(
            suite, "testcase", classname=f"{check.name}.{check.stage}", name=result.rule
        )
        if result.status == "failed":
            ET.SubElement(case, "failure", message=result.detail, type="GateRuleFailed")
        elif result.status in ("skipped", "pending"):
            ET.SubElement(case, "skipped", message=f"{result.status}: {result.detail}")
        else:
            ET.SubElement(case, "system-out").text = result.detail
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, "unicode") + "\n"


_VALUE = (
    ("net_per_period", "net value per period"),
    ("roi", "ROI over the horizon"),
    ("payback_periods", "payback (periods)"),
)


def markdown(check: GateCheck, currency: str = "") -> str:
    """A Markdown report: the verdict, a table of rules and the business value."""
    mark = {
        "passed": "✅ passed",
        "failed": "❌ failed",
        "skipped": "⏭ skipped",
        "pending": "⏳ pending",
    }
    verdict = "✅ **passed**" if check.passed else "❌ **refused**"
    if check.passed and check.pending:
        verdict += ", ⏳ waiting for sign-off"
    base = f", compared with version {check.baseline}" if check.baseline is not None else ""
    lines = [
        f"### shipyard gate: `{check.name}:{check.version}` → `{check.stage}`: {verdict}",
        "",
        f"Holder of {check.stage} today: "
        f"{'version ' + str(check.holder) if check.holder is not None else 'none'}{base}.",
        "",
        "| rule | outcome | detail |",
        "| --- | --- | --- |",
    ]
    for r in check.results:
        lines.append(f"| `{_cell(r.rule)}` | {mark.get(r.status, r.status)} | {_cell(r.detail)} |")
    value = _value_lines(check.metrics, check.baseline_metrics, currency)
    if value:
        lines += ["", "**Business value**", "", "| | candidate | baseline |", "| --- | --- | --- |"]
        lines += value
    return "\n".join(lines) + "\n"


def _value_lines(
    metrics: Mapping[str, float], baseline: Mapping[str, float], currency: str
) -> list[str]:
    lines = []
    if {"ebitda_low", "ebitda_mid", "ebitda_high"} <= set(metrics):
        lines.append(
            f"| EBITDA per period (interval) | {_ebitda(metrics, currency)} | "
            f"{_ebitda(baseline, currency) if 'ebitda_mid' in baseline else '—'} |"
        )
    for key, label in _VALUE:
        if key in metrics:
            other = f"{baseline[key]:,.2f}" if key in baseline else "—"
            lines.append(f"| {label} | {metrics[key]:,.2f} | {other} |")
    return lines


def _ebitda(metrics: Mapping[str, float], currency: str) -> str:
    unit = f" {currency}" if currency else ""
    return (
        f"{metrics['ebitda_mid']:,.0f}{unit} "
        f"({metrics['ebitda_low']:,.0f} to {metrics['ebitda_high']:,.0f})"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ci_context(environ: Mapping[str, str]) -> dict[str, str]:
    """Who runs the check, and the reason recorded: the CI, its build's URL and the commit."""
    github = environ.get("GITHUB_ACTIONS") == "true"
    gitlab = environ.get("GITLAB_CI") == "true"
    jenkins = bool(environ.get("JENKINS_URL"))
    if github:
        ci, user = "GitHub Actions", environ.get("GITHUB_ACTOR", "")
        url = "/".join(
            (
                environ.get("GITHUB_SERVER_URL", "https://github.com"),
                environ.get("GITHUB_REPOSITORY", ""),
                "actions/runs",
                environ.get("GITHUB_RUN_ID", ""),
            )
        )
        commit = environ.get("GITHUB_SHA", "")
    elif gitlab:
        ci, user = "GitLab CI", environ.get("GITLAB_USER_LOGIN", "")
        url, commit = environ.get("CI_JOB_URL", ""), environ.get("CI_COMMIT_SHA", "")
    elif jenkins:
        ci, user = "Jenkins", environ.get("BUILD_USER_ID", "")
        url, commit = environ.get("BUILD_URL", ""), environ.get("GIT_COMMIT", "")
    else:
        ci, user, url, commit = "", "", "", ""
    commit = commit or _git_head()
    parts = [f"gate check by {ci}" if ci else "gate check"]
    if commit:
        parts.append(f"commit {commit[:12]}")
    if url:
        parts.append(url)
    return {"user": user, "reason": ", ".join(parts), "commit": commit, "url": url}


def _git_head() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as a user runs it
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
