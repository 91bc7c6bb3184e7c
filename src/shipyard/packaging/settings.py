"""The ``[deploy]`` table of shipyard.toml: what ``shipyard build`` and ``shipyard compose`` make.

::

    [deploy]
    replicas = 2                          # api replicas behind the proxy
    profiles = ["core", "monitoring"]     # what `docker compose up` starts with no --profile
    models = []                           # served references (default: [serving] models)
    extras = ["s3"]                       # shipyard extras installed in the image

    [deploy.ports]                        # host ports the services publish
    api = 8000
    grafana = 3000

Every value can also be given as a flag; flags win. Validation errors name the setting.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import CONFIG_FILE, Settings, problems

#: The image every generated file uses unless ``--base-image`` / ``[deploy] base_image`` says.
DEFAULT_BASE_IMAGE = "python:3.11.7-slim-bookworm"


class Profile(StrEnum):
    """The Compose profiles ``shipyard compose`` writes (``all`` starts every one)."""

    core = "core"
    monitoring = "monitoring"
    bi = "bi"
    dev = "dev"
    orchestration = "orchestration"


#: Every profile a user may name, ``all`` included.
PROFILE_NAMES = (*(p.value for p in Profile), "all")


class Ports(BaseModel):
    """Host ports the services publish (each must be free and distinct)."""

    model_config = ConfigDict(extra="forbid")

    api: int = Field(default=8000, ge=1, le=65535)
    prometheus: int = Field(default=9090, ge=1, le=65535)
    grafana: int = Field(default=3000, ge=1, le=65535)
    superset: int = Field(default=8088, ge=1, le=65535)
    jupyter: int = Field(default=8888, ge=1, le=65535)
    airflow: int = Field(default=8080, ge=1, le=65535)
    objectstore: int = Field(default=9000, ge=1, le=65535)
    objectstore_console: int = Field(default=9001, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        seen: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if port in seen:
                raise ValueError(
                    f"ports.{name} and ports.{seen[port]} are both {port}; give each service "
                    "its own host port"
                )
            seen[port] = name
        return self


class DeploySettings(BaseModel):
    """The validated ``[deploy]`` table (after flags are applied)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=2, ge=1, le=32)
    profiles: list[str] = Field(default_factory=lambda: ["core", "monitoring"])
    models: list[str] = Field(default_factory=list)
    extras: list[str] = Field(default_factory=lambda: ["s3"])
    base_image: str = DEFAULT_BASE_IMAGE
    tag: str = ""
    bucket: str = "shipyard"
    ports: Ports = Field(default_factory=Ports)

    @field_validator("profiles")
    @classmethod
    def _known_profiles(cls, profiles: list[str]) -> list[str]:
        unknown = [p for p in profiles if p not in PROFILE_NAMES]
        if unknown:
            raise ValueError(
                f"unknown profile {unknown[0]!r}; choose from {', '.join(PROFILE_NAMES)}"
            )
        if "all" in profiles:
            return [p.value for p in Profile]
        if "core" not in profiles:
            profiles = ["core", *profiles]  # every other profile needs the core services
        return list(dict.fromkeys(profiles))

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        if not (3 <= len(bucket) <= 63) or not all(c.isalnum() or c in "-." for c in bucket):
            raise ValueError(
                f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '-', '.')"
            )
        return bucket.lower()

    def image_tag(self, project_name: str) -> str:
        """The image's tag: ``[deploy] tag`` or ``shipyard-<project>:latest``."""
        if self.tag:
            return self.tag
        slug = "".join(c if c.isalnum() else "-" for c in project_name.lower()).strip("-")
        return f"shipyard-{slug or 'project'}:latest"


def load_deploy(settings: Settings, **overrides: Any) -> DeploySettings:
    """The project's ``[deploy]`` table with the non-``None`` ``overrides`` (flags) applied.

    Raises :class:`ConfigError` naming the setting when a value is invalid, and when no
    model is served (``[deploy] models`` or ``[serving] models``).
    """
    raw: dict[str, Any] = dict(settings.deploy)
    ports = dict(raw.get("ports", {}))
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("port_"):
            ports[key.removeprefix("port_")] = value
        else:
            raw[key] = value
    if ports:
        raw["ports"] = ports
    try:
        deploy = DeploySettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"{settings.root / CONFIG_FILE} [deploy] is invalid: {problems(exc, 'deploy')}"
        ) from exc
    if not deploy.models:
        served = settings.serving.get("models", [])
        if isinstance(served, list) and all(isinstance(m, str) for m in served):
            deploy = deploy.model_copy(update={"models": list(served)})
    if not deploy.models:
        raise ConfigError(
            f"{settings.root / CONFIG_FILE}: no served model: the api replicas need "
            'references to serve; set [serving] models = ["churn@production"] (or '
            "[deploy] models)"
        )
    return deploy
