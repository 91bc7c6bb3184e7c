"""The model registry: immutable numbered versions, aliases and gated promotions.

Registering writes the model's files to the artifact store first (content-addressed,
so a crash leaves at most an unreferenced blob), then records the version in one
database transaction. Loading re-hashes every file before a flavor reads it.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import (
    ConflictError,
    InvalidArgumentError,
    SchemaError,
    UntrustedArtifactError,
)
from shipyard.core.refs import ModelRef, check_name
from shipyard.core.schema import OutputSpec, Signature
from shipyard.core.settings import Settings
from shipyard.flavors import import_model, load_model, save_model
from shipyard.registry.lineage import build_lineage
from shipyard.registry.profiles import Profiles
from shipyard.registry.promotions import Promotions
from shipyard.registry.records import ModelInfo, VersionInfo
from shipyard.store import ArtifactStore, Database
from shipyard.store.tables import ModelAlias, ModelVersion, RegisteredModel

if TYPE_CHECKING:  # pandas and the model classes load when a model is registered or loaded
    import pandas as pd

    from shipyard.flavors import LoadedModel, SavedModel

#: Rows of the input example kept with a version (the signature is inferred from all rows).
EXAMPLE_ROWS = 5
_LIBRARY = {
    "sklearn": "scikit-learn",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "onnx": "onnxruntime",
    "mlflow": "mlflow",
}


class Registry(Promotions):
    """Registered models of one project. Build it with the project's store and settings."""

    def __init__(self, database: Database, artifacts: ArtifactStore, settings: Settings) -> None:
        super().__init__(database, settings)
        self.artifacts = artifacts
        self.profiles = Profiles(database, artifacts)

    # -- registering -------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: object | None = None,
        *,
        path: str | Path | None = None,
        flavor: str | None = None,
        input_example: pd.DataFrame | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        trust: bool = False,
        trusted_types: Sequence[str] | None = None,
        datasets: Mapping[str, pd.DataFrame | str] | None = None,
        run_id: str | None = None,
        reference: pd.DataFrame | None = None,
    ) -> VersionInfo:
        """Store a new version of ``name`` from an object in memory or a file/folder at ``path``.

        ``input_example`` rows (e.g. the training features) give the signature: dtypes,
        nullability, categories and ranges are inferred from all of them. Formats whose
        loading would run code or unvetted types (pickles, skops types outside skops'
        defaults) need ``trust=True`` (trust everything reported) or ``trusted_types``
        listing each type; otherwise :class:`UntrustedArtifactError` lists what to review.

        The version's reference profile (what monitoring compares windows with) is computed
        from ``reference`` rows (e.g. the held-out evaluation set), else from the input
        example: every input column and the model's outputs on those rows.
        """
        check_name(name)
        if (model is None) == (path is None):
            raise InvalidArgumentError("pass exactly one of a model object or path=")
        clean_metrics = _check_metrics(metrics or {})
        with tempfile.TemporaryDirectory(prefix="shipyard-register-") as scratch:
            folder = Path(scratch) / "model"
            folder.mkdir()
            if path is not None:
                source = Path(path).expanduser().resolve()
                saved = import_model(source, folder, flavor)
                origin = str(source)
            else:
                saved = save_model(model, folder, flavor)
                origin = f"{type(model).__module__}.{type(model).__qualname__}"
            saved.config["trusted_types"] = _decide_trust(saved, trust, trusted_types, origin)
            example = input_example if input_example is not None else saved.input_example
            signature = saved.signature
            if signature is None and example is not None:
                signature = Signature.infer(example)
            loaded = load_model(folder, saved.flavor, saved.config, signature)
            if example is not None:
                _settle_nullability(loaded, saved, example)
                signature = _with_outputs(loaded, example)
            rows = reference if reference is not None else example
            profiled = self.profiles.build(loaded, rows) if rows is not None and len(rows) else None
            digest = self.artifacts.put_tree(folder)
        now = utcnow()
        lineage = build_lineage(
            root=self.settings.root,
            actor=self.settings.actor,
            at=now,
            datasets=datasets,
            run_id=run_id,
            source=origin,
            library=_LIBRARY.get(saved.flavor),
        )
        fields: dict[str, Any] = {
            "flavor": saved.flavor,
            "flavor_config": saved.config,
            "artifact_digest": digest,
            "signature": signature.to_dict() if signature else None,
            "input_example": _example_records(example),
            "metrics": clean_metrics,
            "params": {str(k): _jsonable(v) for k, v in (params or {}).items()},
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
            "description": description,
            "lineage": lineage,
            "status": "active",
            "created_at": now,
            "created_by": self.settings.actor,
        }
        info = self._insert_version(name, fields)
        if profiled is not None:
            rows_from = "reference rows" if reference is not None else "input example"
            self.profiles.save(
                name, info.version, profiled, f"registration: {rows_from} ({profiled.rows:,} rows)"
            )
        return info

    def _insert_version(self, name: str, fields: dict[str, Any]) -> VersionInfo:
        for attempt in range(3):
            try:
                with self.database.session() as session:
                    row = ModelVersion(**fields)
                    model = session.scalar(
                        sa.select(RegisteredModel)
                        .where(RegisteredModel.name == name)
                        .with_for_update()
                    )
                    if model is None:
                        model = RegisteredModel(name=name, description="", last_version=0)
                        session.add(model)
                        session.flush()
                    model.last_version += 1
                    model.updated_at = row.created_at
                    row.model_id = model.id
                    row.version = model.last_version
                    session.add(row)
                    session.flush()
                    return self._info(session, name, row)
            except IntegrityError:
                # Another process created the same model name at the same instant: retry.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reading -----------------------------------------------------------------------

    def get(self, ref: str | ModelRef) -> VersionInfo:
        """The version a reference points at (``NAME``, ``NAME:3``, ``NAME@production``)."""
        parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            return self._info(session, parsed.name, row)

    def list_models(self) -> list[ModelInfo]:
        """Every registered model, by name."""
        with self.database.session() as session:
            models = session.scalars(sa.select(RegisteredModel).order_by(RegisteredModel.name))
            result = []
            for model in models:
                count = session.scalar(
                    sa.select(sa.func.count()).where(ModelVersion.model_id == model.id)
                )
                latest = session.scalar(
                    sa.select(sa.func.max(ModelVersion.version)).where(
                        ModelVersion.model_id == model.id, ModelVersion.status == "active"
                    )
                )
                result.append(
                    ModelInfo(
                        name=model.name,
                        description=model.description,
                        latest_version=latest,
                        version_count=int(count or 0),
                        aliases=self._aliases(session, model.id),
                        created_at=model.created_at,
                        updated_at=model.updated_at,
                    )
                )
            return result

    def list_models_page(self, *, offset: int = 0, limit: int = 50) -> tuple[list[ModelInfo], int]:
        """One page of the registered models, by name, and how many there are in all.

        Four queries whatever the page size (the console's road board reads it).
        """
        with self.database.session() as session:
            total = session.scalar(sa.select(sa.func.count()).select_from(RegisteredModel))
            models = list(
                session.scalars(
                    sa.select(RegisteredModel)
                    .order_by(RegisteredModel.name)
                    .offset(offset)
                    .limit(limit)
                )
            )
            ids = [model.id for model in models]
            per_model = sa.select(ModelVersion.model_id).where(ModelVersion.model_id.in_(ids))
            counted = per_model.add_columns(sa.func.count()).group_by(ModelVersion.model_id)
            counts = {int(i): int(n) for i, n in session.execute(counted).tuples()}
            newest = (
                per_model.add_columns(sa.func.max(ModelVersion.version))
                .where(ModelVersion.status == "active")
                .group_by(ModelVersion.model_id)
            )
            latest = {int(i): int(n) for i, n in session.execute(newest).tuples()}
            aliases: dict[int, dict[str, int]] = {}
            held = session.execute(
                sa.select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
                .where(ModelAlias.model_id.in_(ids))
                .order_by(ModelAlias.alias)
            )
            for model_id, alias, number in held.tuples():
                aliases.setdefault(model_id, {})[str(alias)] = int(number)
            page = [
                ModelInfo(
                    name=model.name,
                    description=model.description,
                    latest_version=latest.get(model.id),
                    version_count=int(counts.get(model.id, 0)),
                    aliases=aliases.get(model.id, {}),
                    created_at=model.created_at,
                    updated_at=model.updated_at,
                )
                for model in models
            ]
            return page, int(total or 0)

    def version_metrics(
        self, refs: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, float]]:
        """The metrics of each ``(name, version)`` in one query; absent versions are left out."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return {}
        query = (
            sa.select(RegisteredModel.name, ModelVersion.version, ModelVersion.metrics)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(
                sa.or_(
                    *(
                        sa.and_(RegisteredModel.name == name, ModelVersion.version == number)
                        for name, number in wanted
                    )
                )
            )
        )
        with self.database.session() as session:
            rows = session.execute(query).tuples()
            return {(str(name), int(number)): dict(metrics) for name, number, metrics in rows}

    def list_versions_page(
        self, name: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[VersionInfo], int]:
        """One page of ``name``'s versions (archived ones too), newest first, and the total."""
        with self.database.session() as session:
            model = self._model(session, name)
            total = session.scalar(
                sa.select(sa.func.count()).where(ModelVersion.model_id == model.id)
            )
            rows = session.scalars(
                sa.select(ModelVersion)
                .where(ModelVersion.model_id == model.id)
                .order_by(ModelVersion.version.desc())
                .offset(offset)
                .limit(limit)
            )
            return [self._info(session, name, row) for row in rows], int(total or 0)

    def list_versions(self, name: str, *, include_archived: bool = False) -> list[VersionInfo]:
        """The versions of one model, newest first."""
        with self.database.session() as session:
            model = self._model(session, name)
            query = sa.select(ModelVersion).where(ModelVersion.model_id == model.id)
            if not include_archived:
                query = query.where(ModelVersion.status == "active")
            rows = session.scalars(query.order_by(ModelVersion.version.desc()))
            return [self._info(session, name, row) for row in rows]

    def load(self, ref: str | ModelRef) -> LoadedModel:
        """Load a version after verifying every stored file against its sha256."""
        info = self.get(ref)
        scratch = Path(tempfile.mkdtemp(prefix="shipyard-load-"))
        try:
            self.artifacts.get_tree(info.artifact_digest, scratch)
            loaded = load_model(
                scratch,
                info.flavor,
                info.flavor_config,
                info.signature,
                name=info.name,
                version=info.version,
            )
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        # Some formats read their files lazily: keep them until the model is collected.
        weakref.finalize(loaded, shutil.rmtree, scratch, True)
        return loaded

    # -- changing ----------------------------------------------------------------------

    def set_tags(self, ref: str, tags: Mapping[str, str]) -> VersionInfo:
        """Add or replace tags on a version (tags are the only mutable part of a version)."""
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            row.tags = {**row.tags, **{str(k): str(v) for k, v in tags.items()}}
            return self._info(session, parsed.name, row)

    def archive(
        self,
        ref: str,
        *,
        restore: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> VersionInfo:
        """Archive a version (hidden from ``NAME`` and listings), or restore it.

        A change is recorded in the decision history (alias ``status``, outcome
        ``archived`` or ``restored``, with ``reason`` and ``actor``).
        """
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            aliases = self._version_aliases(session, row.id)
            if aliases and not restore:
                raise ConflictError(
                    f"{parsed.name}:{row.version} holds alias(es) {', '.join(aliases)}; "
                    "move or remove them before archiving it"
                )
            status = "active" if restore else "archived"
            if row.status != status:
                row.status = status
                self._record(
                    session,
                    row.model_id,
                    "status",
                    row.version if not restore else None,
                    row.version if restore else None,
                    "restored" if restore else "archived",
                    actor or self.settings.actor,
                    reason,
                    [],
                )
            return self._info(session, parsed.name, row)

    def delete_version(self, ref: str) -> None:
        """Delete a version's record; refused while an alias points at it."""
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            aliases = self._version_aliases(session, row.id)
            if aliases:
                raise ConflictError(
                    f"{parsed.name}:{row.version} cannot be deleted: alias(es) "
                    f"{', '.join(aliases)} point at it; move or remove them first"
                )
            session.delete(row)


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"metric {key!r} must be a number but got {value!r}"
            ) from exc
        if not math.isfinite(number):
            raise InvalidArgumentError(f"metric {key!r} must be finite but got {number}")
        clean[str(key)] = number
    return clean


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def _decide_trust(
    saved: SavedModel, trust: bool, trusted_types: Sequence[str] | None, origin: str
) -> list[str]:
    needed = list(saved.untrusted_types)
    if not needed:
        return []
    if trust:
        return needed
    given = set(trusted_types or ())
    missing = [t for t in needed if t not in given]
    if missing:
        declared = ""
        if saved.declared_trusted is not None:
            undeclared = [t for t in missing if t not in saved.declared_trusted]
            declared = (
                " The MLmodel's skops_trusted_types declares "
                f"{', '.join(saved.declared_trusted) or 'no type'}"
                + (f" (not among them: {', '.join(undeclared)})" if undeclared else "")
                + "; that is what its author trusted, not a decision shipyard takes."
            )
        raise UntrustedArtifactError(
            f"{origin} ({saved.flavor}) needs these types trusted before it can be loaded: "
            f"{', '.join(missing)}.{declared} Review them, then register again with --trust "
            "(Python: trust=True) "
            "to trust all of them, or --trust-type NAME for each"
        )
    return needed


def _settle_nullability(loaded: LoadedModel, saved: SavedModel, example: pd.DataFrame) -> None:
    """Settle which columns of ``loaded.signature`` take missing values (in place).

    Example rows show where values were missing; the model may handle them elsewhere too
    (:func:`~shipyard.flavors.missing.accept_missing`). A format's own signature (an
    MLmodel) keeps its types and declared nullability and takes categories and ranges
    from the rows. Records why each column is nullable in ``saved.config["notes"]``.
    """
    from shipyard.flavors.missing import accept_missing

    signature = loaded.signature
    assert signature is not None  # noqa: S101 - narrows the type; the caller guarantees it
    reasons = dict(saved.nullable_reasons)
    if saved.signature is None:
        reasons.update(
            (c.name, "missing in the example rows") for c in signature.inputs if c.nullable
        )
    widened, handled = accept_missing(loaded, example, refused=saved.no_missing)
    assert widened is not None  # noqa: S101 - narrows the type; the caller guarantees it
    reasons.update(handled)
    if saved.signature is not None:
        try:
            widened = widened.with_example(example)
        except SchemaError as exc:
            raise SchemaError(
                f"the input example does not fit the signature {saved.flavor} declares: "
                f"{exc.message}",
                column=exc.column,
            ) from exc
    loaded.signature = widened
    nullable = [c.name for c in widened.inputs if c.nullable]
    if nullable:
        listed = ", ".join(f"{name} ({reasons.get(name, 'declared')})" for name in nullable)
        saved.notes.append(f"missing values accepted in {listed}")
    saved.config["notes"] = saved.notes


def _with_outputs(loaded: LoadedModel, example: pd.DataFrame) -> Signature | None:
    """Run the model on the example: proves it loads and predicts, and gives the output spec."""
    rows = example.head(100)
    predictions = loaded.predict(rows)
    assert loaded.signature is not None  # noqa: S101 - narrows the type; the caller guarantees it
    return loaded.signature.with_outputs(OutputSpec.infer(predictions, loaded.classes))


def _example_records(example: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if example is None:
        return None
    text = example.head(EXAMPLE_ROWS).to_json(orient="records", date_format="iso")
    records: list[dict[str, Any]] = json.loads(text)
    return records
