"""Scoring one chunk: the output's columns, their types, and answers equal to the model's own."""

from __future__ import annotations

import warnings
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
from shipyard.batch.modes import BLOCK_ROWS, KernelMode, PipelineMode, arrow_columns
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
    assert scorer.mode == "pipeline"  # raw scores once, labels and probabilities from them
    assert isinstance(scorer._mode, PipelineMode)
    assert not scorer._mode.exact  # text columns: every chunk goes through the signature
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
    assert scorer.mode == "frame"  # a ColumnTransformer picks columns by name
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
    assert scorer.mode == "kernel"
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
    assert isinstance(scorer._mode, KernelMode)
    assert set(scorer._mode.exact) == set(names)
    table = pa.Table.from_pandas(second[names[::-1]], preserve_index=False)
    assert arrow_columns(table, scorer._mode.exact, names) is not None  # no pandas
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
    assert isinstance(scorer._mode, KernelMode)
    assert arrow_columns(table, scorer._mode.exact, names) is None
    out = scorer.score(table, 0)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(integers))
    text = rows.astype({"f1": str})
    text.loc[10, "f1"] = "ten"
    with pytest.raises(SchemaError, match="column 'f1' expects float64 but got string values"):
        scorer.score(pa.Table.from_pandas(text, preserve_index=False), 0)


def test_arrow_columns_take_a_chunk_only_when_validation_would_change_nothing() -> None:
    exact = {"a": (pa.float64(), False), "b": (pa.float64(), True), "n": (pa.int64(), True)}
    table = pa.table({"a": [1.0, 2.0], "b": [None, 1.0], "n": [1, 2]})
    columns = arrow_columns(table, exact, ["n", "b", "a"])
    assert columns is not None
    np.testing.assert_array_equal(columns[1], [np.nan, 1.0])  # a missing float is NaN
    assert arrow_columns(table, {}, ["a"]) is None  # a signature with text columns
    missing = table.set_column(0, "a", pa.array([None, 2.0], pa.float64()))
    assert arrow_columns(missing, exact, ["a"]) is None  # validation names the column
    nan = table.set_column(0, "a", pa.array([np.nan, 2.0], pa.float64(), from_pandas=False))
    assert arrow_columns(nan, exact, ["a"]) is None
    null_int = table.set_column(2, "n", pa.array([None, 2], pa.int64()))
    assert arrow_columns(null_int, exact, ["n"]) is None  # validation makes it float64
    assert (
        arrow_columns(
            table.cast(pa.schema([("a", pa.float32()), ("b", pa.float64()), ("n", pa.int64())])),
            exact,
            ["a"],
        )
        is None
    )


class Noisy:
    """A model whose predict warns on every call (as some libraries do)."""

    classes_ = np.array([0, 1])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        warnings.warn("noisy model", UserWarning, stacklevel=1)
        return np.zeros(len(frame), dtype=np.int64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.tile([1.0, 0.0], (len(frame), 1))


def test_warnings_are_reported_once_at_the_end_not_per_chunk(
    local: Project, tmp_path: Path
) -> None:
    frame, _ = make_frame(50)
    with warnings.catch_warnings():  # registering runs the model on its example too
        warnings.simplefilter("ignore")
        local.registry.register("noisy", Noisy(), input_example=frame.head(5), trust=True)
    rows = customers(300)
    rows["charges"] = rows["charges"].fillna(70.0)  # this model takes no missing values
    rows.to_parquet(tmp_path / "in.parquet")
    # the suite turns warnings into errors: one that escaped the job would fail it here
    result = local.predict("noisy", str(tmp_path / "in.parquet"), chunk_rows=100)
    assert result.notes == ("UserWarning: noisy model (3 times)",)
    assert result.to_dict()["notes"] == ["UserWarning: noisy model (3 times)"]


def fitted_on_arrays(kind: str) -> tuple[object, list[str], np.ndarray]:
    """A model fitted on a numpy array (no feature names), its columns and the training rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(11)
    names = [f"x{i}" for i in range(5)]
    rows = rng.normal(size=(3000, 5))
    labels = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int)
    if kind == "kernel":
        model: object = HistGradientBoostingClassifier(max_iter=15).fit(rows, labels)
    elif kind == "regressor":
        model = HistGradientBoostingRegressor(max_iter=15).fit(rows, rows[:, 0] * 3)
    elif kind == "pipeline":
        model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=15))
        model.fit(rows, labels)
    else:
        model = LogisticRegression().fit(rows, labels)
    return model, names, rows


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("kernel", "kernel"), ("regressor", "kernel"), ("pipeline", "pipeline"), ("array", "array")],
)
def test_models_fitted_without_feature_names_get_a_plain_matrix_and_never_warn(
    local: Project, kind: str, mode: str
) -> None:
    model, names, rows = fitted_on_arrays(kind)
    example = pd.DataFrame(rows[:5], columns=names)
    with warnings.catch_warnings():  # the registry runs the model on its example frame
        warnings.simplefilter("ignore")
        local.registry.register("arrays", model, input_example=example, trust=True)
    scorer = Scorer(local.registry.load("arrays"), (), "job1", threads=2)
    fresh = np.random.default_rng(12).normal(size=(20_000, 5))
    table = pa.Table.from_pandas(pd.DataFrame(fresh, columns=names), preserve_index=False)
    # the suite turns warnings into errors: "X has feature names, but ..." would fail it
    out = scorer.score(table, 0)
    scorer.close()
    assert scorer.mode == mode
    assert scorer.notes.lines() == []
    # the model's own answers on the frame: scikit-learn makes it a column-major array (BLAS
    # sums a row-major one in another order: 1-ulp differences in a linear model)
    own = np.asfortranarray(fresh)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(own))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(
            out.column("proba_1").to_numpy(), model.predict_proba(own)[:, 1]
        )


def test_the_kernel_mode_spreads_blocks_over_threads_with_identical_answers(
    local: Project,
) -> None:
    model, names = plain_model(local)
    rows = pd.DataFrame(np.random.default_rng(6).normal(size=(60_000, 4)), columns=names)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    one = Scorer(local.registry.load("plain"), (), "job1", threads=1)
    three = Scorer(local.registry.load("plain"), (), "job1", threads=3)
    assert BLOCK_ROWS < 20_000  # every chunk is cut into blocks
    pending = [three.start(table.slice(n, 20_000), n) for n in (0, 20_000, 40_000)]
    outs = [p.result() for p in pending]  # three chunks in flight on one pool
    assert three._pool is not None
    three.close()
    assert (one.threads, three.threads, three.mode) == (1, 3, "kernel")
    together = pa.concat_tables(outs)
    alone = one.score(table, 0)
    for column in ("row_id", "prediction", "proba_0", "proba_1"):
        assert together.column(column).equals(alone.column(column))
    np.testing.assert_array_equal(together.column("prediction").to_numpy(), model.predict(rows))


def test_a_multiclass_model_on_threads_gives_its_own_labels_and_probabilities(
    local: Project,
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(8)
    names = ["a", "b", "c"]
    frame = pd.DataFrame(rng.normal(size=(3000, 3)), columns=names)
    labels = np.select([frame["a"] > 0.5, frame["b"] > 0], ["high", "mid"], "low")
    model = HistGradientBoostingClassifier(max_iter=10).fit(frame, labels)
    local.registry.register("three", model, input_example=frame.head(20), trust=True)
    scorer = Scorer(local.registry.load("three"), (), "job1", threads=2)
    rows = pd.DataFrame(rng.normal(size=(20_000, 3)), columns=names)
    out = scorer.score(pa.Table.from_pandas(rows, preserve_index=False), 0)
    scorer.close()
    assert scorer.mode == "kernel"
    assert out.column_names[1:5] == ["prediction", "proba_high", "proba_low", "proba_mid"]
    assert out.column("prediction").to_pylist() == model.predict(rows).tolist()
    proba = model.predict_proba(rows)
    for number, label in enumerate(model.classes_):
        np.testing.assert_array_equal(out.column(f"proba_{label}").to_numpy(), proba[:, number])
