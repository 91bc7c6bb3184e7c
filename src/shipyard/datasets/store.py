"""Dataset versions: Parquet files in the artifact store, described in the metadata database.

Writing a frame stores its Parquet bytes (content-addressed) first and then records the
version in one transaction, so a crash leaves the old state or the new one. Writing the
same content again returns the existing version: the fingerprint (sha256 over column
names, dtypes and values) is the identity of a dataset's content.
"""

from __future__ import annotations

import builtins
import hashlib
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.core.fingerprint import fingerprint_frame
from shipyard.core.refs import ZONES, DatasetRef, check_name
from shipyard.store import ArtifactStore, Database
from shipyard.store.tables import DatasetVersion

if TYPE_CHECKING:  # pandas and Arrow load when rows are written or read, not to list versions
    import pandas as pd
    import pyarrow as pa
    from sqlalchemy.orm import Session


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
    #: ``file`` (one Parquet blob) or ``parts`` (a tree of Parquet parts: :meth:`Datasets.parts`)
    layout: str = "file"

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
            "layout": self.layout,
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
        layout=row.layout or "file",
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
    layout: str = "file"


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
        import pandas as pd

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
        then: Callable[[Session, builtins.list[DatasetInfo]], None] | None = None,
    ) -> builtins.list[DatasetInfo]:
        """Record staged frames as new versions, all in one transaction.

        ``then(session, infos)`` runs inside that transaction once the versions are
        recorded, so what it writes lands with them or not at all: the pipeline runner
        records there that the step which produced them succeeded. It may run again if
        the transaction is retried (a concurrent writer took a version number).
        """
        for attempt in range(3):
            try:
                with self.database.session() as session:
                    infos = [
                        self._record(session, item, source=source, run_id=run_id, step=step)
                        for item in staged
                    ]
                    if then is not None:
                        then(session, infos)
                    return infos
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
            layout=item.layout,
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

    def page(
        self, zone: str | None = None, *, offset: int = 0, limit: int = 50
    ) -> tuple[builtins.list[DatasetInfo], int]:
        """One page of the newest version of every dataset (by zone then name), and the count."""
        if zone is not None and zone not in ZONES:
            raise InvalidArgumentError(f"zone must be one of {', '.join(ZONES)}, got {zone!r}")
        newest = sa.select(
            DatasetVersion.zone,
            DatasetVersion.name,
            sa.func.max(DatasetVersion.version).label("version"),
        ).group_by(DatasetVersion.zone, DatasetVersion.name)
        if zone is not None:
            newest = newest.where(DatasetVersion.zone == zone)
        latest = newest.subquery()
        zone_order = sa.case({z: i for i, z in enumerate(ZONES)}, value=DatasetVersion.zone)
        query = (
            sa.select(DatasetVersion)
            .join(
                latest,
                sa.and_(
                    DatasetVersion.zone == latest.c.zone,
                    DatasetVersion.name == latest.c.name,
                    DatasetVersion.version == latest.c.version,
                ),
            )
            .order_by(zone_order, DatasetVersion.name)
            .offset(offset)
            .limit(limit)
        )
        with self.database.session() as session:
            total = session.scalar(sa.select(sa.func.count()).select_from(latest))
            return [_info(row) for row in session.scalars(query)], int(total or 0)

    def versions_page(
        self, ref: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[builtins.list[DatasetInfo], int]:
        """One page of the versions of ``ZONE/NAME`` (newest first) and how many it has."""
        parsed = DatasetRef.parse(ref)
        where = (DatasetVersion.zone == parsed.zone, DatasetVersion.name == parsed.name)
        with self.database.session() as session:
            count = sa.select(sa.func.count()).select_from(DatasetVersion).where(*where)
            total = session.scalar(count)
            rows = session.scalars(
                sa.select(DatasetVersion)
                .where(*where)
                .order_by(DatasetVersion.version.desc())
                .offset(offset)
                .limit(limit)
            )
            return [_info(row) for row in rows], int(total or 0)

    def stage_parts(self, ref: str, folder: Path) -> StagedFrame:
        """Store the Parquet files of ``folder`` (read in name order) as one staged version.

        Batch scoring writes one part per chunk; this stores them as a tree (one blob a part
        plus a manifest) without reading them into memory. The fingerprint is a sha256 over the
        parts' own digests, in order.
        """
        import pyarrow.parquet as pq

        parsed = DatasetRef.parse(ref)
        check_name(parsed.name)
        if parsed.version is not None:
            raise InvalidArgumentError(
                f"write to {parsed.key}, not {ref}: versions are numbered by shipyard"
            )
        # hidden files are a writer's temporaries (``.tmp-*.parquet``), never parts
        paths = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        if not paths:
            raise InvalidArgumentError(f"{folder} holds no Parquet parts to store as {ref}")
        schema = pq.read_schema(paths[0])
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
        with tempfile.TemporaryDirectory(prefix="shipyard-parts-") as scratch:
            tree = Path(scratch)
            for path in paths:  # a tree holds only the parts, never other files of the folder
                (tree / path.name).symlink_to(path.resolve())
            digest = self.artifacts.put_tree(tree)
        hasher = hashlib.sha256()
        for entry in self.artifacts.manifest(digest)["files"].values():
            hasher.update(entry["sha256"].encode())
        dtypes = schema.empty_table().to_pandas().dtypes
        return StagedFrame(
            zone=parsed.zone,
            name=parsed.name,
            fingerprint=hasher.hexdigest(),
            artifact_digest=digest,
            columns=[{"name": str(c), "dtype": str(t)} for c, t in dtypes.items()],
            row_count=rows,
            layout="parts",
        )

    def parts(self, info: DatasetInfo) -> builtins.list[str]:
        """The digests of a version's Parquet blobs, in order (one for a ``file`` version)."""
        if info.layout != "parts":
            return [info.artifact_digest]
        files = self.artifacts.manifest(info.artifact_digest)["files"]
        return [files[name]["sha256"] for name in sorted(files)]

    @contextmanager
    def local_part(self, digest: str) -> Iterator[Path]:
        """One Parquet blob as a local file (verified against its sha256), removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="shipyard-read-") as scratch:
            path = Path(scratch) / "data.parquet"
            self.artifacts.download(digest, path)
            yield path

    def iter_batches(
        self,
        ref: str | DatasetInfo,
        *,
        batch_size: int = 65_536,
        columns: builtins.list[str] | None = None,
    ) -> Generator[pa.RecordBatch]:
        """Stream a version's rows as Arrow record batches: one part in memory at the most."""
        import pyarrow.parquet as pq

        info = ref if isinstance(ref, DatasetInfo) else self.get(ref)
        for digest in self.parts(info):
            with self.local_part(digest) as path, pq.ParquetFile(path) as parquet:
                yield from parquet.iter_batches(batch_size=batch_size, columns=columns)

    def schema(self, ref: str | DatasetInfo) -> pa.Schema:
        """The Arrow schema of a version (read from its first part)."""
        import pyarrow.parquet as pq

        info = ref if isinstance(ref, DatasetInfo) else self.get(ref)
        with self.local_part(self.parts(info)[0]) as path:
            schema: pa.Schema = pq.read_schema(path)
            return schema

    def read(self, ref: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        """The rows of a dataset version (verified against its sha256 on the way)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        info = self.get(ref)
        tables = []
        for digest in self.parts(info):
            with self.local_part(digest) as path:
                tables.append(pq.read_table(path, columns=columns))
        frame: pd.DataFrame = pa.concat_tables(tables).to_pandas()
        return frame

    def head(self, ref: str, rows: int = 10) -> pd.DataFrame:
        """The first ``rows`` rows of a dataset version."""
        import pyarrow as pa

        info = self.get(ref)
        batches = []
        wanted = max(rows, 1)
        with closing(self.iter_batches(info, batch_size=wanted)) as stream:
            for batch in stream:  # closing: the part's download is removed on the way out
                batches.append(batch)
                wanted -= batch.num_rows
                if wanted <= 0:
                    break
        table = pa.Table.from_batches(batches) if batches else self.schema(info).empty_table()
        frame: pd.DataFrame = table.to_pandas().head(rows)
        return frame

    def delete(self, ref: str) -> DatasetInfo:
        """Forget the version ``ZONE/NAME:VERSION`` (its blobs stay until collected)."""
        parsed = DatasetRef.parse(ref)
        if parsed.version is None:
            raise InvalidArgumentError(f"name the version to delete: {parsed.key}:VERSION")
        info = self.get(ref)
        with self.database.session() as session:
            session.execute(
                sa.delete(DatasetVersion).where(
                    DatasetVersion.zone == parsed.zone,
                    DatasetVersion.name == parsed.name,
                    DatasetVersion.version == parsed.version,
                )
            )
        return info
