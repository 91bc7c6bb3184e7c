"""``shipyard.Project``: one project's settings, stores and registry, for notebooks and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from shipyard.batch.request import DEFAULT_CHUNK_ROWS
from shipyard.core.exceptions import ConfigError, ConflictError
from shipyard.core.refs import is_dataset_ref
from shipyard.core.settings import CONFIG_FILE, STATE_DIR, Settings, find_project_root
from shipyard.datasets.sources import parse_sources
from shipyard.registry.registry import Registry
from shipyard.store import ArtifactStore, Database
from shipyard.value.settings import ValueSettings

# Opening a project imports only what opening needs: the database, the registry (its gates
# are checked on open) and the settings sections checked on open. The other stores are made
# on first use, and the engines (batch scoring, monitoring, schedules) are imported by the
# methods that run them, so the CLI's listings and a notebook's first ``Project(".")`` start
# without them (``tests/cli/test_startup.py`` checks it).
if TYPE_CHECKING:
    from shipyard.batch import BatchResult
    from shipyard.batch.request import Progress
    from shipyard.datasets.predictions import PredictionStore
    from shipyard.datasets.run_records import Runs
    from shipyard.datasets.sources import SourceSettings
    from shipyard.datasets.store import Datasets
    from shipyard.monitoring.run import MonitorOutcome
    from shipyard.pipelines.schedule import Schedule
    from shipyard.registry.records import VersionInfo
    from shipyard.registry.tokens import TokenStore
    from shipyard.statistics.profile import DatasetProfile

DEFAULT_CONFIG = """\
# shipyard project settings. Environment variables SHIPYARD_DATABASE_URL,
# SHIPYARD_ARTIFACTS and SHIPYARD_USER override the [store] values and the user.
[project]
name = "{name}"

[store]
# database = "postgresql+psycopg://user@host:5432/db"   # default: SQLite in .shipyard/
# artifacts = "s3://bucket/prefix"                       # default: .shipyard/artifacts

# Stage gates: rules a version must pass to be promoted to a stage.
[gates.prototype]
rules = []

[gates.production]
rules = []
require_tags = {{}}
"""

#: Schedules of monitors are named ``monitor:NAME`` beside the pipelines' own.
MONITOR_PREFIX = "monitor:"

GITIGNORE = ".shipyard/\n__pycache__/\n.ipynb_checkpoints/\n"


class Project:
    """A shipyard project: the folder holding shipyard.toml.

    ``Project(path)`` opens the project at ``path`` (or the nearest folder above it
    with shipyard.toml); the database is migrated to the newest schema on open.
    Use it as a context manager, or call :meth:`close`, to release connections.
    """

    def __init__(self, path: str | Path = ".", *, settings: Settings | None = None) -> None:
        if settings is None:
            settings = Settings.load(find_project_root(Path(path)))
        self.settings = settings
        self.root = settings.root
        self.database = Database.open(settings.database_url)
        self.artifacts = ArtifactStore(settings.artifacts_url)
        self.registry = Registry(self.database, self.artifacts, settings)
        self.sources: dict[str, SourceSettings] = parse_sources(settings.sources)
        self.value: ValueSettings | None = (
            ValueSettings.from_table(settings.value) if settings.value is not None else None
        )

    @cached_property
    def datasets(self) -> Datasets:
        """The dataset zones (versioned Parquet datasets)."""
        from shipyard.datasets.store import Datasets

        return Datasets(self.database, self.artifacts, self.settings.actor)

    @cached_property
    def runs(self) -> Runs:
        """The records of pipeline runs and their steps."""
        from shipyard.datasets.run_records import Runs

        return Runs(self.database)

    @cached_property
    def predictions(self) -> PredictionStore:
        """Batch jobs and the prediction log."""
        from shipyard.datasets.predictions import PredictionStore

        return PredictionStore(self.database, self.datasets)

    @cached_property
    def tokens(self) -> TokenStore:
        """The serving API's tokens."""
        from shipyard.registry.tokens import TokenStore

        return TokenStore(self.database)

    @classmethod
    def init(cls, path: str | Path, *, name: str | None = None) -> Project:
        """Create a project in ``path`` (made if missing) and open it."""
        root = Path(path).resolve()
        config = root / CONFIG_FILE
        if config.exists():
            raise ConflictError(f"{config} already exists: {root} is already a shipyard project")
        root.mkdir(parents=True, exist_ok=True)
        (root / STATE_DIR).mkdir(exist_ok=True)
        tmp = config.with_suffix(".toml.tmp")
        tmp.write_text(DEFAULT_CONFIG.format(name=name or root.name), encoding="utf-8")
        tmp.replace(config)
        gitignore = root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text(GITIGNORE, encoding="utf-8")
        return cls(root)

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    def predict(
        self,
        ref: str,
        input: str,
        *,
        output: str | None = None,
        table: str | None = None,
        query: str | None = None,
        keys: Sequence[str] = (),
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        resume: bool = False,
        engine: str = "local",
        scheduler: str | None = None,
        workers: int = 2,
        progress: Progress | None = None,
    ) -> BatchResult:
        """Score ``input`` with the model ``ref`` into the predictions store (a batch job).

        The keywords are those of :class:`~shipyard.batch.BatchRequest` (what ``shipyard
        predict`` takes); ``progress(rows, total)`` is called as chunks are scored.
        """
        from shipyard.batch import BatchRequest, predict_batch

        request = BatchRequest(
            ref=ref,
            input=input,
            query=query,
            output=output,
            table=table,
            keys=tuple(keys),
            chunk_rows=chunk_rows,
            resume=resume,
            engine=engine,
            scheduler=scheduler,
            workers=workers,
        )
        return predict_batch(
            request,
            registry=self.registry,
            datasets=self.datasets,
            store=self.predictions,
            work_root=self.settings.state_dir / "batch",
            progress=progress,
        )

    def prune(self, before: datetime) -> dict[str, int]:
        """Apply retention: batch jobs, prediction datasets, online log rows, ground-truth
        labels and monitoring reports older than ``before`` (see ``PredictionStore.prune``)."""
        from shipyard.datasets.feedback import FeedbackStore
        from shipyard.datasets.monitor_results import MonitorResults

        removed = self.predictions.prune(before)
        removed["feedback"] = FeedbackStore(self.database).prune(None, before)
        removed["monitoring"] = MonitorResults(self.database).prune(before)
        return removed

    def monitor(
        self,
        ref: str,
        *,
        reference: str | None = None,
        current: str | None = None,
        batch: str | None = None,
        window: str | None = None,
        end: datetime | None = None,
        key: str | None = None,
        target: str | None = None,
        monitor: str = "",
        report: Path | None = None,
        save: bool = True,
    ) -> MonitorOutcome:
        """A monitoring report of ``ref``: drift, quality, performance, alerts; stored.

        The keywords are those of :class:`~shipyard.monitoring.run.MonitorRequest` (what
        ``shipyard monitor`` takes); ``report`` is an HTML path.
        """
        from shipyard.monitoring.run import MonitorRequest, run_monitor

        request = MonitorRequest(
            ref=ref,
            reference=reference,
            current=current,
            batch=batch,
            window=window,
            end=end,
            key=key,
            target=target,
            monitor=monitor,
            report=report,
            save=save,
        )
        return run_monitor(
            request,
            registry=self.registry,
            datasets=self.datasets,
            database=self.database,
            settings=self.settings,
            value=self.value,
        )

    def monitor_schedules(self) -> dict[str, Schedule]:
        """The enabled ``[monitors.NAME]`` tables with a cron, as schedules ``monitor:NAME``."""
        from shipyard.monitoring.settings import load_monitors
        from shipyard.pipelines.schedule import Schedule

        return {
            f"{MONITOR_PREFIX}{name}": Schedule(
                f"{MONITOR_PREFIX}{name}", config.cron, config.timezone
            )
            for name, config in load_monitors(self.settings).items()
            if config.cron and config.enabled
        }

    def run_monitor(self, name: str) -> MonitorOutcome:
        """Run the monitor of the ``[monitors.NAME]`` table (what the scheduler launches)."""
        from shipyard.monitoring.settings import load_monitors, project_path

        monitors = load_monitors(self.settings)
        if name not in monitors:
            raise ConfigError(
                f"no [monitors.{name}] table in {self.root / CONFIG_FILE}; monitors here: "
                f"{', '.join(monitors) or 'none'}"
            )
        config = monitors[name]
        reference = config.reference or None
        if reference is not None and not is_dataset_ref(reference):
            reference = str(project_path(self.settings, reference))
        report = project_path(self.settings, config.report) if config.report else None
        if report is not None:  # a folder named in shipyard.toml is the project's to make
            report.parent.mkdir(parents=True, exist_ok=True)
        return self.monitor(
            config.model,
            reference=reference,
            window=config.window or None,
            monitor=name,
            report=report,
        )

    def profile(self, ref: str, data: str) -> tuple[VersionInfo, DatasetProfile, str]:
        """Store the profile of ``data`` as the new reference profile of ``ref``."""
        from shipyard.monitoring.run import profile_reference

        return profile_reference(ref, data, registry=self.registry, datasets=self.datasets)

    def close(self) -> None:
        """Release database connections."""
        self.database.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
