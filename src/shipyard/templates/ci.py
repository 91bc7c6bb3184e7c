"""The project's delivery pipelines: what ``shipyard ci`` (and ``shipyard init``) writes.

One pipeline per CI system, from the files next to this module in ``ci/`` (package data):

=========  ==========================  =============================
system     template                    written as
=========  ==========================  =============================
jenkins    ``ci/Jenkinsfile``          ``Jenkinsfile`` (declarative)
github     ``ci/github-workflow.yml``  ``.github/workflows/shipyard.yml``
gitlab     ``ci/gitlab-ci.yml``        ``.gitlab-ci.yml``
=========  ==========================  =============================

Each runs the same road: lint → unit tests → train → acceptance tests → integration tests
→ gate (``shipyard gate``, JUnit and Markdown published) → image (``shipyard build`` then
``docker build`` of the context it writes) → deploy (promote, ``shipyard compose``,
``docker compose up -d``) on the main branch behind a manual approval. The pipeline, the
model, the stage its candidate waits at and the image's tag are read from the project's
settings and written in: the default pipeline's ``register_as`` and ``promote_to``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from shipyard.core.exceptions import ConfigError, ConflictError, InvalidArgumentError
from shipyard.core.files import write_text_atomic
from shipyard.core.settings import Settings

__all__ = ["CI_FILES", "CI_TEMPLATES", "SYSTEMS", "CiValues", "ci_values", "render", "write_ci"]

#: The folder holding the pipelines' templates.
CI_TEMPLATES = Path(__file__).resolve().with_name("ci")
#: Each CI system's template and the file it becomes, relative to the project's root.
CI_FILES: Mapping[str, tuple[str, str]] = {
    "jenkins": ("Jenkinsfile", "Jenkinsfile"),
    "github": ("github-workflow.yml", ".github/workflows/shipyard.yml"),
    "gitlab": ("gitlab-ci.yml", ".gitlab-ci.yml"),
}
#: Every CI system, in the order files are written.
SYSTEMS = tuple(CI_FILES)
#: The stage the pipelines deploy to.
TARGET_STAGE = "production"


@dataclass(frozen=True)
class CiValues:
    """What the templates' placeholders become."""

    pipeline: str  #: the training pipeline ``shipyard run`` runs
    model: str  #: the registered model it makes
    candidate: str  #: the reference the gate judges and the deploy promotes (churn@prototype)
    stage: str  #: the stage deployed to
    image: str  #: the image's tag (``[deploy] tag`` or ``shipyard-<project>:latest``)
    requirement: str  #: what the CI installs (``shipyard==VERSION``)

    def placeholders(self) -> dict[str, str]:
        """``__NAME__`` → value, for :func:`render`."""
        return {
            "__PIPELINE__": self.pipeline,
            "__MODEL__": self.model,
            "__CANDIDATE__": self.candidate,
            "__STAGE__": self.stage,
            "__IMAGE__": self.image,
            "__REQUIREMENT__": self.requirement,
        }


def ci_values(settings: Settings) -> CiValues:
    """The values for ``settings``: its default pipeline must be a standard one.

    Raises :class:`ConfigError` (saying what to set) when there is no default pipeline or
    it is not the standard training road, since nothing then says which model to judge.
    """
    name = settings.default_pipeline or (
        next(iter(settings.pipelines)) if len(settings.pipelines) == 1 else ""
    )
    table = settings.pipelines.get(name) if name else None
    if not isinstance(table, Mapping) or table.get("kind") != "standard":
        raise ConfigError(
            "the CI pipelines train with the default pipeline and judge the model it "
            'registers: set [pipelines] default to a pipeline with kind = "standard" in '
            f"{settings.root / 'shipyard.toml'}"
        )
    model = str(table.get("register_as") or name)
    waits_at = str(table.get("promote_to") or "")
    candidate = f"{model}@{waits_at}" if waits_at and waits_at != TARGET_STAGE else model
    return CiValues(
        pipeline=name,
        model=model,
        candidate=candidate,
        stage=TARGET_STAGE,
        image=_image_tag(settings),
        requirement=_requirement(),
    )


def _image_tag(settings: Settings) -> str:
    # As packaging.settings.DeploySettings.image_tag (a layer above this one; the tests
    # check the two agree).
    tag = settings.deploy.get("tag")
    if isinstance(tag, str) and tag:
        return tag
    name = settings.project.name
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"shipyard-{slug or 'project'}:latest"


def _requirement() -> str:
    try:
        return f"shipyard=={version('shipyard')}"
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "shipyard"


def render(system: str, values: CiValues) -> str:
    """The text of ``system``'s pipeline with ``values`` written in."""
    template, _ = _entry(system)
    text = (CI_TEMPLATES / template).read_text(encoding="utf-8")
    for placeholder, value in values.placeholders().items():
        text = text.replace(placeholder, value)
    return text


def write_ci(root: Path, systems: Iterable[str] = SYSTEMS, *, force: bool = False) -> list[Path]:
    """Write the pipelines of ``systems`` into the project at ``root``; return the files.

    An existing file is kept (:class:`ConflictError` naming it, before anything is written)
    unless ``force``. Each file is written to a temporary file beside it and renamed into
    place, so an interrupted call leaves either the old file or the new one.
    """
    root = Path(root).absolute()
    wanted = set(systems)
    chosen = [system for system in SYSTEMS if system in wanted]
    unknown = sorted(wanted - set(SYSTEMS))
    if unknown:
        raise InvalidArgumentError(
            f"unknown CI system(s) {', '.join(unknown)}: choose from {', '.join(SYSTEMS)}"
        )
    values = ci_values(Settings.load(root, environ={}))
    targets = {system: root / _entry(system)[1] for system in chosen}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not force:
        names = ", ".join(str(path.relative_to(root)) for path in existing)
        verb, them = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise ConflictError(
            f"{names} already {verb} in {root}: keep {them}, or pass --force to overwrite"
        )
    for system, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, render(system, values), mode=0o644)
    return list(targets.values())


def _entry(system: str) -> tuple[str, str]:
    try:
        return CI_FILES[system]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown CI system {system!r}: choose from {', '.join(SYSTEMS)}"
        ) from None
