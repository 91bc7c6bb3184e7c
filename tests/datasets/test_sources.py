"""Data sources read for real: CSV, Parquet, SQL on SQLite and PostgreSQL, HTTP on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard import ConfigError
from shipyard.core.exceptions import DataSourceError
from shipyard.datasets import SourceSettings, parse_sources, read_source

FRAME = pd.DataFrame({"id": [1, 2, 3], "region": ["north", "south", "north"], "x": [0.5, 1.5, 2.5]})


def test_csv_and_parquet_folder(tmp_path: Path) -> None:
    FRAME.to_csv(tmp_path / "c.csv", index=False)
    csv = read_source(SourceSettings(kind="csv", path="c.csv"), tmp_path)
    pd.testing.assert_frame_equal(csv, FRAME)
    folder = tmp_path / "events"
    FRAME.to_parquet(folder, partition_cols=["region"], index=False)
    parquet = read_source(SourceSettings(kind="parquet", path="events"), tmp_path)
    assert sorted(parquet["id"]) == [1, 2, 3]
    assert set(parquet["region"].astype(str)) == {"north", "south"}
    with pytest.raises(DataSourceError, match="does not exist"):
        read_source(SourceSettings(kind="csv", path="missing.csv"), tmp_path)


def test_sql_query(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir(exist_ok=True)
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        FRAME.to_sql("customers", connection, index=False)
    engine.dispose()
    source = SourceSettings(
        kind="sql", url=database_url, query="SELECT id, x FROM customers WHERE x > 1 ORDER BY id"
    )
    frame = read_source(source, tmp_path)
    assert frame.to_dict(orient="list") == {"id": [2, 3], "x": [1.5, 2.5]}
    bad = source.model_copy(update={"query": "SELECT nope FROM customers"})
    with pytest.raises(DataSourceError, match="query on sql:"):
        read_source(bad, tmp_path)


def test_sql_url_from_the_environment_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SALES_DB", "postgresql+psycopg://ann:s3cret@127.0.0.1:1/sales")
    source = SourceSettings(kind="sql", url="${SALES_DB}", query="select 1")
    assert "s3cret" not in source.describe()
    with pytest.raises(DataSourceError) as caught:
        read_source(source, tmp_path)
    assert "s3cret" not in str(caught.value)


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_csv_and_json(http_folder: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_folder
    FRAME.to_csv(root / "c.csv", index=False)
    (root / "r.json").write_text(json.dumps({"data": FRAME.to_dict(orient="records")}))
    (root / "bad.json").write_text("{not json")
    csv = read_source(SourceSettings(kind="http", url=f"{base}/c.csv"), tmp_path)
    pd.testing.assert_frame_equal(csv, FRAME)
    records = read_source(
        SourceSettings(kind="http", url=f"{base}/r.json", format="json"), tmp_path
    )
    pd.testing.assert_frame_equal(records, FRAME)
    with pytest.raises(DataSourceError, match="answered 404"):
        read_source(SourceSettings(kind="http", url=f"{base}/none.csv"), tmp_path)
    with pytest.raises(DataSourceError, match="not valid json"):
        read_source(SourceSettings(kind="http", url=f"{base}/bad.json", format="json"), tmp_path)


def test_source_tables_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"\[sources.db\].*needs url and query"):
        parse_sources({"db": {"kind": "sql"}})
    with pytest.raises(ConfigError, match=r"\[sources.f\].*pth"):
        parse_sources({"f": {"kind": "csv", "pth": "x.csv"}})
