"""Ground truth for predictions ("feedback"): stored labels, joined to what the model answered.

A :class:`Label` names one prediction and its true value:

- an online prediction by the ``request_id`` of its request (the ``X-Request-ID`` its answer
  carried, the ``request_id`` of the prediction log) and the ``row`` of that request (from 0);
- a batch prediction by its ``key``: the value of the job's first key column, or its
  ``row_id`` when the job had no key columns, as text.

:class:`FeedbackStore` keeps them in the ``feedback`` table, one row per prediction: a later
label for the same prediction replaces the earlier one (an upsert on SQLite and PostgreSQL).
:meth:`FeedbackStore.online_truth` and :meth:`FeedbackStore.batch_truth` join the labels to
the prediction log and to a batch job's predictions: what monitoring computes performance on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import ConflictError, InvalidArgumentError
from shipyard.core.refs import NAME_RE
from shipyard.datasets.predictions import as_utc
from shipyard.store import Database
from shipyard.store.tables import Feedback

#: The columns of :meth:`FeedbackStore.read`.
LABEL_COLUMNS = ("request_id", "row", "key", "label", "received_at")
#: The columns of :meth:`FeedbackStore.online_truth`.
ONLINE_COLUMNS = (
    "request_id", "row", "at", "version", "prediction", "probabilities", "classes", "label",
)  # fmt: skip
MAX_REQUEST_ID = 128  # the width of feedback.request_id (and of a server's request ids)
MAX_KEY = 256  # the width of feedback.key
_TABLE = Feedback.metadata.tables[Feedback.__tablename__]
_PREDICTION = ("request_id", "row", "key")
#: Values per ``IN (...)`` (well under SQLite's and PostgreSQL's parameter limits).
_IN_CHUNK = 500
#: Past this many ids or keys, one query reads every label of the model instead.
_IN_MAX = 20_000
_HOW = (
    'a label is {"request_id": ID, "row": N, "label": VALUE} for an online prediction, or '
    '{"key": KEY, "label": VALUE} for a batch one'
)


@dataclass(frozen=True)
class Label:
    """The true value of one prediction, online (``request_id`` and ``row``) or batch (``key``)."""

    #: The true value: a JSON scalar (class label, number, boolean); never None.
    label: Any
    #: An online prediction: the request id of its request (its answer's ``X-Request-ID``).
    request_id: str = ""
    #: Which row of that request (from 0).
    row: int = 0
    #: A batch prediction: its key value (the job's first key column, or ``row_id``) as text.
    key: str = ""


def check_model_name(model: str) -> str:
    """``model`` when it is a model name (not a reference such as ``churn:3``), else raise."""
    if not isinstance(model, str) or not NAME_RE.match(model):
        raise InvalidArgumentError(
            f"model must be a registered model's name, e.g. 'churn', but got {model!r}; "
            "feedback belongs to the model whichever version or alias answered, so leave out "
            "':VERSION' and '@ALIAS'"
        )
    return model


def _scalar(value: Any, where: str) -> Any:
    """``value`` as a plain JSON scalar (numpy scalars unwrapped), or InvalidArgumentError."""
    if isinstance(value, np.generic):
        value = value.item()
    missing = value is None or value is pd.NA or value is pd.NaT
    if missing or (isinstance(value, float) and math.isnan(value)):
        raise InvalidArgumentError(
            f"{where}.label is missing ({value!r}); give every label its true value, or "
            "leave the entry out"
        )
    if not isinstance(value, str | bool | int | float):
        raise InvalidArgumentError(
            f"{where}.label must be a JSON scalar (a string, number or boolean) but got "
            f"{type(value).__name__} {value!r}; send the true class label or value itself"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{where}.label must be a finite number but got {value!r}")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def _row(model: str, index: int, label: Label, at: datetime) -> dict[str, Any]:
    """One label as the values of its ``feedback`` row, after checking it."""
    where = f"labels[{index}]"
    if not isinstance(label, Label):
        raise InvalidArgumentError(
            f"{where} is a {type(label).__name__}, not a Label; build it with "
            "Label(label=VALUE, request_id=ID, row=N) or Label(label=VALUE, key=KEY)"
        )
    request_id, key, row = label.request_id, label.key, label.row
    if not isinstance(request_id, str) or not isinstance(key, str):
        raise InvalidArgumentError(
            f"{where}: request_id and key must be text but got {request_id!r} and {key!r}"
        )
    if not request_id and not key:
        raise InvalidArgumentError(
            f"{where} names no prediction: give the request_id of an online prediction "
            "(the X-Request-ID header of its answer) or the key of a batch prediction; " + _HOW
        )
    if request_id and key:
        raise InvalidArgumentError(
            f"{where} has both request_id {request_id!r} and key {key!r}; give one: "
            "request_id for an online prediction, key for a batch one"
        )
    if isinstance(row, bool) or not isinstance(row, int | np.integer) or row < 0:
        raise InvalidArgumentError(
            f"{where}.row must be a whole number from 0 (the row of the request) but got {row!r}"
        )
    if key and row != 0:
        raise InvalidArgumentError(
            f"{where}.row is {row} but row applies only to request_id labels (the row of an "
            "online request); a key names one batch prediction already, so leave row out"
        )
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgumentError(
            f"{where}.request_id is {len(request_id)} characters; request ids are at most "
            f"{MAX_REQUEST_ID} (send the X-Request-ID of the prediction's answer unchanged)"
        )
    if len(key) > MAX_KEY:
        raise InvalidArgumentError(
            f"{where}.key is {len(key)} characters but keys are at most {MAX_KEY}"
        )
    value = _scalar(label.label, where)
    return {
        "model": model,
        "request_id": request_id,
        "row": int(row),
        "key": key,
        "label": json.dumps(value),
        "received_at": at,
    }


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str, hint: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidArgumentError(
            f"the {what} have no column {', '.join(map(repr, missing))} (their columns: "
            f"{', '.join(map(str, frame.columns)) or 'none'}); {hint}"
        )


def _outputs(value: Any) -> dict[str, Any]:
    """A log entry's ``outputs`` (a dict, or its JSON text)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


class FeedbackStore:
    """The labels (ground truth) of one project's predictions, in its metadata database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- writing --------------------------------------------------------------------------

    def add(self, model: str, labels: Sequence[Label], *, replace: bool = False) -> int:
        """Store ``labels`` for ``model`` in one transaction; the number of predictions labelled.

        Every label is checked before anything is written (:class:`InvalidArgumentError`
        names the first bad entry by its index and says how to fix it). Sending a label a
        prediction has already is harmless; a *different* label for it is refused
        (:class:`ConflictError`, nothing written) unless ``replace`` is True — a label is
        never overwritten silently. Two different labels for one prediction in ``labels``
        are refused too; the count is of distinct predictions.
        """
        check_model_name(model)
        at = utcnow()
        rows: dict[tuple[str, int, str], dict[str, Any]] = {}
        first: dict[tuple[str, int, str], int] = {}
        for index, label in enumerate(labels):
            row = _row(model, index, label, at)
            key = (row["request_id"], row["row"], row["key"])
            earlier = rows.get(key)
            if earlier is not None and earlier["label"] != row["label"]:
                raise InvalidArgumentError(
                    f"labels[{first[key]}] and labels[{index}] give different labels "
                    f"({_short(earlier['label'])} and {_short(row['label'])}) to one prediction; "
                    "send one label per prediction"
                )
            first.setdefault(key, index)
            rows[key] = row
        if not rows:
            return 0
        if not replace:
            self._refuse_changes(model, rows, first)
        statement = self.database.upsert(_TABLE)
        statement = statement.on_conflict_do_update(
            index_elements=["model", *_PREDICTION],
            set_={
                "label": statement.excluded.label,
                "received_at": statement.excluded.received_at,
            },
        )
        with self.database.engine.begin() as connection:
            connection.execute(statement, list(rows.values()))
        return len(rows)

    def _refuse_changes(
        self,
        model: str,
        rows: dict[tuple[str, int, str], dict[str, Any]],
        first: dict[tuple[str, int, str], int],
    ) -> None:
        """:class:`ConflictError` when a prediction of ``rows`` has a different label stored."""
        keys = list(rows)
        columns = sa.tuple_(_TABLE.c.request_id, _TABLE.c.row, _TABLE.c.key)
        changed: list[str] = []
        with self.database.engine.connect() as connection:
            for start in range(0, len(keys), 500):
                query = sa.select(
                    _TABLE.c.request_id, _TABLE.c.row, _TABLE.c.key, _TABLE.c.label
                ).where(_TABLE.c.model == model, columns.in_(keys[start : start + 500]))
                for request_id, row, key, label in connection.execute(query):
                    sent = rows[(request_id, row, key)]["label"]
                    if label != sent:
                        changed.append(
                            f"labels[{first[(request_id, row, key)]}] (stored {_short(label)}, "
                            f"sent {_short(sent)})"
                        )
        if changed:
            raise ConflictError(
                f"{len(changed)} label(s) differ from the ones stored for the same predictions, "
                f"e.g. {', '.join(changed[:3])}; nothing was stored. Send them again with "
                "replace=true (CLI: --replace) to overwrite the stored labels"
            )

    def prune(self, model: str | None, before: datetime) -> int:
        """Forget the labels received before ``before`` (of ``model``, or of every model).

        A naive ``before`` is taken as UTC. Returns the number of labels removed.
        """
        query = sa.delete(_TABLE).where(_TABLE.c.received_at < as_utc(before))
        if model is not None:
            query = query.where(_TABLE.c.model == model)
        with self.database.engine.begin() as connection:
            return int(connection.execute(query).rowcount or 0)

    # -- reading --------------------------------------------------------------------------

    def read(
        self, model: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> pd.DataFrame:
        """The labels of ``model`` received between ``since`` and ``until``, oldest first.

        Columns :data:`LABEL_COLUMNS`: request_id and row (online) or key (batch), the
        label decoded from JSON, and received_at (UTC). Naive times are taken as UTC.
        """
        query = sa.select(*(_TABLE.c[name] for name in LABEL_COLUMNS)).where(
            _TABLE.c.model == model
        )
        if since is not None:
            query = query.where(_TABLE.c.received_at >= as_utc(since))
        if until is not None:
            query = query.where(_TABLE.c.received_at <= as_utc(until))
        query = query.order_by(_TABLE.c.received_at, _TABLE.c.id)
        with self.database.engine.connect() as connection:
            rows = [
                (rid, row, key, json.loads(label), received)
                for rid, row, key, label, received in connection.execute(query)
            ]
        frame = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
        frame["row"] = frame["row"].astype("int64")
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
        return frame

    def lookup(self, model: str, column: str, values: Iterable[str]) -> dict[Any, Any]:
        """The labels of ``model`` whose ``column`` (request_id or key) is one of ``values``.

        Keyed by request id → {row: label} for ``request_id``, by key → label for ``key``.
        Only the labels asked for are read (``IN`` lists, or one scan past ``_IN_MAX``).
        """
        wanted = sorted({v for v in values if v})
        if not wanted:
            return {}
        by = _TABLE.c[column]
        query = sa.select(_TABLE.c.request_id, _TABLE.c.row, _TABLE.c.key, _TABLE.c.label)
        query = query.where(_TABLE.c.model == model)
        if column == "key":
            query = query.where(_TABLE.c.request_id == "", _TABLE.c.row == 0)
        else:
            query = query.where(_TABLE.c.key == "")
        found: list[Any] = []
        with self.database.engine.connect() as connection:
            if len(wanted) > _IN_MAX:  # one scan of the model's labels beats many IN queries
                keep = set(wanted)
                rows = connection.execute(query.where(by != ""))
                found = [r for r in rows if getattr(r, column) in keep]
            else:
                for chunk in _chunks(wanted):
                    found.extend(connection.execute(query.where(by.in_(chunk))))
        if column == "key":
            return {r.key: json.loads(r.label) for r in found}
        by_request: dict[str, dict[int, Any]] = {}
        for r in found:
            by_request.setdefault(r.request_id, {})[r.row] = json.loads(r.label)
        return by_request

    def online_truth(self, model: str, log: pd.DataFrame, *, shadow: bool = False) -> pd.DataFrame:
        """The rows of prediction ``log`` that have a label, one per (request, row), labelled.

        ``log`` is a frame of
        :meth:`~shipyard.datasets.prediction_log.PredictionLogStore.read` (columns
        request_id, at, version, outputs; model and shadow when present). Only rows of
        ``model`` count, and only the answered predictions (``shadow=True``: only the shadow
        ones). A request id logged twice (a client reusing ``X-Request-ID``) takes its last
        entry. Columns :data:`ONLINE_COLUMNS`: the prediction, its probabilities (a list, or
        None) and classes (None for a regressor) and the label; ordered by ``at``, then row.
        """
        _require(
            log,
            ("request_id", "at", "version", "outputs"),
            "prediction log rows",
            "pass a frame of PredictionLogStore(database).read(model)",
        )
        if "model" in log.columns:
            log = log[log["model"] == model]
        if "shadow" in log.columns:
            log = log[log["shadow"].astype(bool) == shadow]
        labels = self.lookup(model, "request_id", log["request_id"].astype(str))
        out: dict[tuple[str, int], dict[str, Any]] = {}
        if labels:
            log = log[log["request_id"].isin(list(labels))]
            if "id" in log.columns:
                log = log.sort_values("id", kind="stable")
            for rid, at, version, outputs in zip(
                log["request_id"], log["at"], log["version"], log["outputs"], strict=True
            ):
                answer = _outputs(outputs)
                predictions = answer.get("predictions") or []
                probabilities = answer.get("probabilities")
                for row, label in labels[rid].items():
                    if row >= len(predictions):  # a label for a row the request did not have
                        continue
                    out[(rid, row)] = {  # a later entry of the same request id wins
                        "request_id": rid,
                        "row": row,
                        "at": at,
                        "version": version,
                        "prediction": predictions[row],
                        "probabilities": probabilities[row] if probabilities else None,
                        "classes": answer.get("classes"),
                        "label": label,
                    }
        frame = pd.DataFrame(list(out.values()), columns=list(ONLINE_COLUMNS))
        frame["row"] = frame["row"].astype("int64")
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame.sort_values(["at", "row"], kind="stable", ignore_index=True)

    def batch_truth(
        self, model: str, predictions: pd.DataFrame, key: str, *, label: str = "label"
    ) -> pd.DataFrame:
        """The rows of a batch ``predictions`` frame that have a label, in a ``label`` column.

        ``key`` is the column the labels' keys are values of: the job's first key column, or
        ``row_id`` for a job without keys; rows match on its value as text (``str``). The
        rows keep their order and index. ``label`` names the added column.
        """
        _require(
            predictions,
            (key,),
            "predictions",
            "pass key= the job's first key column, or 'row_id' for a job scored without keys",
        )
        if label in predictions.columns:
            raise InvalidArgumentError(
                f"the predictions have a {label!r} column already; rename or drop it first, "
                f"or pass label= another name: batch_truth adds the stored labels as {label!r}"
            )
        keys = predictions[key].astype(str)
        labels = self.lookup(model, "key", keys.unique().tolist())
        mask = keys.isin(list(labels))
        out = predictions[mask.to_numpy()].copy()
        out[label] = pd.Series(
            [labels[k] for k in keys[mask.to_numpy()]], index=out.index, dtype=object
        )
        return out
