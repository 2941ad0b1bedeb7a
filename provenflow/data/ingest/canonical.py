"""The canonical Parquet form of a table: the same rows give the same bytes, and so the same hash.

The canonical form is defined independently of how the source was cut into batches: rows are
regrouped into row groups of exactly ``ROW_GROUP_ROWS`` (each written from contiguous arrays),
with fixed writer options and no pandas metadata. So the same table gives the same bytes, and the
same hash, on a machine that reads it in smaller batches.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

# Part of the canonical form: changing any of these changes every dataset's hash.
ROW_GROUP_ROWS = 128 * 1024
WRITER_OPTIONS = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "use_dictionary": True,
    "version": "2.6",
    "data_page_size": 1024 * 1024,
}


class CanonicalWriter:
    """Rows regrouped into row groups of exactly ROW_GROUP_ROWS, whatever batches come in.

    Each row group is encoded and compressed in a thread (pyarrow releases the GIL) while the next
    batches are parsed and profiled: on two cores the pass then takes about as long as the parse.
    At most one row group is in flight, so memory stays bounded."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.schema = schema.remove_metadata()
        self.writer = pq.ParquetWriter(path, self.schema, **WRITER_OPTIONS)
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="provenflow-parquet")
        self.writing: Future | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        while self.rows >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(self.pending, self.schema)
            self._group(table.slice(0, ROW_GROUP_ROWS))
            rest = table.slice(ROW_GROUP_ROWS)
            self.pending, self.rows = rest.to_batches(), rest.num_rows

    def _group(self, table: pa.Table) -> None:
        self._wait()
        # Contiguous arrays: page boundaries must not depend on where the batches were cut.
        self.writing = self.pool.submit(self.writer.write_table, table.combine_chunks(), ROW_GROUP_ROWS)

    def _wait(self) -> None:
        if self.writing is not None:
            self.writing.result()
            self.writing = None

    def close(self) -> None:
        try:
            if self.rows:
                self._group(pa.Table.from_batches(self.pending, self.schema))
            self._wait()
        finally:
            self.pool.shutdown(wait=True)
            self.writer.close()
