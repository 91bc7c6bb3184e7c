"""The console's doors: logging in with a token, the signed session cookie, CSRF, rights,
error pages, and ``shipyard ui``."""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from tests.serving.console.conftest import console_client, csrf_of, login, make_token

from shipyard import Project
from shipyard.registry.tokens import TokenStore, hash_token
from shipyard.serving.app import create_app
from shipyard.serving.console.session import COOKIE, SECRET_ENV, signing_key
from shipyard.serving.settings import ServeSettings

pytestmark = pytest.mark.anyio


async def test_login_sets_a_signed_http_only_cookie_and_goes_back(demo: Path) -> None:
    token = make_token(demo, "ops", "admin")
    async with console_client(demo) as client:
        answer = await client.post("/ui/login", data={"token": token, "next": "/ui/runs"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/runs"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/ui" in cookie
        assert token not in cookie  # only the token's fingerprint travels
        page = await client.get("/ui/login")
        assert "ops (admin)" in page.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/elsewhere"])
async def test_login_never_redirects_off_the_console(demo: Path, target: str) -> None:
    token = make_token(demo, "ops", "admin")
    async with console_client(demo) as client:
        answer = await client.post("/ui/login", data={"token": token, "next": target})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/"


@pytest.mark.parametrize("token", ["", "not-a-token"])
async def test_a_bad_token_is_refused_on_the_login_page(demo: Path, token: str) -> None:
    async with console_client(demo) as client:
        answer = await client.post("/ui/login", data={"token": token})
        assert answer.status_code == 401
        assert 'role="alert"' in answer.text
        assert COOKIE not in answer.headers.get("set-cookie", "")


async def test_a_revoked_token_ends_its_sessions_at_once(demo: Path) -> None:
    token = make_token(demo, "ops", "admin")
    async with console_client(demo) as client:
        await login(client, token)
        with Project(demo) as project:
            TokenStore(project.database).revoke("ops")
        answer = await client.get("/ui/logout")
        assert answer.status_code == 303
        assert "expired=1" in answer.headers["location"]


async def test_a_tampered_or_foreign_cookie_sends_to_the_login_page(demo: Path) -> None:
    token = make_token(demo, "ops", "admin")
    async with console_client(demo) as client:
        await login(client, token)
        value = client.cookies[COOKIE]
        client.cookies.clear()
        client.cookies.set(COOKIE, value[:-3] + "AAA", path="/ui")
        answer = await client.get("/ui/logout")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?")
        assert "expired=1" in answer.headers["location"]


async def test_an_expired_session_sends_to_the_login_page_saying_so(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token(demo, "ops", "admin")
    serializer = URLSafeTimedSerializer(signing_key(demo), salt="shipyard.console.session")
    earlier = time.time() - 9 * 3600  # sessions last 8 hours
    with monkeypatch.context() as patch:
        patch.setattr("itsdangerous.timed.time.time", lambda: earlier)
        old = serializer.dumps({"n": "ops", "s": ["admin"], "h": hash_token(token), "c": "x"})
    async with console_client(demo) as client:
        client.cookies.set(COOKIE, old, path="/ui")
        answer = await client.get("/ui/logout")
        assert answer.status_code == 303
        target = answer.headers["location"]
        assert "expired=1" in target
        assert "next=%2Fui%2Flogout" in target
        page = await client.get(target)
        assert "Your session ended" in page.text


async def test_with_auth_on_reading_needs_a_session_with_read(demo: Path) -> None:
    reader = make_token(demo, "viewer", "read")
    predictor = make_token(demo, "app", "predict")
    async with console_client(demo, auth=True) as client:
        answer = await client.get("/ui/logout")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login?next=%2Fui%2Flogout"
        htmx = await client.get("/ui/logout", headers={"hx-request": "true"})
        assert htmx.status_code == 204
        assert htmx.headers["hx-redirect"].startswith("/ui/login")
        await login(client, predictor)
        refused = await client.get("/ui/logout")
        assert refused.status_code == 403
        assert "lacks the 'read' scope" in html.unescape(refused.text)
        client.cookies.clear()
        await login(client, reader)
        assert (await client.get("/ui/logout")).status_code == 200


async def test_logging_out_needs_the_csrf_field_and_clears_the_cookie(demo: Path) -> None:
    token = make_token(demo, "viewer", "read")
    async with console_client(demo) as client:
        csrf = await login(client, token)
        refused = await client.post("/ui/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403
        assert "CSRF" in refused.text
        answer = await client.post("/ui/logout", data={"csrf": csrf})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login"
        assert 'shipyard_session=""' in answer.headers["set-cookie"]


async def test_errors_are_pages_with_their_status_never_a_trace(demo: Path) -> None:
    async with console_client(demo) as client:
        missing = await client.get("/ui/no-such-page")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "there is no console page at /ui/no-such-page" in missing.text
        wrong_method = await client.delete("/ui/login")
        assert wrong_method.status_code == 405
        assert "Traceback" not in missing.text + wrong_method.text


async def test_pages_carry_security_headers_and_only_our_scripts(demo: Path) -> None:
    async with console_client(demo) as client:
        answer = await client.get("/ui/login")
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'self'" in csp
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"
        assert answer.headers["cache-control"] == "no-store"
        assert '<script src="/ui/static/htmx.min.js"' in answer.text
        assert "<script>" not in answer.text


async def test_the_root_leads_to_the_console_and_the_api_is_untouched(demo: Path) -> None:
    async with console_client(demo) as client:
        root = await client.get("/")
        assert root.status_code == 307
        assert root.headers["location"] == "/ui/"
        assert (await client.get("/v1/models")).json() == {"models": []}
        assert (await client.get("/health/ready")).status_code == 200


def test_the_session_key_is_kept_private_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first = signing_key(tmp_path)
    assert signing_key(tmp_path) == first
    key_file = tmp_path / ".shipyard" / "console.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(SECRET_ENV, "from-the-environment")
    assert signing_key(tmp_path) == "from-the-environment"
    monkeypatch.delenv(SECRET_ENV)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert len(signing_key(blocked)) >= 32  # cannot write: a per-process key, sessions still work


async def test_a_cookie_signed_with_another_key_is_refused(demo: Path) -> None:
    forged = URLSafeTimedSerializer("guessed", salt="shipyard.console.session").dumps(
        {"n": "root", "s": ["admin"], "h": "0" * 64, "c": "x"}
    )
    async with console_client(demo) as client:
        client.cookies.set(COOKIE, forged, path="/ui")
        answer = await client.get("/ui/logout")
        assert answer.status_code == 303
        assert "expired=1" in answer.headers["location"]
        assert (await client.get("/ui/login")).status_code == 200  # the cookie was cleared


async def test_csrf_of_reads_the_meta_tag(demo: Path) -> None:
    token = make_token(demo, "ops", "admin")
    async with console_client(demo) as client:
        csrf = await login(client, token)
        assert csrf == await csrf_of(client, "/ui/logout")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_shipyard_ui_serves_the_console_without_a_model(demo: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        str(Path(sys.executable).parent / "shipyard"),
        "ui",
        "--port",
        str(port),
        "-p",
        str(demo),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/ui/login", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.communicate()[0]) from None
                time.sleep(0.2)
        assert answer.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/predictions?limit=1").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"console: http://127.0.0.1:{port}/ui/" in output


async def test_console_off_leaves_ui_and_root_out(demo: Path) -> None:
    settings = ServeSettings(console=False, prediction_log=False)
    with Project(demo) as project:
        app = create_app(project.registry, [], settings, console_only=True)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                for path in ("/", "/ui/login"):
                    answer = await client.get(path)
                    assert answer.status_code == 404
                    assert answer.json()["type"] == "NotFoundError"
