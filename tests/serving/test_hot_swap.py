"""Hot swap: a served alias moves in the registry and the server follows, failing no request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.core.settings import Settings
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.routing import RoutingSettings

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
POLL = RoutingSettings(poll_seconds=0.05)


@pytest.fixture
def swap_project(tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """A fresh project: ``churn`` v1 (production) and v2 (a differently fitted model)."""
    model, frame, target = trained
    settings = make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        other = clone(model).set_params(histgradientboostingclassifier__max_iter=5)
        project.registry.register(
            "churn", other.fit(frame, target), input_example=frame, trust=True
        )
        project.registry.promote("churn:1", to="production")
        yield project


def promote_elsewhere(settings: Settings, ref: str, alias: str) -> None:
    """Move an alias the way another process would: its own project, its own connections."""
    with Project(settings=settings) as other:
        other.registry.promote(ref, to=alias)


class Traffic:
    """Clients posting continuously; every status and answering version is kept."""

    def __init__(self, client: httpx.AsyncClient, body: bytes, clients: int = 4) -> None:
        self.client = client
        self.body = body
        self.statuses: list[int] = []
        self.versions: list[int] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._fire()) for _ in range(clients)]

    async def _fire(self) -> None:
        while not self._stop.is_set():
            answer = await self.client.post(
                "/v1/models/churn@production/predict", content=self.body
            )
            self.statuses.append(answer.status_code)
            if answer.status_code == 200:
                self.versions.append(answer.json()["version"])

    async def until(self, version: int, timeout: float = 20.0) -> None:
        """Wait until ``version`` has answered a few requests in a row."""
        async with asyncio.timeout(timeout):
            while self.versions[-20:] != [version] * 20:
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}{{") and line.split(" ")[0] == f"{name}{{{wanted}}}":
            return float(line.split(" ")[1])
    return 0.0


async def test_alias_move_swaps_version_without_failing_requests(
    swap_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = create_app(swap_project.registry, ["churn@production"], ServeSettings(routing=POLL))
    async with serving(app) as client:
        traffic = Traffic(client, records(frame.head(3)))
        await traffic.until(1)
        await asyncio.to_thread(promote_elsewhere, swap_project.settings, "churn:2", "production")
        await traffic.until(2)
        await traffic.stop()
        listing = (await client.get("/v1/models")).json()["models"]
        v2_meta = (await client.get("/v2/models/churn")).json()
        ready = (await client.get("/health/ready")).json()
        metrics = (await client.get("/metrics")).text
    assert traffic.statuses
    assert set(traffic.statuses) == {200}
    assert traffic.versions[0] == 1
    assert [(m["version"], m["aliases"]) for m in listing] == [(2, ["production"])]
    assert v2_meta["versions"] == ["2"]
    assert ready["models"] == ["churn:2"]
    assert sample(metrics, "shipyard_model_swaps_total", model="churn", outcome="swapped") == 1


async def test_requests_in_flight_on_the_old_version_finish(
    swap_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = create_app(swap_project.registry, ["churn@production"], ServeSettings(routing=POLL))
    body = records(frame.head(2))
    async with serving(app) as client:
        models = app.state.server.models
        old = models.resolve("churn@production")
        await asyncio.to_thread(promote_elsewhere, swap_project.settings, "churn:2", "production")
        # Requests that found the old model just before the switch, then the switch.
        columns = old.validate({c: frame.head(2)[c].tolist() for c in frame.columns})
        pending = [asyncio.ensure_future(old.predict(columns)) for _ in range(20)]
        await models.check_aliases()
        while old.batcher.accepting:  # the retirement runs in its own task
            await asyncio.sleep(0)
        late = await old.predict(columns)  # after its batcher stopped: its successor answers
        answers = await asyncio.gather(*pending)
        now = await client.post("/v1/models/churn@production/predict", content=body)
    assert len(answers) == 20
    assert all(len(a.predictions) == 2 for a in answers)
    assert len(late.predictions) == 2
    assert old.successor is not None
    assert old.successor.version == 2
    assert not old.batcher.accepting
    assert now.json()["version"] == 2


async def test_a_version_that_fails_to_load_keeps_the_old_one_serving(
    swap_project: Project, trained: Trained
) -> None:
    model, frame, target = trained
    store = Path(swap_project.registry.artifacts.root)
    before = set(store.rglob("sha256/*/*"))
    broken = clone(model).set_params(histgradientboostingclassifier__max_iter=3)
    swap_project.registry.register(
        "churn", broken.fit(frame, target), input_example=frame, trust=True
    )
    for blob in set(store.rglob("sha256/*/*")) - before:  # v3's own files only
        blob.unlink()
    app = create_app(swap_project.registry, ["churn@production"], ServeSettings(routing=POLL))
    async with serving(app) as client:
        traffic = Traffic(client, records(frame.head(3)), clients=2)
        await traffic.until(1)
        await asyncio.to_thread(promote_elsewhere, swap_project.settings, "churn:3", "production")
        async with asyncio.timeout(20):
            while not sample(
                (await client.get("/metrics")).text,
                "shipyard_model_swaps_total",
                model="churn",
                outcome="failed",
            ):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # several more polls: the failure is counted once
        await traffic.until(1)
        await traffic.stop()
        listing = (await client.get("/v1/models")).json()["models"]
        metrics = (await client.get("/metrics")).text
    assert set(traffic.statuses) == {200}
    assert set(traffic.versions) == {1}
    assert [m["version"] for m in listing] == [1]
    assert sample(metrics, "shipyard_model_swaps_total", model="churn", outcome="failed") == 1
    assert sample(metrics, "shipyard_model_swaps_total", model="churn", outcome="swapped") == 0


async def test_a_pinned_version_stays_while_its_alias_moves(
    swap_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = create_app(
        swap_project.registry, ["churn@production", "churn:1"], ServeSettings(routing=POLL)
    )
    async with serving(app) as client:
        await asyncio.to_thread(promote_elsewhere, swap_project.settings, "churn:2", "production")
        await app.state.server.models.check_aliases()
        pinned = await client.post("/v1/models/churn:1/predict", content=records(frame.head(1)))
        default = await client.post("/v1/models/churn/predict", content=records(frame.head(1)))
        listing = (await client.get("/v1/models")).json()["models"]
    assert pinned.json()["version"] == 1
    assert default.json()["version"] == 2
    assert sorted((m["version"], tuple(m["aliases"])) for m in listing) == [
        (1, ()),
        (2, ("production",)),
    ]


async def test_polling_off_keeps_the_loaded_version(
    swap_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    settings = ServeSettings(routing=RoutingSettings(poll_seconds=0))
    app = create_app(swap_project.registry, ["churn@production"], settings)
    async with serving(app) as client:
        swap_project.registry.promote("churn:2", to="production")
        await asyncio.sleep(0.2)
        answer = await client.post("/v1/models/churn/predict", content=records(frame.head(1)))
    assert answer.json()["version"] == 1
