"""The feedback store on SQLite and PostgreSQL: upserts, checks, and joins to predictions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_frame

from shipyard import Project
from shipyard.core.exceptions import ConflictError, InvalidArgumentError
from shipyard.datasets import feedback as feedback_module
from shipyard.datasets.feedback import LABEL_COLUMNS, ONLINE_COLUMNS, FeedbackStore, Label
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog
from shipyard.store import Database

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A fresh, migrated metadata database on each backend."""
    opened = Database.open(database_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def store(database: Database) -> FeedbackStore:
    return FeedbackStore(database)


def log_requests(database: Database) -> pd.DataFrame:
    """Three answered requests of churn:1 (two rows each), one of ``other``, one shadow of churn:2.

    req-1 is logged twice (a client reusing its X-Request-ID): the second answer is 0, 0.
    """
    log = PredictionLog(database)
    columns = {"tenure": np.array([1, 2]), "charges": np.array([10.0, np.nan])}
    answer = Prediction(np.array([1, 0]), np.array([[0.25, 0.75], [0.5, 0.5]]), [0, 1])
    for number in range(3):
        log.record("churn", 1, f"req-{number}", 0.002, columns, answer)
    log.record("other", 1, "req-0", 0.001, {"x": np.array([3.0])}, Prediction([7.5]))
    shadow = Prediction(np.array([0, 0]), np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1])
    log.record("churn", 2, "req-0", 0.001, columns, shadow, shadow=True)
    again = Prediction(np.array([0, 0]), np.array([[0.6, 0.4], [0.7, 0.3]]), [0, 1])
    log.record("churn", 1, "req-1", 0.002, columns, again)
    assert log.flush() == 6
    return pd.concat(
        [PredictionLogStore(database).read("churn"), PredictionLogStore(database).read("other")],
        ignore_index=True,
    )


# -- writing and reading ------------------------------------------------------------------


def test_labels_round_trip_as_json_scalars(store: FeedbackStore) -> None:
    before = datetime.now(UTC)
    labels = [
        Label(1, request_id="req-0"),
        Label("yes", request_id="req-0", row=1),
        Label(True, key="C-17"),
        Label(np.float64(2.5), key="C-18"),  # numpy scalars are unwrapped
        Label(np.int64(0), key="7"),
    ]
    assert store.add("churn", labels) == 5
    assert store.add("other", [Label(9, key="C-17")]) == 1
    frame = store.read("churn")
    assert list(frame.columns) == list(LABEL_COLUMNS)
    assert frame[["request_id", "row", "key", "label"]].to_dict("records") == [
        {"request_id": "req-0", "row": 0, "key": "", "label": 1},
        {"request_id": "req-0", "row": 1, "key": "", "label": "yes"},
        {"request_id": "", "row": 0, "key": "C-17", "label": True},
        {"request_id": "", "row": 0, "key": "C-18", "label": 2.5},
        {"request_id": "", "row": 0, "key": "7", "label": 0},
    ]
    assert [type(v) for v in frame["label"]] == [int, str, bool, float, int]
    assert str(frame["received_at"].dt.tz) == "UTC"
    assert (frame["received_at"] >= before).all()
    assert store.read("nobody").empty
    assert list(store.read("nobody").columns) == list(LABEL_COLUMNS)


def test_a_new_label_replaces_the_old_one_only_when_asked(store: FeedbackStore) -> None:
    assert store.add("churn", [Label(0, request_id="r", row=1), Label("no", key="C-1")]) == 2
    first = store.read("churn")["received_at"].max()
    time.sleep(0.01)
    assert store.add("churn", [Label(0, request_id="r", row=1)]) == 1  # the same: harmless
    again = [Label(1, request_id="r", row=1), Label("yes", key="C-1"), Label("yes", key="C-1")]
    with pytest.raises(
        ConflictError, match=r"2 label\(s\) differ .* labels\[0\] \(stored 0, sent 1\)"
    ):
        store.add("churn", again)
    assert sorted(map(str, store.read("churn")["label"])) == ["0", "no"]  # nothing written
    with pytest.raises(InvalidArgumentError, match=r"labels\[0\] and labels\[1\] give different"):
        store.add("churn", [Label("maybe", key="C-1"), Label("yes", key="C-1")], replace=True)
    assert store.add("churn", again, replace=True) == 2
    frame = store.read("churn")
    assert frame[["request_id", "row", "key", "label"]].to_dict("records") == [
        {"request_id": "r", "row": 1, "key": "", "label": 1},
        {"request_id": "", "row": 0, "key": "C-1", "label": "yes"},
    ]
    assert (frame["received_at"] > first).all()
    # another row of the same request, or another model, is another prediction
    store.add("churn", [Label(0, request_id="r", row=0)])
    store.add("other", [Label(5, request_id="r", row=1)])
    assert len(store.read("churn")) == 3
    assert store.read("other")["label"].tolist() == [5]


def test_concurrent_upserts_of_the_same_predictions_keep_one_row_each(
    store: FeedbackStore,
) -> None:
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for _ in range(5):
                labels = [Label(worker, key=f"k{n}") for n in range(40)]
                store.add("churn", [*labels, Label(worker, request_id="r", row=3)], replace=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    frame = store.read("churn")
    assert len(frame) == 41
    assert frame["label"].isin(range(4)).all()


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (Label(1), r"labels\[1\] names no prediction: give the request_id"),
        (Label(1, request_id="r", key="k"), r"labels\[1\] has both request_id 'r' and key 'k'"),
        (Label(1, request_id="r", row=-1), r"labels\[1\]\.row must be a whole number from 0"),
        (Label(1, request_id="r", row=True), r"labels\[1\]\.row must be a whole number"),
        (Label(1, key="k", row=2), r"labels\[1\]\.row is 2 but row applies only to request_id"),
        (Label(None, key="k"), r"labels\[1\]\.label is missing \(None\)"),
        (Label(float("nan"), key="k"), r"labels\[1\]\.label is missing"),
        (Label(pd.NA, key="k"), r"labels\[1\]\.label is missing"),
        (Label([1, 2], key="k"), r"labels\[1\]\.label must be a JSON scalar .* but got list"),
        (Label({"a": 1}, key="k"), r"labels\[1\]\.label must be a JSON scalar"),
        (Label(float("inf"), key="k"), r"labels\[1\]\.label must be a finite number"),
        (Label(1, request_id="r" * 129), r"labels\[1\]\.request_id is 129 characters"),
        (Label(1, key="k" * 257), r"labels\[1\]\.key is 257 characters"),
        (Label(1, key=7), r"labels\[1\]: request_id and key must be text"),  # type: ignore[arg-type]
        ({"label": 1, "key": "k"}, r"labels\[1\] is a dict, not a Label"),
    ],
)
def test_bad_labels_are_refused_before_anything_is_written(
    store: FeedbackStore, label: Any, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        store.add("churn", [Label(1, key="good"), label])
    assert store.read("churn").empty


@pytest.mark.parametrize("model", ["churn:3", "churn@production", "", "a b"])
def test_the_model_must_be_a_name(store: FeedbackStore, model: str) -> None:
    with pytest.raises(InvalidArgumentError, match="model must be a registered model's name"):
        store.add(model, [Label(1, key="k")])


def test_nothing_to_add_is_no_error(store: FeedbackStore) -> None:
    assert store.add("churn", []) == 0
    assert store.read("churn").empty


def test_read_between_times_and_prune(store: FeedbackStore) -> None:
    store.add("churn", [Label(0, key="old")])
    store.add("other", [Label(0, key="old")])
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    store.add("churn", [Label(1, key="new")])
    assert store.read("churn", since=middle)["key"].tolist() == ["new"]
    assert store.read("churn", until=middle)["key"].tolist() == ["old"]
    naive = middle.replace(tzinfo=None)  # naive means UTC
    assert store.read("churn", since=naive)["key"].tolist() == ["new"]
    assert store.prune("churn", middle) == 1
    assert store.read("churn")["key"].tolist() == ["new"]
    assert store.read("other")["key"].tolist() == ["old"]
    assert store.prune(None, datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert store.read("churn").empty
    assert store.read("other").empty


# -- joins --------------------------------------------------------------------------------


def test_online_truth_joins_labels_to_logged_predictions(
    database: Database, store: FeedbackStore
) -> None:
    log = log_requests(database)
    store.add(
        "churn",
        [
            Label(0, request_id="req-0", row=1),
            Label(1, request_id="req-2", row=0),
            Label(1, request_id="req-1", row=0),  # req-1 was logged twice: the last answer
            Label(1, request_id="req-0", row=5),  # req-0 had two rows: no prediction to join
            Label(1, request_id="req-unknown"),
            Label(1, key="req-2"),  # a batch key is not a request id
        ],
    )
    store.add("other", [Label(7.0, request_id="req-0")])
    truth = store.online_truth("churn", log)
    assert list(truth.columns) == list(ONLINE_COLUMNS)
    assert truth[["request_id", "row", "version", "prediction", "label"]].to_dict("records") == [
        {"request_id": "req-0", "row": 1, "version": 1, "prediction": 0, "label": 0},
        {"request_id": "req-2", "row": 0, "version": 1, "prediction": 1, "label": 1},
        {"request_id": "req-1", "row": 0, "version": 1, "prediction": 0, "label": 1},
    ]
    assert truth["probabilities"].tolist() == [[0.5, 0.5], [0.25, 0.75], [0.6, 0.4]]
    assert truth["classes"].tolist() == [[0, 1]] * 3
    assert str(truth["at"].dt.tz) == "UTC"
    assert truth["at"].is_monotonic_increasing
    # the shadow predictions of the same requests, on request
    shadow = store.online_truth("churn", log, shadow=True)
    assert shadow[["request_id", "row", "version", "prediction"]].to_dict("records") == [
        {"request_id": "req-0", "row": 1, "version": 2, "prediction": 0}
    ]
    # another model's rows of the log, and a regressor (no probabilities)
    other = store.online_truth("other", log)
    assert other[["request_id", "row", "prediction", "probabilities", "classes", "label"]].to_dict(
        "records"
    ) == [
        {
            "request_id": "req-0",
            "row": 0,
            "prediction": 7.5,
            "probabilities": None,
            "classes": None,
            "label": 7.0,
        }
    ]
    assert store.online_truth("nobody", log).empty
    assert list(store.online_truth("nobody", log).columns) == list(ONLINE_COLUMNS)


def test_online_truth_reads_many_request_ids_in_chunks_or_one_scan(
    database: Database, store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = log_requests(database)
    store.add("churn", [Label(n, request_id=f"req-{n}", row=1) for n in range(3)])
    expected = store.online_truth("churn", log)
    assert expected["label"].tolist() == [0, 2, 1]  # req-1 answered last
    monkeypatch.setattr(feedback_module, "_IN_CHUNK", 1)
    pd.testing.assert_frame_equal(store.online_truth("churn", log), expected)
    monkeypatch.setattr(feedback_module, "_IN_MAX", 1)
    pd.testing.assert_frame_equal(store.online_truth("churn", log), expected)


def test_online_truth_says_what_a_log_frame_needs(store: FeedbackStore) -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"no column 'outputs'.*PredictionLogStore\(database\)\.read"
    ):
        store.online_truth("churn", pd.DataFrame({"request_id": [], "at": [], "version": []}))


def customers(rows: int, seed: int) -> pd.DataFrame:
    frame, _ = make_frame(rows, seed)
    frame.insert(0, "customer_id", [f"C-{i:03d}" for i in range(rows)])
    return frame


def test_batch_truth_joins_labels_to_a_jobs_predictions(
    project: Project, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, frame, _ = trained
    project.registry.register("churn", model, input_example=frame.head(5), trust=True)
    keyed, plain = tmp_path / "keyed.parquet", tmp_path / "plain.parquet"
    customers(120, 1).to_parquet(keyed)
    customers(50, 2).drop(columns="customer_id").to_parquet(plain)
    keyed_job = project.predict("churn:1", str(keyed), keys=("customer_id",), chunk_rows=32).job
    plain_job = project.predict("churn:1", str(plain), chunk_rows=32).job
    assert keyed_job.dataset
    assert plain_job.dataset
    scored = project.datasets.read(keyed_job.dataset)
    store = FeedbackStore(project.database)
    store.add("churn", [Label("1", key="C-100"), Label(0, key="C-005"), Label(1, key="C-999")])
    store.add("churn", [Label(1, key="17"), Label(0, request_id="C-007")])  # 17: a row_id
    truth = store.batch_truth("churn", scored, "customer_id")
    assert truth["customer_id"].tolist() == ["C-005", "C-100"]  # the frame's order and index
    assert truth.index.tolist() == [5, 100]
    assert truth["label"].tolist() == [0, "1"]
    assert list(truth.columns) == [*scored.columns, "label"]
    pd.testing.assert_frame_equal(truth.drop(columns="label"), scored.loc[[5, 100]])
    # row_id keys are numbers in the frame and text in the labels
    by_row = store.batch_truth("churn", project.datasets.read(plain_job.dataset), "row_id")
    assert by_row["row_id"].tolist() == [17]
    assert by_row["label"].tolist() == [1]
    monkeypatch.setattr(feedback_module, "_IN_MAX", 1)  # one scan instead of IN lists
    pd.testing.assert_frame_equal(store.batch_truth("churn", scored, "customer_id"), truth)
    assert store.batch_truth("other", scored, "customer_id").empty
    with pytest.raises(InvalidArgumentError, match=r"no column 'id' \(their columns: customer"):
        store.batch_truth("churn", scored, "id")
    with pytest.raises(InvalidArgumentError, match="have a 'label' column already"):
        store.batch_truth("churn", truth, "customer_id")
