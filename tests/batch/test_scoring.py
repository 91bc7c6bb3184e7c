"""Scoring one chunk: the output's columns, their types, and answers equal to the model's own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.batch.support import FEATURES, OUTPUT_COLUMNS, Trained, customers
from tests.helpers import make_frame

from shipyard import Project
from shipyard.batch.scoring import Scorer
from shipyard.core.exceptions import SchemaError


def encoder() -> object:
    return make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (SimpleImputer(), ["charges"]),
        remainder="passthrough",
    )


def test_columns_types_and_row_ids(local: Project, trained: Trained) -> None:
    scorer = Scorer(local.registry.load("churn"), (), "job1")
    frame = customers(50)
    before = datetime.now(UTC)
    out = scorer.score(pa.Table.from_pandas(frame, preserve_index=False), first_row=500)
    assert out.column_names == ["row_id", *OUTPUT_COLUMNS]
    assert out.schema.field("row_id").type == pa.int64()
    assert out.schema.field("model_version").type == pa.int32()
    assert out.schema.field("scored_at").type == pa.timestamp("us", "UTC")
    assert out.column("row_id").to_pylist() == list(range(500, 550))
    assert set(out.column("model").to_pylist()) == {"churn"}
    assert set(out.column("model_version").to_pylist()) == {1}
    assert set(out.column("batch_id").to_pylist()) == {"job1"}
    [stamp] = set(out.column("scored_at").to_pylist())
    assert before <= stamp <= datetime.now(UTC)
    model = trained[0]
    assert out.column("prediction").to_pylist() == model.predict(frame[FEATURES]).tolist()
    np.testing.assert_allclose(
        out.column("proba_1").to_numpy(), model.predict_proba(frame[FEATURES])[:, 1]
    )


def test_keys_replace_row_id_in_the_order_given(local: Project) -> None:
    scorer = Scorer(local.registry.load("churn"), ("n", "customer_id"), "job1")
    out = scorer.score(pa.Table.from_pandas(customers(5), preserve_index=False), 0)
    assert out.column_names[:3] == ["n", "customer_id", "prediction"]
    assert out.column("customer_id").to_pylist() == [f"c{i:07d}" for i in range(5)]


def test_missing_and_clashing_columns_are_named(local: Project) -> None:
    loaded = local.registry.load("churn")
    table = pa.Table.from_pandas(customers(5).drop(columns=["plan"]), preserve_index=False)
    with pytest.raises(SchemaError, match=r"the input has no column 'plan', which churn:1 needs"):
        Scorer(loaded, (), "j").score(table, 0)
    with pytest.raises(SchemaError, match=r"key column 'id' is not in the input \(its columns: "):
        Scorer(loaded, ("id",), "j").check_columns(["id_", *FEATURES])
    with pytest.raises(
        SchemaError, match="key column 'prediction' is named twice, or like an output"
    ):
        Scorer(loaded, ("prediction",), "j")


def test_a_model_without_signature_is_refused(local: Project, trained: Trained) -> None:
    local.registry.register("bare", trained[0], trust=True)
    with pytest.raises(SchemaError, match=r"has no input signature.*register it with an input"):
        Scorer(local.registry.load("bare"), (), "j")


def test_string_labels_and_a_regressor(local: Project) -> None:
    frame, target = make_frame(300)
    labels = np.where(target == 1, "churn", "stay")
    classifier = make_pipeline(encoder(), LogisticRegression(max_iter=500)).fit(frame, labels)
    local.registry.register("labels", classifier, input_example=frame, trust=True)
    table = pa.Table.from_pandas(customers(40), preserve_index=False)
    out = Scorer(local.registry.load("labels"), (), "j").score(table, 0)
    assert out.column_names[1:4] == ["prediction", "proba_churn", "proba_stay"]
    assert out.schema.field("prediction").type == pa.string()
    assert out.column("prediction").to_pylist() == classifier.predict(customers(40)).tolist()

    regressor = make_pipeline(encoder(), LinearRegression()).fit(frame, frame["tenure"] * 1.5)
    local.registry.register("tenure", regressor, input_example=frame, trust=True)
    out = Scorer(local.registry.load("tenure"), ("customer_id",), "j").score(table, 0)
    assert out.column_names == [
        "customer_id",
        "prediction",
        "model",
        "model_version",
        "scored_at",
        "batch_id",
    ]
    np.testing.assert_allclose(
        out.column("prediction").to_numpy(), regressor.predict(customers(40))
    )


def test_labels_are_the_models_own_when_predict_is_not_the_argmax(
    local: Project, tmp_path: Path
) -> None:
    """A tuned threshold: the first chunk's labels agree with argmax(proba), later ones do not."""
    frame, target = make_frame(400)
    base = make_pipeline(encoder(), LogisticRegression(max_iter=500))
    model = FixedThresholdClassifier(base, threshold=0.3).fit(frame, target)
    local.registry.register("tuned", model, input_example=frame, trust=True)
    rows = customers(3000, seed=5)
    proba = model.predict_proba(rows[FEATURES])[:, 1]
    between = (proba >= 0.3) & (proba < 0.5)  # argmax says 0, the model says 1
    ordered = pd.concat([rows[~between].head(100), rows[between]], ignore_index=True)
    assert between.sum() > 100
    ordered.to_parquet(tmp_path / "in.parquet")
    result = local.predict("tuned", str(tmp_path / "in.parquet"), chunk_rows=100)
    out = local.datasets.read(result.job.dataset or "")
    np.testing.assert_array_equal(out["prediction"].to_numpy(), model.predict(ordered[FEATURES]))


def test_a_histgradientboosting_pipeline_is_scored_in_one_pass_with_its_own_answers(
    local: Project, trained: Trained
) -> None:
    scorer = Scorer(local.registry.load("churn"), (), "job1")
    frame = customers(3000, seed=7)
    out = scorer.score(pa.Table.from_pandas(frame, preserve_index=False), first_row=0)
    assert scorer._joint  # raw scores once, labels and probabilities from them
    assert not scorer._joint.exact  # a Pipeline: every chunk goes through the signature
    model = trained[0]
    np.testing.assert_array_equal(
        out.column("prediction").to_numpy(), model.predict(frame[FEATURES])
    )
    proba = model.predict_proba(frame[FEATURES])
    np.testing.assert_array_equal(out.column("proba_0").to_numpy(), proba[:, 0])
    np.testing.assert_array_equal(out.column("proba_1").to_numpy(), proba[:, 1])


def test_other_classifiers_call_predict_and_predict_proba(local: Project) -> None:
    frame, target = make_frame(300)
    model = make_pipeline(encoder(), LogisticRegression(max_iter=500)).fit(frame, target)
    local.registry.register("logit", model, input_example=frame.head(5), trust=True)
    scorer = Scorer(local.registry.load("logit"), (), "job1")
    out = scorer.score(pa.Table.from_pandas(customers(40), preserve_index=False), first_row=0)
    assert scorer._joint is False
    assert out.column("prediction").to_pylist() == model.predict(customers(40)[FEATURES]).tolist()


@pytest.mark.parametrize("keys", [("proba_1",), ("prediction",), ("tenure", "tenure")])
def test_keys_that_would_overwrite_an_output_column_are_refused(
    local: Project, keys: tuple[str, ...]
) -> None:
    with pytest.raises(SchemaError, match=f"key column {keys[0]!r} is named twice, or like"):
        Scorer(local.registry.load("churn"), keys, "job1")


def test_a_plain_histgradientboosting_model_runs_its_trees_once_on_a_row_major_matrix(
    local: Project,
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(6)]
    frame = pd.DataFrame(rng.normal(size=(2000, 6)), columns=names)
    target = (frame["f0"] + frame["f1"] * frame["f2"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30).fit(frame, target)
    local.registry.register("plain", model, input_example=frame.head(5), trust=True)
    scorer = Scorer(local.registry.load("plain"), (), "job1")
    rows = pd.DataFrame(rng.normal(size=(5000, 6)), columns=names)
    out = scorer.score(pa.Table.from_pandas(rows[names[::-1]], preserve_index=False), 0)
    assert scorer._joint
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(rows))
    np.testing.assert_array_equal(out.column("proba_1").to_numpy(), model.predict_proba(rows)[:, 1])


def plain_model(local: Project, nullable: bool = False) -> tuple[object, list[str]]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(4)]
    frame = pd.DataFrame(rng.normal(size=(2000, 4)), columns=names)
    target = (frame["f0"] + frame["f1"] * frame["f2"] > 0).astype(int)
    if nullable:
        frame.loc[::7, "f3"] = np.nan
    model = HistGradientBoostingClassifier(max_iter=20).fit(frame, target)
    local.registry.register("plain", model, input_example=frame.head(20), trust=True)
    return model, names


def test_chunks_of_the_signatures_types_go_straight_from_arrow(local: Project) -> None:
    model, names = plain_model(local, nullable=True)
    scorer = Scorer(local.registry.load("plain"), (), "job1")
    rows = pd.DataFrame(np.random.default_rng(4).normal(size=(6000, 4)), columns=names)
    rows.loc[::5, "f3"] = np.nan  # allowed: the example had missing values there
    first, second = rows.iloc[:3000], rows.iloc[3000:]
    scorer.score(pa.Table.from_pandas(first, preserve_index=False), 0)
    assert scorer._joint
    assert set(scorer._joint.exact) == set(names)
    table = pa.Table.from_pandas(second[names[::-1]], preserve_index=False)
    assert scorer._joint.arrow(table) is not None  # the pandas path is skipped
    out = scorer.score(table, 3000)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(second))
    np.testing.assert_array_equal(
        out.column("proba_1").to_numpy(), model.predict_proba(second)[:, 1]
    )


def test_chunks_that_need_validation_still_get_its_answers_and_errors(local: Project) -> None:
    model, names = plain_model(local)
    scorer = Scorer(local.registry.load("plain"), (), "job1")
    rng = np.random.default_rng(5)
    rows = pd.DataFrame(rng.normal(size=(3000, 4)), columns=names)
    scorer.score(pa.Table.from_pandas(rows, preserve_index=False), 0)
    integers = pd.DataFrame(rng.integers(-3, 3, size=(500, 4)), columns=names)
    table = pa.Table.from_pandas(integers, preserve_index=False)
    assert scorer._joint
    assert scorer._joint.arrow(table) is None
    out = scorer.score(table, 0)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(integers))
    rows.loc[10, "f1"] = np.nan  # HGB takes missing values: scored as the model scores them
    out = scorer.score(pa.Table.from_pandas(rows, preserve_index=False), 0)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(rows))
    text = rows.astype({"f1": str})
    text.loc[10, "f1"] = "ten"
    with pytest.raises(SchemaError, match="column 'f1'"):
        scorer.score(pa.Table.from_pandas(text, preserve_index=False), 0)
