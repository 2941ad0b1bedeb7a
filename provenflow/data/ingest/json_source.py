"""JSON and JSON Lines sources as record batches for the pass (the reading itself is jsonl.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from provenflow.data import datasets, jsonl
from provenflow.data.credentials import Credentials, split_url
from provenflow.data.ingest.names import check_names
from provenflow.redact import redact


def json_batches(
    source: str, fmt: str, credentials: Credentials | None, block_bytes: int
) -> Iterator[pa.RecordBatch]:
    fs, path = datasets._open_source(source, credentials)
    checked = False
    for batch in jsonl.batches(fs, path, fmt, redact(split_url(source)[0]), block_bytes):
        if not checked:
            check_names(source, batch.schema.names)
            checked = True
        yield batch
