"""Safe by default: nothing that could run code loads unless the registration trusted it.

Also: config and MLmodel values can never point a loader at arbitrary files or classes,
importing never executes a model, and errors say what was expected and how to fix it.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from shipyard.core.exceptions import (
    FlavorError,
    UnsupportedModelError,
    UntrustedArtifactError,
)
from shipyard.flavors import (
    flavor_for_object,
    flavor_for_path,
    get_flavor,
    import_model,
    load_model,
    save_model,
)
from shipyard.flavors.base import PICKLE, SavedModel

ROOT = Path(__file__).resolve().parents[2]


def frame(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return X, (X["a"] + X["b"] > 0).astype("int64").to_numpy()


class MajorityClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A custom estimator: skops must report its type as untrusted."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> MajorityClassifier:
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.majority_)


class Explodes:
    """Unpickling this writes a marker file: proof of whether a pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def predict(self, X: Any) -> Any:
        return X

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.marker), "executed"))


def stored(tmp_path: Path, name: str = "stored") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    return directory


def trusted(saved: SavedModel, types: list[str] | None = None) -> dict[str, Any]:
    return {**saved.config, "trusted_types": saved.untrusted_types if types is None else types}


# ------------------------------------------------------------------------------ skops


def test_skops_reports_custom_types_and_refuses_them_untrusted(tmp_path: Path) -> None:
    X, y = frame()
    model = MajorityClassifier().fit(X, y)
    saved = save_model(model, stored(tmp_path))
    assert saved.flavor == "sklearn"
    assert saved.untrusted_types == [f"{__name__}.MajorityClassifier"]
    with pytest.raises(UntrustedArtifactError, match="MajorityClassifier"):
        load_model(tmp_path / "stored", "sklearn", saved.config, None)
    loaded = load_model(tmp_path / "stored", "sklearn", trusted(saved), None)
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_a_trusted_skops_file_is_audited_once_by_skops_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.flavors.skops_import import skops_io

    X, y = frame()
    model = MajorityClassifier().fit(X, y)
    saved = save_model(model, stored(tmp_path))
    listed: list[object] = []
    sio = skops_io()
    original = sio.get_untrusted_types

    def listing(*args: Any, **kwargs: Any) -> Any:
        listed.append(kwargs.get("file"))
        return original(*args, **kwargs)

    monkeypatch.setattr(sio, "get_untrusted_types", listing)
    loaded = load_model(tmp_path / "stored", "sklearn", trusted(saved), None)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert listed == []  # skops.io.load audits the file itself: no second read of its tree
    with pytest.raises(UntrustedArtifactError, match="MajorityClassifier"):
        load_model(tmp_path / "stored", "sklearn", saved.config, None)
    assert len(listed) == 1  # refused: the types it needs are listed for the message


def test_skops_partial_trust_names_what_is_missing(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = frame()
    model = HistGradientBoostingClassifier(max_iter=3).fit(X, y)
    saved = save_model(model, stored(tmp_path))
    assert saved.untrusted_types, "HGB trees are not on skops' safe list"
    config = trusted(saved, ["something.Else"])
    with pytest.raises(UntrustedArtifactError, match=r"TreePredictor.*--trust"):
        load_model(tmp_path / "stored", "sklearn", config, None)


def test_skops_file_import_reports_untrusted_types(tmp_path: Path) -> None:
    import skops.io as sio

    X, y = frame()
    sio.dump(MajorityClassifier().fit(X, y), tmp_path / "custom.skops")
    assert flavor_for_path(tmp_path / "custom.skops").name == "sklearn"
    saved = import_model(tmp_path / "custom.skops", stored(tmp_path))
    assert saved.untrusted_types == [f"{__name__}.MajorityClassifier"]


def test_corrupt_skops_file_is_a_flavor_error(tmp_path: Path) -> None:
    (tmp_path / "broken.skops").write_bytes(b"not a zip file")
    with pytest.raises(FlavorError, match="expected a skops file"):
        import_model(tmp_path / "broken.skops", stored(tmp_path))


def _unfitted(library: str) -> Any:
    if library == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier()
    if library == "xgboost":
        import xgboost

        return xgboost.XGBClassifier()
    return LogisticRegression()


@pytest.mark.parametrize("library", ["sklearn", "lightgbm", "xgboost"])
def test_unfitted_model_is_refused(tmp_path: Path, library: str) -> None:
    with pytest.raises(UnsupportedModelError, match=r"fit\(\)"):
        save_model(_unfitted(library), stored(tmp_path))


# ----------------------------------------------------------------------------- pickle


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickle_import_never_executes_and_load_needs_trust(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / f"model{suffix}"
    if suffix == ".joblib":
        import joblib

        joblib.dump(Explodes(str(marker)), path)
    else:
        path.write_bytes(pickle.dumps(Explodes(str(marker))))
    assert flavor_for_path(path).name == "python"
    saved = import_model(path, stored(tmp_path))
    assert saved.untrusted_types == [PICKLE]
    assert not marker.exists()
    for config in (saved.config, trusted(saved, ["sklearn.Something"])):
        with pytest.raises(UntrustedArtifactError, match="pickle"):
            load_model(tmp_path / "stored", "python", config, None)
    assert not marker.exists()


def test_cloudpickle_object_needs_trust(tmp_path: Path) -> None:
    X, _ = frame()

    class Model:
        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return (X["a"] > 0).to_numpy()

    saved = save_model(Model(), stored(tmp_path))
    assert (saved.flavor, saved.untrusted_types) == ("python", [PICKLE])
    with pytest.raises(UntrustedArtifactError):
        load_model(tmp_path / "stored", "python", saved.config, None)
    loaded = load_model(tmp_path / "stored", "python", trusted(saved), None)
    assert np.array_equal(loaded.predict(X), (X["a"] > 0).to_numpy())


def test_object_without_predict_is_unsupported() -> None:
    with pytest.raises(UnsupportedModelError, match=r"predict\(\)"):
        flavor_for_object(object())


# -------------------------------------------------------------- files and class names


@pytest.mark.parametrize("flavor", ["python", "sklearn", "lightgbm", "xgboost", "onnx"])
def test_config_cannot_point_outside_the_model_folder(tmp_path: Path, flavor: str) -> None:
    (tmp_path / "outside.pkl").write_bytes(b"x")
    config = {"file": "../outside.pkl", "trusted_types": [PICKLE], "model_class": "Booster"}
    with pytest.raises(FlavorError, match="outside the model folder"):
        get_flavor(flavor).load(stored(tmp_path), config)


@pytest.mark.parametrize("flavor", ["lightgbm", "xgboost"])
def test_model_class_comes_from_an_allow_list(tmp_path: Path, flavor: str) -> None:
    directory = stored(tmp_path)
    (directory / "model.txt").write_text("tree\n")
    with pytest.raises(FlavorError, match=r"'os\.system'"):
        get_flavor(flavor).load(directory, {"file": "model.txt", "model_class": "os.system"})


def test_text_file_that_is_not_lightgbm_is_not_recognised(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedModelError, match="does not recognise"):
        flavor_for_path(tmp_path / "notes.txt")


def test_lightgbm_unreadable_model_is_a_flavor_error(tmp_path: Path) -> None:
    directory = stored(tmp_path)
    (directory / "model.txt").write_text("tree\nversion=v4\nnot really a model\n")
    with pytest.raises(FlavorError, match="LightGBM"):
        get_flavor("lightgbm").load(directory, {"file": "model.txt", "model_class": "Booster"})


# ----------------------------------------------------------------------------- MLflow


def write_mlmodel(folder: Path, flavors: dict[str, Any], **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, **extra}))
    return folder


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MLflow folders written by MLflow itself: skops, cloudpickle and a custom pyfunc."""
    import mlflow.pyfunc
    import mlflow.sklearn

    root = tmp_path_factory.mktemp("mlflow")
    X, y = frame()
    model = LogisticRegression().fit(X, y)
    for fmt in ("skops", "cloudpickle"):
        mlflow.sklearn.save_model(
            model,
            str(root / fmt),
            serialization_format=fmt,
            input_example=X.head(3),
            pip_requirements=["scikit-learn"],
        )

    class Constant(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: pd.DataFrame) -> np.ndarray:
            return np.ones(len(model_input))

    mlflow.pyfunc.save_model(
        str(root / "pyfunc"),
        python_model=Constant(),
        input_example=X.head(3),
        pip_requirements=["pandas"],
    )
    return {"skops": root / "skops", "cloudpickle": root / "cloudpickle", "pyfunc": root / "pyfunc"}


@pytest.mark.filterwarnings("ignore::UserWarning:sklearn.*")
def test_mlflow_skops_trusted_types_in_mlmodel_are_not_a_trust_decision(
    tmp_path: Path, mlflow_models: dict[str, Path]
) -> None:
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = frame()
    folder = tmp_path / "mlflow-hgb"
    folder.mkdir()
    sio.dump(HistGradientBoostingClassifier(max_iter=3).fit(X, y), folder / "model.skops")
    listed = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    write_mlmodel(
        folder,
        {
            "sklearn": {
                "pickled_model": "model.skops",
                "serialization_format": "skops",
                "skops_trusted_types": listed,
            }
        },
    )
    saved = import_model(folder, stored(tmp_path))
    assert saved.untrusted_types == listed
    with pytest.raises(UntrustedArtifactError, match="TreePredictor"):
        load_model(tmp_path / "stored", "mlflow", saved.config, None)
    assert load_model(tmp_path / "stored", "mlflow", trusted(saved), None).predict(X).shape == (60,)


@pytest.mark.parametrize("kind", ["cloudpickle", "pyfunc"])
def test_mlflow_pickles_need_trust(
    tmp_path: Path, mlflow_models: dict[str, Path], kind: str
) -> None:
    saved = import_model(mlflow_models[kind], stored(tmp_path))
    assert saved.untrusted_types == [PICKLE]
    with pytest.raises(UntrustedArtifactError, match="pickle"):
        load_model(tmp_path / "stored", "mlflow", saved.config, None)


def test_mlflow_skops_model_reads_signature_and_example(
    tmp_path: Path, mlflow_models: dict[str, Path]
) -> None:
    saved = import_model(mlflow_models["skops"], stored(tmp_path))
    assert saved.untrusted_types == []
    assert saved.signature is not None
    assert [(c.name, c.dtype, c.nullable) for c in saved.signature.inputs] == [
        ("a", "float64", False),
        ("b", "float64", False),
    ]
    assert saved.input_example is not None
    assert list(saved.input_example.columns) == ["a", "b"]
    assert len(saved.input_example) == 3


def test_mlflow_signature_types_and_records_example(tmp_path: Path) -> None:
    from shipyard.flavors.mlflow import mlflow_signature, read_input_example

    specs = [
        {"type": t, "name": f"c_{t}", "required": t != "double"}
        for t in ("double", "float", "long", "integer", "boolean", "string", "datetime", "binary")
    ]
    meta = {"signature": {"inputs": json.dumps(specs), "outputs": None}}
    signature = mlflow_signature(meta)
    assert signature is not None
    assert [c.dtype for c in signature.inputs] == [
        "float64",
        "float32",
        "int64",
        "int32",
        "bool",
        "string",
        "datetime",
        "object",
    ]
    assert [c.nullable for c in signature.inputs] == [True] + [False] * 7
    tensor = {"signature": {"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]'}}
    assert mlflow_signature(tensor) is None
    (tmp_path / "input_example.json").write_text('[{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]')
    example = read_input_example(tmp_path, {}, None)
    assert example is not None
    assert example.to_dict("list") == {"x": [1, 2], "y": ["a", "b"]}
    (tmp_path / "input_example.json").unlink()
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.5], [2.5]]}}
    (tmp_path / "serving_input_example.json").write_text(json.dumps(body))
    example = read_input_example(tmp_path, {}, None)
    assert example is not None
    assert example["x"].tolist() == [1.5, 2.5]


def test_mlflow_model_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.pkl").write_bytes(b"x")
    folder = write_mlmodel(
        tmp_path / "evil",
        {"sklearn": {"pickled_model": "../secret.pkl", "serialization_format": "pickle"}},
    )
    saved = import_model(folder, stored(tmp_path))
    with pytest.raises(FlavorError, match="outside the model folder"):
        load_model(tmp_path / "stored", "mlflow", trusted(saved), None)


def test_mlflow_xgboost_class_comes_from_the_allow_list(tmp_path: Path) -> None:
    folder = write_mlmodel(
        tmp_path / "evil",
        {"xgboost": {"data": "model.ubj", "model_class": "builtins.eval", "model_format": "ubj"}},
    )
    with pytest.raises(FlavorError, match=r"'builtins\.eval'"):
        import_model(folder, stored(tmp_path))


def test_mlflow_unknown_flavor_is_unsupported(tmp_path: Path) -> None:
    folder = write_mlmodel(tmp_path / "torch", {"pytorch": {"model_data": "data"}})
    with pytest.raises(UnsupportedModelError, match="pytorch"):
        import_model(folder, stored(tmp_path))


def test_mlflow_unreadable_mlmodel(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: [unclosed")
    with pytest.raises(UnsupportedModelError, match="YAML"):
        import_model(folder, stored(tmp_path))


@pytest.mark.slow
def test_mlflow_pyfunc_without_mlflow_is_a_missing_dependency(
    tmp_path: Path, mlflow_models: dict[str, Path]
) -> None:
    """Native MLflow loads work without mlflow; a custom pyfunc says what to install."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        sys.modules["mlflow"] = None  # import mlflow now fails
        from shipyard.core.exceptions import MissingDependencyError
        from shipyard.flavors import import_model, load_model

        root = Path({str(tmp_path)!r})
        for kind in ("skops", "pyfunc"):
            target = root / kind
            target.mkdir()
            saved = import_model(Path({str(mlflow_models["skops"].parent)!r}) / kind, target)
            config = {{**saved.config, "trusted_types": saved.untrusted_types}}
            try:
                model = load_model(target, "mlflow", config, saved.signature)
            except MissingDependencyError as exc:
                print(kind, "MissingDependencyError", exc)
            else:
                print(kind, "loaded", model.predict(saved.input_example).shape)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "skops loaded (3,)"
    assert lines[1].startswith("pyfunc MissingDependencyError")
    assert "pip install 'shipyard[mlflow]'" in lines[1]
