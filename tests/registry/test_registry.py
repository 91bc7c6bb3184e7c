"""The registry on SQLite and PostgreSQL: versions, references, trust, integrity, lifecycle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.helpers import make_frame

from shipyard import (
    ArtifactIntegrityError,
    ConflictError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    Project,
    SchemaError,
    UntrustedArtifactError,
)

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def test_versions_are_numbered_and_references_resolve(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    reg = project.registry
    first = reg.register("churn", model, input_example=frame, trust=True, metrics={"roc_auc": 0.8})
    second = reg.register("churn", model, input_example=frame, trust=True)
    assert (first.version, second.version) == (1, 2)
    assert reg.get("churn").version == 2
    assert reg.get("churn:1").metrics == {"roc_auc": 0.8}
    assert first.created_by == "tester"
    with pytest.raises(NotFoundError, match="no version 7"):
        reg.get("churn:7")
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        reg.get("nope")
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        reg.get("churn@production")
    with pytest.raises(InvalidReferenceError, match="not a model reference"):
        reg.get("churn::1")
    [listed] = reg.list_models()
    assert (listed.name, listed.latest_version, listed.version_count) == ("churn", 2, 2)


def test_signature_example_and_lineage_are_recorded(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    info = project.registry.register(
        "churn", model, input_example=frame, trust=True, params={"max_iter": np.int64(20)},
        tags={"team": "growth"}, datasets={"train": frame}, run_id="run-42",
    )  # fmt: skip
    assert info.signature is not None
    plan = info.signature.column("plan")
    assert plan.dtype == "string"
    assert plan.categories == ("basic", "plus", "pro")
    assert info.signature.column("charges").nullable
    assert info.signature.column("tenure").minimum == frame["tenure"].min()
    assert info.signature.outputs is not None
    assert info.signature.outputs.classes == (0, 1)
    assert info.input_example is not None
    assert len(info.input_example) == 5
    assert info.params == {"max_iter": 20}
    assert info.lineage["run_id"] == "run-42"
    assert len(info.lineage["datasets"]["train"]) == 64
    assert info.lineage["git"] == {"commit": None, "dirty": None, "branch": None}
    assert "numpy.dtype" in info.trusted_types


def test_git_commit_and_dirty_flag_are_recorded(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    root = project.root

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    (root / "train.py").write_text("print('v1')\n")
    git("add", "train.py")
    clean = project.registry.register("churn", model, trust=True, input_example=frame)
    assert clean.lineage["git"]["commit"] == git("rev-parse", "HEAD")
    assert clean.lineage["git"]["dirty"] is True  # staged, not committed
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    committed = project.registry.register("churn", model, trust=True, input_example=frame)
    assert committed.lineage["git"]["dirty"] is False


def test_loaded_model_predicts_like_the_original_and_checks_input(
    project: Project, trained: Trained
) -> None:
    model, frame, _ = trained
    project.registry.register("churn", model, input_example=frame, trust=True)
    loaded = project.registry.load("churn")
    assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    records = frame.head(3).to_dict(orient="records")
    assert np.array_equal(loaded.predict(records), model.predict(frame.head(3)))
    with pytest.raises(SchemaError, match="missing column 'plan'"):
        loaded.predict(frame.drop(columns="plan"))
    with pytest.raises(SchemaError, match="column 'tenure' expects int64"):
        loaded.predict(frame.assign(tenure="long"))


def test_untrusted_types_are_refused_until_trusted(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    with pytest.raises(UntrustedArtifactError, match=r"numpy\.dtype") as caught:
        project.registry.register("churn", model, input_example=frame)
    assert "--trust" in str(caught.value)
    with pytest.raises(UntrustedArtifactError):
        project.registry.register("churn", model, trusted_types=["numpy.dtype"])
    needed = sio.get_untrusted_types(data=sio.dumps(model))
    info = project.registry.register("churn", model, input_example=frame, trusted_types=needed)
    assert sorted(info.trusted_types) == sorted(needed)
    assert project.registry.list_models()[0].version_count == 1  # refusals wrote nothing


def test_a_pickle_file_needs_trust(project: Project, tmp_path: Path) -> None:
    frame, target = make_frame(200)
    numeric = frame[["tenure", "charges"]].fillna(0.0)
    path = tmp_path / "model.pkl"
    import pickle

    path.write_bytes(pickle.dumps(LogisticRegression().fit(numeric, target)))
    with pytest.raises(UntrustedArtifactError, match="pickle"):
        project.registry.register("lr", path=path, input_example=numeric)
    info = project.registry.register("lr", path=path, input_example=numeric, trust=True)
    assert info.flavor == "python"
    assert info.trusted_types == ["pickle"]
    assert project.registry.load("lr").predict(numeric).shape == (200,)


def test_a_tampered_artifact_is_refused(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    info = project.registry.register("churn", model, input_example=frame, trust=True)
    manifest = project.artifacts.manifest(info.artifact_digest)
    [entry] = manifest["files"].values()
    blob = Path(project.artifacts.root) / "sha256" / entry["sha256"][:2] / entry["sha256"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="modified after it was stored"):
        project.registry.load("churn:1")


def test_archive_delete_and_tags(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    reg = project.registry
    reg.register("churn", model, input_example=frame, trust=True)
    reg.register("churn", model, input_example=frame, trust=True)
    reg.set_alias("churn:1", "champion")
    with pytest.raises(ConflictError, match="champion"):
        reg.archive("churn:1")
    with pytest.raises(ConflictError, match="cannot be deleted"):
        reg.delete_version("churn:1")
    assert reg.archive("churn:2").status == "archived"
    assert reg.get("churn").version == 1  # NAME skips archived versions
    assert [v.version for v in reg.list_versions("churn")] == [1]
    assert [v.version for v in reg.list_versions("churn", include_archived=True)] == [2, 1]
    with pytest.raises(ConflictError, match="archived"):
        reg.set_alias("churn:2", "challenger")
    assert reg.archive("churn:2", restore=True).status == "active"
    reg.delete_version("churn:2")
    third = reg.register("churn", model, input_example=frame, trust=True)
    assert third.version == 3  # numbers are never reused
    tagged = reg.set_tags("churn:3", {"business_value": "approved"})
    assert tagged.tags == {"business_value": "approved"}


def test_bad_arguments_are_clear_errors(project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    reg = project.registry
    with pytest.raises(InvalidReferenceError, match="not a valid model name"):
        reg.register("bad name!", model, trust=True)
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        reg.register("churn")
    with pytest.raises(InvalidArgumentError, match="metric 'auc' must be a number"):
        reg.register("churn", model, trust=True, metrics={"auc": "high"})  # type: ignore[dict-item]
    with pytest.raises(SchemaError, match="at least one row"):
        reg.register("churn", model, trust=True, input_example=frame.head(0))
