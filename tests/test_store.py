import os
from pathlib import Path

import pytest

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, StoreError
from provenflow.storage.store import ContentStore


def test_digest_rejects_non_hex():
    with pytest.raises(ValueError, match="not a BLAKE3 hex digest"):
        Digest("xyz")


def test_file_and_bytes_hash_alike(tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 7)  # above the threaded-hash threshold
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert Digest.of_file(path) == Digest.of_bytes(data)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert Digest.of_file(empty) == Digest.of_bytes(b"")


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = ContentStore(str(tmp_path / "store"))
    source = tmp_path / "a.bin"
    source.write_bytes(b"hello world")
    first = store.put_file(source)
    again = store.put_file(source)
    assert first.created and not again.created
    assert first.digest == again.digest == Digest.of_bytes(b"hello world")
    assert store.read_bytes(first.digest) == b"hello world"
    assert store.put_bytes(b"hello world").created is False
    leftovers = [p for p in (tmp_path / "store").rglob(".tmp-*")]
    assert leftovers == []


def test_tampered_object_is_refused(tmp_path):
    store = ContentStore(str(tmp_path / "store"))
    digest = store.put_bytes(b"original").digest
    path = store.path(digest)
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(b"tampered")
    with pytest.raises(IntegrityError, match=f"store object {digest.hex} .* is corrupt"):
        store.read_bytes(digest)
    assert store.verify(digest) is False


def test_missing_object_names_it(tmp_path):
    store = ContentStore(str(tmp_path / "store"))
    digest = Digest.of_bytes(b"never stored")
    with pytest.raises(StoreError, match=digest.hex):
        store.read_bytes(digest)


def test_memory_filesystem_store():
    store = ContentStore("memory://pf-test-store")
    stored = store.put_bytes(b"remote bytes")
    assert store.read_bytes(stored.digest) == b"remote bytes"
    assert store.put_bytes(b"remote bytes").created is False
    store.delete(stored.digest)
    assert not store.exists(stored.digest)


def _damage(path: str, how: str) -> None:
    os.chmod(path, 0o644)
    data = Path(path).read_bytes()
    with open(path, "wb") as fh:
        fh.write(data + b"x" if how == "append" else bytes([data[0] ^ 1]) + data[1:])


@pytest.mark.parametrize("how", ["append", "flip"])
def test_storing_the_same_content_repairs_a_damaged_object(tmp_path, how):
    store = ContentStore(str(tmp_path / "store"))
    source = tmp_path / "a.bin"
    source.write_bytes(b"the original bytes")
    digest = store.put_file(source).digest
    _damage(store.path(digest), how)
    assert store.verify(digest) is False
    again = store.put_file(source)
    assert again.created and again.repaired
    assert store.read_bytes(digest) == b"the original bytes"
    _damage(store.path(digest), how)
    assert store.put_bytes(b"the original bytes").repaired
    assert store.verify(digest)
    assert store.put_bytes(b"the original bytes") == type(again)(digest, 18, created=False)


def test_a_missing_object_is_stored_again(tmp_path):
    store = ContentStore(str(tmp_path / "store"))
    digest = store.put_bytes(b"kept").digest
    store.delete(digest)
    assert store.put_bytes(b"kept").created
    assert store.read_bytes(digest) == b"kept"


def test_first_write_removes_stale_staging_files_only(tmp_path):
    import time

    store = ContentStore(str(tmp_path / "store"))
    os.makedirs(store.tmp_dir)
    stale, fresh = (os.path.join(store.tmp_dir, f".tmp-{n}") for n in ("stale", "fresh"))
    for path in (stale, fresh):
        with open(path, "wb") as fh:
            fh.write(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    store.put_bytes(b"first write of this process")
    assert not os.path.exists(stale) and os.path.exists(fresh)
    assert sorted(os.listdir(store.tmp_dir)) == [".tmp-fresh"]


def test_a_file_over_several_hashing_windows_hashes_as_its_bytes(tmp_path):
    import os

    data = os.urandom(2 * 16 * 1024 * 1024 + 12_345)  # across the 16 MiB mmap windows
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert Digest.of_file(path) == Digest.of_bytes(data) == Digest.of_file(path, threads=1)
    stored = ContentStore(str(tmp_path / "store"), fsync=False).put_file(path)
    assert stored.digest == Digest.of_bytes(data) and stored.created


def test_hashing_a_large_file_keeps_memory_flat(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "large.bin"
    with open(path, "wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(8 * 1024 * 1024))  # 192 MiB
    probe = (
        "import resource, sys; from provenflow.digest import Digest; base = resource.getrusage(0).ru_maxrss; "
        "Digest.of_file(sys.argv[1]); print(resource.getrusage(0).ru_maxrss - base)"
    )
    grown_kib = int(subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True,
                                   check=True).stdout)  # fmt: skip
    assert grown_kib < 64 * 1024, f"hashing 192 MiB grew the process by {grown_kib / 1024:.0f} MiB"


def test_restoring_an_unchanged_file_reads_it_once_and_copies_nothing(tmp_path, monkeypatch):
    """Re-storing costs one hash of the source: the read-only object already there is neither hashed
    again nor copied over (before: a staging copy beside the hash, then a second hash of the object)."""
    import provenflow.storage.store as store_module

    store = ContentStore(str(tmp_path / "store"))
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(5 * 1024 * 1024))
    digest = store.put_file(source).digest
    hashed: list[str] = []
    real = Digest.of_file

    def counted(path, *args, **kwargs):
        hashed.append(str(path))
        return real(path, *args, **kwargs)

    staged: list[str] = []
    real_staged = ContentStore._staged
    monkeypatch.setattr(store_module.Digest, "of_file", counted)
    monkeypatch.setattr(ContentStore, "_staged", lambda self, *a: staged.append("x") or real_staged(self, *a))
    again = store.put_file(source)
    assert (again.digest, again.created) == (digest, False)
    assert hashed == [str(source)] and staged == []
    # an object made writable (the first step of editing it) is hashed again, and read-only once more
    os.chmod(store.path(digest), 0o644)
    assert store.put_file(source).created is False and len(hashed) == 3
    assert os.stat(store.path(digest)).st_mode & 0o777 == 0o444
