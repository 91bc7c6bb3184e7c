"""Model signatures: what a model takes and gives, inferred from data and enforced on input.

A :class:`Signature` lists input columns (dtype, nullability, categories seen, numeric
range) and describes the output. ``Signature.infer(df)`` reads them off example rows;
``Signature.validate(df)`` checks a frame against them, casts lossless differences
(an integer column into a float feature) and raises :class:`SchemaError` naming the
column otherwise.

Nullability says whether a column may hold missing values. Example rows only show where
missing values *were*; a registration widens it to the columns the model itself handles
(:meth:`Signature.with_nullable`), and an imported format's own signature (an MLmodel) keeps
its declared types while taking categories and ranges from example rows
(:meth:`Signature.with_example`). An integer column that may hold missing values is fed to
the model as float64 (NaN cannot be an integer).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shipyard.core.exceptions import SchemaError

if TYPE_CHECKING:  # numpy and pandas load when data is met: ``import shipyard`` stays quick
    import pandas as pd

#: Categories beyond this count are not listed in a signature (the column stays a string column).
MAX_CATEGORIES = 1000
#: The output column holding a model's answer, wherever predictions are tabulated (batch
#: outputs, monitoring windows, reference profiles).
PREDICTION = "prediction"

_NUMERIC_PREFIXES = ("int", "uint", "float")
_INTEGER_PREFIXES = ("int", "uint")


def proba_column(label: Any) -> str:
    """The output column holding the probability of class ``label``."""
    return f"proba_{label}"


def missing_values_error(spec: ColumnSpec, count: int, where: str = "") -> SchemaError:
    """The error for ``count`` missing values in ``spec``'s column, which takes none.

    ``where`` says where they are (e.g. ``" at row 3"``). Shared with the server's column
    caster, so both paths say the same thing.
    """
    found = f"{count} missing value(s){where}"
    if spec.is_numeric and spec.dtype.startswith(_INTEGER_PREFIXES):
        fix = (
            f"the model does not take them in this integer ({spec.dtype}) column; fill them "
            "(an MLflow model never takes them in an integer column, as in MLflow: log the "
            "column as double to allow them)"
        )
    else:
        fix = (
            "the model does not take them in this column: its example rows had none and "
            "nothing in the model handles them (such as an imputer); fill them, or register "
            "a model that does"
        )
    return SchemaError(f"column {spec.name!r} has {found} but {fix}", column=spec.name)


def boolean_error(spec: ColumnSpec) -> SchemaError:
    """The error for booleans (true / false) in ``spec``'s numeric column."""
    return SchemaError(
        f"column {spec.name!r} expects {spec.dtype} but got booleans (true/false); send "
        "numbers for this column (a boolean column is registered with dtype bool)",
        column=spec.name,
    )


def non_finite_error(spec: ColumnSpec, count: int, example: float) -> SchemaError:
    """The error for ``count`` non-finite values (±inf) in a column that takes no missing
    values (where it takes them, ±inf counts as one)."""
    return SchemaError(
        f"column {spec.name!r} has {count} non-finite value(s) (e.g. {example!r}) but the "
        "model takes no missing values in this column; send finite numbers",
        column=spec.name,
    )


def beyond_float(values: Iterable[Any]) -> Any:
    """The first integer among ``values`` that no float holds (None when there is none)."""
    for value in values:
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                return value
    return None


def out_of_range_error(spec: ColumnSpec, value: Any) -> SchemaError:
    """The error for ``value``, which ``spec``'s numeric dtype cannot hold."""
    shown = repr(value)
    if len(shown) > 30:
        shown = f"{shown[:12]}...{shown[-6:]} ({len(shown)} characters)"
    import numpy as np

    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        bounds = f"±{np.finfo(dtype).max:.4g}"
    else:
        info = np.iinfo(dtype)
        bounds = f"{info.min} to {info.max}"
    return SchemaError(
        f"column {spec.name!r} got {shown}, outside the {spec.dtype} range ({bounds}); "
        "send values within it",
        column=spec.name,
    )


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its dtype, whether it may be null, and what was seen in the example."""

    name: str
    dtype: str
    nullable: bool = False
    categories: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def is_numeric(self) -> bool:
        """True for integer and floating point columns."""
        return self.dtype.startswith(_NUMERIC_PREFIXES)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Inverse of :meth:`to_dict`."""
        cats = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", False)),
            categories=tuple(cats) if cats is not None else None,
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
        )


@dataclass(frozen=True)
class OutputSpec:
    """What ``predict`` returns: dtype, shape (-1 for the row dimension) and class labels."""

    dtype: str
    shape: tuple[int, ...] = (-1,)
    classes: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "classes": list(self.classes) if self.classes is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSpec:
        """Inverse of :meth:`to_dict`."""
        classes = data.get("classes")
        return cls(
            dtype=str(data["dtype"]),
            shape=tuple(int(d) for d in data.get("shape", (-1,))),
            classes=tuple(classes) if classes is not None else None,
        )

    @classmethod
    def infer(cls, predictions: Any, classes: Sequence[Any] | None = None) -> OutputSpec:
        """Describe an array of predictions made on example rows."""
        import numpy as np

        arr = np.asarray(predictions)
        shape = (-1, *arr.shape[1:])
        return cls(dtype=_dtype_name(arr.dtype), shape=shape, classes=_plain(classes))


@dataclass(frozen=True)
class Signature:
    """The input columns a model takes, in order, and its output."""

    inputs: tuple[ColumnSpec, ...]
    outputs: OutputSpec | None = None
    _index: dict[str, ColumnSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c.name: c for c in self.inputs})

    @property
    def columns(self) -> list[str]:
        """Input column names in the order the model expects them."""
        return [c.name for c in self.inputs]

    def column(self, name: str) -> ColumnSpec:
        """The spec of one input column."""
        try:
            return self._index[name]
        except KeyError as exc:
            raise SchemaError(f"the signature has no column {name!r}", column=name) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (stored with the model version)."""
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": self.outputs.to_dict() if self.outputs is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Inverse of :meth:`to_dict`."""
        outputs = data.get("outputs")
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data["inputs"]),
            outputs=OutputSpec.from_dict(outputs) if outputs else None,
        )

    def with_outputs(self, outputs: OutputSpec | None) -> Signature:
        """A copy with ``outputs`` replaced."""
        return Signature(inputs=self.inputs, outputs=outputs)

    def with_nullable(self, names: Collection[str]) -> Signature:
        """A copy in which the columns ``names`` accept missing values (others unchanged)."""
        unknown = sorted(set(names) - set(self._index))
        if unknown:
            raise SchemaError(
                f"the signature has no column {unknown[0]!r}; name columns among "
                f"{', '.join(self.columns)}",
                column=unknown[0],
            )
        inputs = tuple(
            replace(c, nullable=True) if c.name in names and not c.nullable else c
            for c in self.inputs
        )
        return Signature(inputs=inputs, outputs=self.outputs)

    def with_example(self, frame: pd.DataFrame) -> Signature:
        """A copy that keeps each column's dtype and nullability but takes the categories
        and numeric range seen in the rows ``frame`` (validated first: a row the signature
        refuses raises :class:`SchemaError`).

        For a signature declared by a model format (an MLmodel), whose types are the
        model's own and whose example rows are only a sample.
        """
        seen = Signature.infer(self.validate(frame))
        inputs = []
        for spec in self.inputs:
            found = seen.column(spec.name)
            categories = found.categories if spec.dtype in ("string", "category", "bool") else None
            if spec.dtype == "category" and spec.categories is not None:
                categories = spec.categories  # a categorical dtype lists them all
            inputs.append(
                replace(
                    spec,
                    categories=categories,
                    minimum=found.minimum if spec.is_numeric else None,
                    maximum=found.maximum if spec.is_numeric else None,
                )
            )
        return Signature(inputs=tuple(inputs), outputs=self.outputs)

    @classmethod
    def infer(cls, frame: pd.DataFrame) -> Signature:
        """Read column specs off example rows (all of them count for ranges and categories)."""
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise SchemaError(
                f"an input example must be a pandas DataFrame but got {type(frame).__name__}; "
                "wrap arrays with pandas.DataFrame(X, columns=[...])"
            )
        if frame.empty:
            raise SchemaError("an input example must have at least one row; pass real example rows")
        return cls(inputs=tuple(_infer_column(str(name), frame[name]) for name in frame.columns))

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check ``frame`` against the signature and return it cast and ordered for the model.

        Raises :class:`SchemaError` naming the first offending column: a missing or unknown
        column, a value of the wrong type, or a null in a column that never had one.
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise SchemaError(f"expected a pandas DataFrame but got {type(frame).__name__}")
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            dup = next(c for c in names if names.count(c) > 1)
            raise SchemaError(
                f"column {dup!r} appears twice in the input; send it once", column=dup
            )
        present = set(names)
        missing = [c for c in self.columns if c not in present]
        if missing:
            expected = ", ".join(f"{c} ({self._index[c].dtype})" for c in missing)
            raise SchemaError(
                f"missing column {missing[0]!r}: the model needs {expected}; "
                f"send every column of the signature: {', '.join(self.columns)}",
                column=missing[0],
            )
        unknown = [c for c in names if c not in self._index]
        if unknown:
            raise SchemaError(
                f"unknown column {unknown[0]!r}: the model takes only {', '.join(self.columns)}; "
                "drop the extra columns or check their spelling",
                column=unknown[0],
            )
        out: dict[str, Any] = {}
        for spec in self.inputs:
            out[spec.name] = _coerce(frame[spec.name], spec)
        return pd.DataFrame(out, index=frame.index)


def _plain(values: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """Numpy scalars to Python scalars, so the tuple is JSON-able."""
    import numpy as np

    if values is None:
        return None
    return tuple(v.item() if isinstance(v, np.generic) else v for v in values)


def _dtype_name(dtype: Any) -> str:
    import numpy as np
    import pandas as pd
    from pandas.api import types as ptypes

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if ptypes.is_string_dtype(dtype) and not ptypes.is_object_dtype(dtype):
        return "string"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_numeric_dtype(dtype):
        return str(np.dtype(dtype))
    return str(dtype)


def _infer_column(name: str, series: pd.Series) -> ColumnSpec:
    import numpy as np

    nullable = bool(series.isna().any())
    dtype = _dtype_name(series.dtype)
    if dtype == "object":
        present = series.dropna()
        if all(isinstance(v, str) for v in present):
            dtype = "string"
        elif all(isinstance(v, bool | np.bool_) for v in present):
            dtype = "bool"
        else:
            kinds = sorted({type(v).__name__ for v in present})
            raise SchemaError(
                f"column {name!r} mixes value types ({', '.join(kinds)}); "
                "give it one type before registering (e.g. df[col].astype(str))",
                column=name,
            )
    if dtype.startswith(_NUMERIC_PREFIXES):
        present = series.dropna()
        low = float(present.min()) if len(present) else None
        high = float(present.max()) if len(present) else None
        return ColumnSpec(name, dtype, nullable, minimum=low, maximum=high)
    if dtype == "category":
        cats = _plain(list(series.cat.categories))
        return ColumnSpec(name, dtype, nullable, categories=cats)
    if dtype in ("string", "bool"):
        seen = series.dropna().unique()
        cats = _plain(sorted(seen.tolist())) if len(seen) <= MAX_CATEGORIES else None
        return ColumnSpec(name, dtype, nullable, categories=cats)
    return ColumnSpec(name, dtype, nullable)


def _example_value(series: pd.Series) -> str:
    present = series.dropna()
    return repr(present.iloc[0]) if len(present) else "null"


def _coerce(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    import pandas as pd

    if not spec.nullable and series.isna().any():
        raise missing_values_error(spec, int(series.isna().sum()))
    target = spec.dtype
    got = _dtype_name(series.dtype)
    if spec.is_numeric:
        return _coerce_numeric(series, spec, got)
    if target in ("string", "category"):
        if got == "category":
            values = series.astype(object)
        elif got in ("string", "object"):
            values = series
        else:
            raise _wrong_type(spec, series, got)
        present = values.dropna()
        if got == "object" and not all(isinstance(v, str) for v in present):
            bad = next(v for v in present if not isinstance(v, str))
            raise SchemaError(
                f"column {spec.name!r} expects {target} values but got {bad!r} "
                f"({type(bad).__name__}); send text for this column",
                column=spec.name,
            )
        if target == "category":
            return pd.Series(
                pd.Categorical(values, categories=list(spec.categories or ())),
                index=series.index,
                name=spec.name,
            )
        return values
    if target == "bool":
        if got != "bool":
            raise _wrong_type(spec, series, got)
        return series
    if target == "datetime":
        try:
            return pd.to_datetime(series)
        except (TypeError, ValueError) as exc:
            raise _wrong_type(spec, series, got) from exc
    return series


def _coerce_numeric(series: pd.Series, spec: ColumnSpec, got: str) -> pd.Series:
    """``series`` as ``spec``'s numeric dtype: no booleans, every value in range and whole for
    an integer column, ±inf only where missing values are allowed (then as NaN)."""
    import numpy as np
    import pandas as pd

    target = spec.dtype
    if got == "bool" or (got == "object" and series.map(type).isin((bool, np.bool_)).any()):
        raise boolean_error(spec)
    if got == "object":
        try:
            series = pd.to_numeric(series, errors="raise")
        except (TypeError, ValueError) as exc:
            raise _wrong_type(spec, series, "non-numeric") from exc
        if _dtype_name(series.dtype) == "object":  # integers beyond 64 bits
            try:
                series = series.astype("float64")
            except OverflowError as exc:
                raise out_of_range_error(spec, beyond_float(series)) from exc
        got = _dtype_name(series.dtype)
    if not got.startswith(_NUMERIC_PREFIXES):
        raise _wrong_type(spec, series, got)
    values = series.to_numpy()
    integer = target.startswith(_INTEGER_PREFIXES)
    if got.startswith("float"):
        infinite = np.isinf(values)
        if infinite.any():
            if not spec.nullable:
                raise non_finite_error(spec, int(infinite.sum()), float(values[infinite][0]))
            series = series.mask(infinite)  # counts as a missing value
            values = series.to_numpy()
        present = values[~np.isnan(values)]
        if integer:
            _check_range(spec, present)
            if not np.all(np.mod(present, 1) == 0):
                raise _wrong_type(spec, series, "fractional " + got)
            if len(present) < len(values):
                return series.astype("float64")
    elif integer and got != target:
        _check_range(spec, values)
    if got == target:
        return series
    out = series.astype(np.dtype(target))
    if not integer and np.isinf(out.to_numpy()).any():  # e.g. 1e300 into a float32 column
        raise out_of_range_error(spec, values[np.isinf(out.to_numpy())][0].item())
    return out


def _check_range(spec: ColumnSpec, values: Any) -> None:
    """Refuse values that ``spec``'s integer dtype cannot hold (a cast would wrap them)."""
    import numpy as np

    if not len(values):
        return
    info = np.iinfo(np.dtype(spec.dtype))
    if values.dtype.kind == "f":  # min - 1 and max + 1 as floats: for int64 both round to
        # ±2**63, so a float that an integer beyond the range rounded to is refused too
        outside = (values <= float(int(info.min) - 1)) | (values >= float(int(info.max) + 1))
    else:
        outside = (values < info.min) | (values > info.max)
    if outside.any():
        raise out_of_range_error(spec, values[outside][0].item())


def _wrong_type(spec: ColumnSpec, series: pd.Series, got: str) -> SchemaError:
    return SchemaError(
        f"column {spec.name!r} expects {spec.dtype} but got {got} values "
        f"(e.g. {_example_value(series)}); send {spec.dtype} values for this column",
        column=spec.name,
    )
