"""Aliases and promotions: who moved which alias to which version, when, why, what the gate said.

Every decision is one row in ``promotions``, written in the same transaction as the
alias change it records; a promotion a gate refuses is recorded too (outcome
``refused``), so the history shows every go / no-go decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import (
    ConflictError,
    GateFailedError,
    InvalidArgumentError,
    NotFoundError,
)
from shipyard.core.refs import ModelRef, check_alias
from shipyard.core.schema import Signature
from shipyard.core.settings import Settings
from shipyard.registry.gates import evaluate_gate, parse_gates
from shipyard.registry.records import PromotionInfo, RuleResult, VersionInfo
from shipyard.store import Database
from shipyard.store.tables import ModelAlias, ModelVersion, Promotion, RegisteredModel

#: The stages of a model's road, in order. Each is an alias that only ``promote`` moves.
STAGES = ("poc", "prototype", "production")


class Promotions:
    """Alias bookkeeping shared by :class:`~shipyard.registry.Registry`."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        parse_gates(settings.gates)  # a typo in a rule is reported now, not at promotion time

    # -- promotions --------------------------------------------------------------------

    def promote(
        self,
        ref: str,
        to: str,
        *,
        reason: str = "",
        force: bool = False,
        actor: str | None = None,
    ) -> PromotionInfo:
        """Point alias ``to`` at the version ``ref``, if the alias's gate passes.

        A refused promotion is recorded and raises :class:`GateFailedError` listing the
        failed rules. ``force=True`` overrides the gate; it needs a ``reason``.
        """
        check_alias(to)
        if force and not reason.strip():
            raise InvalidArgumentError("--force needs --reason: say why the gate is overridden")
        parsed = ModelRef.parse(ref)
        who = actor or self.settings.actor
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            self._check_active(parsed.name, row)
            current = self._alias_row(session, row.model_id, to)
            current_version = self._version_number(session, current)
            if current_version == row.version:
                raise ConflictError(f"{parsed.name}:{row.version} already holds {to!r}")
            gate = self.settings.gates.get(to)
            results: list[RuleResult] = []
            if gate is not None:

                def holder(alias: str) -> tuple[int, Mapping[str, float]] | None:
                    held = self._alias_row(session, row.model_id, alias)
                    if held is None:
                        return None
                    version = session.get_one(ModelVersion, held.version_id)
                    return version.version, version.metrics

                results = evaluate_gate(gate, row.metrics, row.tags, holder)
            failed = [r for r in results if not r.passed]
            if failed and not force:
                outcome = "refused"
            else:
                outcome = "forced" if failed else "promoted"
                self._point(session, row, to, current)
            record = self._record(
                session,
                row.model_id,
                to,
                current_version,
                row.version,
                outcome,
                who,
                reason,
                results,
                forced=bool(failed and force),
            )
            info = self._promotion_info(parsed.name, record)
        if outcome == "refused":
            lines = "; ".join(f"{r.rule} ({r.detail})" for r in failed)
            raise GateFailedError(
                f"the {to} gate refused {parsed.name}:{row.version}: {lines}. "
                "Fix the version, or override with --force --reason '...' (recorded)",
                [r.to_dict() for r in failed],
            )
        return info

    def set_alias(self, ref: str, alias: str, *, reason: str = "") -> PromotionInfo:
        """Point a free alias (``champion``, ``challenger``...) at a version, recorded."""
        check_alias(alias)
        if alias in STAGES or alias in self.settings.gates:
            raise ConflictError(
                f"{alias!r} is a gated stage; move it with 'shipyard models promote REF --to "
                f"{alias}' so its gate runs"
            )
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            self._check_active(parsed.name, row)
            current = self._alias_row(session, row.model_id, alias)
            previous = self._version_number(session, current)
            self._point(session, row, alias, current)
            record = self._record(
                session,
                row.model_id,
                alias,
                previous,
                row.version,
                "aliased",
                self.settings.actor,
                reason,
                [],
            )
            return self._promotion_info(parsed.name, record)

    def remove_alias(self, name: str, alias: str, *, reason: str = "") -> PromotionInfo:
        """Remove an alias (including a stage) from whichever version holds it, recorded."""
        with self.database.session() as session:
            model = self._model(session, name)
            current = self._alias_row(session, model.id, alias)
            if current is None:
                raise NotFoundError(f"{name} has no alias {alias!r}")
            previous = self._version_number(session, current)
            session.delete(current)
            record = self._record(
                session,
                model.id,
                alias,
                previous,
                None,
                "removed",
                self.settings.actor,
                reason,
                [],
            )
            return self._promotion_info(name, record)

    def history(self, name: str, alias: str | None = None) -> list[PromotionInfo]:
        """Every decision about ``name``'s aliases, oldest first."""
        with self.database.session() as session:
            model = self._model(session, name)
            query = sa.select(Promotion).where(Promotion.model_id == model.id)
            if alias is not None:
                query = query.where(Promotion.alias == alias)
            rows = session.scalars(query.order_by(Promotion.id))
            return [self._promotion_info(name, row) for row in rows]

    def alias_versions(self, aliases: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The version number each ``(name, alias)`` points at now; absent ones are left out.

        One indexed query for all of them, no version row decoding: cheap enough for a
        server to poll every few seconds (hot swap).
        """
        wanted = list(dict.fromkeys(aliases))
        if not wanted:
            return {}
        query = (
            sa.select(RegisteredModel.name, ModelAlias.alias, ModelVersion.version)
            .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
            .join(RegisteredModel, RegisteredModel.id == ModelAlias.model_id)
            .where(
                sa.or_(
                    *(
                        sa.and_(RegisteredModel.name == name, ModelAlias.alias == alias)
                        for name, alias in wanted
                    )
                )
            )
        )
        with self.database.session() as session:
            rows = session.execute(query).tuples()
            return {(str(name), str(alias)): int(version) for name, alias, version in rows}

    # -- shared lookups ----------------------------------------------------------------

    def _model(self, session: Session, name: str) -> RegisteredModel:
        model = session.scalar(sa.select(RegisteredModel).where(RegisteredModel.name == name))
        if model is None:
            raise NotFoundError(
                f"no registered model named {name!r}; 'shipyard models list' shows them"
            )
        return model

    def _resolve(self, session: Session, ref: ModelRef) -> ModelVersion:
        """The version row a reference points at (``NAME`` skips archived versions)."""
        model = self._model(session, ref.name)
        query = sa.select(ModelVersion).where(ModelVersion.model_id == model.id)
        if ref.version is not None:
            row = session.scalar(query.where(ModelVersion.version == ref.version))
            if row is None:
                raise NotFoundError(
                    f"{ref.name} has no version {ref.version} (newest is {model.last_version})"
                )
            return row
        if ref.alias is not None:
            alias = self._alias_row(session, model.id, ref.alias)
            if alias is None:
                known = ", ".join(self._aliases(session, model.id)) or "none"
                raise NotFoundError(
                    f"{ref.name} has no alias {ref.alias!r} (aliases: {known}); "
                    f"promote one with 'shipyard models promote {ref.name}:N --to {ref.alias}'"
                )
            return session.get_one(ModelVersion, alias.version_id)
        row = session.scalar(
            query.where(ModelVersion.status == "active").order_by(ModelVersion.version.desc())
        )
        if row is None:
            raise NotFoundError(
                f"{ref.name} has no active version; name an archived one as {ref.name}:N"
            )
        return row

    @staticmethod
    def _check_active(name: str, row: ModelVersion) -> None:
        if row.status != "active":
            raise ConflictError(
                f"{name}:{row.version} is archived; restore it with "
                f"'shipyard models archive {name}:{row.version} --restore' first"
            )

    @staticmethod
    def _alias_row(session: Session, model_id: int, alias: str) -> ModelAlias | None:
        return session.get(ModelAlias, (model_id, alias))

    @staticmethod
    def _version_number(session: Session, alias: ModelAlias | None) -> int | None:
        if alias is None:
            return None
        return session.get_one(ModelVersion, alias.version_id).version

    @staticmethod
    def _aliases(session: Session, model_id: int) -> dict[str, int]:
        rows = session.execute(
            sa.select(ModelAlias.alias, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
            .where(ModelAlias.model_id == model_id)
            .order_by(ModelAlias.alias)
        )
        return {str(alias): int(version) for alias, version in rows.tuples()}

    @staticmethod
    def _version_aliases(session: Session, version_id: int) -> list[str]:
        rows = session.scalars(
            sa.select(ModelAlias.alias)
            .where(ModelAlias.version_id == version_id)
            .order_by(ModelAlias.alias)
        )
        return list(rows)

    @staticmethod
    def _point(session: Session, row: ModelVersion, alias: str, current: ModelAlias | None) -> None:
        if current is None:
            session.add(ModelAlias(model_id=row.model_id, alias=alias, version_id=row.id))
        else:
            current.version_id = row.id
            current.updated_at = utcnow()

    @staticmethod
    def _record(
        session: Session,
        model_id: int,
        alias: str,
        from_version: int | None,
        to_version: int | None,
        outcome: str,
        actor: str,
        reason: str,
        results: list[RuleResult],
        *,
        forced: bool = False,
    ) -> Promotion:
        record = Promotion(
            model_id=model_id,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            outcome=outcome,
            forced=forced,
            reason=reason,
            actor=actor,
            at=utcnow(),
            gate=[r.to_dict() for r in results],
        )
        session.add(record)
        session.flush()
        return record

    @staticmethod
    def _promotion_info(name: str, row: Promotion) -> PromotionInfo:
        return PromotionInfo(
            id=row.id,
            name=name,
            alias=row.alias,
            from_version=row.from_version,
            to_version=row.to_version,
            outcome=row.outcome,
            forced=row.forced,
            reason=row.reason,
            actor=row.actor,
            at=row.at,
            gate=tuple(RuleResult(**r) for r in row.gate),
        )

    def _info(self, session: Session, name: str, row: ModelVersion) -> VersionInfo:
        return VersionInfo(
            name=name,
            version=row.version,
            flavor=row.flavor,
            artifact_digest=row.artifact_digest,
            status=row.status,
            created_at=row.created_at,
            created_by=row.created_by,
            description=row.description,
            metrics=dict(row.metrics),
            params=dict(row.params),
            tags=dict(row.tags),
            lineage=dict(row.lineage),
            flavor_config=dict(row.flavor_config),
            signature=Signature.from_dict(row.signature) if row.signature else None,
            input_example=list(row.input_example) if row.input_example is not None else None,
            aliases=tuple(self._version_aliases(session, row.id)),
        )
