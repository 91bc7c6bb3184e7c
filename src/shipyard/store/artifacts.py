"""The artifact store: content-addressed blobs (sha256) on any fsspec filesystem.

A blob lives at ``sha256/<first two hex>/<digest>`` below the store root. It is
written under ``tmp/`` first and renamed into place, so a reader never sees half a
blob; every read re-hashes the bytes and refuses them if they no longer match.
A *tree* (a model folder) is stored as one blob per file plus a manifest blob; the
tree's digest is the manifest's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from shipyard.core.exceptions import ArtifactIntegrityError, ConfigError, NotFoundError

if TYPE_CHECKING:
    import fsspec

CHUNK = 1 << 20
MANIFEST_KIND = "shipyard.tree/1"


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a local file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _plain_local_path(url: str) -> bool:
    """An absolute POSIX path with nothing fsspec would read as a protocol, chain or user."""
    return os.sep == "/" and url.startswith("/") and ":" not in url


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise NotFoundError(f"{digest!r} is not a sha256 digest (64 lowercase hex characters)")
    return digest


class ArtifactStore:
    """Content-addressed storage below ``url`` (a local folder, ``s3://bucket/prefix``, ...)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        if _plain_local_path(url) and not storage_options:
            # What fsspec makes of an absolute local path, without importing fsspec: the
            # commands that never read a blob (the listings) start faster.
            self.root = url.rstrip("/")
            self._local = True
        else:
            import fsspec
            from fsspec.implementations.local import LocalFileSystem

            try:
                fs, root = fsspec.core.url_to_fs(url, **storage_options)
            except (ImportError, ValueError) as exc:
                raise ConfigError(
                    f"cannot open the artifact store {url!r}: {exc}; "
                    "for s3:// install 'shipyard[s3]'"
                ) from exc
            self.fs = fs
            self.root = str(root).rstrip("/")
            self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem the blobs are on (made on first use for a local folder)."""
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    def _blob_path(self, digest: str) -> str:
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def _tmp_path(self) -> str:
        return f"{self.root}/tmp/{uuid.uuid4().hex}"  # noqa: S108 - the artifact store's own tmp/ folder, not /tmp

    def exists(self, digest: str) -> bool:
        """True when the blob is stored."""
        return bool(self.fs.exists(self._blob_path(_check_digest(digest))))

    def put_file(self, path: Path) -> str:
        """Store a local file; return its digest (storing the same bytes twice is a no-op)."""
        digest = sha256_file(path)
        final = self._blob_path(digest)
        if self.fs.exists(final):
            return digest
        tmp = self._tmp_path()
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)  # noqa: S108 - the artifact store's own tmp/ folder, not /tmp
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        try:
            if self._local:
                shutil.copyfile(path, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, final)
            else:
                self.fs.put_file(str(path), tmp)
                self.fs.mv(tmp, final)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return digest

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their digest."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "blob"
            path.write_bytes(data)
            return self.put_file(path)

    def _open(self, digest: str) -> IO[bytes]:
        path = self._blob_path(_check_digest(digest))
        try:
            handle: IO[bytes] = self.fs.open(path, "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"artifact {digest} is missing from the store at {self.url}; it was deleted "
                "or the store URL points elsewhere"
            ) from exc
        return handle

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        with self._open(digest) as handle:
            data = handle.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise _tampered(digest, actual, self.url)
        return data

    def download(self, digest: str, target: Path) -> None:
        """Copy the blob to the local file ``target``, verifying it on the way."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        hasher = hashlib.sha256()
        try:
            with self._open(digest) as source, partial.open("wb") as sink:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    sink.write(chunk)
            actual = hasher.hexdigest()
            if actual != digest:
                raise _tampered(digest, actual, self.url)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def put_tree(self, directory: Path) -> str:
        """Store every file below ``directory``; return the digest of the manifest."""
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = path.relative_to(directory).as_posix()
            files[relative] = {"sha256": self.put_file(path), "size": path.stat().st_size}
        if not files:
            raise ConfigError(f"{directory} holds no files to store")
        manifest = {"kind": MANIFEST_KIND, "files": files}
        return self.put_bytes(json.dumps(manifest, sort_keys=True).encode())

    def manifest(self, digest: str) -> dict[str, Any]:
        """The verified manifest of a stored tree."""
        try:
            manifest: dict[str, Any] = json.loads(self.get_bytes(digest))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactIntegrityError(f"artifact {digest} is not a shipyard tree") from exc
        if manifest.get("kind") != MANIFEST_KIND:
            raise ArtifactIntegrityError(f"artifact {digest} is not a shipyard tree")
        return manifest

    def get_tree(self, digest: str, target: Path) -> Path:
        """Materialise a stored tree into the empty folder ``target``; every file verified."""
        for relative, entry in self.manifest(digest)["files"].items():
            pure = PurePosixPath(relative)
            if pure.is_absolute() or ".." in pure.parts:
                raise ArtifactIntegrityError(f"artifact {digest} names an unsafe path {relative!r}")
            self.download(entry["sha256"], target.joinpath(*pure.parts))
        return target


def _tampered(digest: str, actual: str, url: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"artifact {digest} in {url} was modified after it was stored (its bytes now hash to "
        f"{actual}); shipyard refuses to load it. Restore the original or register the model again"
    )
