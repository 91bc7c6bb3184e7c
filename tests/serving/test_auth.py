"""API tokens: hashed storage (SQLite, PostgreSQL) and 401 / 403 on a real app."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.core.exceptions import ConflictError, InvalidArgumentError, NotFoundError
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.auth import (
    create_token,
    hash_token,
    list_tokens,
    required_scope,
    revoke_token,
)
from shipyard.store import Database
from shipyard.store.tables import ApiToken

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed_and_revoked_by_name(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        secret, info = create_token(database, "ci", ["read", "predict", "read"], "tester")
        assert secret.startswith("shp_")
        assert len(secret) > 40
        assert info.scopes == ("predict", "read")
        with database.session() as session:
            row = session.scalars(sa.select(ApiToken)).one()
            assert row.token_hash == hash_token(secret)
            assert secret not in repr(row.__dict__)
            assert row.created_by == "tester"
        with pytest.raises(ConflictError, match="active token called 'ci'"):
            create_token(database, "ci", ["read"], "tester")
        with pytest.raises(InvalidArgumentError, match="unknown scope"):
            create_token(database, "x", ["write"], "tester")
        with pytest.raises(InvalidArgumentError, match="at least one scope"):
            create_token(database, "x", [], "tester")
        assert revoke_token(database, "ci").revoked_at is not None
        with pytest.raises(NotFoundError, match="no active token"):
            revoke_token(database, "ci")
        again, _ = create_token(database, "ci", ["admin"], "tester")  # the name is free again
        assert again != secret
        listed = list_tokens(database)
        assert [(t.name, t.active) for t in listed] == [("ci", False), ("ci", True)]
        assert [t.name for t in list_tokens(database, include_revoked=False)] == ["ci"]
    finally:
        database.dispose()


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
    assert app.state.auth is None
    async with serving(app) as client:
        assert (
            await client.post("/v1/models/churn/predict", content=records(frame[:1]))
        ).is_success
        assert (await client.get("/metrics")).is_success
        assert (await client.get("/v1/models")).is_success


async def test_tokens_and_scopes_are_enforced(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    database = served_project.database
    predict, _ = create_token(database, "enf-predict", ["predict"], "tester")
    read, _ = create_token(database, "enf-read", ["read"], "tester")
    admin, _ = create_token(database, "enf-admin", ["admin"], "tester")
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


async def test_a_revoked_token_stops_working_at_the_next_refresh(
    served_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    database = served_project.database
    token, _ = create_token(database, "rev-predict", ["predict"], "tester")
    app = create_app(served_project.registry, ["churn"], ServeSettings(auth=True))
    body = records(frame[:1])
    async with serving(app) as client:
        ok = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert ok.status_code == 200
        revoke_token(database, "rev-predict")
        cached = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert cached.status_code == 200  # no query per request: known until the refresh
        await app.state.auth.refresh()
        gone = await client.post("/v1/models/churn/predict", content=body, headers=bearer(token))
        assert gone.status_code == 401
        # a token made while the server runs works after the refresh too
        fresh, _ = create_token(database, "rev-fresh", ["predict"], "tester")
        await app.state.auth.refresh()
        assert (
            await client.post("/v1/models/churn/predict", content=body, headers=bearer(fresh))
        ).status_code == 200
    used = {t.name: t.last_used_at for t in list_tokens(database)}
    assert used["rev-predict"] is not None
    assert used["rev-fresh"] is not None  # written at shutdown
