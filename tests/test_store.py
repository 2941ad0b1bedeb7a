import os

import pytest

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, StoreError
from provenflow.store import ContentStore


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
