"""Canary splits and shadow mirrors, their settings, and the command-line syntax."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.core.exceptions import ConfigError
from shipyard.core.refs import ModelRef
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.routing import (
    Canary,
    CanarySettings,
    RoutingSettings,
    ShadowSettings,
    alias_versions,
    parse_canary_option,
    parse_routing,
    parse_shadow_option,
)

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture(scope="module")
def routed_project(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Iterator[Project]:
    """``churn`` v1 (production), v2 (same model), v3 (always "0"), v4 (an extra column)."""
    model, frame, target = trained
    root = tmp_path_factory.mktemp("routing")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        registry = project.registry
        registry.register("churn", model, input_example=frame, trust=True)
        registry.register("churn", model, input_example=frame, trust=True)
        constant = DummyClassifier(strategy="constant", constant=target[0]).fit(frame, target)
        registry.register("churn", constant, input_example=frame, trust=True)
        wider = frame.assign(extra=1.0)
        registry.register("churn", model.fit(wider, target), input_example=wider, trust=True)
        model.fit(frame, target)  # the session fixture is shared: leave it as it was
        registry.promote("churn:1", to="production")
        registry.set_alias("churn:2", "challenger")
        yield project


def routed_app(project: Project, **routing: object) -> object:
    settings = ServeSettings(routing=RoutingSettings.model_validate(routing))
    return create_app(project.registry, ["churn@production"], settings)


async def post_many(
    client: httpx.AsyncClient, body: bytes, ids: list[str | None], ref: str = "churn"
) -> list[int]:
    """The answering version of one request per id (``None``: no x-request-id)."""
    versions: list[int] = []
    for start in range(0, len(ids), 100):
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/models/{ref}/predict",
                    content=body,
                    headers={"x-request-id": rid} if rid is not None else {},
                )
                for rid in ids[start : start + 100]
            )
        )
        assert {a.status_code for a in answers} == {200}
        versions += [a.json()["version"] for a in answers]
    return versions


def requests_by_version(app: object) -> dict[str, float]:
    registry = app.state.server.metrics.registry  # type: ignore[attr-defined]
    return {
        version: registry.get_sample_value(
            "shipyard_requests_total",
            {"model": "churn", "version": version, "protocol": "native", "status": "200"},
        )
        or 0.0
        for version in ("1", "2")
    }


# -- canary -------------------------------------------------------------------------------


async def test_canary_sends_its_share_to_the_challenger(
    routed_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = routed_app(routed_project, canary={"churn": {"target": "churn:2", "percent": 20}})
    async with serving(app) as client:  # type: ignore[arg-type]
        versions = await post_many(client, records(frame.head(1)), [None] * 2000)
        pinned = await post_many(client, records(frame.head(1)), [None] * 50, ref="churn:1")
        listing = (await client.get("/v1/models")).json()["models"]
    share = versions.count(2) / len(versions)
    assert 0.16 <= share <= 0.24
    assert set(versions) == {1, 2}
    assert set(pinned) == {1}  # a pinned version is never split
    assert [m["version"] for m in listing] == [1, 2]
    split = requests_by_version(app)
    assert split["2"] == versions.count(2)
    assert split["1"] == versions.count(1) + 50


async def test_canary_is_stable_per_request_id(routed_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    app = routed_app(
        routed_project, canary={"churn": {"target": "churn@challenger", "percent": 20}}
    )
    ids = [f"req-{i}" for i in range(2000)]
    async with serving(app) as client:  # type: ignore[arg-type]
        first = await post_many(client, records(frame.head(1)), ids)
        again = await post_many(client, records(frame.head(1)), ids)
        by_alias = await post_many(
            client, records(frame.head(1)), ids[:200], ref="churn@production"
        )
    assert first == again
    assert by_alias == first[:200]  # the champion's alias is split the same way
    assert 0.16 <= first.count(2) / len(first) <= 0.24


def test_canary_split_by_hash_is_deterministic_and_even() -> None:
    canary = Canary("churn:2", 10)
    picks = [canary.takes(f"id-{i}") for i in range(20_000)]
    assert picks == [canary.takes(f"id-{i}") for i in range(20_000)]
    assert 0.09 <= sum(picks) / len(picks) <= 0.11
    assert not any(Canary("churn:2", 0).takes(f"id-{i}") for i in range(1000))
    assert all(Canary("churn:2", 100).takes(f"id-{i}") for i in range(1000))


# -- shadow -------------------------------------------------------------------------------


def shadow_counts(app: object, version: str) -> dict[str, float]:
    registry = app.state.server.metrics.registry  # type: ignore[attr-defined]
    return {
        agreement: registry.get_sample_value(
            "shipyard_shadow_requests_total",
            {"model": "churn", "shadow_version": version, "agreement": agreement},
        )
        or 0.0
        for agreement in ("same", "different", "error")
    }


@pytest.mark.parametrize("target", ["churn:2", "churn:3"], ids=["identical", "constant"])
async def test_shadow_answers_from_the_champion_and_counts_agreement(
    routed_project: Project, trained: Trained, target: str
) -> None:
    _, frame, _ = trained
    app = routed_app(routed_project, shadow={"churn": {"target": target}})
    bodies = [records(frame.iloc[i : i + 1]) for i in range(300)]
    answers: list[httpx.Response] = []
    async with serving(app) as client:  # type: ignore[arg-type]
        for start in range(0, 300, 50):  # fewer pending shadows at once than the drop limit
            answers += await asyncio.gather(
                *(client.post("/v1/models/churn/predict", content=b) for b in bodies[start:][:50])
            )
    # The lifespan's shutdown waited for every pending shadow prediction.
    counts = shadow_counts(app, target.split(":")[1])
    # On a loaded machine the shadow thread can fall behind: mirrors beyond the pending
    # limit are dropped and counted, never queued without bound.
    dropped = (
        app.state.server.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
            "shipyard_shadow_dropped_total", {"model": "churn"}
        )
        or 0.0
    )
    assert {a.json()["version"] for a in answers} == {1}
    assert sum(counts.values()) + dropped == 300
    assert counts["error"] == 0
    if target == "churn:2":  # the same model: every answer agrees
        assert counts["same"] == 300 - dropped
    else:  # always one class: agrees on that class's rows only
        assert 0 < counts["same"] < 300


async def test_shadows_pending_beyond_the_limit_are_dropped_and_counted(
    routed_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = routed_app(routed_project, shadow={"churn": {"target": "churn:2"}})
    async with serving(app) as client:  # type: ignore[arg-type]
        answers = await asyncio.gather(
            *(
                client.post("/v1/models/churn/predict", content=records(frame.head(1)))
                for _ in range(600)
            )
        )
    registry = app.state.server.metrics.registry  # type: ignore[attr-defined]
    dropped = registry.get_sample_value("shipyard_shadow_dropped_total", {"model": "churn"})
    assert {a.status_code for a in answers} == {200}
    assert sum(shadow_counts(app, "2").values()) + (dropped or 0) == 600


async def test_a_failing_shadow_never_touches_the_answers(
    routed_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    body = records(frame.head(5))
    plain = create_app(routed_project.registry, ["churn@production"])
    async with serving(plain) as client:
        expected = (await client.post("/v1/models/churn/predict", content=body)).json()
    app = routed_app(routed_project, shadow={"churn": {"target": "churn:4"}})  # needs "extra"
    async with serving(app) as client:  # type: ignore[arg-type]
        answers = await asyncio.gather(
            *(client.post("/v1/models/churn/predict", content=body) for _ in range(50))
        )
    assert all(a.status_code == 200 for a in answers)
    assert all(a.json()["predictions"] == expected["predictions"] for a in answers)
    assert shadow_counts(app, "4") == {"same": 0.0, "different": 0.0, "error": 50.0}


async def test_shadow_answers_are_logged_with_the_shadow_flag(
    routed_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = routed_app(routed_project, shadow={"churn": {"target": "churn:2"}})
    logged: list[tuple[str, int, str, bool]] = []

    class Log:
        def record(self, model: str, version: int, request_id: str, *args: object,
                   shadow: bool = False) -> None:  # fmt: skip
            logged.append((model, version, request_id, shadow))

    async with serving(app) as client:  # type: ignore[arg-type]
        app.state.server.models.shadow_log = Log()  # type: ignore[attr-defined]
        await client.post(
            "/v1/models/churn/predict",
            content=records(frame.head(2)),
            headers={"x-request-id": "abc"},
        )
    assert logged == [("churn", 2, "abc", True)]


# -- settings -----------------------------------------------------------------------------


def test_parse_routing_reads_the_serving_tables() -> None:
    parsed = parse_routing(
        {
            "models": ["churn@production"],
            "poll_seconds": 2,
            "canary": {"churn": {"target": "churn:3", "percent": 10}},
            "shadow": {"churn": {"target": "churn@challenger"}},
        }
    )
    assert parsed.canary == {"churn": CanarySettings(target="churn:3", percent=10)}
    assert parsed.shadow == {"churn": ShadowSettings(target="churn@challenger")}
    assert parsed.poll_seconds == 2
    assert parsed.targets() == [ModelRef("churn", 3), ModelRef("churn", alias="challenger")]
    assert parse_routing({}) == RoutingSettings()


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({"canary": {"churn": {"target": "churn:3"}}}, r"\[serving.canary.churn\].*percent"),
        (
            {"canary": {"churn": {"target": "churn:3", "percent": 150}}},
            r"\[serving.canary.churn\].*percent",
        ),
        ({"shadow": {"churn": {"target": "churn:3", "pct": 1}}}, r"\[serving.shadow.churn\].*pct"),
        ({"shadow": {"churn": {"target": "not a ref!"}}}, r"\[serving.shadow.churn\] target"),
        ({"shadow": ["churn"]}, r"\[serving.shadow\] must be a table"),
        ({"poll_seconds": -1}, r"poll_seconds"),
    ],
)
def test_parse_routing_names_the_bad_table(serving: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routing(serving)


def test_command_line_options() -> None:
    assert parse_canary_option("churn=churn:3:10") == (
        "churn",
        CanarySettings(target="churn:3", percent=10),
    )
    assert parse_canary_option("churn=churn@challenger:2.5") == (
        "churn",
        CanarySettings(target="churn@challenger", percent=2.5),
    )
    assert parse_shadow_option("churn=churn:3") == ("churn", ShadowSettings(target="churn:3"))
    for bad in ("churn", "churn=:10", "churn=churn:3:x", "churn=churn:3:101"):
        with pytest.raises(ConfigError, match="--canary expects NAME=TARGET:PERCENT"):
            parse_canary_option(bad)
    with pytest.raises(ConfigError, match="--shadow expects NAME=TARGET"):
        parse_shadow_option("churn=")
    merged = RoutingSettings(canary={"churn": CanarySettings(target="churn:2", percent=5)})
    merged = merged.merged(canary=dict([parse_canary_option("churn=churn:3:10")]))
    assert merged.canary["churn"].target == "churn:3"


def test_routes_for_a_model_not_served_are_refused(routed_project: Project) -> None:
    settings = ServeSettings(
        routing=RoutingSettings(canary={"fraud": CanarySettings(target="churn:2", percent=5)})
    )
    with pytest.raises(ConfigError, match=r"\[serving.canary.fraud\].*serves churn"):
        create_app(routed_project.registry, ["churn@production"], settings)


async def test_no_routes_no_extra_models(routed_project: Project, tmp_path: Path) -> None:
    app = create_app(routed_project.registry, ["churn@production"])
    async with serving(app) as client:
        listing = (await client.get("/v1/models")).json()["models"]
    assert [m["version"] for m in listing] == [1]


async def test_canary_splits_mlflow_and_open_inference_requests(
    routed_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = routed_app(routed_project, canary={"churn": {"target": "churn:2", "percent": 20}})
    row = frame.dropna().head(1)
    mlflow_body = {"dataframe_split": {"columns": list(row.columns), "data": row.values.tolist()}}
    kinds = {"tenure": "INT64", "charges": "FP64", "plan": "BYTES"}
    v2_body = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": kinds[c], "data": row[c].tolist()}
            for c in row.columns
        ]
    }
    async with serving(app) as client:  # type: ignore[arg-type]
        v2_versions: list[str] = []
        for _ in range(10):
            answers = await asyncio.gather(
                *(client.post("/v2/models/churn/infer", json=v2_body) for _ in range(100))
            )
            assert {a.status_code for a in answers} == {200}
            v2_versions += [a.json()["model_version"] for a in answers]
            mlflow = await asyncio.gather(
                *(client.post("/invocations", json=mlflow_body) for _ in range(100))
            )
            assert {a.status_code for a in mlflow} == {200}
        pinned = await client.post("/v2/models/churn/versions/1/infer", json=v2_body)
    assert 0.16 <= v2_versions.count("2") / len(v2_versions) <= 0.24
    assert pinned.json()["model_version"] == "1"
    registry = app.state.server.metrics.registry  # type: ignore[attr-defined]
    by_version = {
        v: registry.get_sample_value(
            "shipyard_requests_total",
            {"model": "churn", "version": v, "protocol": "mlflow", "status": "200"},
        )
        or 0.0
        for v in ("1", "2")
    }
    assert 0.16 <= by_version["2"] / (by_version["1"] + by_version["2"]) <= 0.24


def test_alias_versions_maps_served_alias_references(routed_project: Project) -> None:
    texts = ["churn@production", "churn@challenger", "churn@nowhere", "nobody@production"]
    texts.append("churn:3")
    refs = [ModelRef.parse(text) for text in texts]
    assert alias_versions(routed_project.registry, refs) == {
        ModelRef("churn", alias="production"): 1,
        ModelRef("churn", alias="challenger"): 2,
    }
    assert alias_versions(routed_project.registry, []) == {}
