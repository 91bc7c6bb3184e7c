"""The wire formats of the exposure API: JSON, CSV, Parquet and Arrow IPC, batch by batch.

An :class:`Encoder` turns Arrow record batches into bytes a piece at a time —
:meth:`~Encoder.begin` with the schema, :meth:`~Encoder.write` per batch,
:meth:`~Encoder.end` with the next page's cursor — so a response streams a dataset of any
size while holding one batch:

- ``json``: ``{"rows": [`` … ``], "next_cursor": …}``, NaN and infinity as null, timestamps
  as ISO-8601 text;
- ``csv``: the header once, then rows; nested values (lists, structs) as JSON text;
- ``parquet``: one row group per batch, flushed as it is written, the footer at the end;
- ``arrow``: an Arrow IPC stream, one message per batch.

:func:`choose_format` picks the format from ``format=`` or the Accept header, and
:func:`prediction_table` gives a page of prediction rows the fixed Arrow schema the binary
formats carry.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.datasets.predictions import ROW_COLUMNS

#: format name → the media type answered with it
FORMATS = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_BY_MEDIA_TYPE = {media: name for name, media in FORMATS.items()}
#: The Arrow types of a prediction row (``prediction`` is inferred: labels or numbers).
PREDICTION_TYPES: dict[str, pa.DataType] = {
    "source": pa.string(),
    "model": pa.string(),
    "version": pa.int64(),
    "batch_id": pa.string(),
    "request_id": pa.string(),
    "key": pa.string(),
    "scored_at": pa.timestamp("us", "UTC"),
    "probabilities": pa.list_(pa.float64()),
}


def choose_format(requested: str | None, accept: str | None) -> str:
    """The format to answer in: ``format=`` when given, else the Accept header, else JSON."""
    if requested:
        name = requested.strip().lower()
        if name not in FORMATS:
            raise InvalidArgumentError(
                f"format must be one of {', '.join(FORMATS)} but got {requested!r}"
            )
        return name
    best, best_q = "json", 0.0
    for item in (accept or "").split(","):
        media, *params = (piece.strip() for piece in item.split(";"))
        offered = _BY_MEDIA_TYPE.get(media.lower())
        if offered is None:
            continue
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > best_q:  # the first of equally preferred types wins
            best, best_q = offered, q
    return best


class _Sink:
    """A write-only file handing over, at :meth:`take`, what was written since the last take."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing is buffered here: :meth:`take` hands everything over."""

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        """What was written since the last call."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class Encoder(ABC):
    """Writes record batches of one schema in a format, a piece of bytes per call."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    @abstractmethod
    def begin(self) -> bytes:
        """The start of the answer."""

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> bytes:
        """The bytes of one more batch (of :attr:`schema`)."""

    @abstractmethod
    def end(self, next_cursor: str | None) -> bytes:
        """The rest of the answer (``next_cursor``: the next page's, for the JSON body)."""

    def encode(self, batches: Iterable[pa.RecordBatch], next_cursor: str | None) -> bytes:
        """A whole (bounded) answer at once: one page."""
        pieces = [self.begin()]
        pieces.extend(self.write(batch) for batch in batches)
        pieces.append(self.end(next_cursor))
        return b"".join(pieces)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, unlike a float
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dump_rows(rows: Any) -> bytes:
    """Rows (or any JSON-ready value) as JSON: NaN as null, decimals as text, bytes base64."""
    return orjson.dumps(rows, default=_json_default)


class JsonEncoder(Encoder):
    """``{"<key>": [row, ...], "next_cursor": ...}``, one batch of rows per piece."""

    def __init__(self, schema: pa.Schema, key: str = "rows") -> None:
        super().__init__(schema)
        self.key = key
        self._first = True

    def begin(self) -> bytes:
        return b'{"' + self.key.encode() + b'":['

    def write(self, batch: pa.RecordBatch) -> bytes:
        if not batch.num_rows:
            return b""
        rows = dump_rows(batch.to_pylist())[1:-1]  # the records without their brackets
        separator = b"" if self._first else b","
        self._first = False
        return separator + rows

    def end(self, next_cursor: str | None) -> bytes:
        return b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}"


class _WriterEncoder(Encoder):
    """An encoder around a pyarrow writer, handing over what it wrote after every call."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._sink = _Sink()
        self._writer = self._open(self._sink)

    @abstractmethod
    def _open(self, sink: _Sink) -> Any:
        """The pyarrow writer of this format, writing into ``sink``."""

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def begin(self) -> bytes:
        return self._sink.take()

    def write(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:
            self._writer.write_batch(self._prepare(batch))
        return self._sink.take()

    def end(self, next_cursor: str | None) -> bytes:  # noqa: ARG002 - only JSON carries it
        self._writer.close()
        return self._sink.take()


def _nested(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
    )


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every nested column as text (CSV holds nested values as JSON)."""
    return pa.schema([pa.field(f.name, pa.string()) if _nested(f.type) else f for f in schema])


def _as_json_text(column: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else dump_rows(v).decode() for v in column.to_pylist()], pa.string()
    )


class CsvEncoder(_WriterEncoder):
    """CSV with a header; nested values (``probabilities``) as JSON text."""

    def _open(self, sink: _Sink) -> Any:
        self._text_schema = csv_schema(self.schema)
        return pa_csv.CSVWriter(sink, self._text_schema)

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = [_as_json_text(c) if _nested(c.type) else c for c in batch.columns]
        return pa.record_batch(columns, schema=self._text_schema)


class ParquetEncoder(_WriterEncoder):
    """A Parquet file written one row group per batch (zstd), the footer at the end."""

    def _open(self, sink: _Sink) -> Any:
        return pq.ParquetWriter(sink, self.schema, compression="zstd")


class ArrowEncoder(_WriterEncoder):
    """An Arrow IPC stream (``pyarrow.ipc.open_stream`` reads it)."""

    def _open(self, sink: _Sink) -> Any:
        return pa_ipc.new_stream(sink, self.schema)


_ENCODERS: dict[str, type[Encoder]] = {
    "json": JsonEncoder,
    "csv": CsvEncoder,
    "parquet": ParquetEncoder,
    "arrow": ArrowEncoder,
}


def make_encoder(name: str, schema: pa.Schema, json_key: str = "rows") -> Encoder:
    """A fresh encoder of rows of ``schema`` in the format ``name`` (one of :data:`FORMATS`)."""
    if name == "json":
        return JsonEncoder(schema, json_key)
    return _ENCODERS[name](schema)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema`` (a later part may differ, e.g. an all-null column)."""
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidArgumentError(
            f"a part of this dataset has columns {batch.schema.names} of other types than the "
            f"first part's {schema.names}; it cannot be written as one table"
        ) from exc


def _prediction_array(values: Sequence[Any]) -> pa.Array:
    """The ``prediction`` column: its natural type, or text when the labels are mixed."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return array.cast(pa.string()) if pa.types.is_null(array.type) else array


def prediction_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A page of prediction rows as an Arrow table with the columns :data:`ROW_COLUMNS`."""
    columns: dict[str, pa.Array] = {}
    for name in ROW_COLUMNS:
        values = [row[name] for row in rows]
        kind = PREDICTION_TYPES.get(name)
        columns[name] = _prediction_array(values) if kind is None else pa.array(values, kind)
    return pa.table(columns)
