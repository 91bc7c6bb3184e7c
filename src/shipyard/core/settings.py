"""Project settings: shipyard.toml, overridden by ``SHIPYARD_*`` environment variables.

Settings are read once at an entry point (CLI, server, ``Project``) and passed down as
an object; nothing reads them from module state. Environment variables that override
the file:

- ``SHIPYARD_DATABASE_URL``: the metadata database (SQLAlchemy URL).
- ``SHIPYARD_ARTIFACTS``: the artifact store (a folder or any fsspec URL such as ``s3://bucket/prefix``).
- ``SHIPYARD_USER``: who is acting, recorded on registrations and promotions.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.core.exceptions import ConfigError, ProjectNotFoundError

CONFIG_FILE = "shipyard.toml"
STATE_DIR = ".shipyard"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Section):
    """Where metadata and artifacts live; empty means the embedded default."""

    database: str = ""
    artifacts: str = ""


class GateSettings(_Section):
    """Rules a version must pass to take one alias (a stage such as ``production``).

    ``rules`` are comparisons such as ``"roc_auc >= 0.80"`` or
    ``"roc_auc >= production.roc_auc - 0.01"``; ``require_tags`` maps tag names to the
    value they must have (``"*"`` for any value).
    """

    rules: list[str] = Field(default_factory=list)
    require_tags: dict[str, str] = Field(default_factory=dict)


class PredictionsSettings(_Section):
    """The ``[predictions]`` table: how long the predictions store keeps what it holds.

    ``retention_days``: batch jobs (and their prediction datasets, except each dataset's
    newest version) and online prediction log rows older than this are removed by
    ``shipyard predictions prune``; 0 keeps everything.
    """

    retention_days: int = Field(default=0, ge=0)


class RunsSettings(_Section):
    """The ``[runs]`` table: how a pipeline run shows it is alive.

    The process running a pipeline writes the run's heartbeat every ``heartbeat_seconds``;
    a ``running`` run whose heartbeat is older than ``stale_after_seconds`` lost its process
    (killed, machine gone) and the next ``shipyard run``, ``shipyard runs list`` or scheduler
    start marks it ``failed``. The default leaves room for a heartbeat that waits on a busy
    SQLite lock (up to 30 s).
    """

    heartbeat_seconds: float = Field(default=10.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _room_for_missed_beats(self) -> RunsSettings:
        if self.stale_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"stale_after_seconds ({self.stale_after_seconds:g}) must be at least twice "
                f"heartbeat_seconds ({self.heartbeat_seconds:g}), or a live run could be "
                "marked failed after one late heartbeat"
            )
        return self


class ProjectSection(_Section):
    """The ``[project]`` table."""

    name: str = "shipyard-project"


class Settings(_Section):
    """Everything shipyard needs to know about one project."""

    root: Path
    project: ProjectSection = Field(default_factory=ProjectSection)
    store: StoreSettings = Field(default_factory=StoreSettings)
    gates: dict[str, GateSettings] = Field(default_factory=dict)
    # Engine sections ([sources], [pipelines], [schedules], [value], [serving], [monitoring],
    # [monitors], [deploy]) are kept raw here (core imports nothing above it); each engine
    # validates its own section, and Project does so on open so a typo fails early.
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: ``[pipelines] default = "NAME"``: what ``shipyard run`` runs when given no name
    #: (kept out of ``pipelines``, which holds only the ``[pipelines.NAME]`` tables).
    default_pipeline: str = ""
    schedules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    value: dict[str, Any] | None = None
    serving: dict[str, Any] = Field(default_factory=dict)
    monitoring: dict[str, Any] = Field(default_factory=dict)
    monitors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    deploy: dict[str, Any] = Field(default_factory=dict)
    predictions: PredictionsSettings = Field(default_factory=PredictionsSettings)
    runs: RunsSettings = Field(default_factory=RunsSettings)
    user: str = ""

    @model_validator(mode="before")
    @classmethod
    def _lift_default_pipeline(cls, data: Any) -> Any:
        # ``default`` beside the [pipelines.NAME] tables is a choice, not a pipeline; a
        # table named ``default`` ([pipelines.default]) stays a pipeline.
        if isinstance(data, dict) and isinstance(data.get("pipelines"), dict):
            pipelines = dict(data["pipelines"])
            if isinstance(pipelines.get("default"), str):
                data = {**data, "pipelines": pipelines}
                data.setdefault("default_pipeline", pipelines.pop("default"))
        return data

    @field_validator("pipelines", mode="before")
    @classmethod
    def _check_default_pipeline(cls, value: Any) -> Any:
        if (
            isinstance(value, dict)
            and "default" in value
            and not isinstance(value["default"], dict)
        ):
            raise ValueError(
                f'default must name a pipeline, such as default = "train", but got '
                f"{value['default']!r}"
            )
        return value

    @property
    def state_dir(self) -> Path:
        """The project's private folder (``.shipyard``)."""
        return self.root / STATE_DIR

    @property
    def database_url(self) -> str:
        """The metadata database URL (SQLite in ``.shipyard`` unless configured)."""
        if self.store.database:
            return self.store.database
        return f"sqlite:///{self.state_dir / 'shipyard.db'}"

    @property
    def artifacts_url(self) -> str:
        """The artifact store URL or folder (``.shipyard/artifacts`` unless configured)."""
        if not self.store.artifacts:
            return str(self.state_dir / "artifacts")
        if "://" in self.store.artifacts:
            return self.store.artifacts
        return str((self.root / self.store.artifacts).resolve())

    @property
    def actor(self) -> str:
        """Who is acting: ``SHIPYARD_USER``, else the login name."""
        if self.user:
            return self.user
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    @classmethod
    def load(cls, root: Path, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``root/shipyard.toml`` and apply ``SHIPYARD_*`` overrides from ``environ``."""
        environ = os.environ if environ is None else environ
        path = root / CONFIG_FILE
        data: dict[str, Any] = {}
        if path.exists():
            try:
                data = tomllib.loads(read_text(path))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(
                    f"{path} is not valid TOML: {exc}; fix the line it names"
                ) from exc
        store = dict(data.get("store", {}))
        if environ.get("SHIPYARD_DATABASE_URL"):
            store["database"] = environ["SHIPYARD_DATABASE_URL"]
        if environ.get("SHIPYARD_ARTIFACTS"):
            store["artifacts"] = environ["SHIPYARD_ARTIFACTS"]
        data["store"] = store
        data["root"] = root.resolve()
        data["user"] = environ.get("SHIPYARD_USER", "")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path} has invalid settings: {problems(exc)}") from exc


def read_text(path: Path) -> str:
    """The text of a UTF-8 file; ConfigError saying where the first bad byte is if it is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column}); save it as UTF-8"
        ) from exc


def problems(exc: ValidationError, whole: str = "table") -> str:
    """A settings table's validation errors as one line: ``field: reason; field: reason``.

    ``whole`` names an error about the table itself (no field).
    """
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or whole}: "
        f"{str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def find_project_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` that holds shipyard.toml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ProjectNotFoundError(
        f"no {CONFIG_FILE} in {start} or any folder above it; run 'shipyard init' to create "
        "a project, or pass --project DIR"
    )
