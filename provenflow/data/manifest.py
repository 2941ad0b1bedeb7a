"""A dataset version of many parts: a small JSON object in the store listing content-addressed Parquet parts.

A folder's version is a manifest rather than one Parquet file, so a new version stores only its new
parts: a part is one source file's rows in the canonical form (ingest.canonical), and a file that did
not change gives the same part, already in the store. The manifest names parts by their hash and row
count only, in the order of the files' relative paths; renaming a file changes nothing. Readers
(``datasets.load_table``, ``load_sample``) assemble the table from it, each part checked against its
hash as any object is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from provenflow.digest import Digest

FORMAT = "provenflow-manifest/1"
# A manifest's first bytes: a Parquet file starts with b"PAR1" instead.
MAGIC = b'{"format":"' + FORMAT.encode() + b'"'


@dataclass(frozen=True)
class Part:
    digest: Digest
    rows: int
    size: int


@dataclass(frozen=True)
class Manifest:
    parts: list[Part]
    schema: list[list[str]]  # [name, Arrow type] of every column

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def to_bytes(self) -> bytes:
        """Canonical JSON (key order fixed, no spaces): the same parts give the same bytes and hash."""
        body = {
            "format": FORMAT,
            "parts": [{"hash": p.digest.hex, "rows": p.rows, "size": p.size} for p in self.parts],
            "rows": self.rows,
            "schema": self.schema,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        body = json.loads(data)
        parts = [Part(Digest(p["hash"]), int(p["rows"]), int(p["size"])) for p in body["parts"]]
        return cls(parts, body["schema"])


def is_manifest(head: bytes) -> bool:
    return head.startswith(MAGIC)
