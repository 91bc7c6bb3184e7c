"""Fixtures for the console's tests: the demo project (built once), copies of it to change,
an in-process client with a session, and helpers to log in and read a form's CSRF field.

The demo project is what ``make demo`` leaves: runs, two versions of ``churn`` (one in
production, a challenger refused on value), their decisions, a batch job, logged
predictions and a monitoring report on a drifted month.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from shipyard import Project
from shipyard.demo.quickstart import run_quickstart
from shipyard.registry.tokens import TokenStore
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project, built once per test process; copy it before changing it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
            patch.delenv(name, raising=False)
        patch.setenv("SHIPYARD_USER", "console-test")
        directory = tmp_path_factory.mktemp("console") / "demo"
        run_quickstart(directory, Console(file=io.StringIO(), width=120))
    return directory


@pytest.fixture
def demo(demo_template: Path, tmp_path: Path) -> Path:
    """A copy of the demo project of this test's own (its database and artifacts included)."""
    target = tmp_path / "demo"
    shutil.copytree(demo_template, target, symlinks=True)
    return target


def make_token(root: Path, name: str, *scopes: str) -> str:
    """A new API token of the project at ``root`` with ``scopes``: its secret."""
    with Project(root) as project:
        secret, _info = TokenStore(project.database).create(name, list(scopes), "console-test")
    return secret


@asynccontextmanager
async def console_client(
    root: Path, *, auth: bool = False, refs: tuple[str, ...] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app of project ``root`` (the console at /ui), its lifespan running.

    ``refs`` empty: the console and read APIs only (``shipyard ui``).
    """
    settings = ServeSettings(auth=auth, prediction_log=False, token_refresh_s=0.2)
    with Project(root) as project:
        app = create_app(project.registry, list(refs), settings, console_only=not refs)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
                yield client


async def login(client: httpx.AsyncClient, token: str) -> str:
    """Log ``client`` in with ``token``; the session's CSRF secret."""
    answer = await client.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return await csrf_of(client)


async def csrf_of(client: httpx.AsyncClient, path: str = "/ui/login") -> str:
    """The CSRF secret a page of the session carries (its ``csrf-token`` meta tag)."""
    page = await client.get(path)
    found = _CSRF.search(page.text)
    assert found is not None, f"no csrf-token meta tag on {path}: {page.status_code}"
    return found.group(1)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


def chromium_path() -> str | None:
    """Debian's chromium, which Playwright drives (it never downloads its own)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium driven by Playwright (skips when chromium is not installed)."""
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()
