"""API tokens on a real app: 401 / 403 by scope, and revocation at the next refresh."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.auth import required_scope

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/models/churn/predict", "predict"),
        ("POST", "/v1/models/churn/versions/1/predict", "predict"),
        ("POST", "/invocations", "predict"),
        ("POST", "/v2/models/churn/infer", "predict"),
        ("POST", "/v2/models/churn/versions/1/infer", "predict"),
        ("GET", "/v1/models", "read"),
        ("GET", "/v2/models/churn", "read"),
        ("GET", "/v2", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/health/live", None),
        ("GET", "/health/ready", None),
        ("GET", "/ping", None),
        ("GET", "/health", None),
        ("GET", "/v2/health/live", None),
        ("GET", "/v2/health/ready", None),
    ],
)
def test_routes_need_the_documented_scope(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_auth_is_off_by_default(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    app = create_app(served_project.registry, ["churn@production"])
    assert app.state.server.auth is None
    async with serving(app) as client:
        assert (
            await client.post("/v1/models/churn/predict", content=records(frame[:1]))
        ).is_success
        assert (await client.get("/metrics")).is_success
        assert (await client.get("/v1/models")).is_success


async def test_tokens_and_scopes_are_enforced(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    tokens = served_project.tokens
    predict, _ = tokens.create("enf-predict", ["predict"], "tester")
    read, _ = tokens.create("enf-read", ["read"], "tester")
    admin, _ = tokens.create("enf-admin", ["admin"], "tester")
    body = records(frame[:2])
    mlflow = {"dataframe_split": frame.dropna()[:2].to_dict(orient="split")}
    mlflow["dataframe_split"].pop("index")
    app = create_app(served_project.registry, ["churn@production"], ServeSettings(auth=True))
    async with serving(app) as client:
        # health stays open
        for path in ("/health/live", "/health/ready", "/ping", "/v2/health/ready"):
            assert (await client.get(path)).status_code == 200, path
        # no token, a malformed header, a wrong token: 401 with a challenge
        for headers in ({}, {"authorization": "Basic abc"}, bearer("shp_wrong")):
            for response in (
                await client.post("/v1/models/churn/predict", content=body, headers=headers),
                await client.post(
                    "/v1/models/churn/versions/1/predict", content=body, headers=headers
                ),
                await client.get("/metrics", headers=headers),
            ):
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
                assert "error" in response.json()
                assert "x-request-id" in response.headers
        missing = await client.get("/v1/models")
        assert "Authorization: Bearer" in missing.json()["error"]
        # predict scope: predicts on every protocol, 403 on read routes
        fast = await client.post("/v1/models/churn/predict", content=body, headers=bearer(predict))
        assert fast.status_code == 200
        assert (await client.post("/invocations", json=mlflow, headers=bearer(predict))).is_success
        for path in ("/metrics", "/v1/models", "/v2/models/churn"):
            denied = await client.get(path, headers=bearer(predict))
            assert denied.status_code == 403, path
            assert "'read' scope" in denied.json()["error"]
        # read scope: reads, 403 on predict
        assert (await client.get("/metrics", headers=bearer(read))).status_code == 200
        assert (await client.get("/v1/models", headers=bearer(read))).status_code == 200
        for path in ("/v1/models/churn/predict", "/v1/models/churn/versions/1/predict"):
            denied = await client.post(path, content=body, headers=bearer(read))
            assert denied.status_code == 403
            assert "'predict' scope" in denied.json()["error"]
        denied = await client.post("/invocations", json=mlflow, headers=bearer(read))
        assert denied.status_code == 403
        # admin: everything
        assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
        ok = await client.post("/v1/models/churn/predict", content=body, headers=bearer(admin))
        assert ok.status_code == 200
        # refused requests are counted under their status, the secret is in no answer
        metrics = (await client.get("/metrics", headers=bearer(read))).text
        assert 'status="401"' in metrics
        assert predict not in metrics


async def test_refusals_are_the_servers_one_error_body(
    served_project: Project, trained: Trained
) -> None:
    """401, 403 (and 503, below) answer ``{"error", "type", "request_id"}`` as every other
    error does, on the fast path and through FastAPI alike."""
    _, frame, _ = trained
    read, _ = served_project.tokens.create("body-read", ["read"], "tester")
    body = records(frame[:1])
    app = create_app(served_project.registry, ["churn@production"], ServeSettings(auth=True))
    async with serving(app) as client:
        for path in ("/v1/models/churn/predict", "/v1/models/churn/versions/1/predict"):
            for headers, status, kind in (
                ({}, 401, "UnauthorizedError"),
                (bearer("shp_wrong"), 401, "UnauthorizedError"),
                (bearer(read), 403, "ForbiddenError"),
            ):
                answer = await client.post(
                    path, content=body, headers={**headers, "x-request-id": "rid-1"}
                )
                assert answer.status_code == status, path
                assert answer.json() == {
                    "error": answer.json()["error"],
                    "type": kind,
                    "request_id": "rid-1",
                }
        missing = await client.get("/metrics")
        assert missing.json()["type"] == "UnauthorizedError"
        assert missing.json()["request_id"] == missing.headers["x-request-id"]


async def test_a_revoked_token_stops_working_at_the_next_refresh(
    served_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    tokens = served_project.tokens
    token, _ = tokens.create("rev-predict", ["predict"], "tester")
    app = create_app(served_project.registry, ["churn"], ServeSettings(auth=True))
    body = records(frame[:1])
    async with serving(app) as client:
        ok = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert ok.status_code == 200
        tokens.revoke("rev-predict")
        cached = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert cached.status_code == 200  # no query per request: known until the refresh
        await app.state.server.auth.refresh()
        gone = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert gone.status_code == 401
        # a token made while the server runs works after the refresh too
        fresh, _ = tokens.create("rev-fresh", ["predict"], "tester")
        await app.state.server.auth.refresh()
        assert (
            await client.post("/v1/models/churn/predict", content=body, headers=bearer(fresh))
        ).status_code == 200
    used = {t.name: t.last_used_at for t in tokens.list()}
    assert used["rev-predict"] is not None
    assert used["rev-fresh"] is not None  # written at shutdown


async def test_tokens_that_cannot_be_refreshed_fail_closed_after_the_grace(
    served_project: Project, trained: Trained
) -> None:
    import asyncio

    import sqlalchemy as sa

    _, frame, _ = trained
    token, _ = served_project.tokens.create("closed", ["predict"], "tester")
    settings = ServeSettings(auth=True, token_refresh_s=0.05, token_grace_s=0.1)
    app = create_app(served_project.registry, ["churn"], settings)
    body = records(frame[:1])
    engine = served_project.database.engine
    async with serving(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        with engine.begin() as connection:  # the token store becomes unreadable
            connection.execute(sa.text("ALTER TABLE api_tokens RENAME TO api_tokens_away"))
        try:
            for _ in range(100):
                refused = await client.post(
                    "/v1/models/churn/predict", content=body, headers=bearer(token)
                )
                if refused.status_code != 200:
                    break
                await asyncio.sleep(0.05)
            assert refused.status_code == 503
            assert "could not be refreshed" in refused.json()["error"]
            assert refused.json()["type"] == "ServiceUnavailableError"
            assert refused.json()["request_id"] == refused.headers["x-request-id"]
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "tokens stale"
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text("ALTER TABLE api_tokens_away RENAME TO api_tokens"))
        await app.state.server.auth.refresh()
        back = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert back.status_code == 200
        assert (await client.get("/health/ready")).status_code == 200


async def test_redirects_never_point_at_the_request_host(
    served_project: Project, trained: Trained
) -> None:
    evil = {"host": "evil.example"}
    app = create_app(served_project.registry, ["churn"])
    async with serving(app) as client:
        relative = await client.post("/invocations/", json={}, headers=evil)
    assert relative.status_code == 307
    assert relative.headers["location"] == "/invocations"
    public = ServeSettings(public_url="https://models.example.com")
    app = create_app(served_project.registry, ["churn"], public)
    async with serving(app) as client:
        absolute = await client.post("/invocations/?x=1", json={}, headers=evil)
    assert absolute.headers["location"] == "https://models.example.com/invocations?x=1"


async def test_a_token_limited_to_a_model_predicts_on_it_only(
    served_project: Project, trained: Trained
) -> None:
    model, frame, _ = trained
    registry = served_project.registry
    if "fraud" not in [m.name for m in registry.list_models()]:
        registry.register("fraud", model, input_example=frame, trust=True)
    tokens = served_project.tokens
    churn_only, info = tokens.create("only-churn", ["predict"], "tester", models=["churn"])
    assert info.models == ("churn",)
    app = create_app(registry, ["churn", "fraud"], ServeSettings(auth=True))
    rows = frame[:1]
    split = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    async with serving(app) as client:
        for name, status in (("churn", 200), ("fraud", 403)):
            native = await client.post(
                f"/v1/models/{name}/predict", content=records(rows), headers=bearer(churn_only)
            )
            assert native.status_code == status, native.text
            mlflow = await client.post(
                f"/invocations?model={name}", json=split, headers=bearer(churn_only)
            )
            assert mlflow.status_code == status, mlflow.text
        refused = (
            await client.post(
                "/v1/models/fraud/predict", content=records(rows), headers=bearer(churn_only)
            )
        ).json()
        assert "may only be used for the model(s) churn, not 'fraud'" in refused["error"]
        assert refused["type"] == "ForbiddenError"
        for name, status in (("churn", 200), ("fraud", 403)):
            label = {"model": name, "labels": [{"key": "k-1", "label": 1}]}
            fed = await client.post("/v1/feedback", json=label, headers=bearer(churn_only))
            assert fed.status_code == status, fed.text
