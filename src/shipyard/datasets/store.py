"""Dataset versions: Parquet files in the artifact store, described in the metadata database.

Writing a frame stores its Parquet bytes (content-addressed) first and then records the
version in one transaction, so a crash leaves the old state or the new one. Writing the
same content again returns the existing version: the fingerprint (sha256 over column
names, dtypes and values) is the identity of a dataset's content.
"""

from __future__ import annotations

import builtins
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.core.fingerprint import fingerprint_frame
from shipyard.core.refs import ZONES, DatasetRef, check_name
from shipyard.store import ArtifactStore, Database
from shipyard.store.tables import DatasetVersion, utcnow


@dataclass(frozen=True)
class DatasetInfo:
    """One stored dataset version."""

    zone: str
    name: str
    version: int
    fingerprint: str
    artifact_digest: str
    columns: list[dict[str, str]]
    row_count: int
    source: str
    run_id: str | None
    step: str | None
    created_at: datetime
    created_by: str
    reused: bool = False

    @property
    def ref(self) -> str:
        """``ZONE/NAME:VERSION``."""
        return f"{self.zone}/{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard datasets show --json``)."""
        return {
            "ref": self.ref,
            "zone": self.zone,
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "artifact_digest": self.artifact_digest,
            "columns": self.columns,
            "row_count": self.row_count,
            "source": self.source,
            "run_id": self.run_id,
            "step": self.step,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


def _info(row: DatasetVersion, *, reused: bool = False) -> DatasetInfo:
    return DatasetInfo(
        zone=row.zone,
        name=row.name,
        version=row.version,
        fingerprint=row.fingerprint,
        artifact_digest=row.artifact_digest,
        columns=list(row.columns),
        row_count=row.row_count,
        source=row.source,
        run_id=row.run_id,
        step=row.step,
        created_at=row.created_at,
        created_by=row.created_by,
        reused=reused,
    )


@dataclass(frozen=True)
class StagedFrame:
    """A frame whose Parquet bytes are stored but not yet recorded as a version."""

    zone: str
    name: str
    fingerprint: str
    artifact_digest: str
    columns: list[dict[str, str]]
    row_count: int


class Datasets:
    """The dataset zones of one project."""

    def __init__(self, database: Database, artifacts: ArtifactStore, actor: str) -> None:
        self.database = database
        self.artifacts = artifacts
        self.actor = actor

    def stage(self, ref: str, frame: pd.DataFrame) -> StagedFrame:
        """Store ``frame``'s Parquet bytes for ``ZONE/NAME`` without recording a version yet.

        Pipelines stage every output of a step and :meth:`commit` them together, so a
        step that fails half-way records none of its outputs.
        """
        parsed = DatasetRef.parse(ref)
        check_name(parsed.name)
        if parsed.version is not None:
            raise InvalidArgumentError(
                f"write to {parsed.key}, not {ref}: versions are numbered by shipyard"
            )
        if not isinstance(frame, pd.DataFrame):
            raise InvalidArgumentError(
                f"dataset {parsed.key} must be a pandas DataFrame but got {type(frame).__name__}"
            )
        frame = frame.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        with tempfile.TemporaryDirectory(prefix="shipyard-dataset-") as scratch:
            path = Path(scratch) / "data.parquet"
            frame.to_parquet(path, index=False)
            digest = self.artifacts.put_file(path)
        return StagedFrame(
            zone=parsed.zone,
            name=parsed.name,
            fingerprint=fingerprint_frame(frame),
            artifact_digest=digest,
            columns=[{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()],
            row_count=len(frame),
        )

    def commit(
        self,
        staged: builtins.list[StagedFrame],
        *,
        source: str = "",
        run_id: str | None = None,
        step: str | None = None,
    ) -> builtins.list[DatasetInfo]:
        """Record staged frames as new versions, all in one transaction."""
        for attempt in range(3):
            try:
                with self.database.session() as session:
                    return [
                        self._record(session, item, source=source, run_id=run_id, step=step)
                        for item in staged
                    ]
            except IntegrityError:  # a concurrent writer took the same version number
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(
        self, session: Any, item: StagedFrame, *, source: str, run_id: str | None, step: str | None
    ) -> DatasetInfo:
        latest = session.scalar(
            sa.select(DatasetVersion)
            .where(DatasetVersion.zone == item.zone, DatasetVersion.name == item.name)
            .order_by(DatasetVersion.version.desc())
            .limit(1)
        )
        if latest is not None and latest.fingerprint == item.fingerprint:
            return _info(latest, reused=True)
        row = DatasetVersion(
            zone=item.zone,
            name=item.name,
            version=(latest.version + 1) if latest is not None else 1,
            fingerprint=item.fingerprint,
            artifact_digest=item.artifact_digest,
            columns=item.columns,
            row_count=item.row_count,
            source=source,
            run_id=run_id,
            step=step,
            created_at=utcnow(),
            created_by=self.actor,
        )
        session.add(row)
        session.flush()
        return _info(row)

    def write(
        self,
        ref: str,
        frame: pd.DataFrame,
        *,
        source: str = "",
        run_id: str | None = None,
        step: str | None = None,
    ) -> DatasetInfo:
        """Store ``frame`` as the next version of ``ZONE/NAME`` (or return the identical latest)."""
        [info] = self.commit([self.stage(ref, frame)], source=source, run_id=run_id, step=step)
        return info

    def get(self, ref: str) -> DatasetInfo:
        """The version ``ZONE/NAME`` (newest) or ``ZONE/NAME:VERSION`` points at."""
        parsed = DatasetRef.parse(ref)
        with self.database.session() as session:
            query = sa.select(DatasetVersion).where(
                DatasetVersion.zone == parsed.zone, DatasetVersion.name == parsed.name
            )
            if parsed.version is not None:
                query = query.where(DatasetVersion.version == parsed.version)
            row = session.scalar(query.order_by(DatasetVersion.version.desc()).limit(1))
            if row is None:
                what = "no dataset" if parsed.version is None else "no such version of dataset"
                raise NotFoundError(
                    f"{what} {ref}; 'shipyard datasets list' shows what the zones hold"
                )
            return _info(row)

    def exists(self, ref: str) -> bool:
        """True when ``ref`` names a stored version."""
        try:
            self.get(ref)
        except NotFoundError:
            return False
        return True

    def list(self, zone: str | None = None) -> builtins.list[DatasetInfo]:
        """The newest version of every dataset (in ``zone`` if given), by zone then name."""
        if zone is not None and zone not in ZONES:
            raise InvalidArgumentError(f"zone must be one of {', '.join(ZONES)}, got {zone!r}")
        with self.database.session() as session:
            newest = (
                sa.select(
                    DatasetVersion.zone,
                    DatasetVersion.name,
                    sa.func.max(DatasetVersion.version).label("version"),
                )
                .group_by(DatasetVersion.zone, DatasetVersion.name)
                .subquery()
            )
            query = sa.select(DatasetVersion).join(
                newest,
                sa.and_(
                    DatasetVersion.zone == newest.c.zone,
                    DatasetVersion.name == newest.c.name,
                    DatasetVersion.version == newest.c.version,
                ),
            )
            if zone is not None:
                query = query.where(DatasetVersion.zone == zone)
            rows = session.scalars(query)
            infos = [_info(row) for row in rows]
        order = {z: i for i, z in enumerate(ZONES)}
        return sorted(infos, key=lambda d: (order[d.zone], d.name))

    def versions(self, ref: str) -> builtins.list[DatasetInfo]:
        """Every version of ``ZONE/NAME``, newest first."""
        parsed = DatasetRef.parse(ref)
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(DatasetVersion)
                .where(DatasetVersion.zone == parsed.zone, DatasetVersion.name == parsed.name)
                .order_by(DatasetVersion.version.desc())
            )
            return [_info(row) for row in rows]

    @contextmanager
    def _local(self, info: DatasetInfo) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="shipyard-read-") as scratch:
            path = Path(scratch) / "data.parquet"
            self.artifacts.download(info.artifact_digest, path)
            yield path

    def read(self, ref: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        """The rows of a dataset version (verified against its sha256 on the way)."""
        info = self.get(ref)
        with self._local(info) as path:
            frame: pd.DataFrame = pd.read_parquet(path, columns=columns)
            return frame

    def head(self, ref: str, rows: int = 10) -> pd.DataFrame:
        """The first ``rows`` rows of a dataset version."""
        info = self.get(ref)
        with self._local(info) as path:
            parquet = pq.ParquetFile(path)
            batches = parquet.iter_batches(batch_size=max(rows, 1))
            first = next(batches, None)
            table = first if first is not None else parquet.schema_arrow.empty_table()
            frame: pd.DataFrame = table.to_pandas().head(rows)
            return frame
