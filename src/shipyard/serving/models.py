"""The models a server holds: loaded from the registry, warmed up, batched.

:class:`ModelManager` implements :class:`~shipyard.serving.base.ModelLookup`: it resolves
each reference (``churn@production``, ``fraud:3``), loads the version, warms it up and
starts its micro-batcher; it is ready only when every model is. :class:`ServingModel`
implements :class:`~shipyard.serving.base.ServedModel`.

At warm-up each model picks the cheapest input mode that gives the same answers as the
registry's own path (see :mod:`shipyard.serving.served`).
The manager maps references, names, versions and aliases to
models in one immutable table replaced in one assignment (:meth:`ModelManager.replace`):
hot swap installs a new table when a served alias moves, and the canary split reads the
table per request without touching the database (:mod:`shipyard.serving.routing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shipyard.core.exceptions import ConfigError, NotFoundError
from shipyard.core.refs import ModelRef
from shipyard.flavors.kernels import (
    limit_model_threads,
)
from shipyard.registry import Registry
from shipyard.serving.base import ServedModel
from shipyard.serving.batching import BatchSettings
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.routing import (
    CLIENT_REQUEST_ID,
    Canary,
    RoutingMetrics,
    RoutingSettings,
    ShadowLog,
    ShadowMirror,
    alias_versions,
)
from shipyard.serving.served import ServingModel

logger = logging.getLogger("shipyard.serving")

__all__ = ["ModelManager", "ServingModel"]


@dataclass(frozen=True)
class _Table:
    """Everything a request looks up, replaced as one object: a swap is one assignment."""

    slots: dict[ModelRef, ServingModel]  # each served reference (refs, then targets) → its model
    default: dict[str, ServingModel]  # name → the model of its first served reference
    versions: dict[tuple[str, int], ServingModel]
    aliases: dict[tuple[str, str], ServingModel]
    canary: dict[str, tuple[Canary, ServingModel]]  # name → (split, challenger)


_EMPTY = _Table({}, {}, {}, {}, {})
#: How many distinct reference texts :meth:`ModelManager.resolve` keeps parsed.
_PARSED_REFS = 1024


class ModelManager:
    """Loads, warms up and holds every served model (a :class:`ModelLookup`).

    ``routing`` adds canary and shadow targets (loaded like the served references, but
    never a name's default) and hot swap of alias references (see :mod:`~shipyard.serving.routing`).
    """

    def __init__(
        self,
        registry: Registry,
        refs: Sequence[str],
        batching: BatchSettings | None = None,
        metrics: ServingMetrics | None = None,
        *,
        threads: int = 2,
        model_threads: int = 1,
        routing: RoutingSettings | None = None,
        compile_to: str | None = None,
        allow_empty: bool = False,
    ) -> None:
        if not refs and not allow_empty:
            raise ConfigError(
                "no models to serve: pass references (shipyard serve churn@production) or "
                'list them in shipyard.toml under [serving] models = ["churn@production"]'
            )
        self._refs = list(dict.fromkeys(ModelRef.parse(ref) for ref in refs))
        #: The served references as normalised text (``/health/ready`` shows them).
        self.refs = [str(ref) for ref in self._refs]
        self.registry = registry
        self.batching = batching or BatchSettings()
        self.metrics = metrics
        self.routing = routing or RoutingSettings()
        #: ``"onnx"`` to try compiling every model it loads (``shipyard serve --compile``).
        self.compile_to = compile_to
        self.routing_metrics = RoutingMetrics(metrics.registry if metrics else None)
        names = {ref.name for ref in self._refs}
        for kind, table in (("canary", self.routing.canary), ("shadow", self.routing.shadow)):
            unknown = sorted(set(table) - names)
            if unknown:
                raise ConfigError(
                    f"[serving.{kind}.{unknown[0]}] routes a model this server does not serve; "
                    f"it serves {', '.join(sorted(names))}: fix the table name or serve "
                    f"{unknown[0]!r} too"
                )
        # Each canary and shadow target parsed once (by served name); the tables key by them.
        self._canary_targets = {n: ModelRef.parse(c.target) for n, c in self.routing.canary.items()}
        self._shadow_targets = {n: ModelRef.parse(s.target) for n, s in self.routing.shadow.items()}
        targets = dict.fromkeys([*self._canary_targets.values(), *self._shadow_targets.values()])
        self.targets = [t for t in targets if t not in self._refs]
        self._aliased = [ref for ref in [*self._refs, *self.targets] if ref.alias is not None]
        self.executor = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="shipyard-predict",
            initializer=limit_model_threads,
            initargs=(model_threads,),
        )
        # Shadow-only models predict on their own thread: they never queue champions' batches.
        shadow_only = set(self._shadow_targets.values()) - set(self._canary_targets.values())
        self._shadow_only = shadow_only - set(self._refs)
        self.shadow_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="shipyard-shadow",
            initializer=limit_model_threads,
            initargs=(model_threads,),
        )
        self._mirrors = {
            name: ShadowMirror(name, str(target), self._slot_getter(target), self.routing_metrics)
            for name, target in self._shadow_targets.items()
        }
        self._table = _EMPTY
        self._ready = False
        self._watcher: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._failed: dict[ModelRef, int] = {}  # alias reference → the version that failed to load
        self._parsed: dict[str, ModelRef] = {}  # reference text → parsed (resolve)

    async def start(self) -> None:
        """Load and warm up every model (off the event loop), then become ready.

        With alias references and ``poll_seconds`` > 0, also start polling their aliases.
        """
        for ref in [*self._refs, *self.targets]:
            model = await asyncio.to_thread(self._load, ref)
            self.replace(ref, model)
        self._ready = True
        if self.routing.poll_seconds > 0 and self._aliased:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="shipyard-alias-watcher"
            )

    def _load(self, ref: ModelRef) -> ServingModel:
        info = self.registry.get(ref)
        known = self._table.versions.get((info.name, info.version))
        if known is not None:
            return known
        loaded = self.registry.load(info.ref)  # the exact version, even if the alias moves
        executor = self.shadow_executor if ref in self._shadow_only else self.executor
        profile = None
        if not info.input_example:  # its warm-up rows are made from what the profile saw
            found = self.registry.profiles.latest(info.name, info.version)
            profile = found[1] if found is not None else None
        model = ServingModel(
            loaded,
            info,
            executor,
            self.batching,
            self.metrics,
            compile_to=self.compile_to,
            profile=profile,
        )
        model.warm_up()
        return model

    def replace(self, ref: str | ModelRef, model: ServingModel) -> None:
        """Serve ``model`` (started here) for the reference ``ref`` (text or parsed).

        Every lookup map is rebuilt and installed in one assignment, so a request sees the
        old or the new model, never a mix: how hot swap switches versions.
        """
        model.start()
        parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
        self._install({**self._table.slots, parsed: model})

    def _install(self, slots: dict[ModelRef, ServingModel]) -> None:
        default: dict[str, ServingModel] = {}
        for ref in self._refs:
            if ref in slots:
                default.setdefault(slots[ref].name, slots[ref])
        unique = list({id(m): m for m in slots.values()}.values())
        versions = {(m.name, m.version): m for m in unique}
        aliases: dict[tuple[str, str], ServingModel] = {}
        for model in unique:
            for alias in model.registry_aliases:
                aliases.setdefault((model.name, alias), model)
        for ref, model in slots.items():
            if ref.alias is not None:  # the served alias wins over what a version held
                aliases[(ref.name, ref.alias)] = model
        canary: dict[str, tuple[Canary, ServingModel]] = {}
        for name, settings in self.routing.canary.items():
            challenger = slots.get(self._canary_targets[name])
            if challenger is not None and challenger is not default.get(name):
                canary[name] = (Canary(settings.target, settings.percent), challenger)
        for model in unique:
            model.aliases = tuple(sorted(a for (_, a), m in aliases.items() if m is model))
            champion = default.get(model.name) is model
            model.mirror = self._mirrors.get(model.name) if champion else None
            if model.mirror is not None:
                shadow = self._table.slots.get(self._shadow_targets[model.name])
                if shadow is model:
                    model.mirror = None  # its own shadow: nothing to compare
        self._table = _Table(slots, default, versions, aliases, canary)

    @property
    def shadow_log(self) -> ShadowLog | None:
        """Where shadow answers are logged (``None``: counted in the metrics only)."""
        return next((m.log for m in self._mirrors.values()), None)

    @shadow_log.setter
    def shadow_log(self, log: ShadowLog | None) -> None:
        for mirror in self._mirrors.values():
            mirror.log = log

    def _slot_getter(self, ref: ModelRef) -> Callable[[], ServingModel]:
        def current() -> ServingModel:
            model = self._table.slots.get(ref)
            if model is None:
                raise NotFoundError(f"{ref} is not loaded (yet)")
            return model

        return current

    # -- hot swap -------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.routing.poll_seconds)
            try:
                await self.check_aliases()
            except Exception:  # a registry hiccup must not end the polling
                logger.exception("checking the served aliases failed; retrying next poll")

    async def check_aliases(self) -> None:
        """Swap in the version each served alias points at now, if it moved."""
        refs = self._aliased
        versions = await asyncio.to_thread(alias_versions, self.registry, refs)
        for ref in refs:
            version = versions.get(ref)
            current = self._table.slots.get(ref)
            if version is None or current is None or version == current.version:
                continue
            if self._failed.get(ref) == version:
                continue  # counted once; tried again only when the alias moves again
            await self._swap(ref, ModelRef(ref.name, version))

    async def _swap(self, ref: ModelRef, target: ModelRef) -> None:
        name = ref.name
        try:
            model = await asyncio.to_thread(self._load, target)
        except Exception as exc:
            self._failed[ref] = target.version or 0
            self.routing_metrics.swaps.labels(name, "failed").inc()
            logger.error("hot swap of %s to %s failed, still serving the old version: %s",
                         ref, target, exc)  # fmt: skip
            return
        old = self._table.slots[ref]
        self._failed.pop(ref, None)
        self.replace(ref, model)
        self.routing_metrics.swaps.labels(name, "swapped").inc()
        logger.info("%s now served by %s:%d (was %d)", ref, name, model.version, old.version)
        if all(m is not old for m in self._table.slots.values()):
            # Its own task: cancelling the watcher must not cut the old batcher's drain short.
            task = asyncio.get_running_loop().create_task(old.retire(model))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def stop(self) -> None:
        """Finish queued requests and shadows, stop every batcher and the prediction threads."""
        self._ready = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await asyncio.gather(*list(self._retiring), return_exceptions=True)
        served = list({id(m): m for m in self._table.slots.values()}.values())
        targets = {id(self._table.slots[t]) for t in self.targets if t in self._table.slots}
        for model in served:  # champions first: what they still answer may be mirrored
            if id(model) not in targets:
                await model.stop()
        for mirror in self._mirrors.values():
            await mirror.drain()
        for model in served:
            await model.stop()
        self.executor.shutdown(wait=True)
        self.shadow_executor.shutdown(wait=True)

    # -- the ModelLookup contract ---------------------------------------------------------

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ServingModel:
        """The model called ``name``: a given version, the one holding ``alias``, or its default.

        Not routed; :class:`NotFoundError` names what is served.
        """
        table = self._table
        if alias is not None:
            model = table.aliases.get((name, alias))
        elif version is not None:
            model = table.versions.get((name, version))
        else:
            model = table.default.get(name)
        if model is None:
            wanted = str(ModelRef(name, version, alias))
            raise NotFoundError(
                f"model {wanted!r} is not served here; this server serves {self.describe_served()}"
            )
        return model

    def resolve(self, ref: str) -> ServedModel:
        """The model for a reference text: ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``.

        A request for a model's champion (by name or alias, not a pinned version) goes to
        its canary challenger when the split says so.
        """
        parsed = self._parsed.get(ref)
        if parsed is None:  # parsed once per reference text: requests repeat a few of them
            parsed = ModelRef.parse(ref)
            if len(self._parsed) < _PARSED_REFS:
                self._parsed[ref] = parsed
        model = self.get(parsed.name, parsed.version, parsed.alias)
        if parsed.version is None:
            return self.route(model)
        return model

    def route(self, model: ServedModel) -> ServedModel:
        """``model``, or its canary challenger for this request (when ``model`` is a champion).

        Only a model this manager serves as a name's default is a champion (an identity
        check), so any other model comes back unchanged.
        """
        canary = self._table.canary
        if canary:
            split = canary.get(model.name)
            if (
                split is not None
                and self._table.default.get(model.name) is model
                and split[0].takes(CLIENT_REQUEST_ID.get())
            ):
                return split[1]
        return model

    def served(self) -> list[ServedModel]:
        """Every served model version."""
        return list(self._table.versions.values())

    def ready(self) -> bool:
        """True once every model is loaded and warmed up."""
        return self._ready

    def first(self) -> ServingModel:
        """The default model of the first reference (what MLflow's /invocations serves)."""
        if not self._table.default:
            raise NotFoundError("no model is loaded yet; wait for /health/ready")
        return next(iter(self._table.default.values()))

    def describe_served(self) -> str:
        """``churn:3 (production), fraud:1`` or ``nothing yet``."""
        versions = self._table.versions
        if not versions:
            return "nothing yet (the models are still loading)"
        return ", ".join(
            f"{m.name}:{m.version}" + (f" ({', '.join(m.aliases)})" if m.aliases else "")
            for m in versions.values()
        )
