"""The console in a real browser: Debian's Chromium, driven by Playwright, over a real uvicorn.

One server (auth on, ``churn@production`` served) runs on a copy of the demo project for
the whole module. Every page opens with status 200 and without a console error — a
Content Security Policy violation included — and leaves a screenshot in the test
artifacts (``$SHIPYARD_TEST_ARTIFACTS/console`` when set, else a temporary folder; never
committed). The decisions are clicked through as a person would: the challenger is refused
by the production gate, its value approved, refused again on a metric only, then forced
with a reason; the road board shows it in production.

Playwright drives ``/usr/bin/chromium`` (``executable_path``) and never downloads a
browser; without chromium the tests skip (``conftest.browser``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from tests.serving.console.conftest import make_token
from tests.serving.test_wire import LiveServer

from shipyard import Project
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.serving.app import create_app
from shipyard.serving.console.session import COOKIE, signing_key
from shipyard.serving.settings import ServeSettings

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("console-browser")]

#: Chromium's own line for a page answered with an error status (expected on a refusal).
_STATUS_LINE = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")
#: Reports CSP violations as console errors even where Chromium would only warn.
_CSP_WATCH = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
});
"""


@dataclass
class Site:
    """The served demo copy: its URL, an admin token, and the ids its pages are about."""

    root: Path
    url: str
    token: str
    run_id: str
    step: str
    dataset: tuple[str, str, int]
    job_id: str
    report_id: int


@pytest.fixture(scope="module")
def site(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The console of a copy of the demo, auth on, over uvicorn on loopback.

    The demo's challenger ``churn:2`` had its value approved by the quickstart; here it is
    set back to ``business_value=pending`` (before finance signed off), so the production
    gate refuses it on its value first, as in the quickstart's first refusal of ``churn:1``.
    """
    root = tmp_path_factory.mktemp("browser") / "demo"
    shutil.copytree(demo_template, root, symlinks=True)
    token = make_token(root, "browser-admin", "admin")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
            patch.delenv(name, raising=False)
        with Project(root) as project:
            project.registry.set_tags("churn:2", {"business_value": "pending"})
            first_run = project.runs.list(limit=10)[-1]
            dataset = next(d for d in project.datasets.list() if d.zone == "raw")
            job = project.predictions.jobs()[-1]
            report = MonitorResults(project.database).history("churn", 1)[-1]
            settings = ServeSettings(prediction_log=False, auth=True)
            server = LiveServer(create_app(project.registry, ["churn@production"], settings))
            server.start()
            try:
                yield Site(
                    root=root,
                    url=server.url,
                    token=token,
                    run_id=first_run.id,
                    step="train",
                    dataset=(dataset.zone, dataset.name, dataset.version),
                    job_id=job.id,
                    report_id=report.id,
                )
            finally:
                server.stop()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$SHIPYARD_TEST_ARTIFACTS/console``, else a temporary folder."""
    configured = os.environ.get("SHIPYARD_TEST_ARTIFACTS", "").strip()
    if configured:
        folder = Path(configured) / "console"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("console-screenshots")


@dataclass
class Watched:
    """A page whose console errors, uncaught exceptions and CSP violations are collected."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        # Chromium asks the server's root for /favicon.ico by itself when a page names no
        # icon; that answer (401 with auth on) is not the console's.
        where = str(message.location.get("url", ""))
        if message.type == "error" and not where.endswith("/favicon.ico"):
            self.errors.append(f"{message.text} (at {message.location.get('url', '?')})")

    def goto(self, url: str, status: int = 200) -> Any:
        answer = self.page.goto(url, wait_until="load")
        assert answer is not None, f"no answer for {url}"
        assert answer.status == status, f"{url}: HTTP {answer.status}, expected {status}"
        return answer

    def clean(self, *, allow: tuple[int, ...] = ()) -> None:
        """No console error so far (``allow``: Chromium's line for these statuses)."""
        errors = [e for e in self.errors if not _allowed(e, allow)]
        assert errors == [], f"console errors on {self.page.url}: {errors}"
        self.errors.clear()

    def shoot(self, folder: Path, name: str) -> None:
        self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _allowed(error: str, statuses: tuple[int, ...]) -> bool:
    found = _STATUS_LINE.match(error)
    return found is not None and int(found.group(1)) in statuses


def _context(browser: Any, *, javascript: bool = True) -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=javascript
    )
    context.add_init_script(_CSP_WATCH)
    context.set_default_timeout(30_000)
    return context


def _log_in(watched: Watched, site: Site, target: str = "/ui/") -> None:
    """Log in through the login page's form, coming from ``target``."""
    page = watched.page
    watched.goto(site.url + target)
    assert "/ui/login" in page.url, f"{target} without a session did not ask to log in"
    page.fill("#token", site.token)
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()
    assert page.url.startswith(site.url + target), page.url


@pytest.fixture
def admin(browser: Any, site: Site) -> Iterator[Watched]:
    """A page of a fresh browser context, logged in with the admin token."""
    context = _context(browser)
    try:
        watched = Watched(context.new_page())
        _log_in(watched, site)
        watched.clean()
        yield watched
    finally:
        context.close()


def test_log_in_through_the_form_shows_the_board(browser: Any, site: Site, artifacts: Path) -> None:
    context = _context(browser)
    try:
        watched = Watched(context.new_page())
        watched.goto(site.url + "/ui/login")
        watched.page.fill("#token", "not-a-token")
        with watched.page.expect_navigation():
            watched.page.locator("form button[type=submit]").click()
        assert watched.page.locator("p.error").is_visible()
        watched.clean(allow=(401,))
        _log_in(watched, site)
        page = watched.page
        for stage in ("poc", "prototype", "production"):
            assert page.locator(f"section#stage-{stage}").is_visible()
        assert page.locator('#stage-production article.model-card[data-model="churn"]').count() == 1
        assert page.locator('meta[name="csrf-token"]').count() == 1
        assert page.evaluate("() => typeof window.htmx") == "object", "htmx did not load"
        watched.clean()
        watched.shoot(artifacts, "board")
    finally:
        context.close()


def _pages(site: Site) -> dict[str, str]:
    zone, name, version = site.dataset
    return {
        "board": "/ui/",
        "model": "/ui/models/churn",
        "version": "/ui/models/churn/versions/2",
        "compare": "/ui/models/churn/compare?a=1&b=2",
        "runs": "/ui/runs",
        "run": f"/ui/runs/{site.run_id}",
        "step-log": f"/ui/runs/{site.run_id}/steps/{site.step}/log",
        "datasets": "/ui/datasets",
        "dataset": f"/ui/datasets/{zone}/{name}",
        "dataset-version": f"/ui/datasets/{zone}/{name}/{version}",
        "predictions": "/ui/predictions",
        "job": f"/ui/predictions/jobs/{site.job_id}",
        "monitoring": "/ui/monitoring",
        "monitoring-churn": "/ui/monitoring/churn",
    }


def test_every_page_opens_without_console_errors(
    admin: Watched, site: Site, artifacts: Path
) -> None:
    failures = []
    for name, path in _pages(site).items():
        answer = admin.page.goto(site.url + path, wait_until="load")
        status = answer.status if answer is not None else None
        errors = list(admin.errors)
        admin.errors.clear()
        if status != 200 or errors:
            failures.append(f"{path}: HTTP {status}, console errors {errors}")
        layout = admin.page.locator("header.top nav")
        if status == 200 and not layout.is_visible():
            failures.append(f"{path}: no console layout in {admin.page.content()[:400]!r}")
        admin.shoot(artifacts, name)
    assert failures == [], "\n".join(failures)


def test_monitoring_page_embeds_the_latest_report(admin: Watched, site: Site) -> None:
    admin.goto(site.url + "/ui/monitoring/churn")
    frame = admin.page.locator("iframe.report")
    assert frame.count() == 1
    assert frame.get_attribute("src") == f"/ui/monitoring/churn/reports/{site.report_id}"
    assert admin.page.locator("div.chart .uplot").count() >= 1, "no chart was drawn"
    inner = admin.page.frame_locator("iframe.report").locator("body")
    assert inner.inner_text(timeout=15_000).strip(), "the embedded report is empty"
    admin.clean()


def test_paging_swaps_the_table_in_place(admin: Watched, site: Site) -> None:
    page = admin.page
    admin.goto(site.url + "/ui/runs?limit=1")
    first = page.locator("#runs-table tr.run").get_attribute("data-run")
    page.evaluate("() => { window.notReloaded = true; }")
    page.locator('#runs-table [data-testid="next-page"]').click()
    page.wait_for_url("**/ui/runs?*offset=1*")
    page.wait_for_function(
        "first => document.querySelector('#runs-table tr.run')?.dataset.run !== first", arg=first
    )
    assert page.evaluate("() => window.notReloaded === true"), "paging reloaded the whole page"
    assert page.locator("#runs-table tr.run").count() == 1
    admin.clean()


def _rule_states(page: Any) -> dict[str, str]:
    """The gate refusal's rules and their outcome (``passed``, ``failed``...)."""
    rows = page.locator("#gate-refusal tr.rule")
    return {
        rows.nth(i).locator("code").inner_text(): str(rows.nth(i).get_attribute("data-status"))
        for i in range(rows.count())
    }


def _promote(watched: Watched, to: str, *, reason: str = "", force: bool = False) -> Any:
    """Submit the version page's promote form; the answer of the navigation."""
    page = watched.page
    form = page.locator("#promote-form")
    form.locator('select[name="to"]').select_option(to)
    if reason:
        form.locator('[name="reason"]').fill(reason)
    if force:
        form.locator('[name="force"]').check()
    with page.expect_navigation() as navigation:
        page.locator("#promote-submit").click()
    return navigation.value


def test_refused_approved_then_forced_promotion_moves_the_board(
    admin: Watched, site: Site, artifacts: Path
) -> None:
    page = admin.page
    version_page = site.url + "/ui/models/churn/versions/2"
    admin.goto(version_page)

    # 1. production refuses the challenger: its value is not approved, and it is worth less
    answer = _promote(admin, "production", reason="challenger from the browser")
    assert answer.status == 409
    assert page.locator("#gate-refusal").is_visible()
    refused = _rule_states(page)
    failed = {rule for rule, state in refused.items() if state == "failed"}
    assert any("business_value" in rule for rule in failed), refused
    assert "net_per_period >= production.net_per_period * 0.95" in failed, refused
    assert refused["roc_auc >= 0.80"] == "passed", refused
    admin.clean(allow=(409,))
    admin.shoot(artifacts, "gate-refusal")

    # 2. finance approves its value
    admin.goto(version_page)
    with page.expect_navigation() as navigation:
        page.locator("#approve-value").click()
    assert navigation.value.status == 200
    assert "done=" in page.url
    admin.clean()

    # 3. refused again, on the metric rule only
    answer = _promote(admin, "production", reason="value approved")
    assert answer.status == 409
    again = _rule_states(page)
    failed = {rule for rule, state in again.items() if state == "failed"}
    assert failed == {"net_per_period >= production.net_per_period * 0.95"}, again
    admin.clean(allow=(409,))

    # 4. forced with a reason: promoted, recorded as forced
    admin.goto(version_page)
    answer = _promote(admin, "production", reason="worth less per month, safer model", force=True)
    assert answer.status == 200
    assert "done=" in page.url
    admin.clean()

    # 5. the board shows churn:2 in production
    admin.goto(site.url + "/ui/")
    card = page.locator('#stage-production article.model-card[data-model="churn"]')
    assert card.get_attribute("data-version") == "2"
    admin.clean()
    admin.shoot(artifacts, "board-after-promotion")
    admin.goto(site.url + "/ui/models/churn")
    outcomes = page.locator("#history tr.decision").evaluate_all(
        "rows => rows.map(r => r.dataset.outcome)"
    )
    assert "forced" in outcomes or page.locator("#history .badge.warn").count() > 0, outcomes
    admin.clean()


def test_log_out_then_pages_ask_to_log_in(admin: Watched, site: Site) -> None:
    page = admin.page
    page.locator("header.top .who a", has_text="log out").click()
    page.wait_for_url("**/ui/logout")
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()
    assert "/ui/login" in page.url
    admin.goto(site.url + "/ui/models/churn")
    assert "/ui/login" in page.url
    assert page.locator("#token").is_visible()
    admin.clean()


class _PastSigner(TimestampSigner):
    """Signs as if nine hours ago: a session past its eight hours."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 9 * 3600


@pytest.mark.parametrize("kind", ["expired", "tampered"])
def test_expired_or_tampered_session_goes_to_the_login_page(
    browser: Any, site: Site, kind: str
) -> None:
    key = signing_key(site.root)
    payload = {"n": "browser-admin", "s": ["admin"], "h": "0" * 64, "c": "x"}
    serializer = URLSafeTimedSerializer(key, salt="shipyard.console.session", signer=_PastSigner)
    cookie = serializer.dumps(payload) if kind == "expired" else "e30.bm90LXNpZ25lZA.AAAA"
    context = _context(browser)
    try:
        # where the login sets it: the console's mount point
        context.add_cookies(
            [{"name": COOKIE, "value": cookie, "domain": "127.0.0.1", "path": "/ui"}]
        )
        watched = Watched(context.new_page())
        watched.goto(site.url + "/ui/models/churn")
        page = watched.page
        assert "/ui/login" in page.url, page.url
        assert "expired=1" in page.url
        assert page.locator("p.note").is_visible()
        assert not [c for c in context.cookies() if c["name"] == COOKIE]
        watched.clean()
    finally:
        context.close()


def test_board_reads_without_javascript(browser: Any, site: Site, artifacts: Path) -> None:
    context = _context(browser, javascript=False)
    try:
        watched = Watched(context.new_page())
        _log_in(watched, site)
        cards = watched.page.locator("article.model-card")
        assert cards.count() >= 1
        assert watched.page.locator('article.model-card[data-model="churn"]').is_visible()
        watched.clean()
        watched.shoot(artifacts, "board-no-javascript")
        # paging is a plain link without JavaScript
        watched.goto(site.url + "/ui/runs?limit=1")
        first = watched.page.locator("#runs-table tr.run").get_attribute("data-run")
        with watched.page.expect_navigation():
            watched.page.locator('#runs-table [data-testid="next-page"]').click()
        assert "offset=1" in watched.page.url
        assert watched.page.locator("#runs-table tr.run").get_attribute("data-run") != first
        watched.clean()
    finally:
        context.close()
