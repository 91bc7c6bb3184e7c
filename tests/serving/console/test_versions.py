"""The model and version pages: versions and decisions (paged), gates evaluated now, value
with its assumptions, lineage, signature, the comparison, and their error pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from shipyard import Project
from shipyard.core.clock import utcnow

from .conftest import console_client, csrf_of, login, make_token

pytestmark = pytest.mark.anyio

_COPIED = ("flavor", "flavor_config", "artifact_digest", "signature", "input_example")


def copy_versions(
    root: Path, count: int = 1, *, name: str = "churn", source: int = 1, **metrics: float
) -> list[int]:
    """New versions of ``name``, copies of version ``source`` with ``metrics`` changed.

    Registering takes seconds (the model is loaded, run and profiled); a copy is one row.
    """
    with Project(root) as project:
        registry = project.registry
        origin = registry.get(f"churn:{source}").to_dict()
        fields: dict[str, Any] = {key: origin[key] for key in _COPIED}
        fields.update(
            metrics={**origin["metrics"], **metrics},
            params=origin["params"],
            tags={"pipeline": "train"},
            description="a copy for the console's tests",
            lineage=origin["lineage"],
            status="active",
            created_by="console-test",
        )
        return [
            registry._insert_version(name, {**fields, "created_at": utcnow()}).version
            for _ in range(count)
        ]


def section(html: str, ident: str) -> str:
    """The inside of ``<section id="ident" …>`` (sections are never nested)."""
    return html.split(f'<section id="{ident}"', 1)[1].split("</section>", 1)[0]


def _rows(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<tr class="{css_class}"[^>]*data-(?:version|outcome)="([^"]+)"', html)


async def test_the_model_page_lists_versions_aliases_and_decisions(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/models/churn")
    assert answer.status_code == 200
    html = answer.text
    assert _rows(html, "version-row") == ["2", "1"]  # newest first
    assert re.search(r'data-version="1"[^>]*>\s*<td class="num"><a[^>]*>1</a></td>\s*<td>'
                     r'<span class="badge ok" data-alias="production">', html)  # fmt: skip
    aliases = section(html, "aliases")
    assert "production → " in aliases
    assert "/ui/models/churn/versions/1" in aliases
    history = section(html, "history")
    assert _rows(history, "decision")[:2] == ["refused", "promoted"]  # newest first
    assert "net_per_period &gt;= production.net_per_period * 0.95" in history
    assert "log in with an admin token to decide" in html.lower()
    assert 'id="rollback"' not in html


async def test_the_version_page_shows_every_gate_evaluated_now(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/models/churn/versions/2")
    assert answer.status_code == 200
    html = answer.text
    gate = html.split('id="gate-production"')[1].split("</div>")[0]
    assert 'data-passes="no"' in gate
    assert "would be refused" in gate
    outcomes = re.findall(r'data-status="(\w+)">\s*<td><code>([^<]+)</code>', gate)
    assert outcomes == [
        ("passed", "roc_auc &gt;= 0.80"),
        ("passed", "roc_auc &gt;= production.roc_auc - 0.01"),
        ("passed", "roi &gt;= 1.5"),
        ("failed", "net_per_period &gt;= production.net_per_period * 0.95"),
        ("passed", "tag business_value = approved"),
    ]
    assert "needs &gt;= 215365 (production is version 1)" in gate
    assert 'data-gate="prototype" data-passes="yes"' in html
    # value with its assumptions, lineage, signature, params
    value = section(html, "value")
    assert "EBITDA 178,700 EUR/month" in value
    assert "128,900 … 224,300" in value
    assert "decisions per month" in value
    assert "40,000 EUR" in value
    assert "2,500 EUR" in value
    assert 'id="value-approved"' in value
    assert re.search(r'id="run-link" href="/ui/runs/\d{8}T\d{6}-\w+"', html)
    assert 'data-dataset="train"' in html
    assert 'data-column="contract"' in html
    assert "month-to-month" in html
    assert "LogisticRegression" in html
    assert 'href="/ui/models/churn/compare?a=2&amp;b=1"' in html
    # the decisions about this version, and no form for an anonymous reader
    assert _rows(section(html, "history"), "decision") == ["refused", "promoted"]
    assert 'id="decide-note"' in html
    assert 'id="promote-form"' not in html


async def test_an_admin_sees_the_forms_with_their_csrf_field(demo_template: Path) -> None:
    token = make_token(demo_template, "ops-forms", "admin")
    async with console_client(demo_template) as client:
        csrf = await login(client, token)
        html = (await client.get("/ui/models/churn/versions/2")).text
        model = (await client.get("/ui/models/churn")).text
    for form in ("approve-form", "promote-form"):
        body = html.split(f'id="{form}"')[1].split("</form>")[0]
        assert f'name="csrf" value="{csrf}"' in body
    promote = html.split('id="promote-form"')[1].split("</form>")[0]
    assert '<option value="production" selected>' in promote
    assert 'name="reason"' in promote
    assert 'id="promote-submit"' in promote
    assert 'name="force" value="1"' in promote
    assert 'id="approve-value"' in html
    assert 'id="archive"' not in html  # it holds prototype: nothing to archive
    rollback = model.split('id="rollback-form"')[1].split("</form>")[0]
    assert f'value="{csrf}"' in rollback
    assert 'id="rollback"' in rollback


async def test_a_read_session_sees_the_rules_but_no_form(demo_template: Path) -> None:
    token = make_token(demo_template, "viewer-v", "read")
    async with console_client(demo_template, auth=True) as client:
        await login(client, token)
        html = (await client.get("/ui/models/churn/versions/2")).text
    assert 'id="gate-production"' in html
    assert 'id="decide-note"' in html
    assert "<form" not in section(html, "decide")


async def test_done_says_only_what_a_decision_sent(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        known = await client.get("/ui/models/churn/versions/2?done=archived")
        forged = await client.get("/ui/models/churn/versions/2?done=your+account+is+closed")
    assert 'data-done="archived"' in known.text
    assert 'id="done"' not in forged.text
    assert "account" not in forged.text


async def test_comparing_two_versions_side_by_side(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        default = await client.get("/ui/models/churn/compare")
        inline = await client.get("/ui/models/churn/versions/2?compare=1")
        swapped = await client.get("/ui/models/churn/compare?a=1&b=2")
    assert default.status_code == 200
    table = default.text.split('data-testid="compare"')[1]
    assert table.startswith(' data-a="2" data-b="1"')
    net = table.split('data-metric="net_per_period"')[1].split("</tr>")[0]
    assert "178,700" in net
    assert "226,700" in net
    assert "-48,000" in net
    assert "bad" in net
    loss = table.split('data-metric="log_loss"')[1].split("</tr>")[0]
    assert 'class="num bad"' in loss  # a higher loss is worse
    assert 'data-kind="value"' in table
    assert 'data-kind="quality"' in table
    assert 'id="compare"' in inline.text
    assert 'data-a="2" data-b="1"' in inline.text
    assert 'data-a="1" data-b="2"' in swapped.text


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/ui/models/nope", 404, "no registered model named &#39;nope&#39;"),
        ("/ui/models/churn/versions/9", 404, "churn has no version 9"),
        ("/ui/models/nope/versions/1", 404, "no registered model named"),
        ("/ui/models/churn/versions/two", 400, "version"),
        ("/ui/models/churn/compare?b=7", 404, "churn has no version 7"),
        ("/ui/models/churn?offset=-1", 400, "offset=-1 is out of range"),
        ("/ui/models/churn?hoffset=x", 400, "hoffset=&#39;x&#39; is not a whole number"),
    ],
)
async def test_bad_addresses_get_a_clear_page(
    demo_template: Path, path: str, status: int, message: str
) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get(path)
    assert answer.status_code == status
    assert 'role="alert"' in answer.text
    assert message in answer.text
    assert "Traceback" not in answer.text


async def test_versions_and_decisions_are_paged_on_the_server(demo: Path) -> None:
    copy_versions(demo, 60)  # versions 3..62
    with Project(demo) as project:
        for number in range(3, 33):
            project.registry.approve_value(f"churn:{number}", actor="console:bulk")
    async with console_client(demo) as client:
        first = await client.get("/ui/models/churn")
        second = await client.get("/ui/models/churn?offset=50")
        small = await client.get("/ui/models/churn?limit=10&offset=10")
        older = await client.get("/ui/models/churn?hoffset=25")
        fragment = await client.get(
            "/ui/models/churn?offset=50", headers={"hx-request": "true", "hx-target": "lists"}
        )
        version = await client.get("/ui/models/churn/versions/5")
    versions = section(first.text, "versions")
    assert _rows(versions, "version-row") == [str(n) for n in range(62, 12, -1)]
    assert 'href="/ui/models/churn?offset=50"' in versions
    assert "1–50 of 62" in versions  # noqa: RUF001 - the pager writes an en dash
    assert _rows(second.text, "version-row") == [str(n) for n in range(12, 0, -1)]
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in section(second.text, "versions")
    assert _rows(small.text, "version-row") == [str(n) for n in range(52, 42, -1)]
    assert 'href="/ui/models/churn?limit=10&amp;offset=20"' in small.text
    history = section(first.text, "history")
    assert len(_rows(history, "decision")) == 25
    assert "1–25 of 35" in history  # noqa: RUF001 - the pager writes an en dash
    assert 'href="/ui/models/churn?hoffset=25"' in history
    assert len(_rows(section(older.text, "history"), "decision")) == 10
    # htmx asks for the table only: the block, not the page
    assert fragment.text.lstrip().startswith('<div id="lists">')  # both lists, links in step
    assert 'href="/ui/models/churn?offset=50&amp;hoffset=25"' in fragment.text
    assert "<html" not in fragment.text
    assert _rows(fragment.text, "version-row")[0] == "12"
    assert 'hx-get="/ui/models/churn"' in versions or 'hx-get="/ui/models/churn?' in versions
    assert _rows(section(version.text, "history"), "decision") == ["approved"]


async def test_csrf_of_a_model_page(demo_template: Path) -> None:
    token = make_token(demo_template, "ops-meta", "admin")
    async with console_client(demo_template) as client:
        csrf = await login(client, token)
        assert await csrf_of(client, "/ui/models/churn") == csrf
