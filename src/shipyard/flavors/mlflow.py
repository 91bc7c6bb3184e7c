"""MLflow model folders (``MLmodel`` + files), loaded natively without MLflow when possible.

``import_path`` copies the whole folder and reads ``MLmodel`` with ``yaml.safe_load``.
The model is then loaded by the matching shipyard flavor's code, not by MLflow:

* ``sklearn``: the ``pickled_model`` file, skops (untrusted: the types skops reports for
  the file itself; ``skops_trusted_types`` in MLmodel is informative, never a trust
  decision) or pickle/cloudpickle (untrusted: :data:`PICKLE`);
* ``lightgbm``: a Booster's text file natively; the scikit-learn API (skops or pickle)
  like ``sklearn``;
* ``xgboost``: the model file natively, the class from the xgboost flavor's allow-list;
* ``onnx``: the ``.onnx`` file with onnxruntime.

Only a folder with no flavor shipyard knows (a custom ``python_function`` model, with its
``python_model.pkl``) is loaded with ``mlflow.pyfunc.load_model``, after :data:`PICKLE`
was trusted. The MLmodel signature and ``input_example.json`` become the saved model's
signature and input example, read by MLflow's own rules (``mlflow.models.utils``'s
``_enforce_schema``):

* a column-based signature keeps its types; a column marked ``"required": false`` takes
  missing values. An integer column (``long``, ``integer``) never does: MLflow refuses a
  missing value there even in an optional column (NaN is not an integer), and so does
  shipyard. Integers are accepted in a float column and floats without a fraction in an
  integer column, as MLflow's scoring server casts JSON values to the signature's types;
  a fraction in an integer column is refused (``pyfunc.predict`` refuses it too);
* a tensor signature of one unnamed ``(-1, k)`` tensor becomes ``k`` columns named
  ``0`` … ``k-1`` and the model is fed one array of the tensor's dtype, as MLflow feeds
  it; named ``(-1,)`` / ``(-1, 1)`` tensors become one column each. Other tensors are not
  a table: the version has no signature and its input is not validated;
* where the signature does not mark a column optional, the registration still accepts
  missing values in it when the model handles them (MLflow passes them to the model),
  see :mod:`shipyard.flavors.missing`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from shipyard.core.exceptions import (
    FlavorError,
    MissingDependencyError,
    SchemaError,
    UnsupportedModelError,
)
from shipyard.core.schema import ColumnSpec, OutputSpec, Signature
from shipyard.flavors import lightgbm as lgb_flavor
from shipyard.flavors import onnx as onnx_flavor
from shipyard.flavors import xgboost as xgb_flavor
from shipyard.flavors.base import (
    PICKLE,
    Flavor,
    Predictor,
    SavedModel,
    require_trusted,
    stored_file,
)
from shipyard.flavors.python import as_array, load_pickle_file, object_predictor
from shipyard.flavors.sklearn import load_skops, skops_untrusted

#: The metadata file that marks an MLflow model folder.
MLMODEL = "MLmodel"

#: MLflow column types -> shipyard signature dtypes.
TYPES: dict[str, str] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "datetime": "datetime",
    "binary": "object",
}

#: Serialisations of scikit-learn(-API) model files shipyard reads.
_PICKLES = ("pickle", "cloudpickle")


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of ``folder`` (safe YAML: data only)."""
    path = folder / MLMODEL
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UnsupportedModelError(
            f"expected a readable YAML file at {path} but it is not ({exc}); "
            "pass a folder written by mlflow.<flavor>.save_model"
        ) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise UnsupportedModelError(
            f"expected a 'flavors' mapping in {path} but found none; "
            "pass a folder written by mlflow.<flavor>.save_model"
        )
    return meta


def _specs(raw: Any) -> list[Any]:
    """MLmodel keeps signature parts as JSON strings."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return []
    return raw if isinstance(raw, list) else []


@dataclass
class MlflowSignature:
    """What an MLmodel signature says about the model's input, read by MLflow's rules."""

    signature: Signature | None = None
    #: ``{"dtype", "width"}`` of a model fed one unnamed 2-D tensor (None: columns).
    tensor: dict[str, Any] | None = None
    #: True when the signature is made of tensors (named or not).
    from_tensors: bool = False
    #: Columns marked ``"required": false`` that take missing values.
    optional: tuple[str, ...] = ()
    #: Integer columns: MLflow never lets a missing value into them.
    integers: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def mlflow_signature(meta: Mapping[str, Any]) -> Signature | None:
    """The MLmodel signature as a shipyard :class:`Signature` (None when it has none)."""
    return read_signature(meta).signature


def read_signature(meta: Mapping[str, Any]) -> MlflowSignature:
    """The MLmodel signature (column- or tensor-based), with what MLflow enforces on it."""
    signature = meta.get("signature")
    specs = _specs(signature.get("inputs")) if isinstance(signature, dict) else []
    if not specs or not all(isinstance(spec, dict) for spec in specs):
        return MlflowSignature()
    outputs = _output_spec(signature.get("outputs")) if isinstance(signature, dict) else None
    if all(spec.get("type") == "tensor" for spec in specs):
        read = _tensor_signature(specs)
    elif any(spec.get("type") == "tensor" or "name" not in spec for spec in specs):
        return MlflowSignature()  # unnamed columns, or columns mixed with tensors
    else:
        read = _column_signature(specs)
    if read.signature is not None:
        read.signature = read.signature.with_outputs(outputs)
    return read


def _column_signature(specs: list[dict[str, Any]]) -> MlflowSignature:
    columns: list[ColumnSpec] = []
    optional: list[str] = []
    for spec in specs:
        name = str(spec["name"])
        dtype = TYPES.get(str(spec.get("type")), "object")
        integer = dtype.startswith("int")
        if not spec.get("required", True) and not integer:
            optional.append(name)
        columns.append(ColumnSpec(name, dtype, nullable=name in optional))
    integers = tuple(c.name for c in columns if c.dtype.startswith("int"))
    notes = [
        f"column {c['name']!r} is an integer column the MLmodel marks optional: a missing "
        "value in it is refused, as MLflow refuses it (log the column as double to allow one)"
        for c in specs
        if not c.get("required", True) and str(c["name"]) in integers
    ]
    return MlflowSignature(
        signature=Signature(inputs=tuple(columns)),
        optional=tuple(optional),
        integers=integers,
        notes=notes,
    )


def _tensor_dtype(spec: Mapping[str, Any]) -> str | None:
    """The shipyard dtype of a tensor spec's numpy dtype (None when not tabular)."""
    try:
        dtype = np.dtype(str(spec.get("dtype")))
    except TypeError:
        return None
    if dtype.kind in "iufb":
        return str(dtype)
    return "string" if dtype.kind in "OUS" else None


def _tensor_signature(specs: list[dict[str, Any]]) -> MlflowSignature:
    tensors: list[dict[str, Any]] = [
        t if isinstance(t := spec.get("tensor-spec"), dict) else {} for spec in specs
    ]
    shapes = [list(t.get("shape") or ()) for t in tensors]
    dtypes = [_tensor_dtype(t) for t in tensors]
    columns: list[ColumnSpec] = []
    tensor: dict[str, Any] | None = None
    if len(specs) == 1 and "name" not in specs[0]:
        shape, dtype = shapes[0], dtypes[0]
        if len(shape) == 2 and shape[0] == -1 and shape[1] > 0 and dtype not in (None, "string"):
            columns = [ColumnSpec(str(i), str(dtype)) for i in range(int(shape[1]))]
            tensor = {"dtype": dtype, "width": int(shape[1])}
    elif all("name" in spec for spec in specs) and all(
        shape in ([-1], [-1, 1]) and dtype is not None
        for shape, dtype in zip(shapes, dtypes, strict=True)
    ):
        columns = [
            ColumnSpec(str(spec["name"]), str(dtype))
            for spec, dtype in zip(specs, dtypes, strict=True)
        ]
    if not columns:
        described = ", ".join(
            f"{t.get('dtype')} {shape}" for t, shape in zip(tensors, shapes, strict=True)
        )
        note = (
            f"the MLmodel signature is a tensor shipyard cannot read as columns ({described}): "
            "the version has no signature, so its input is not validated"
        )
        return MlflowSignature(from_tensors=True, notes=[note])
    notes = []
    if tensor is not None:
        notes.append(
            f"the MLmodel signature is one {tensor['dtype']} tensor of {tensor['width']} "
            f"columns: shipyard names them 0 … {tensor['width'] - 1} (send rows in that "
            "order) and feeds the model one array, as MLflow does"
        )
    integers = tuple(c.name for c in columns if c.dtype.startswith(("int", "uint")))
    return MlflowSignature(
        signature=Signature(inputs=tuple(columns)),
        tensor=tensor,
        from_tensors=True,
        integers=integers,
        notes=notes,
    )


def _output_spec(raw: Any) -> OutputSpec | None:
    specs = _specs(raw)
    if len(specs) != 1 or not isinstance(specs[0], dict):
        return None
    spec = specs[0]
    tensor = spec.get("tensor-spec")
    if spec.get("type") == "tensor" and isinstance(tensor, dict):
        shape = tuple(int(d) for d in tensor.get("shape", [-1]))
        return OutputSpec(dtype=str(tensor.get("dtype")), shape=shape)
    if spec.get("type") in TYPES:
        return OutputSpec(dtype=TYPES[str(spec["type"])])
    return None


def _example_frame(data: Any, names: list[str] | None) -> pd.DataFrame | None:
    """A frame from MLflow's example forms: split, records, a serving request body, or
    rows of a tensor (lists of values in the order of ``names``)."""
    if isinstance(data, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in data:
                return _example_frame(data[key], names)
        if "columns" in data and "data" in data:
            return pd.DataFrame(data["data"], columns=data["columns"])
        if names and "data" in data:
            return _example_frame(data["data"], names)
        if data and all(isinstance(v, list) for v in data.values()):
            return pd.DataFrame(data)
        return None
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return pd.DataFrame.from_records(data)
    if (
        names
        and isinstance(data, list)
        and data
        and all(isinstance(row, list) and len(row) == len(names) for row in data)
    ):
        return pd.DataFrame(data, columns=names)
    return None


def read_input_example(
    folder: Path, meta: Mapping[str, Any], signature: Signature | None
) -> pd.DataFrame | None:
    """``input_example.json`` (or ``serving_input_example.json``) as a DataFrame."""
    info = meta.get("saved_input_example_info")
    info = info if isinstance(info, dict) else {}
    names = [
        info.get("artifact_path") or "input_example.json",
        info.get("serving_input_path") or "serving_input_example.json",
    ]
    columns = signature.columns if signature is not None else None
    for name in names:
        try:
            path = stored_file(folder, name, "MLflow input example")
            frame = _example_frame(json.loads(path.read_text(encoding="utf-8")), columns)
        except (FlavorError, OSError, UnicodeDecodeError, ValueError):
            continue
        if frame is None or frame.empty:
            continue
        if signature is not None:
            try:
                return signature.validate(frame)  # cast JSON values to the signature's dtypes
            except SchemaError:
                return frame
        return frame
    return None


def _serialization(flavor: Mapping[str, Any], file: str) -> str:
    """How a scikit-learn(-API) model file was written (old MLmodels omit it)."""
    fmt = flavor.get("serialization_format")
    if isinstance(fmt, str):
        return fmt
    return "skops" if file.endswith(".skops") else "cloudpickle"


def _untrusted(folder: Path, file: str, serialization: str) -> list[str]:
    if serialization == "skops":
        return skops_untrusted(stored_file(folder, file, "MLflow model"))
    if serialization in _PICKLES:
        return [PICKLE]
    raise UnsupportedModelError(
        f"expected a model serialised as skops, pickle or cloudpickle but MLmodel says "
        f"{serialization!r}; save the model again with serialization_format='skops'"
    )


def _plan(folder: Path, meta: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Choose the loader for an MLflow folder: its config and the types it needs trusted."""
    flavors: dict[str, Any] = meta["flavors"]
    config: dict[str, Any] = {
        "mlflow_version": meta.get("mlflow_version"),
        "mlflow_flavors": sorted(flavors),
    }
    if isinstance(flavors.get("sklearn"), dict):
        sk = flavors["sklearn"]
        file = str(sk.get("pickled_model", ""))
        ser = _serialization(sk, file)
        config.update(loader="sklearn", model_file=file, serialization=ser)
        declared = sk.get("skops_trusted_types")
        if ser == "skops" and isinstance(declared, list):
            config["skops_trusted_types"] = [str(t) for t in declared]
        return config, _untrusted(folder, file, ser)
    if isinstance(flavors.get("lightgbm"), dict):
        lg = flavors["lightgbm"]
        file = str(lg.get("data", ""))
        klass = lgb_flavor.model_class(lg.get("model_class", "Booster"))
        config.update(model_file=file, model_class=klass)
        if klass == "Booster":  # MLflow writes Boosters as LightGBM text
            config.update(loader="lightgbm", serialization="lightgbm_text")
            return config, []
        ser = _serialization(lg, file)
        config.update(loader="sklearn", serialization=ser)
        return config, _untrusted(folder, file, ser)
    if isinstance(flavors.get("xgboost"), dict):
        xg = flavors["xgboost"]
        klass = xgb_flavor.model_class(xg.get("model_class", "Booster"))
        config.update(
            loader="xgboost",
            model_file=str(xg.get("data", "")),
            model_class=klass,
            serialization=f"xgboost_{xg.get('model_format', 'xgb')}",
        )
        return config, []
    if isinstance(flavors.get("onnx"), dict):
        file = str(flavors["onnx"].get("data", ""))
        config.update(loader="onnx", model_file=file, serialization="onnx")
        return config, []
    if isinstance(flavors.get("python_function"), dict):
        pyfunc = flavors["python_function"]
        config.update(
            loader="pyfunc",
            model_file=pyfunc.get("python_model") or pyfunc.get("data") or pyfunc.get("model_path"),
            serialization="cloudpickle",
        )
        return config, [PICKLE]
    raise UnsupportedModelError(
        f"the MLflow model in {folder} has flavors {', '.join(sorted(flavors)) or 'none'}; "
        "shipyard loads sklearn, lightgbm, xgboost, onnx and python_function models"
    )


def _load_pyfunc(directory: Path, config: Mapping[str, Any]) -> Predictor:
    require_trusted(config, [PICKLE], "loading an MLflow python_function model (cloudpickle)")
    try:
        import mlflow.pyfunc
    except ImportError as exc:
        raise MissingDependencyError(
            "this MLflow model is a custom python_function model, which only MLflow can "
            "load, but mlflow is not installed: pip install 'shipyard[mlflow]'"
        ) from exc
    model = mlflow.pyfunc.load_model(str(directory))

    def predict(frame: pd.DataFrame) -> Any:
        return as_array(model.predict(frame))

    return Predictor(predict=predict, native=model)


def tensor_predictor(predictor: Predictor, dtype: str) -> Predictor:
    """``predictor`` fed one 2-D array of ``dtype`` (the columns in order), as MLflow feeds
    a model whose signature is one unnamed tensor."""
    try:
        kind = np.dtype(dtype)
    except TypeError as exc:
        raise FlavorError(
            f"expected a numpy dtype for the MLflow tensor input but the config says "
            f"{dtype!r}; import the MLflow folder again"
        ) from exc
    predict: Callable[[Any], np.ndarray] = predictor.predict
    proba: Callable[[Any], np.ndarray] | None = predictor.predict_proba

    def run_predict(frame: pd.DataFrame) -> np.ndarray:
        return predict(frame.to_numpy(dtype=kind))

    def run_proba(frame: pd.DataFrame) -> np.ndarray:
        assert proba is not None  # noqa: S101 - narrows the type; the caller guarantees it
        return proba(frame.to_numpy(dtype=kind))

    return Predictor(
        predict=run_predict,
        predict_proba=run_proba if proba is not None else None,
        classes=predictor.classes,
        native=predictor.native,
    )


class MlflowFlavor(Flavor):
    """Folders written by ``mlflow.<flavor>.save_model`` (import only)."""

    name = "mlflow"

    def can_save(self, model: object) -> bool:  # noqa: ARG002 - the interface's argument
        """Always False: shipyard stores in-memory models in their own native flavor."""
        return False

    def save(self, model: object, directory: Path) -> SavedModel:
        """Refuse: MLflow folders are imported, not written."""
        raise UnsupportedModelError(
            f"the mlflow flavor only imports MLflow model folders, it cannot write a "
            f"{type(model).__qualname__} into {directory}; save the object without naming "
            "a flavor (shipyard picks its native one) or pass the folder mlflow wrote"
        )

    def can_import(self, path: Path) -> bool:
        """True for a folder holding an ``MLmodel`` file."""
        return path.is_dir() and (path / MLMODEL).is_file()

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy the MLflow folder and plan a native load from its ``MLmodel``."""
        if path.is_file() and path.name == MLMODEL:
            path = path.parent
        if not self.can_import(path):
            raise UnsupportedModelError(
                f"expected an MLflow model folder (with an {MLMODEL} file) but got {path}; "
                "pass the folder mlflow.<flavor>.save_model wrote"
            )
        meta = read_mlmodel(path)
        shutil.copytree(path, directory, dirs_exist_ok=True)
        config, untrusted = _plan(directory, meta)
        read = read_signature(meta)
        signature = read.signature
        notes = list(read.notes)
        if config["loader"] == "onnx":
            graph_signature, classes = onnx_flavor.describe_onnx(
                stored_file(directory, config["model_file"], "MLflow onnx model")
            )
            if read.from_tensors or signature is None:
                signature = graph_signature or signature  # the graph names its inputs
            if classes is not None:
                config["classes"] = classes
        elif read.tensor is not None:
            config["tensor"] = read.tensor
        declared = config.get("skops_trusted_types")
        if untrusted and declared is not None:
            notes.append(
                "the MLmodel's skops_trusted_types declares "
                f"{', '.join(declared) or 'no type'} (what its author trusted when saving; "
                f"shipyard trusts only what the registration names, read from the file: "
                f"{', '.join(untrusted)})"
            )
        config["notes"] = notes
        columns = set(signature.columns) if signature is not None else set()
        return SavedModel(
            flavor=self.name,
            config=config,
            untrusted_types=untrusted,
            signature=signature,
            input_example=read_input_example(directory, meta, signature),
            nullable_reasons={
                name: "optional in the MLmodel signature"
                for name in read.optional
                if name in columns
            },
            no_missing=tuple(name for name in read.integers if name in columns),
            declared_trusted=declared,
            notes=notes,
        )

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Load with the loader ``import_path`` chose, honouring ``trusted_types``."""
        predictor = self._load(directory, config)
        tensor = config.get("tensor")
        if isinstance(tensor, dict) and config.get("loader") != "onnx":
            return tensor_predictor(predictor, str(tensor.get("dtype")))
        return predictor

    def _load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        loader = config.get("loader")
        if loader == "pyfunc":
            return _load_pyfunc(directory, config)
        path = stored_file(directory, config.get("model_file"), f"MLflow {loader} model")
        if loader == "sklearn":
            serialization = str(config.get("serialization"))
            if serialization == "skops":
                return object_predictor(load_skops(path, config))
            return object_predictor(load_pickle_file(path, serialization, config))
        if loader == "lightgbm":
            return lgb_flavor.booster_predictor(lgb_flavor.load_booster(path), "Booster", None)
        if loader == "xgboost":
            return xgb_flavor.load_xgboost(path, str(config.get("model_class", "Booster")))
        if loader == "onnx":
            return onnx_flavor.session_predictor(path, config.get("classes"))
        raise FlavorError(
            f"expected a loader among sklearn, lightgbm, xgboost, onnx, pyfunc in the model "
            f"config but got {loader!r}; import the MLflow folder again"
        )


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = MlflowFlavor()
