"""Reference profiles of model versions: what monitoring compares each window with.

A profile (:class:`~shipyard.statistics.profile.DatasetProfile`) summarises every input
column of the reference data and the model's outputs on it (``prediction`` and, for
classifiers, one ``proba_<class>`` column per class) in a few kilobytes, so a window is
monitored without the raw reference. One is stored when a version is registered (from the
``reference`` rows, else the input example) and on demand (``shipyard profile``);
the newest profile of a version is the one used.

The profile's JSON is a blob of the artifact store; ``reference_profiles`` indexes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.core.schema import PREDICTION, Signature, proba_column
from shipyard.store import ArtifactStore, Database
from shipyard.store.tables import ReferenceProfile

if TYPE_CHECKING:  # the statistics and model libraries load when a profile is built or read
    import pandas as pd

    from shipyard.flavors import LoadedModel
    from shipyard.statistics.profile import DatasetProfile


@dataclass(frozen=True)
class ProfileInfo:
    """One stored reference profile."""

    model: str
    version: int
    digest: str
    rows: int
    source: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "rows": self.rows,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
        }


def categorical_columns(
    signature: Signature | None, frame: pd.DataFrame, *, classifier: bool
) -> frozenset[str]:
    """Columns monitored as categories: the signature's text, category and boolean inputs,
    text columns, and a classifier's predicted label."""
    numeric = {c.name for c in signature.inputs if c.is_numeric} if signature is not None else set()
    # a numeric input arrives as objects when a window has only nulls (or text) in it: it
    # stays numeric, and the window's quality says what is wrong with it
    names: set[str] = {
        str(c) for c in frame.columns if frame[c].dtype == object and str(c) not in numeric
    }
    if signature is not None:
        names |= {c.name for c in signature.inputs if not c.is_numeric}
    if classifier:
        names.add(PREDICTION)
    return frozenset(n for n in names if n in frame.columns)


def model_outputs(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's answers on ``frame``: ``prediction`` and, for classifiers, ``proba_<class>``."""
    import numpy as np
    import pandas as pd

    outputs: dict[str, Any] = {PREDICTION: np.asarray(loaded.predict(frame)).reshape(len(frame))}
    classes = loaded.classes if loaded.has_proba else None
    if classes is not None:
        probabilities = np.asarray(loaded.predict_proba(frame))
        for number, label in enumerate(np.asarray(classes).tolist()):
            outputs[proba_column(label)] = probabilities[:, number]
    return pd.DataFrame(outputs, index=frame.index)


def with_outputs(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s model inputs next to the model's answers on them."""
    import pandas as pd

    columns = loaded.signature.columns if loaded.signature is not None else list(frame.columns)
    inputs = frame[[c for c in columns if c in frame.columns]]
    return pd.concat([inputs, model_outputs(loaded, inputs)], axis=1)


class Profiles:
    """Stored reference profiles of model versions."""

    def __init__(self, database: Database, artifacts: ArtifactStore) -> None:
        self.database = database
        self.artifacts = artifacts

    def build(self, loaded: LoadedModel, frame: pd.DataFrame) -> DatasetProfile:
        """The profile of ``frame`` (reference rows) and of ``loaded``'s outputs on it."""
        from shipyard.statistics.profile import profile

        data = with_outputs(loaded, frame)
        # the same rule as the signature's outputs (``OutputSpec.classes``): a model with
        # classes is a classifier, with or without probabilities
        classifier = loaded.classes is not None
        chosen = categorical_columns(loaded.signature, data, classifier=classifier)
        return profile(data, categorical=chosen)

    def save(self, model: str, version: int, data: DatasetProfile, source: str) -> ProfileInfo:
        """Store ``data`` as the newest profile of ``model:version``."""
        blob = json.dumps(data.to_dict(), sort_keys=True, allow_nan=False).encode()
        digest = self.artifacts.put_bytes(blob)
        row = ReferenceProfile(
            model=model,
            version=version,
            digest=digest,
            rows=data.rows,
            source=source,
            created_at=utcnow(),
        )
        with self.database.session() as session:
            session.add(row)
            session.flush()
            return _info(row)

    def latest(self, model: str, version: int) -> tuple[ProfileInfo, DatasetProfile] | None:
        """The newest profile of ``model:version`` and its record, or ``None``."""
        from shipyard.statistics.profile import DatasetProfile

        query = (
            sa.select(ReferenceProfile)
            .where(ReferenceProfile.model == model, ReferenceProfile.version == version)
            .order_by(ReferenceProfile.id.desc())
            .limit(1)
        )
        with self.database.session() as session:
            row = session.scalar(query)
            if row is None:
                return None
            info = _info(row)
        data = DatasetProfile.from_dict(json.loads(self.artifacts.get_bytes(info.digest)))
        return info, data

    def list(self, model: str) -> list[ProfileInfo]:
        """Every profile of ``model``, newest first."""
        query = (
            sa.select(ReferenceProfile)
            .where(ReferenceProfile.model == model)
            .order_by(ReferenceProfile.id.desc())
        )
        with self.database.session() as session:
            return [_info(row) for row in session.scalars(query)]


def _info(row: ReferenceProfile) -> ProfileInfo:
    return ProfileInfo(
        model=row.model,
        version=row.version,
        digest=row.digest,
        rows=row.rows,
        source=row.source,
        created_at=row.created_at,
    )
