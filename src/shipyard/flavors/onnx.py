"""ONNX graphs, run with onnxruntime on the CPU.

An ONNX file is a protobuf graph of standard operators: loading it runs no Python code,
so nothing needs trusting. Two input layouts are understood:

* one 2-D tensor (``[n, k]``): the frame's columns, in signature order, are stacked and
  cast to the tensor's element type;
* one tensor per column (``[n, 1]`` each, named like the columns): each column is fed by
  name with the input's element type (strings as objects). The signature is then read
  off the graph.

The first output is ``predict``; a probabilities output (a 2-D float tensor, or
skl2onnx's ZipMap list of dicts) gives ``predict_proba``, with class labels read from
the graph's classifier nodes.

:func:`describe_onnx` and :func:`session_predictor` serve the mlflow flavor too.

onnx and onnxruntime is imported inside the functions that need it, not at the top: the mlflow
flavor reuses this module's loaders, and an MLflow folder of another format must not
require onnx and onnxruntime to be installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import FlavorError, SchemaError, UnsupportedModelError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.flavors.base import Flavor, Predictor, SavedModel, stored_file

#: The file name ``save`` and ``import_path`` write.
FILE = "model.onnx"

#: onnxruntime type string -> numpy dtype fed to the session.
_FEED_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}

#: Node attributes holding class labels (ZipMap and the ai.onnx.ml classifiers).
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def _plain(values: Sequence[Any]) -> list[Any]:
    return [v.decode() if isinstance(v, bytes) else int(v) for v in values]


def describe_onnx(path: Path) -> tuple[Signature | None, list[Any] | None]:
    """Read a graph's per-column signature and class labels (the graph is not run)."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise UnsupportedModelError(
            f"expected an ONNX model in {path.name} but it cannot be parsed ({exc}); "
            "export the model with onnx.save_model"
        ) from exc
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    columns: list[ColumnSpec] = []
    for tensor in inputs:
        kind = tensor.type.tensor_type
        dims = [d.dim_value for d in kind.shape.dim]
        one_column = len(dims) == 1 or (len(dims) == 2 and dims[1] == 1)
        if not tensor.type.HasField("tensor_type") or not one_column:
            columns = []
            break
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(kind.elem_type))
        name = "string" if dtype == np.dtype(object) else str(dtype)
        columns.append(ColumnSpec(tensor.name, name, nullable=dtype.kind == "f"))
    signature = Signature(inputs=tuple(columns)) if len(columns) > 1 else None
    classes: list[Any] | None = None
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = attribute.strings or attribute.ints
                if values and (classes is None or node.op_type == "ZipMap"):
                    classes = _plain(values)
    return signature, classes


def _column(series: pd.Series, dtype: Any) -> np.ndarray:
    if dtype is object:
        return np.asarray(series.to_numpy(dtype=object), dtype=object)
    return np.asarray(series.to_numpy(), dtype=dtype)


def session_predictor(path: Path, classes: Sequence[Any] | None = None) -> Predictor:
    """An onnxruntime CPU session over ``path`` behind the :class:`Predictor` interface."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind error types
        raise FlavorError(
            f"onnxruntime cannot load {path.name} ({exc}); the graph may use operators or "
            "an opset this onnxruntime does not support: upgrade onnxruntime"
        ) from exc
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    names = [i.name for i in inputs]

    def feed(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        present = set(map(str, frame.columns))
        if set(names) <= present and (len(inputs) > 1 or frame.shape[1] == 1):
            return {
                i.name: _column(frame[i.name], _FEED_DTYPES.get(i.type, object)).reshape(
                    (-1, 1) if len(i.shape) == 2 else (-1,)
                )
                for i in inputs
            }
        if len(inputs) == 1 and len(inputs[0].shape) == 2:
            width = inputs[0].shape[1]
            if isinstance(width, int) and width != frame.shape[1]:
                raise SchemaError(
                    f"the ONNX graph takes {width} columns but got {frame.shape[1]} "
                    f"({', '.join(map(str, frame.columns))}); send the model's feature columns"
                )
            dtype = _FEED_DTYPES.get(inputs[0].type, np.float32)
            return {inputs[0].name: frame.to_numpy(dtype=dtype)}
        missing = [n for n in names if n not in present]
        raise SchemaError(
            f"missing column {missing[0]!r}: the ONNX graph takes one column per input "
            f"({', '.join(names)}); send these columns",
            column=missing[0],
        )

    def run(output: str, frame: pd.DataFrame) -> Any:
        try:
            return session.run([output], feed(frame))[0]
        except (SchemaError, FlavorError):
            raise
        except Exception as exc:  # onnxruntime's InvalidArgument, Fail, ...
            raise SchemaError(
                f"the ONNX graph refused the input ({str(exc).splitlines()[0]}); "
                f"it takes {', '.join(f'{i.name} {i.type}{i.shape}' for i in inputs)}"
            ) from exc

    def predict(frame: pd.DataFrame) -> np.ndarray:
        result = np.asarray(run(outputs[0].name, frame))
        return result.ravel() if result.ndim == 2 and result.shape[1] == 1 else result

    proba_output = next(
        (
            o.name
            for o in outputs[1:]
            if o.type.startswith("seq(map(") or (o.type.startswith("tensor(") and len(o.shape) == 2)
        ),
        None,
    )
    labels = list(classes) if classes else None

    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        nonlocal labels
        assert proba_output is not None  # noqa: S101 - narrows the type; the caller guarantees it
        result = run(proba_output, frame)
        if isinstance(result, list):  # ZipMap: one {class: probability} dict a row
            if labels is None:
                labels = list(result[0]) if result else []
            return np.asarray([[row[c] for c in labels] for row in result], dtype=np.float32)
        return np.asarray(result)

    return Predictor(
        predict=predict,
        predict_proba=predict_proba if proba_output is not None else None,
        classes=labels,
        native=session,
    )


def _saved(path: Path) -> SavedModel:
    signature, classes = describe_onnx(path)
    config: dict[str, Any] = {"file": path.name, "serialization": "onnx"}
    if classes is not None:
        config["classes"] = classes
    return SavedModel(flavor="onnx", config=config, signature=signature)


class OnnxFlavor(Flavor):
    """``onnx.ModelProto`` objects and ``.onnx`` files."""

    name = "onnx"

    def can_save(self, model: object) -> bool:
        """True for an ``onnx.ModelProto``."""
        import onnx

        return isinstance(model, onnx.ModelProto)

    def save(self, model: object, directory: Path) -> SavedModel:
        """Write the graph to ``model.onnx``."""
        import onnx

        if not isinstance(model, onnx.ModelProto):
            raise UnsupportedModelError(
                f"expected an onnx.ModelProto but got {type(model).__qualname__}; "
                "convert the model to ONNX first (e.g. skl2onnx.to_onnx)"
            )
        path = directory / FILE
        onnx.save_model(model, str(path))
        return _saved(path)

    def can_import(self, path: Path) -> bool:
        """True for a ``.onnx`` file."""
        return path.is_file() and path.suffix.lower() == ".onnx"

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy a ``.onnx`` file and read its signature and class labels."""
        if not self.can_import(path):
            raise UnsupportedModelError(
                f"expected a .onnx file but got {path}; export the model with onnx.save_model"
            )
        target = directory / FILE
        shutil.copyfile(path, target)
        return _saved(target)

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Open an onnxruntime session on the stored graph."""
        path = stored_file(directory, config.get("file", FILE), "onnx flavor")
        return session_predictor(path, config.get("classes"))


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = OnnxFlavor()
