"""Processes sharing a project: no lost or duplicated versions; a kill leaves no half state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from tests.helpers import make_settings

from shipyard import Project

WORKER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from shipyard import Project
    rng = np.random.default_rng(0)
    import pandas as pd
    X = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    with Project(sys.argv[1]) as project:
        for i in range(int(sys.argv[2])):
            project.registry.register("m", model, input_example=X, metrics={"i": i})
            print("registered", flush=True)
    """
)


def _spawn(root: Path, count: int, database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SHIPYARD_DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(root), str(count)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_writers_get_distinct_versions(tmp_path: Path, database_url: str) -> None:
    root = tmp_path / "proj"
    settings = make_settings(root, database_url)
    workers = [_spawn(root, 4, database_url) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    with Project(settings=settings) as project:
        versions = sorted(v.version for v in project.registry.list_versions("m"))
        assert versions == list(range(1, 9))


def test_a_killed_writer_leaves_only_whole_versions(tmp_path: Path, database_url: str) -> None:
    root = tmp_path / "proj"
    settings = make_settings(root, database_url)
    worker = _spawn(root, 1000, database_url)
    assert worker.stdout is not None
    for _ in range(3):  # let it register a few versions, then kill it mid-flight
        assert worker.stdout.readline().startswith("registered")
    time.sleep(np.random.default_rng().uniform(0.0, 0.05))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    with Project(settings=settings) as project:
        versions = project.registry.list_versions("m")
        assert len(versions) >= 3
        assert sorted(v.version for v in versions) == list(range(1, len(versions) + 1))
        for info in versions:  # every recorded version has its whole artifact
            loaded = project.registry.load(info.ref)
            assert loaded.predict({"a": [1.0], "b": [0.0]}).shape == (1,)
        native = project.registry.load("m").native
        following = project.registry.register("m", native)
        assert following.version == len(versions) + 1
