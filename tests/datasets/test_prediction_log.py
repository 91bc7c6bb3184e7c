"""The prediction log's store: appends in one transaction, reads, windows, pages, retention.

Runs on each database backend (SQLite, PostgreSQL); the server's writer thread that feeds
it is tested in tests/serving/test_predlog.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.datasets.prediction_log import LoggedRequest, LogRow, PredictionLogStore
from shipyard.store import Database

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    try:
        yield database
    finally:
        database.dispose()


def row(
    request_id: str,
    minutes: float,
    *,
    model: str = "m",
    version: int = 1,
    shadow: bool = False,
) -> LogRow:
    inputs = json.dumps([{"x": 1.5, "s": "a"}, {"x": None, "s": None}])
    outputs = json.dumps(
        {"predictions": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]], "classes": [0, 1]}
    )
    at = T0 + timedelta(minutes=minutes)
    return (model, version, request_id, at, 1.5, inputs, outputs, shadow)


def test_the_table_has_the_documented_columns(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        names = {c["name"] for c in sa.inspect(database.engine).get_columns("prediction_log")}
        assert names == {
            "id", "model", "version", "request_id", "at", "latency_ms", "inputs", "outputs",
            "shadow",
        }  # fmt: skip
    finally:
        database.dispose()


def test_append_then_read_gives_the_rows_back_decoded(database: Database) -> None:
    store = PredictionLogStore(database)
    assert store.append([]) == 0
    rows = [row(f"r{i}", i) for i in range(3)] + [row("s", 3, shadow=True), row("o", 4, model="o")]
    assert store.append(rows) == 5
    frame = store.read("m")
    assert frame["request_id"].tolist() == ["r0", "r1", "r2", "s"]
    assert frame["latency_ms"].tolist() == [1.5] * 4
    assert frame["at"].tolist() == [T0 + timedelta(minutes=i) for i in range(4)]
    assert str(frame["at"].dt.tz) == "UTC"
    assert frame["inputs"][0] == [{"x": 1.5, "s": "a"}, {"x": None, "s": None}]
    assert frame["outputs"][0]["classes"] == [0, 1]
    assert store.read("m", limit=2)["request_id"].tolist() == ["r0", "r1"]
    assert store.read("m", since=T0 + timedelta(minutes=2))["request_id"].tolist() == ["r2", "s"]
    naive = (T0 + timedelta(minutes=2)).replace(tzinfo=None)  # naive means UTC
    assert store.read("m", since=naive)["request_id"].tolist() == ["r2", "s"]
    assert store.read("m", shadow=True)["request_id"].tolist() == ["s"]
    assert len(store.read("m", shadow=False)) == 3
    assert store.read("nobody").empty


def test_a_failed_append_inserts_nothing(database: Database) -> None:
    store = PredictionLogStore(database)
    broken = (None, *row("bad", 1)[1:])  # model is NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.append([row("good", 0), broken])  # type: ignore[list-item]
    assert store.read("m").empty  # one transaction: the good row went too


def test_an_unmigrated_database_raises_and_nothing_is_kept(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no prediction_log table
    try:
        with pytest.raises(sa.exc.OperationalError, match="prediction_log"):
            PredictionLogStore(database).append([row("r", 0)])
    finally:
        database.dispose()


def test_answered_is_a_half_open_window_of_answers(database: Database) -> None:
    store = PredictionLogStore(database)
    store.append(
        [
            row("before", -1),
            row("start", 0),
            row("v2", 5, version=2),
            row("shadow", 6, shadow=True),
            row("other", 7, model="o"),
            row("end", 10),
        ]
    )
    window = store.answered("m", T0, T0 + timedelta(minutes=10))
    assert [e.request_id for e in window] == ["start", "v2"]
    first = window[0]
    assert isinstance(first, LoggedRequest)
    assert (first.model, first.version, first.at) == ("m", 1, T0)
    assert first.inputs == [{"x": 1.5, "s": "a"}, {"x": None, "s": None}]
    assert first.outputs["predictions"] == [1, 0]
    one = store.answered("m", T0, T0 + timedelta(minutes=10), version=2)
    assert [e.request_id for e in one] == ["v2"]


def test_page_filters_answers_and_goes_on_by_id(database: Database) -> None:
    store = PredictionLogStore(database)
    store.append(
        [
            row("a", 0),
            row("b", 1, shadow=True),
            row("c", 2, version=2),
            row("d", 3, model="o"),
            row("e", 4),
        ]
    )
    everything = store.page(0, 10)
    assert [e.request_id for e in everything] == ["a", "c", "d", "e"]
    first = store.page(0, 2)
    assert [e.request_id for e in first] == ["a", "c"]
    rest = store.page(first[-1].id + 1, 2)
    assert [e.request_id for e in rest] == ["d", "e"]
    assert [e.request_id for e in store.page(0, 10, model="m")] == ["a", "c", "e"]
    assert [e.request_id for e in store.page(0, 10, version=2)] == ["c"]
    assert [e.request_id for e in store.page(0, 10, request_id="e")] == ["e"]
    inclusive = store.page(
        0, 10, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)
    )  # both ends included
    assert [e.request_id for e in inclusive] == ["c", "d", "e"]


def test_prune_deletes_what_is_older(database: Database) -> None:
    store = PredictionLogStore(database)
    store.append([row("old", 0), row("shadow", 1, shadow=True), row("new", 10)])
    assert store.prune(T0 + timedelta(minutes=5)) == 2
    assert store.read("m")["request_id"].tolist() == ["new"]
    assert store.prune(T0 + timedelta(minutes=5)) == 0
