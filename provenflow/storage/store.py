"""The content-addressed store: objects named by their BLAKE3 digest, on any fsspec URL.

Objects are written under a temporary name and renamed into place, so a reader never sees a
partial object, and every read is verified against the name it was asked for. An object that is
already there is checked (size, then hash) before it is trusted, so storing the same content again
repairs a damaged object. A process killed mid-write leaves a ``tmp/.tmp-*`` file; the first write
of the next process removes those older than the grace period (``provenflow gc`` removes the rest).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, StoreError

# A temporary file this much older than its last write belongs to a dead process, not a slow one.
TMP_GRACE_SECONDS = 3600.0
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Stored:
    digest: Digest
    size: int
    created: bool  # False when the object was already there, intact (nothing was copied)
    repaired: bool = False  # True when a damaged object was there and has been replaced


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
        self._swept = False

    def __repr__(self) -> str:
        return f"ContentStore({self.url!r})"

    def path(self, digest: Digest) -> str:
        return f"{self.root}/objects/{digest.hex[:2]}/{digest.hex[2:]}"

    def uri(self, digest: Digest) -> str:
        return self.fs.unstrip_protocol(self.path(digest)) if not self.local else self.path(digest)

    @property
    def tmp_dir(self) -> str:
        """Where local writes are staged: one folder, so finding leftovers costs one listing."""
        return f"{self.root}/tmp"

    def exists(self, digest: Digest) -> bool:
        return self.fs.exists(self.path(digest))

    # -- writing -------------------------------------------------------------------------

    def put_file(self, source: str | os.PathLike, digest: Digest | None = None, move: bool = False) -> Stored:
        """Store a local file (MOVE: take it, e.g. a file written into ``tmp_dir`` for the store).

        Without a known DIGEST the file is hashed first, with every core, and copied (in the kernel)
        only when the store lacks it: re-storing an unchanged file costs one hash. (Before: a copy
        beside a one-thread hash, then a second hash of the stored object, 2.3-3.9x one hash.)"""
        source = Path(source)
        size = source.stat().st_size
        if digest is None and self.local and not move:
            # Hashed first with every core, then copied only if the store lacks it: re-storing an unchanged
            # file costs one hash (was ~2.3x: a one-thread hash beside a speculative copy, then a second
            # hash of the stored object); a new file costs hash + copy_file_range, not more than the
            # copy beside a one-thread hash did here (measured in bench/datasets.py).
            digest = Digest.of_file(source)
        digest = digest or Digest.of_file(source)
        target = self.path(digest)
        damaged = self._damaged(target, digest, size)
        if damaged is False:
            if move:
                source.unlink()
            return Stored(digest, size, created=False)
        if self.local:
            self._write_local(target, size, lambda tmp: _move_or_copy(source, tmp, move))
        else:
            self._write_remote(target, lambda tmp: self.fs.put_file(str(source), tmp))
            if move:
                source.unlink()
        _note(self, digest)
        return Stored(digest, size, created=True, repaired=bool(damaged))

    def put_bytes(self, data: bytes) -> Stored:
        digest = Digest.of_bytes(data)
        target = self.path(digest)
        damaged = self._damaged(target, digest, len(data))
        if damaged is False:
            return Stored(digest, len(data), created=False)
        if self.local:
            self._write_local(target, len(data), lambda tmp: Path(tmp).write_bytes(data))
        else:
            self._write_remote(target, lambda tmp: self.fs.pipe_file(tmp, data))
        _note(self, digest)
        return Stored(digest, len(data), created=True, repaired=bool(damaged))

    def _damaged(self, target: str, digest: Digest, size: int) -> bool | None:
        """None when there is no object yet, False when it is there intact, True when damaged.

        The size is compared first (free); an object of the right size that is no longer read-only
        (someone made it writable: the first step of editing it) is hashed again. An intact object
        gets a fresh mtime, so ``gc`` does not take it from a run about to record it.
        """
        if self.local:
            try:
                info = os.stat(target)
            except FileNotFoundError:
                return None
            if info.st_size != size:
                return True
            # Objects are committed read-only (0o444): one that still is, at its size, is taken as
            # intact without reading it (re-storing then costs the one hash of the source). Editing it
            # takes a chmod first, which makes the next store hash it again and repair it; damage
            # nobody wrote (bit rot) is what reading (``check``) and ``provenflow verify`` catch.
            if stat.S_IMODE(info.st_mode) & 0o222:
                if Digest.of_file(target) != digest:
                    return True
                with contextlib.suppress(OSError):
                    os.chmod(target, 0o444)
            with contextlib.suppress(OSError):
                os.utime(target)
            return False
        try:
            # Remote objects are checked by size only: hashing would mean downloading them.
            return self.fs.size(target) != size
        except FileNotFoundError:
            return None

    def _write_local(self, target: str, size: int, write) -> None:
        self._commit_local(self._staged(size, write), target, size)

    def _staged(self, size: int, write) -> str:
        """A fresh staging file in ``tmp_dir`` filled by WRITE(path)."""
        if not self._swept:
            self._swept = True
            remove_stale_tmp(self)
        os.makedirs(self.tmp_dir, exist_ok=True)
        # A fresh name, not mkstemp's: copying onto a file that exists (and is truncated by the
        # copy) makes ext4 write the whole file back at close, which doubled the time to store.
        tmp = os.path.join(self.tmp_dir, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        with self._cleaned(tmp, size):
            write(tmp)
        return tmp

    def _commit_local(self, tmp: str, target: str, size: int) -> None:
        """Make a staged file the object TARGET: flushed (unless fsync is off), read-only, renamed."""
        with self._cleaned(tmp, size):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if self.fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)

    @contextlib.contextmanager
    def _cleaned(self, tmp: str, size: int):
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(
                    f"cannot store a {size:,}-byte object in {self.url}: {os.strerror(exc.errno)}. "
                    "Free space there, or point PROVENFLOW_STORE_URL (or the store block) at a larger volume."
                ) from None
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


def _move_or_copy(source: Path, tmp: str, move: bool) -> None:
    if move:
        try:
            os.rename(source, tmp)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # another file system: copy instead
                raise
    shutil.copyfile(source, tmp)
    if move:
        source.unlink()


def remove_stale_tmp(store: ContentStore, grace_seconds: float = TMP_GRACE_SECONDS) -> list[tuple[str, int]]:
    """Remove staging files not written to for ``grace_seconds`` (a killed writer's leftovers);
    returns (path, size) of each. Cheap: one listing of the staging folder."""
    removed: list[tuple[str, int]] = []
    if not store.local:
        return removed
    cutoff = time.time() - grace_seconds
    try:
        entries = list(os.scandir(store.tmp_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        try:
            info = entry.stat()
            if info.st_mtime > cutoff:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # its writer finished or another sweep took it
        removed.append((entry.path, info.st_size))
    return removed
