"""The road board: each model in its stage column with its value, drift and serving status;
paging; who may read it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from shipyard.serving.console.session import COOKIE

from .conftest import console_client, login, make_token
from .test_versions import copy_versions

pytestmark = pytest.mark.anyio


def card(html: str, model: str) -> str:
    """The ``<article>`` of ``model`` on the board."""
    return html.split(f'data-model="{model}"', 1)[1].split("</article>", 1)[0]


def column_of(html: str, model: str) -> str:
    """The id of the section holding ``model``'s card."""
    before = html.split(f'data-model="{model}"', 1)[0]
    return re.findall(r'<section id="(stage-[\w-]+)"', before)[-1]


async def test_the_board_shows_churn_in_production_with_its_value(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/")
    assert answer.status_code == 200
    html = answer.text
    for stage in ("poc", "prototype", "production"):
        assert f'<section id="stage-{stage}"' in html
    assert column_of(html, "churn") == "stage-production"
    assert '<article class="model-card card" id="card-churn" data-model="churn" ' in html
    churn = card(html, "churn")
    assert churn.startswith(' data-stage="production" data-version="1"')
    assert 'href="/ui/models/churn"' in churn
    assert "Production: <a" in churn
    assert "version 1" in churn
    assert "roc_auc <strong>0.822</strong>" in churn
    assert "EBITDA 226,700 EUR/month" in churn
    assert "90% interval 172,700 … 278,300" in churn
    assert "ROI 38.3×" in churn  # noqa: RUF001 - the multiplication sign
    assert "payback 0.176 months" in churn
    assert 'data-drift="drifted"' in churn  # the demo monitors a drifted month
    assert 'data-served=""' in churn
    assert "not served here" in churn


async def test_the_board_says_which_versions_this_server_serves(demo: Path) -> None:
    async with console_client(demo, refs=("churn@production",)) as client:
        html = (await client.get("/ui/")).text
    assert 'data-served="1"' in card(html, "churn")
    assert "served here: v1" in html


async def test_models_without_a_stage_and_paging(demo: Path) -> None:
    copy_versions(demo, name="attrition")
    copy_versions(demo, name="billing")
    async with console_client(demo) as client:
        whole = (await client.get("/ui/")).text
        first = (await client.get("/ui/?limit=2")).text
        second = (await client.get("/ui/?limit=2&offset=2")).text
        fragment = await client.get(
            "/ui/?limit=2&offset=2", headers={"hx-request": "true", "hx-target": "board"}
        )
        bad = await client.get("/ui/?limit=0")
    assert column_of(whole, "attrition") == "stage-none"
    assert card(whole, "billing").startswith(' data-stage="none" data-version="1"')
    assert re.findall(r'data-model="(\w+)"', first) == ["attrition", "billing"]
    assert "1–2 of 3" in first  # noqa: RUF001 - the pager writes an en dash
    assert 'href="/ui/?limit=2&amp;offset=2"' in first
    assert re.findall(r'data-model="(\w+)"', second) == ["churn"]
    assert 'rel="prev"' in second
    assert 'rel="next"' not in second
    assert fragment.text.lstrip().startswith('<div id="board"')
    assert "<html" not in fragment.text
    assert bad.status_code == 400
    assert "limit=0 is out of range" in bad.text


async def test_with_auth_on_anonymous_readers_go_to_the_login_page(demo_template: Path) -> None:
    reader = make_token(demo_template, "viewer-board", "read")
    async with console_client(demo_template, auth=True) as client:
        for path in ("/ui/", "/ui/models/churn", "/ui/models/churn/versions/1"):
            answer = await client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/ui/login?next=%2Fui%2F")
        await login(client, reader)
        assert (await client.get("/ui/")).status_code == 200


async def test_an_expired_session_goes_to_the_login_page_saying_so(
    demo_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token(demo_template, "ops-expired", "admin")
    async with console_client(demo_template, auth=True) as client:
        await login(client, token)
        cookie = client.cookies[COOKIE]
        later = time.time() + 9 * 3600  # sessions last 8 hours
        monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
        for path in ("/ui/", "/ui/models/churn/versions/2"):
            client.cookies.set(COOKIE, cookie, path="/ui")  # the redirect deleted it
            answer = await client.get(path)
            assert answer.status_code == 303
            target = answer.headers["location"]
            assert "expired=1" in target
            assert f"next={quote(path, safe='')}" in target
