"""The content-addressed artifact store: atomic writes, verified reads, any fsspec URL."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from shipyard import ArtifactIntegrityError, NotFoundError
from shipyard.store import ArtifactStore


def _blob(store: ArtifactStore, digest: str) -> Path:
    return Path(store.root) / "sha256" / digest[:2] / digest


def test_put_and_get_round_trip_by_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    digest = store.put_bytes(b"model bytes")
    assert digest == hashlib.sha256(b"model bytes").hexdigest()
    assert store.exists(digest)
    assert store.get_bytes(digest) == b"model bytes"
    assert store.put_bytes(b"model bytes") == digest  # same content, same blob
    assert not any((tmp_path / "a" / "tmp").iterdir())  # no temporary left behind


def test_a_modified_blob_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    digest = store.put_bytes(b"original")
    _blob(store, digest).write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="modified after it was stored"):
        store.get_bytes(digest)
    target = tmp_path / "out" / "file"
    with pytest.raises(ArtifactIntegrityError):
        store.download(digest, target)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no partial file either


def test_missing_and_malformed_digests(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    with pytest.raises(NotFoundError, match="missing from the store"):
        store.get_bytes("0" * 64)
    with pytest.raises(NotFoundError, match="not a sha256 digest"):
        store.get_bytes("../../etc/passwd")


def test_trees_round_trip_and_verify_every_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "MLmodel").write_text("flavors: {}\n")
    (source / "sub" / "model.pkl").write_bytes(b"\x80\x04N.")
    store = ArtifactStore(str(tmp_path / "a"))
    digest = store.put_tree(source)
    assert store.put_tree(source) == digest
    out = store.get_tree(digest, tmp_path / "out")
    assert (out / "MLmodel").read_text() == "flavors: {}\n"
    assert (out / "sub" / "model.pkl").read_bytes() == b"\x80\x04N."
    inner = store.manifest(digest)["files"]["sub/model.pkl"]["sha256"]
    _blob(store, inner).write_bytes(b"evil")
    with pytest.raises(ArtifactIntegrityError):
        store.get_tree(digest, tmp_path / "out2")


def test_a_manifest_naming_an_unsafe_path_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    inner = store.put_bytes(b"x")
    manifest = {"files": {"../escape": {"sha256": inner, "size": 1}}, "kind": "shipyard.tree/1"}
    digest = store.put_bytes(json.dumps(manifest).encode())
    with pytest.raises(ArtifactIntegrityError, match="unsafe path"):
        store.get_tree(digest, tmp_path / "out")


def test_any_fsspec_filesystem_works(tmp_path: Path) -> None:
    store = ArtifactStore(f"memory://shipyard-{uuid.uuid4().hex}")
    source = tmp_path / "m"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"onnx")
    digest = store.put_tree(source)
    assert (store.get_tree(digest, tmp_path / "out") / "model.onnx").read_bytes() == b"onnx"
