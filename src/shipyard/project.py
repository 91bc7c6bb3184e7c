"""``shipyard.Project``: one project's settings, stores and registry, for notebooks and the CLI."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from shipyard.batch import BatchRequest, BatchResult, predict_batch
from shipyard.batch.run import Progress
from shipyard.core.exceptions import ConflictError
from shipyard.core.settings import CONFIG_FILE, STATE_DIR, Settings, find_project_root
from shipyard.datasets import Datasets, SourceSettings, parse_sources
from shipyard.datasets.predictions import PredictionStore
from shipyard.pipelines.runs import Runs
from shipyard.registry import Registry
from shipyard.store import ArtifactStore, Database
from shipyard.value import ValueSettings

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
        self.datasets = Datasets(self.database, self.artifacts, settings.actor)
        self.runs = Runs(self.database)
        self.predictions = PredictionStore(self.database, self.datasets)
        self.sources: dict[str, SourceSettings] = parse_sources(settings.sources)
        self.value: ValueSettings | None = (
            ValueSettings.from_table(settings.value) if settings.value is not None else None
        )

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
        progress: Progress | None = None,
        **options: object,
    ) -> BatchResult:
        """Score ``input`` with the model ``ref`` into the predictions store (a batch job).

        ``options`` are the other fields of :class:`~shipyard.batch.BatchRequest`: ``output``,
        ``table``, ``query``, ``keys``, ``chunk_rows``, ``resume``, ``engine``, ``scheduler``,
        ``workers``.
        """
        request = BatchRequest(ref=ref, input=input, **options)  # type: ignore[arg-type]
        return predict_batch(
            request,
            registry=self.registry,
            datasets=self.datasets,
            store=self.predictions,
            work_root=self.settings.state_dir / "batch",
            progress=progress,
        )

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
