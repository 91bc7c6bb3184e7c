"""``--compile onnx``: models converted at load, adopted only when their answers match."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from tests.helpers import make_settings
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.cli.serve import SERVE_ENV, app_from_environment
from shipyard.serving import ServeSettings, WorkerConfig, create_app
from shipyard.serving.compile import ONNX_ATOL, CompileError, compile_onnx, same_answers

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.anyio


def _numeric(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "charges": rng.normal(70, 20, rows),
            "visits": rng.integers(0, 10, rows),
        }
    )
    target = ((frame["age"] - 40) / 10 + (frame["charges"] - 70) / 20 > 0).to_numpy(int)
    return frame, target


@pytest.fixture(scope="module")
def compile_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """``linear`` (scaler + logistic regression), ``trees`` (HGB), ``custom`` (unconvertible)."""
    frame, target = _numeric(300, 0)
    example = frame.iloc[:40]
    linear = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, target)
    trees = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame, target)
    custom = make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(frame, target)
    root = tmp_path_factory.mktemp("compile")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        for name, model in (("linear", linear), ("trees", trees), ("custom", custom)):
            project.registry.register(name, model, input_example=example, trust=True)
        yield project


def _compiled() -> ServeSettings:
    return ServeSettings(compile="onnx", prediction_log=False)


async def _answers(project: Project, name: str, settings: ServeSettings) -> tuple[str, Any]:
    frame, _ = _numeric(25, 1)
    app = create_app(project.registry, [f"{name}:1"], settings)
    async with serving(app) as client:
        listed = (await client.get("/v1/models")).json()
        answer = await client.post(f"/v1/models/{name}/predict", content=records(frame))
    assert answer.status_code == 200, answer.text
    (described,) = listed["models"] if isinstance(listed, dict) else listed
    return described["input_mode"], answer.json()


def _original(project: Project, name: str) -> tuple[np.ndarray, np.ndarray]:
    frame, _ = _numeric(25, 1)
    loaded = project.registry.load(f"{name}:1")
    return np.asarray(loaded.predict(frame)), np.asarray(loaded.predict_proba(frame))


@pytest.mark.parametrize("name", ["linear", "trees"])
async def test_compiled_model_is_served_with_onnx_and_answers_the_same(
    compile_project: Project, name: str
) -> None:
    mode, body = await _answers(compile_project, name, _compiled())
    labels, proba = _original(compile_project, name)
    assert mode == "onnx"
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], proba, rtol=0, atol=ONNX_ATOL)


async def test_unconvertible_model_falls_back_and_says_why(
    compile_project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="shipyard.serving"):
        mode, body = await _answers(compile_project, "custom", _compiled())
    labels, proba = _original(compile_project, "custom")
    assert mode != "onnx"
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], proba, rtol=1e-9)
    (line,) = [r.getMessage() for r in caplog.records if "--compile onnx" in r.getMessage()]
    assert "custom:1" in line
    assert "FunctionTransformer" in line


@pytest.mark.parametrize("name", ["linear", "trees", "custom"])
async def test_without_the_flag_nothing_changes(compile_project: Project, name: str) -> None:
    mode, body = await _answers(compile_project, name, ServeSettings(prediction_log=False))
    labels, proba = _original(compile_project, name)
    assert mode != "onnx"
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], proba, rtol=1e-9)


async def test_mismatching_conversion_is_not_adopted(
    compile_project: Project, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.serving import compile as compile_module

    def off_by_one(self: Any, columns: dict[str, np.ndarray]) -> Any:
        labels, proba = real_run(self, columns)
        return 1 - labels, proba

    real_run = compile_module.OnnxModel.run
    monkeypatch.setattr(compile_module.OnnxModel, "run", off_by_one)
    with caplog.at_level(logging.WARNING, logger="shipyard.serving"):
        mode, body = await _answers(compile_project, "linear", _compiled())
    labels, _ = _original(compile_project, "linear")
    assert mode != "onnx"
    assert body["predictions"] == labels.tolist()
    assert any("labels differ" in r.getMessage() for r in caplog.records)


def test_string_columns_become_string_inputs(
    trained: tuple[Any, pd.DataFrame, np.ndarray],
) -> None:
    model, frame, _ = trained  # a ColumnTransformer selecting columns by name, one of strings
    project_signature = _signature(frame)
    onnx_model = compile_onnx(model, project_signature, model.classes_.tolist())
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    labels, proba = onnx_model.run(columns)
    assert same_answers((labels, proba), (model.predict(frame), model.predict_proba(frame))) in (
        None,
        # float32 trees may round a row near a threshold differently: then it is refused
        *[f"{n} of {len(frame)} labels differ" for n in range(1, 4)],
    )


def test_unknown_models_and_missing_signatures_are_refused() -> None:
    with pytest.raises(CompileError, match="no input signature"):
        compile_onnx(LogisticRegression(), None, None)
    frame, _ = _numeric(5, 0)
    with pytest.raises(CompileError, match="cannot be converted"):
        compile_onnx(object(), _signature(frame), None)


def test_same_answers_tolerance() -> None:
    labels = np.array([0, 1])
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert same_answers((labels, proba + 5e-6), (labels, proba)) is None
    assert "probabilities differ" in str(same_answers((labels, proba + 1e-4), (labels, proba)))
    assert "1 of 2 labels differ" in str(same_answers((np.array([0, 0]), proba), (labels, proba)))
    assert same_answers((np.array([1.0, 2.0]), None), (np.array([1.0, 2.0 + 1e-6]), None)) is None


def test_workers_get_the_compile_setting(
    compile_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve = ServeSettings(max_batch=8, max_wait_ms=1.0, prediction_log=False, compile="onnx")
    config = WorkerConfig(
        project=str(compile_project.root), refs=["linear:1"], access_log=False, serve=serve
    )
    monkeypatch.setenv(SERVE_ENV, config.model_dump_json())
    app = app_from_environment()
    assert app.state.server.settings.compile == "onnx"


def _signature(frame: pd.DataFrame) -> Any:
    from shipyard.core.schema import Signature

    return Signature.infer(frame)


def test_module_documents_the_tolerance() -> None:
    from shipyard.serving import compile as compile_module

    assert "atol=1e-5" in str(compile_module.__doc__)
    assert Path(str(compile_module.__file__)).name == "compile.py"
