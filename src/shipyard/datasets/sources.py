"""Data sources: CSV, Parquet (file or folder), a SQL query, or an HTTP(S) CSV / JSON URL.

Sources are declared in shipyard.toml and read into a DataFrame, which a pipeline
stores in the ``raw`` zone::

    [sources.customers]
    kind = "csv"
    path = "data/customers.csv"            # relative to the project folder

    [sources.events]
    kind = "sql"
    url = "${EVENTS_DB_URL}"               # ${VAR} is read from the environment
    query = "SELECT * FROM events WHERE day >= '2026-01-01'"

    [sources.rates]
    kind = "http"
    url = "https://example.org/rates.json"
    format = "json"
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.core.exceptions import ConfigError, DataSourceError
from shipyard.core.settings import problems

if TYPE_CHECKING:  # pandas and Arrow load when a source is read, not when settings are parsed
    import pandas as pd


class SourceSettings(BaseModel):
    """One ``[sources.NAME]`` table."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["csv", "parquet", "sql", "http"]
    path: str = ""
    url: str = ""
    query: str = ""
    format: Literal["csv", "json"] = "csv"
    options: dict[str, Any] = Field(default_factory=dict)
    timeout: float = 30.0

    @model_validator(mode="after")
    def _needs(self) -> SourceSettings:
        needed = {"csv": ("path",), "parquet": ("path",), "sql": ("url", "query"), "http": ("url",)}
        missing = [key for key in needed[self.kind] if not getattr(self, key)]
        if missing:
            raise ValueError(f"a {self.kind} source needs {' and '.join(missing)}")
        return self

    def describe(self) -> str:
        """A short, secret-free description for lineage (``csv:data/customers.csv``)."""
        if self.kind in ("csv", "parquet"):
            return f"{self.kind}:{self.path}"
        if self.kind == "sql":
            try:
                url = sa.make_url(os.path.expandvars(self.url)).render_as_string(hide_password=True)
            except sa.exc.ArgumentError:
                url = self.url
            return f"sql:{url}"
        return f"http:{self.url}"


def parse_sources(raw: dict[str, dict[str, Any]]) -> dict[str, SourceSettings]:
    """Validate every ``[sources.*]`` table."""
    parsed: dict[str, SourceSettings] = {}
    for name, table in raw.items():
        try:
            parsed[name] = SourceSettings.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(
                f"[sources.{name}] in shipyard.toml is invalid: {problems(exc, 'source')}"
            ) from exc
    return parsed


def read_source(source: SourceSettings, root: Path) -> pd.DataFrame:
    """Read a source into a DataFrame; :class:`DataSourceError` says what failed and where."""
    readers = {"csv": _csv, "parquet": _parquet, "sql": _sql, "http": _http}
    return readers[source.kind](source, root)


def _local(source: SourceSettings, root: Path) -> Path:
    path = Path(os.path.expandvars(source.path)).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise DataSourceError(f"{source.kind} source {path} does not exist; check its path")
    return path


def _csv(source: SourceSettings, root: Path) -> pd.DataFrame:
    import pandas as pd

    path = _local(source, root)
    try:
        frame: pd.DataFrame = pd.read_csv(path, **source.options)
        return frame
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"cannot read CSV {path}: {exc}") from exc


def _parquet(source: SourceSettings, root: Path) -> pd.DataFrame:
    import pyarrow.dataset as pads

    path = _local(source, root)
    try:
        # A folder is read as one dataset (every Parquet file below it, hive partitions too).
        table = pads.dataset(str(path), format="parquet", partitioning="hive").to_table()
        frame: pd.DataFrame = table.to_pandas()
        return frame
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"cannot read Parquet {path}: {exc}") from exc


def _sql(source: SourceSettings, _root: Path) -> pd.DataFrame:
    import pandas as pd

    url = os.path.expandvars(source.url)
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataSourceError(f"{source.describe()} is not a usable SQLAlchemy URL: {exc}") from exc
    try:
        with engine.connect() as connection:
            frame: pd.DataFrame = pd.read_sql_query(
                sa.text(source.query), connection, **source.options
            )
            return frame
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
        detail = str(getattr(cause, "orig", cause)).strip().splitlines()[0]
        raise DataSourceError(f"query on {source.describe()} failed: {detail}") from exc
    finally:
        engine.dispose()


def _http(source: SourceSettings, _root: Path) -> pd.DataFrame:
    import urllib.error
    import urllib.request

    import pandas as pd

    url = os.path.expandvars(source.url)
    if not url.startswith(("http://", "https://")):
        raise DataSourceError(f"an http source needs an http:// or https:// URL, got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "shipyard"})  # noqa: S310 - http(s) only: checked above
    try:
        with urllib.request.urlopen(request, timeout=source.timeout) as response:  # noqa: S310 - http(s) only: checked above
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise DataSourceError(f"GET {url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataSourceError(f"GET {url} failed: {getattr(exc, 'reason', exc)}") from exc
    try:
        if source.format == "csv":
            table: pd.DataFrame = pd.read_csv(io.BytesIO(body), **source.options)
            return table
        data = json.loads(body)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{url} is not valid {source.format}: {exc}") from exc
    if isinstance(data, dict):  # {"data": [...]} and similar envelopes: take the one list
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataSourceError(
                f"{url} holds a JSON object; expected a list of records or an object with "
                "exactly one list of records"
            )
        data = lists[0]
    if not isinstance(data, list):
        raise DataSourceError(f"{url} holds JSON {type(data).__name__}; expected records")
    records: pd.DataFrame = pd.json_normalize(data)
    return records
