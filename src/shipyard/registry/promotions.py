"""Aliases and promotions: who moved which alias to which version, when, why, what the gate said.

Every decision is one row in ``promotions``, written in the same transaction as the
alias change it records; a promotion a gate refuses is recorded too (outcome
``refused``), so the history shows every go / no-go decision. The other decisions are
rows too: a business value signed off (alias ``business_value``, outcome ``approved``), a
rollback (outcome ``rollback``) and archiving (alias ``status``, outcome ``archived`` or
``restored``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import (
    AlreadyHoldsError,
    ConflictError,
    GateFailedError,
    InvalidArgumentError,
    NotFoundError,
)
from shipyard.core.refs import ModelRef, check_alias
from shipyard.core.schema import Signature
from shipyard.core.settings import CONFIG_FILE, Settings
from shipyard.registry.gates import HolderLookup, Rule, evaluate_gate, parse_gates
from shipyard.registry.records import GateCheck, PromotionInfo, RuleResult, VersionInfo
from shipyard.store import Database
from shipyard.store.tables import ModelAlias, ModelVersion, Promotion, RegisteredModel

#: The stages of a model's road, in order. Each is an alias that only ``promote`` moves.
STAGES = ("poc", "prototype", "production")
#: The tag a gate requires once the business value is signed off (``approve_value`` sets it).
APPROVAL_TAG = "business_value"


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
                raise AlreadyHoldsError(f"{parsed.name}:{row.version} already holds {to!r}")
            gate = self.settings.gates.get(to)
            results: list[RuleResult] = []
            if gate is not None:
                holder = self._holder(session, row.model_id)
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

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` (stages and free ones) and the version it points at."""
        with self.database.session() as session:
            return self._aliases(session, self._model(session, name).id)

    def history_page(
        self,
        name: str,
        *,
        offset: int = 0,
        limit: int = 50,
        version: int | None = None,
    ) -> tuple[list[PromotionInfo], int]:
        """One page of ``name``'s decisions, newest first, and how many there are in all.

        ``version``: only the decisions that moved an alias to or from that version (its
        promotions, refusals, approvals, rollbacks, archiving).
        """
        with self.database.session() as session:
            model = self._model(session, name)
            where = [Promotion.model_id == model.id]
            if version is not None:
                where.append(
                    sa.or_(Promotion.to_version == version, Promotion.from_version == version)
                )
            total = session.scalar(sa.select(sa.func.count()).select_from(Promotion).where(*where))
            rows = session.scalars(
                sa.select(Promotion)
                .where(*where)
                .order_by(Promotion.id.desc())
                .offset(offset)
                .limit(limit)
            )
            return [self._promotion_info(name, row) for row in rows], int(total or 0)

    def check_gate(self, ref: str, to: str) -> list[RuleResult]:
        """Every rule of ``to``'s gate evaluated now for ``ref``; read-only (nothing recorded).

        Empty when ``to`` has no gate.
        """
        if to not in self.settings.gates:
            return []
        return list(self.gate_check(ref, to).results)

    def gate_check(
        self, ref: str, to: str, *, baseline: str | None = None, pending_sign_offs: bool = False
    ) -> GateCheck:
        """``to``'s gate evaluated now for ``ref``, without promoting (``shipyard gate``).

        Relative rules (``production.roc_auc - 0.01``) compare with the version holding the
        rule's alias, or with ``baseline`` (any reference) when given; ``pending_sign_offs``
        reports required tags not set yet as pending (:func:`evaluate_gate`). Nothing is recorded
        (:meth:`record_gate_check` does). A stage without a gate is refused with
        :class:`NotFoundError`: there is nothing to check, and a check must fail closed.
        """
        check_alias(to)
        gate = self.settings.gates.get(to)
        if gate is None:
            configured = ", ".join(sorted(self.settings.gates)) or "none"
            raise NotFoundError(
                f"no gate for {to!r} in {CONFIG_FILE} (gates: {configured}); add "
                f'[gates.{to}] rules = ["metric >= number"] or check another stage'
            )
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            against = None
            if baseline is not None:
                other = ModelRef.parse(baseline)
                if other.name != parsed.name:
                    raise InvalidArgumentError(
                        f"the baseline {baseline!r} is not a version of {parsed.name!r}"
                    )
                against = self._resolve(session, other)
            holder = self._holder(session, row.model_id, against)
            results = evaluate_gate(
                gate, row.metrics, row.tags, holder, pending_sign_offs=pending_sign_offs
            )
            rules = [Rule.parse(text) for text in gate.rules]
            missing = sorted({rule.metric for rule in rules if rule.metric not in row.metrics})
            for rule in rules:
                held = holder(rule.alias) if rule.alias else None
                if held is not None and rule.ref_metric not in held[1]:
                    missing.append(f"{rule.ref_metric} (of version {held[0]})")
            current = self._version_number(session, self._alias_row(session, row.model_id, to))
            compared: tuple[int, Mapping[str, float]] | None = None
            for rule in rules:  # what the relative rules compare with (the first one found)
                compared = compared or (holder(rule.alias) if rule.alias else None)
            if against is not None:
                compared = (against.version, against.metrics)
            return GateCheck(
                name=parsed.name,
                version=row.version,
                stage=to,
                holder=current,
                baseline=compared[0] if compared else None,
                baseline_metrics=dict(compared[1]) if compared else {},
                metrics=dict(row.metrics),
                tags=dict(row.tags),
                results=tuple(results),
                missing=tuple(missing),
            )

    def record_gate_check(
        self, check: GateCheck, *, reason: str = "", actor: str | None = None
    ) -> PromotionInfo:
        """Record a gate check in the decision history (outcome ``checked`` or
        ``check-refused``): who ran it, why (a CI build, its commit), the rules' outcomes."""
        with self.database.session() as session:
            model = self._model(session, check.name)
            record = self._record(
                session,
                model.id,
                check.stage,
                check.holder,
                check.version,
                "checked" if check.passed else "check-refused",
                actor or self.settings.actor,
                reason,
                list(check.results),
            )
            return self._promotion_info(check.name, record)

    def _holder(
        self, session: Session, model_id: int, baseline: ModelVersion | None = None
    ) -> HolderLookup:
        """Who a relative rule compares with: the version holding the alias, or ``baseline``."""

        def holder(alias: str) -> tuple[int, Mapping[str, float]] | None:
            if baseline is not None:
                return baseline.version, baseline.metrics
            held = self._alias_row(session, model_id, alias)
            if held is None:
                return None
            version = session.get_one(ModelVersion, held.version_id)
            return version.version, version.metrics

        return holder

    def approve_value(self, ref: str, *, note: str = "", actor: str | None = None) -> PromotionInfo:
        """Sign off a version's business value: tag ``business_value=approved``, recorded.

        The tag (what a gate's ``require_tags`` checks) and the decision (alias
        ``business_value``, outcome ``approved``, ``note`` as the reason) are one transaction.
        """
        parsed = ModelRef.parse(ref)
        with self.database.session() as session:
            row = self._resolve(session, parsed)
            self._check_active(parsed.name, row)
            row.tags = {**row.tags, APPROVAL_TAG: "approved"}
            record = self._record(
                session,
                row.model_id,
                APPROVAL_TAG,
                None,
                row.version,
                "approved",
                actor or self.settings.actor,
                note,
                [],
            )
            return self._promotion_info(parsed.name, record)

    def rollback(
        self, name: str, stage: str = "production", *, reason: str, actor: str | None = None
    ) -> PromotionInfo:
        """Point ``stage`` back at the version that held it before the current one, recorded.

        The previous holder is read from the history: promotions stack versions up, each
        rollback takes the top one off (so rolling back twice goes two versions back).
        Refused (:class:`ConflictError`) when there is none or it is archived; no gate runs.
        """
        check_alias(stage)
        if not reason.strip():
            raise InvalidArgumentError("a rollback needs a reason: say why production goes back")
        with self.database.session() as session:
            model = self._model(session, name)
            current = self._alias_row(session, model.id, stage)
            if current is None:
                raise ConflictError(f"{name} has no {stage} version to roll back")
            current_version = self._version_number(session, current)
            rows = session.scalars(
                sa.select(Promotion)
                .where(Promotion.model_id == model.id, Promotion.alias == stage)
                .order_by(Promotion.id)
            )
            held: list[int] = []
            for event in rows:
                if event.outcome == "rollback":
                    held = held[:-1]
                elif event.outcome == "removed":
                    held = []
                elif (
                    event.outcome in ("promoted", "forced")
                    and event.to_version is not None
                    and (not held or held[-1] != event.to_version)
                ):
                    held.append(event.to_version)
            if len(held) < 2 or held[-1] != current_version:
                raise ConflictError(
                    f"{name}@{stage} (version {current_version}) has no previous version in its "
                    "history to roll back to; promote the version you want instead"
                )
            target = session.scalar(
                sa.select(ModelVersion).where(
                    ModelVersion.model_id == model.id, ModelVersion.version == held[-2]
                )
            )
            if target is None:
                raise ConflictError(
                    f"{name}:{held[-2]}, which held {stage} before, was deleted; "
                    "promote the version you want instead"
                )
            self._check_active(name, target)
            self._point(session, target, stage, current)
            record = self._record(
                session,
                model.id,
                stage,
                current_version,
                target.version,
                "rollback",
                actor or self.settings.actor,
                reason,
                [],
            )
            return self._promotion_info(name, record)

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
        # The newest active version's id first (walks the (model_id, version) index and
        # stops at the first match), then its row: sorting whole rows is slow with many.
        newest = session.scalar(
            sa.select(ModelVersion.id)
            .where(ModelVersion.model_id == model.id, ModelVersion.status == "active")
            .order_by(ModelVersion.version.desc())
            .limit(1)
        )
        row = session.get(ModelVersion, newest) if newest is not None else None
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
