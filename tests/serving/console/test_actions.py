"""Decisions from the console: approve a value, promote through the gate (a refusal is a 409
page with every rule's outcome), force with a reason, roll back, archive — each recorded in
the CLI's decision history; and who may take them (admin, CSRF)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from shipyard import Project

from .conftest import console_client, login, make_token
from .test_board import card
from .test_versions import copy_versions, section

pytestmark = pytest.mark.anyio

V2 = "/ui/models/churn/versions/2"


def _history(root: Path) -> list[tuple[str, int | None, int | None, str, bool, str, str]]:
    with Project(root) as project:
        return [
            (e.alias, e.from_version, e.to_version, e.outcome, e.forced, e.actor, e.reason)
            for e in project.registry.history("churn")
        ]


async def _admin(client: httpx.AsyncClient, root: Path, name: str = "ops") -> str:
    return await login(client, make_token(root, name, "admin"))


async def test_a_promotion_the_value_gate_refuses_is_a_409_page_with_every_rule(
    demo: Path,
) -> None:
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        before = len(_history(demo))
        answer = await client.post(
            f"{V2}/promote", data={"csrf": csrf, "to": "production", "reason": "try it"}
        )
    assert answer.status_code == 409
    refusal = section(answer.text, "gate-refusal")
    outcomes = re.findall(r'data-status="(\w+)">\s*<td><code>([^<]+)</code>', refusal)
    assert outcomes == [
        ("passed", "roc_auc &gt;= 0.80"),
        ("passed", "roc_auc &gt;= production.roc_auc - 0.01"),
        ("passed", "roi &gt;= 1.5"),
        ("failed", "net_per_period &gt;= production.net_per_period * 0.95"),
        ("passed", "tag business_value = approved"),
    ]
    assert "needs &gt;= 215365 (production is version 1)" in refusal
    history = _history(demo)
    assert len(history) == before + 1
    assert history[-1] == ("production", 1, 2, "refused", False, "console:ops", "try it")
    with Project(demo) as project:
        assert project.registry.get("churn@production").version == 1


async def test_approve_the_value_then_promote_and_the_board_changes(demo: Path) -> None:
    (challenger,) = copy_versions(demo, roc_auc=0.83, net_per_period=240000.0)
    page = f"/ui/models/churn/versions/{challenger}"
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        refused = await client.post(f"{page}/promote", data={"csrf": csrf, "to": "production"})
        assert refused.status_code == 409
        refusal = section(refused.text, "gate-refusal")
        failed = re.findall(r'data-status="failed">\s*<td><code>([^<]+)</code>', refusal)
        assert failed == ["tag business_value = approved"]

        approved = await client.post(
            f"{page}/approve-value", data={"csrf": csrf, "note": "finance signed off"}
        )
        assert approved.status_code == 303
        assert approved.headers["location"] == f"{page}?done=approved-value"
        shown = (await client.get(approved.headers["location"])).text
        assert 'data-done="approved-value"' in shown
        assert 'id="value-approved"' in shown
        assert 'data-gate="production" data-passes="yes"' in shown

        promoted = await client.post(
            f"{page}/promote", data={"csrf": csrf, "to": "production", "reason": "better"}
        )
        assert promoted.status_code == 303
        assert promoted.headers["location"] == f"{page}?done=promoted"
        board = (await client.get("/ui/")).text
    assert card(board, "churn").startswith(f' data-stage="production" data-version="{challenger}"')
    assert _history(demo)[-3:] == [
        ("production", 1, challenger, "refused", False, "console:ops", ""),
        (
            "business_value",
            None,
            challenger,
            "approved",
            False,
            "console:ops",
            "finance signed off",
        ),
        ("production", 1, challenger, "promoted", False, "console:ops", "better"),
    ]


async def test_forcing_needs_a_reason_then_is_recorded_as_forced(demo: Path) -> None:
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        missing = await client.post(
            f"{V2}/promote", data={"csrf": csrf, "to": "production", "force": "1", "reason": " "}
        )
        assert missing.status_code == 400
        assert "a forced promotion needs a reason" in missing.text
        assert 'role="alert"' in missing.text
        unknown = await client.post(f"{V2}/promote", data={"csrf": csrf, "to": "moon"})
        assert unknown.status_code == 400
        assert "Choose a stage: poc, prototype, production" in unknown.text
        forced = await client.post(
            f"{V2}/promote",
            data={"csrf": csrf, "to": "production", "force": "1", "reason": "CFO accepts"},
        )
        assert forced.status_code == 303
        assert forced.headers["location"] == f"{V2}?done=forced"
        again = await client.post(f"{V2}/promote", data={"csrf": csrf, "to": "production"})
        assert again.status_code == 409
        assert "already holds" in again.text
    assert _history(demo)[-1] == ("production", 1, 2, "forced", True, "console:ops", "CFO accepts")


async def test_rolling_production_back_to_the_previous_version(demo: Path) -> None:
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        nothing = await client.post(
            "/ui/models/churn/rollback", data={"csrf": csrf, "reason": "try"}
        )
        assert nothing.status_code == 409
        assert "no previous version in its history" in nothing.text
        await client.post(
            f"{V2}/promote",
            data={"csrf": csrf, "to": "production", "force": "1", "reason": "trial"},
        )
        no_reason = await client.post("/ui/models/churn/rollback", data={"csrf": csrf})
        assert no_reason.status_code == 400
        assert "a rollback needs a reason" in no_reason.text
        answer = await client.post(
            "/ui/models/churn/rollback",
            data={"csrf": csrf, "stage": "production", "reason": "complaints"},
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/models/churn?done=rolled-back"
        model = (await client.get(answer.headers["location"])).text
    assert 'data-done="rolled-back"' in model
    assert section(model, "history").count('data-outcome="rollback"') == 1
    assert _history(demo)[-1] == (
        "production",
        2,
        1,
        "rollback",
        False,
        "console:ops",
        "complaints",
    )
    with Project(demo) as project:
        assert project.registry.get("churn@production").version == 1


async def test_archiving_a_version(demo: Path) -> None:
    (spare,) = copy_versions(demo)
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        held = await client.post(f"{V2}/archive", data={"csrf": csrf, "reason": "x"})
        assert held.status_code == 409
        assert "holds alias(es) prototype" in held.text
        page = f"/ui/models/churn/versions/{spare}"
        assert 'id="archive"' in (await client.get(page)).text
        answer = await client.post(f"{page}/archive", data={"csrf": csrf, "reason": "a copy"})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"{page}?done=archived"
        shown = (await client.get(answer.headers["location"])).text
    assert 'id="status-badge"' in shown
    assert "archived" in shown
    assert _history(demo)[-1] == ("status", spare, None, "archived", False, "console:ops", "a copy")


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
async def test_a_decision_without_the_right_csrf_field_is_refused(
    demo: Path, csrf: str | None
) -> None:
    async with console_client(demo) as client:
        await _admin(client, demo)
        before = _history(demo)
        data = {"to": "production"} if csrf is None else {"to": "production", "csrf": csrf}
        answer = await client.post(f"{V2}/promote", data=data)
        approve = await client.post(f"{V2}/approve-value", data=data)
    assert answer.status_code == 403
    assert approve.status_code == 403
    assert "CSRF token is missing or does not match" in answer.text
    assert _history(demo) == before


async def test_only_admin_sessions_decide(demo: Path) -> None:
    reader = make_token(demo, "viewer", "read")
    async with console_client(demo, auth=True) as client:
        anonymous = await client.post(f"{V2}/approve-value", data={"csrf": "x"})
        assert anonymous.status_code == 401
        assert "log in first" in anonymous.text
        csrf = await login(client, reader)
        for path, data in [
            (f"{V2}/approve-value", {}),
            (f"{V2}/promote", {"to": "production"}),
            ("/ui/models/churn/rollback", {"reason": "r"}),
            (f"{V2}/archive", {}),
        ]:
            answer = await client.post(path, data={"csrf": csrf, **data})
            assert answer.status_code == 403, path
            assert "lacks the &#39;admin&#39; scope" in answer.text
        assert 'id="decide-note"' in (await client.get(V2)).text
    with Project(demo) as project:
        assert project.registry.get("churn:2").tags["business_value"] == "approved"
        assert [e.actor for e in project.registry.history("churn")].count("console:viewer") == 0


async def test_a_decision_on_an_unknown_version_is_a_404_page(demo: Path) -> None:
    async with console_client(demo) as client:
        csrf = await _admin(client, demo)
        answer = await client.post(
            "/ui/models/churn/versions/99/approve-value", data={"csrf": csrf}
        )
        other = await client.post("/ui/models/nope/rollback", data={"csrf": csrf, "reason": "r"})
    assert answer.status_code == 404
    assert "churn has no version 99" in answer.text
    assert other.status_code == 404
    assert "no registered model named" in other.text
