"""The conformance cases: one fitted model (or model file / MLflow folder) per format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.schema import Signature
from shipyard.flavors import LoadedModel, import_model, load_model, save_model
from shipyard.flavors.base import SavedModel

NUMERIC = ["num_a", "num_b", "count"]
HGB_TREES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def make_rows(n: int, seed: int, *, color: str | None = "str") -> pd.DataFrame:
    """Numeric columns (``num_a`` with missing values), an int column and maybe a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "num_a": rng.normal(size=n),
            "num_b": rng.uniform(0, 10, size=n),
            "count": rng.integers(0, 20, size=n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "num_a"] = np.nan
    if n > 3:
        frame.loc[3, "num_a"] = np.nan  # every example (head) shows a missing value
    if color is not None:
        frame["color"] = pd.Series(rng.choice(["red", "green", "blue"], n), dtype=color)
    return frame


def make_target(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """A noisy binary label depending on every column."""
    rng = np.random.default_rng(seed)
    score = frame["num_b"] / 5 + frame["num_a"].fillna(0) + frame["count"] / 20
    if "color" in frame:
        score = score + (frame["color"].astype(str) == "red") * 1.0
    return (score + rng.normal(0, 0.5, len(frame)) > 1.8).astype("int64").to_numpy()


@dataclass
class Built:
    """A stored model plus what the original model predicts, to compare against."""

    flavor: str
    saved: SavedModel
    directory: Path
    rows: Callable[[int, int], pd.DataFrame]
    predict: Callable[[pd.DataFrame], Any]
    predict_proba: Callable[[pd.DataFrame], Any] | None = None
    example: pd.DataFrame | None = None
    mlflow_dir: Path | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def loaded(self) -> LoadedModel:
        config = {**self.saved.config, "trusted_types": self.saved.untrusted_types}
        return load_model(self.directory, self.flavor, config, self.signature)

    @cached_property
    def signature(self) -> Signature:
        if self.saved.signature is not None:
            return self.saved.signature
        example = self.example if self.example is not None else self.saved.input_example
        assert example is not None, "a case needs an example or a format signature"
        return Signature.infer(example)


Builder = Callable[[Path], Built]
CASES: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        CASES[name] = builder
        return builder

    return register


def _saved(model: object, root: Path, flavor: str) -> tuple[SavedModel, Path]:
    directory = root / "stored"
    directory.mkdir()
    saved = save_model(model, directory)
    assert saved.flavor == flavor
    return saved, directory


def _imported(path: Path, root: Path, flavor: str) -> tuple[SavedModel, Path]:
    directory = root / "stored"
    directory.mkdir()
    saved = import_model(path, directory)
    assert saved.flavor == flavor
    return saved, directory


def _cls_rows(color: str | None) -> Callable[[int, int], pd.DataFrame]:
    return lambda n, seed: make_rows(n, seed, color=color)


def _float32_rows(n: int, seed: int) -> pd.DataFrame:
    return make_rows(n, seed, color=None)


# ---------------------------------------------------------------- scikit-learn (skops)


def _hgb_pipeline() -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = make_rows(1500, 0)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["color"]),
        remainder="passthrough",
    )
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=15, random_state=0))
    return model.fit(X, make_target(X)), X


@case("sklearn-hgb-pipeline")
def _sklearn_hgb(root: Path) -> Built:
    model, X = _hgb_pipeline()
    saved, directory = _saved(model, root, "sklearn")
    assert HGB_TREES in saved.untrusted_types
    return Built(
        "sklearn", saved, directory, _cls_rows("str"), model.predict, model.predict_proba, X
    )


@case("sklearn-skops-file")
def _sklearn_skops_file(root: Path) -> Built:
    import skops.io as sio
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    X = make_rows(500, 1, color=None)
    model = make_pipeline(SimpleImputer(), Ridge()).fit(X, X["num_b"] * 2)
    sio.dump(model, root / "ridge.skops")
    saved, directory = _imported(root / "ridge.skops", root, "sklearn")
    return Built("sklearn", saved, directory, _float32_rows, model.predict, None, X)


# ---------------------------------------------------------------------------- LightGBM


@case("lightgbm-classifier")
def _lgbm_classifier(root: Path) -> Built:
    import lightgbm

    X = make_rows(1500, 2, color="category")
    model = lightgbm.LGBMClassifier(n_estimators=15, num_leaves=8, verbose=-1)
    model.fit(X, np.where(make_target(X) == 1, "churn", "stay"))
    saved, directory = _saved(model, root, "lightgbm")
    assert saved.untrusted_types == []
    assert saved.config["classes"] == ["churn", "stay"]
    return Built(
        "lightgbm",
        saved,
        directory,
        _cls_rows("category"),
        model.predict,
        model.predict_proba,
        X,
    )


@case("lightgbm-multiclass")
def _lgbm_multiclass(root: Path) -> Built:
    import lightgbm

    X = make_rows(1500, 16, color=None)
    labels = np.array([3, 7, 9])[np.digitize(X["num_b"], [3.3, 6.6])]
    model = lightgbm.LGBMClassifier(n_estimators=8, num_leaves=8, verbose=-1).fit(X, labels)
    saved, directory = _saved(model, root, "lightgbm")
    assert saved.config["classes"] == [3, 7, 9]
    return Built("lightgbm", saved, directory, _float32_rows, model.predict, model.predict_proba, X)


@case("lightgbm-booster")
def _lgbm_booster(root: Path) -> Built:
    import lightgbm

    X = make_rows(1500, 3, color=None)
    data = lightgbm.Dataset(X, X["num_b"] + X["num_a"].fillna(0))
    booster = lightgbm.train({"objective": "regression", "verbose": -1}, data, 10)
    saved, directory = _saved(booster, root, "lightgbm")
    assert saved.config["model_class"] == "Booster"
    return Built("lightgbm", saved, directory, _float32_rows, booster.predict, None, X)


@case("lightgbm-text-file")
def _lgbm_text_file(root: Path) -> Built:
    import lightgbm

    X = make_rows(1500, 4, color=None)
    data = lightgbm.Dataset(X, make_target(X))
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, data, 10)
    booster.save_model(str(root / "model.lgb"))
    saved, directory = _imported(root / "model.lgb", root, "lightgbm")
    assert saved.config["objective"].startswith("binary")
    return Built("lightgbm", saved, directory, _float32_rows, booster.predict, None, X)


# ----------------------------------------------------------------------------- XGBoost


@case("xgboost-classifier")
def _xgb_classifier(root: Path) -> Built:
    import xgboost

    X = make_rows(1500, 5, color="category")
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, enable_categorical=True)
    model.fit(X, make_target(X))
    saved, directory = _saved(model, root, "xgboost")
    assert saved.config["model_class"] == "XGBClassifier"
    return Built(
        "xgboost",
        saved,
        directory,
        _cls_rows("category"),
        model.predict,
        model.predict_proba,
        X,
    )


@case("xgboost-json-file")
def _xgb_json_file(root: Path) -> Built:
    import xgboost

    X = make_rows(1500, 6, color=None)
    model = xgboost.XGBRegressor(n_estimators=10, max_depth=3).fit(X, X["num_b"])
    model.save_model(str(root / "model.json"))
    saved, directory = _imported(root / "model.json", root, "xgboost")
    assert saved.config["model_class"] == "XGBRegressor"
    return Built("xgboost", saved, directory, _float32_rows, model.predict, None, X)


@case("xgboost-booster")
def _xgb_booster(root: Path) -> Built:
    import xgboost

    X = make_rows(1500, 7, color=None)
    booster = xgboost.train({"max_depth": 3}, xgboost.DMatrix(X, label=X["num_b"]), 8)
    saved, directory = _saved(booster, root, "xgboost")

    def predict(frame: pd.DataFrame) -> Any:
        return booster.predict(xgboost.DMatrix(frame))

    return Built("xgboost", saved, directory, _float32_rows, predict, None, X)


# -------------------------------------------------------------------------------- ONNX


def _onnx_numeric() -> tuple[Any, pd.DataFrame]:
    from skl2onnx import to_onnx
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X = make_rows(1000, 8, color=None)
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, make_target(X))
    return to_onnx(model, X.to_numpy(np.float32)[:1], target_opset=17), X


def _session_reference(proto: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """What onnxruntime gives on the original graph (ZipMap probabilities as an array)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def predict(frame: pd.DataFrame) -> Any:
        return session.run(None, {name: frame.to_numpy(np.float32)})[0]

    def proba(frame: pd.DataFrame) -> Any:
        zipmap = session.run(None, {name: frame.to_numpy(np.float32)})[1]
        return np.asarray([[row[0], row[1]] for row in zipmap], dtype=np.float32)

    return predict, proba


@case("onnx-numeric")
def _onnx_numeric_case(root: Path) -> Built:
    proto, X = _onnx_numeric()
    saved, directory = _saved(proto, root, "onnx")
    assert saved.config["classes"] == [0, 1]
    predict, proba = _session_reference(proto)
    return Built("onnx", saved, directory, _float32_rows, predict, proba, X)


@case("onnx-per-column-file")
def _onnx_per_column(root: Path) -> Built:
    import onnx
    import onnxruntime
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = make_rows(1000, 9)[["num_a", "num_b", "color"]]
    encode = make_column_transformer(
        (SimpleImputer(), ["num_a", "num_b"]), (OneHotEncoder(), ["color"])
    )
    model = make_pipeline(encode, LogisticRegression()).fit(X, make_target(make_rows(1000, 9)))
    types = [
        ("num_a", FloatTensorType([None, 1])),
        ("num_b", FloatTensorType([None, 1])),
        ("color", StringTensorType([None, 1])),
    ]
    proto = to_onnx(model, initial_types=types, options={"zipmap": False}, target_opset=17)
    onnx.save_model(proto, str(root / "per_column.onnx"))
    saved, directory = _imported(root / "per_column.onnx", root, "onnx")
    assert saved.signature is not None
    assert saved.signature.columns == ["num_a", "num_b", "color"]
    assert saved.signature.column("color").dtype == "string"
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )

    def feed(frame: pd.DataFrame) -> dict[str, Any]:
        return {
            "num_a": frame[["num_a"]].to_numpy(np.float32),
            "num_b": frame[["num_b"]].to_numpy(np.float32),
            "color": frame[["color"]].to_numpy(object),
        }

    return Built(
        "onnx",
        saved,
        directory,
        lambda n, seed: make_rows(n, seed)[["num_a", "num_b", "color"]],
        lambda frame: session.run(None, feed(frame))[0],
        lambda frame: session.run(None, feed(frame))[1],
    )


# ------------------------------------------------------------------------------ Python


class ThresholdModel:
    """A hand-written model: anything with predict() is accepted (as a pickle)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.classes_ = np.array([0, 1])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(frame)[:, 1] > 0.5).astype("int64")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-(frame["num_b"].to_numpy() - self.threshold)))
        return np.column_stack([1 - p, p])


@case("python-cloudpickle")
def _python_object(root: Path) -> Built:
    model = ThresholdModel(4.2)
    saved, directory = _saved(model, root, "python")
    assert saved.untrusted_types == ["pickle"]
    X = make_rows(200, 10, color=None)
    return Built("python", saved, directory, _float32_rows, model.predict, model.predict_proba, X)


@case("python-joblib-file")
def _python_joblib(root: Path) -> Built:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    X = make_rows(800, 11, color=None)
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0)
    model.fit(X, make_target(X))
    joblib.dump(model, root / "forest.joblib")
    saved, directory = _imported(root / "forest.joblib", root, "python")
    assert saved.config["serialization"] == "joblib"
    return Built("python", saved, directory, _float32_rows, model.predict, model.predict_proba, X)


# ------------------------------------------------------------------------------ MLflow


def _mlflow_case(
    root: Path,
    save: Callable[[Path], None],
    rows: Callable[[int, int], pd.DataFrame],
    predict: Callable[[pd.DataFrame], Any],
    proba: Callable[[pd.DataFrame], Any] | None,
    loader: str,
) -> Built:
    folder = root / "mlflow-model"
    save(folder)
    saved, directory = _imported(folder, root, "mlflow")
    assert saved.config["loader"] == loader
    assert saved.input_example is not None
    return Built("mlflow", saved, directory, rows, predict, proba, mlflow_dir=folder)


@case("mlflow-sklearn-pickle")
def _mlflow_sklearn_pickle(root: Path) -> Built:
    import mlflow.sklearn

    model, X = _hgb_pipeline()

    def save(folder: Path) -> None:
        mlflow.sklearn.save_model(
            model,
            str(folder),
            serialization_format="cloudpickle",
            input_example=X.head(5),
            pip_requirements=["scikit-learn"],
        )

    built = _mlflow_case(
        root, save, _cls_rows("str"), model.predict, model.predict_proba, "sklearn"
    )
    assert built.saved.untrusted_types == ["pickle"]
    return built


@case("mlflow-sklearn-skops")
def _mlflow_sklearn_skops(root: Path) -> Built:
    import mlflow.sklearn

    model, X = _hgb_pipeline()

    def save(folder: Path) -> None:
        mlflow.sklearn.save_model(
            model,
            str(folder),
            serialization_format="skops",
            skops_trusted_types=[HGB_TREES],
            input_example=X.head(5),
            pip_requirements=["scikit-learn"],
        )

    built = _mlflow_case(
        root, save, _cls_rows("str"), model.predict, model.predict_proba, "sklearn"
    )
    assert built.saved.untrusted_types == [HGB_TREES]
    return built


@case("mlflow-lightgbm-booster")
def _mlflow_lightgbm(root: Path) -> Built:
    import lightgbm
    import mlflow.lightgbm

    X = make_rows(1500, 12, color=None)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(X, make_target(X)), 10
    )

    def save(folder: Path) -> None:
        mlflow.lightgbm.save_model(
            booster, str(folder), input_example=X.head(5), pip_requirements=["lightgbm"]
        )

    built = _mlflow_case(root, save, _float32_rows, booster.predict, None, "lightgbm")
    assert built.saved.untrusted_types == []
    return built


@case("mlflow-lightgbm-sklearn")
def _mlflow_lightgbm_sklearn(root: Path) -> Built:
    import lightgbm
    import mlflow.lightgbm

    X = make_rows(1500, 13, color=None)
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, make_target(X))

    def save(folder: Path) -> None:
        mlflow.lightgbm.save_model(
            model, str(folder), input_example=X.head(5), pip_requirements=["lightgbm"]
        )

    built = _mlflow_case(root, save, _float32_rows, model.predict, model.predict_proba, "sklearn")
    assert "lightgbm.sklearn.LGBMClassifier" in built.saved.untrusted_types
    return built


@case("mlflow-xgboost")
def _mlflow_xgboost(root: Path) -> Built:
    import mlflow.xgboost
    import xgboost

    X = make_rows(1500, 14, color=None)
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, make_target(X))

    def save(folder: Path) -> None:
        mlflow.xgboost.save_model(
            model, str(folder), input_example=X.head(5), pip_requirements=["xgboost"]
        )

    built = _mlflow_case(root, save, _float32_rows, model.predict, model.predict_proba, "xgboost")
    assert built.saved.untrusted_types == []
    return built


@case("mlflow-onnx")
def _mlflow_onnx(root: Path) -> Built:
    import mlflow.onnx

    proto, X = _onnx_numeric()

    def save(folder: Path) -> None:
        mlflow.onnx.save_model(
            proto, str(folder), input_example=X.head(5), pip_requirements=["onnxruntime"]
        )

    predict, proba = _session_reference(proto)
    built = _mlflow_case(root, save, _float32_rows, predict, proba, "onnx")
    assert built.saved.untrusted_types == []
    return built


def _pyfunc_model() -> Any:
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: pd.DataFrame) -> np.ndarray:
            return (model_input["num_b"] * 2 + model_input["count"]).to_numpy()

    return Doubler()


@case("mlflow-pyfunc")
def _mlflow_pyfunc(root: Path) -> Built:
    import mlflow.pyfunc

    model = _pyfunc_model()
    X = make_rows(200, 15, color=None)

    def save(folder: Path) -> None:
        mlflow.pyfunc.save_model(
            str(folder), python_model=model, input_example=X.head(5), pip_requirements=["pandas"]
        )

    def predict(frame: pd.DataFrame) -> Any:
        return model.predict(None, frame)

    built = _mlflow_case(root, save, _float32_rows, predict, None, "pyfunc")
    assert built.saved.untrusted_types == ["pickle"]
    return built
