"""The content-addressed store: objects named by their BLAKE3 digest, on any fsspec URL.

Objects are written under a temporary name and renamed into place, so a reader never sees a
partial object, and every read is verified against the name it was asked for.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, StoreError


@dataclass(frozen=True)
class Stored:
    digest: Digest
    size: int
    created: bool  # False when the object was already there (nothing was copied)


# Objects new to a store, noted while a run is active, so a run that fails can remove them again.
_new_objects: ContextVar[list[tuple[ContentStore, Digest]] | None] = ContextVar(
    "provenflow_new_objects", default=None
)


def note_new_objects() -> tuple[list[tuple[ContentStore, Digest]], Token]:
    """From now on, collect every object any store creates in this context (and the tasks it calls)."""
    noted: list[tuple[ContentStore, Digest]] = []
    return noted, _new_objects.set(noted)


def stop_noting(token: Token) -> None:
    _new_objects.reset(token)


def _note(store: ContentStore, digest: Digest) -> None:
    noted = _new_objects.get()
    if noted is not None:
        noted.append((store, digest))


class ContentStore:
    def __init__(self, url: str, fsync: bool = True, storage_options: dict | None = None) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"ContentStore({self.url!r})"

    def path(self, digest: Digest) -> str:
        return f"{self.root}/objects/{digest.hex[:2]}/{digest.hex[2:]}"

    def uri(self, digest: Digest) -> str:
        return self.fs.unstrip_protocol(self.path(digest)) if not self.local else self.path(digest)

    def exists(self, digest: Digest) -> bool:
        return self.fs.exists(self.path(digest))

    # -- writing -------------------------------------------------------------------------

    def put_file(self, source: str | os.PathLike, digest: Digest | None = None) -> Stored:
        """Store a local file; costs one hash and no copy when the content is already stored."""
        source = Path(source)
        digest = digest or Digest.of_file(source)
        size = source.stat().st_size
        target = self.path(digest)
        if self.fs.exists(target):
            return Stored(digest, size, created=False)
        if self.local:
            self._write_local(target, lambda tmp: shutil.copyfile(source, tmp))
        else:
            self._write_remote(target, lambda tmp: self.fs.put_file(str(source), tmp))
        _note(self, digest)
        return Stored(digest, size, created=True)

    def put_bytes(self, data: bytes) -> Stored:
        digest = Digest.of_bytes(data)
        target = self.path(digest)
        if self.fs.exists(target):
            return Stored(digest, len(data), created=False)
        if self.local:
            self._write_local(target, lambda tmp: Path(tmp).write_bytes(data))
        else:
            self._write_remote(target, lambda tmp: self.fs.pipe_file(tmp, data))
        _note(self, digest)
        return Stored(digest, len(data), created=True)

    def _write_local(self, target: str, write) -> None:
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        # A fresh name, not mkstemp's: copying onto a file that exists (and is truncated by the
        # copy) makes ext4 write the whole file back at close, which doubled the time to store.
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            write(tmp)
            if self.fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _write_remote(self, target: str, write) -> None:
        tmp = f"{os.path.dirname(target)}/.tmp-{uuid.uuid4().hex}"
        try:
            write(tmp)
            self.fs.mv(tmp, target)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)
            raise

    def delete(self, digest: Digest) -> None:
        """Remove an object (used to undo objects written by a run that then failed)."""
        target = self.path(digest)
        if self.fs.exists(target):
            if self.local:
                os.chmod(target, 0o644)
            self.fs.rm_file(target)

    # -- reading -------------------------------------------------------------------------

    def read_bytes(self, digest: Digest) -> bytes:
        """The object's bytes, after checking that they still hash to ``digest``."""
        target = self.path(digest)
        try:
            data = self.fs.cat_file(target)
        except FileNotFoundError:
            raise StoreError(
                f"object {digest.hex} is not in the store {self.url} (expected at {target}); "
                "the store may have been moved or pruned"
            ) from None
        actual = Digest.of_bytes(data)
        if actual != digest:
            raise IntegrityError(
                f"store object {digest.hex} at {target} is corrupt: its bytes hash to {actual.hex}. "
                "Refusing to load it; restore the object from a backup or re-run the run that produced it."
            )
        return data

    def check(self, digest: Digest) -> None:
        """Raise StoreError if the object is missing, IntegrityError if its bytes changed."""
        if not self.local:
            self.read_bytes(digest)
            return
        target = self.path(digest)
        if not os.path.exists(target):
            raise StoreError(f"object {digest.hex} is not in the store {self.url} (expected at {target})")
        actual = Digest.of_file(target)
        if actual != digest:
            raise IntegrityError(
                f"store object {digest.hex} at {target} is corrupt: its bytes hash to {actual.hex}. "
                "Restore the object from a backup or re-run the run that produced it."
            )

    def verify(self, digest: Digest) -> bool:
        try:
            self.check(digest)
        except StoreError:
            return False
        return True

    def get_file(self, digest: Digest, destination: str | os.PathLike) -> Path:
        """Copy an object out of the store, verified, to a local path."""
        self.check(digest)
        destination = Path(destination)
        if self.local:
            shutil.copyfile(self.path(digest), destination)
        else:
            destination.write_bytes(self.read_bytes(digest))
        return destination
