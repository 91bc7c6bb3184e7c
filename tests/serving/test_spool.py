"""The prediction log's spool: nothing lost when the server is killed or the database is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog, encode_entry
from shipyard.serving.spool import Spool
from shipyard.store import Database


def record(log: PredictionLog, count: int, prefix: str = "r") -> None:
    for i in range(count):
        log.record(
            "m", 1, f"{prefix}{i}", 0.001, {"x": np.array([float(i)])}, Prediction(np.array([i]))
        )


def logged(database: Database) -> list[str]:
    return PredictionLogStore(database).read("m")["request_id"].tolist()


def test_spooled_rows_reach_the_database_and_the_segments_go(
    tmp_path: Path, database_url: str
) -> None:
    database = Database.open(database_url)
    spool = tmp_path / "spool"
    try:
        log = PredictionLog(database, batch_rows=10, flush_interval=3600, spool=spool)
        log.start()
        record(log, 25)
        assert log.pending == 0  # nothing waits in memory: it is on disk
        log.close()
        assert logged(database) == [f"r{i}" for i in range(25)]
        assert PredictionLogStore(database).read("m")["inputs"][3] == [{"x": 3.0}]
        assert list(spool.iterdir()) == []
    finally:
        database.dispose()


def test_a_database_outage_keeps_the_rows_until_it_is_back(
    tmp_path: Path, database_url: str
) -> None:
    database = Database.open(database_url)
    try:
        log = PredictionLog(database, flush_interval=3600, spool=tmp_path / "spool")
        log.start()
        record(log, 5, "down")
        with database.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE prediction_log RENAME TO prediction_log_away"))
        try:
            assert log.flush() == 0
            assert log.errors._value.get() == 0  # kept on disk, not dropped
        finally:
            with database.engine.begin() as connection:
                connection.execute(
                    sa.text("ALTER TABLE prediction_log_away RENAME TO prediction_log")
                )
        record(log, 2, "up")
        log.close()
        assert logged(database) == ["down0", "down1", "down2", "down3", "down4", "up0", "up1"]
    finally:
        database.dispose()


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from shipyard.serving.base import Prediction
    from shipyard.serving.predlog import PredictionLog
    from shipyard.store import Database

    log = PredictionLog(Database.open(sys.argv[1]), flush_interval=3600, spool=Path(sys.argv[2]))
    log.start()
    for i in range(40):
        log.record("m", 1, f"k{i}", 0.001, {"x": np.array([1.0])}, Prediction(np.array([0])))
    os.kill(os.getpid(), signal.SIGKILL)  # before any flush: every row is only in the spool
    """
)


def test_a_killed_server_loses_nothing_and_the_next_one_writes_it_once(
    tmp_path: Path, database_url: str
) -> None:
    spool = tmp_path / "spool"
    killed = subprocess.run([sys.executable, "-c", _KILLED, database_url, str(spool)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(spool.iterdir())) == 1
    database = Database.open(database_url)
    try:
        # a segment whose rows were committed before the kill took its deletion away
        already = Spool(tmp_path / "other")
        rows = [
            encode_entry(
                ("m", 1, "done", 0.0, 0.001, {"x": [1.0]}, Prediction(np.array([0])), False, 1)
            )
        ]
        PredictionLogStore(database).append(rows)
        for row in rows:
            already.append(row)
        already.close()
        for path in already.closed:
            path.rename(spool / f"999999999-{path.name.split('-', 1)[1]}")  # a pid that is gone
        log = PredictionLog(database, flush_interval=3600, spool=spool)
        log.start()
        log.close()
        assert sorted(logged(database)) == sorted(["done", *(f"k{i}" for i in range(40))])
        assert list(spool.iterdir()) == []
    finally:
        database.dispose()


def test_a_running_servers_segments_are_left_alone(tmp_path: Path, database_url: str) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    parent = os.getppid()  # alive for the whole test
    (spool / f"{parent}-1.jsonl").write_bytes(b"")
    database = Database.open(database_url)
    try:
        log = PredictionLog(database, flush_interval=3600, spool=spool)
        log.start()
        log.close()
        assert (spool / f"{parent}-1.jsonl").exists()
    finally:
        database.dispose()
