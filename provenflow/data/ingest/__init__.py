"""A data-run's one pass over a source: canonical Parquet, schema, profile and a bounded sample.

The pass (``one_pass``) reads the source as record batches (``csv_source``, ``json_source``,
``parquet_source``) in a thread of their own (``read_ahead``), writes them in the canonical form (``canonical``) and profiles them as they go
by (``profiling``). What the first block cannot tell, a wider column type (``widening``) or more of
the CSV dialect (``sniffing``), starts the pass again.
"""

from provenflow.data.ingest.canonical import ROW_GROUP_ROWS, WRITER_OPTIONS
from provenflow.data.ingest.one_pass import BLOCK_BYTES, Ingested, ingest, store_ingested, workdir_for
from provenflow.data.ingest.profiling import EXACT_DISTINCT, SAMPLE_ROWS, SAMPLE_SEED

__all__ = [
    "BLOCK_BYTES",
    "EXACT_DISTINCT",
    "ROW_GROUP_ROWS",
    "SAMPLE_ROWS",
    "SAMPLE_SEED",
    "WRITER_OPTIONS",
    "Ingested",
    "ingest",
    "store_ingested",
    "workdir_for",
]
