"""The step graph is refused before anything runs: cycles, clashes, type mismatches, bad params."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.helpers import make_settings

from shipyard import ConfigError, InvalidArgumentError, NotFoundError
from shipyard.pipelines import Pipeline, load_module_pipeline, pipeline_modules, step
from shipyard.pipelines.cache import cache_key
from shipyard.pipelines.plan import parse_param_options, resolve_params
from shipyard.pipelines.resolve import resolve_pipeline

SQLITE = "sqlite:///{}"


@step(outputs="raw/numbers")
def numbers(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n)})


@step(inputs={"frame": "raw/numbers"}, outputs="processed/scaled")
def scale(frame: pd.DataFrame, factor: float = 2.0) -> pd.DataFrame:
    return frame * factor


def test_order_and_external_inputs() -> None:
    @step(inputs={"scaled": "processed/scaled", "extra": "raw/extra"}, outputs="artifacts/fit")
    def fit(scaled: pd.DataFrame, extra: pd.DataFrame) -> Any:
        return None

    pipeline = Pipeline.from_steps("p", [fit, scale, numbers])
    assert pipeline.order() == ["numbers", "scale", "fit"]
    assert pipeline.upstream("fit") == ["scale"]
    # raw/extra has no producer: the runner refuses the run unless it is stored
    assert pipeline.external_inputs() == ["raw/extra"]
    assert pipeline.external_inputs(["fit"]) == ["processed/scaled", "raw/extra"]


def test_a_cycle_is_named_step_by_step() -> None:
    @step(inputs={"c": "artifacts/c"}, outputs="artifacts/a")
    def a(c: Any) -> Any: ...

    @step(inputs={"a": "artifacts/a"}, outputs="artifacts/b")
    def b(a: Any) -> Any: ...

    @step(inputs={"b": "artifacts/b"}, outputs="artifacts/c")
    def c(b: Any) -> Any: ...

    with pytest.raises(ConfigError, match="has a cycle: ") as caught:
        Pipeline.from_steps("loop", [a, b, c])
    cycle = caught.value.message.split("cycle: ")[1].split(";")[0].split(" → ")
    assert len(cycle) == 4
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_two_producers_and_two_names_are_refused() -> None:
    @step(outputs="raw/numbers")
    def again() -> pd.DataFrame:
        return pd.DataFrame()

    with pytest.raises(ConfigError, match="'numbers' and 'again' both write raw/numbers"):
        Pipeline.from_steps("p", [numbers, again])
    with pytest.raises(ConfigError, match="two steps named 'numbers'"):
        Pipeline.from_steps("p", [numbers, numbers])
    with pytest.raises(ConfigError, match="has no steps"):
        Pipeline.from_steps("p", [])


def test_type_mismatches_are_refused() -> None:
    @step(inputs={"frame": "raw/numbers"}, outputs="artifacts/n")
    def as_int(frame: int) -> int:
        return frame

    with pytest.raises(ConfigError, match=r"raw/numbers .* annotate it pd\.DataFrame"):
        Pipeline.from_steps("p", [numbers, as_int])

    @step(outputs="processed/bad")
    def not_a_frame() -> dict[str, int]:
        return {}

    with pytest.raises(ConfigError, match="writes dataset processed/bad but returns"):
        Pipeline.from_steps("p", [not_a_frame])


def test_bad_declarations_are_refused() -> None:
    def no_default(frame: pd.DataFrame, depth: int) -> pd.DataFrame:
        return frame

    with pytest.raises(ConfigError, match="'depth' is neither an input nor has a default"):
        step(no_default, inputs={"frame": "raw/numbers"})
    with pytest.raises(ConfigError, match="declares input 'other'"):
        step(no_default, inputs={"other": "raw/numbers"})
    with pytest.raises(ConfigError, match="is not a data item"):
        step(numbers.func, outputs="elsewhere/numbers")
    with pytest.raises(ConfigError, match="pins a version"):
        step(numbers.func, outputs="raw/numbers:2")
    with pytest.raises(ConfigError, match="must be positive"):
        step(numbers.func, outputs="raw/numbers", retries=-1)


def test_params_layer_defaults_settings_and_call() -> None:
    pipeline = Pipeline.from_steps("p", [numbers, scale])
    params = resolve_params(pipeline, {"scale": {"factor": 3.0}}, {"numbers": {"n": 9}})
    assert params == {"numbers": {"n": 9}, "scale": {"factor": 3.0}}
    with pytest.raises(
        ConfigError, match=r"\[pipelines.p.params\] scale.fctr: step 'scale' has no"
    ):
        resolve_params(pipeline, {"scale": {"fctr": 3.0}})
    with pytest.raises(ConfigError, match="--param names unknown step"):
        resolve_params(pipeline, None, {"scal": {"factor": 1}})
    assert parse_param_options(["scale.factor=4.5", "numbers.n=2", "scale.label=a b"]) == {
        "scale": {"factor": 4.5, "label": "a b"},
        "numbers": {"n": 2},
    }
    with pytest.raises(InvalidArgumentError, match=r"STEP\.KEY=VALUE"):
        parse_param_options(["factor=2"])


def test_cache_key_follows_code_inputs_and_params() -> None:
    inputs = {"raw/numbers": {"kind": "dataset", "ref": "raw/numbers:1", "fingerprint": "f1"}}
    base = cache_key(scale, "p", inputs, {"factor": 2.0})
    assert base == cache_key(scale, "p", dict(inputs), {"factor": 2.0})
    assert base != cache_key(scale, "p", inputs, {"factor": 3.0})
    assert base != cache_key(scale, "q", inputs, {"factor": 2.0})
    changed = {"raw/numbers": {**inputs["raw/numbers"], "fingerprint": "f2"}}
    assert base != cache_key(scale, "p", changed, {"factor": 2.0})


def test_modules_are_found_and_resolved(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    settings = make_settings(
        root, SQLITE.format(tmp_path / "m.db"), '[pipelines.other]\nkind = "custom"\n'
    )
    folder = root / "pipelines"
    folder.mkdir()
    (folder / "good.py").write_text(
        "import pandas as pd\nfrom shipyard import step\n\n"
        "@step(outputs='raw/a')\ndef a() -> pd.DataFrame:\n    return pd.DataFrame()\n"
    )
    (folder / "broken.py").write_text("raise RuntimeError('no luck')\n")
    (folder / "_helpers.py").write_text("")
    assert list(pipeline_modules(root)) == ["broken", "good"]
    assert list(resolve_pipeline(settings, "good").steps) == ["a"]
    with pytest.raises(ConfigError, match=r"importing pipeline 'broken' .* RuntimeError: no luck"):
        resolve_pipeline(settings, "broken")
    with pytest.raises(NotFoundError, match="pipelines here: broken, good, other"):
        resolve_pipeline(settings, "nope")
    with pytest.raises(ConfigError, match="kind = 'custom'"):
        resolve_pipeline(settings, "other")
    with pytest.raises(NotFoundError, match="no pipeline module"):
        load_module_pipeline(folder / "missing.py")
