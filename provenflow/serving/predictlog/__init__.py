"""The prediction log: every prediction the server makes, as append-only Parquet segments in the store.

Layout (any fsspec URL: a local folder or S3)::

    {store_url}/predictions/{model_name}/{version}/{first}_{last}_{id}-{seq}.parquet
    {store_url}/predictions/.wal/{model_name}/{version}/{id}-{seq}.wal     (local stores; see wal_folder)

**Nothing answered is lost.** A request's rows reach this process's write-ahead file (``wal``)
before the server answers; a background thread turns them into segments (``segments``, written by
``log``; the server has them built from the sealed file in a child process, ``builder``); whatever a
killed process left behind is stored by the next one to start or read (``recovery``). What other workers on the same disk answered but have not stored yet is read from
their write-ahead files (``siblings``); ``reading`` gives a time window of the log back as a DataFrame.
What a row holds is in ``schema``.
"""

from provenflow.serving.predictlog.log import PredictionLog, PredictionLogFull
from provenflow.serving.predictlog.reading import read_predictions
from provenflow.serving.predictlog.recovery import recover
from provenflow.serving.predictlog.schema import RESERVED, TABLE_PART_CHUNKS, feature_columns
from provenflow.serving.predictlog.segments import log_folder
from provenflow.serving.predictlog.wal import WAL_PART_ROWS, wal_folder

__all__ = [
    "RESERVED",
    "TABLE_PART_CHUNKS",
    "WAL_PART_ROWS",
    "PredictionLog",
    "PredictionLogFull",
    "feature_columns",
    "log_folder",
    "read_predictions",
    "recover",
    "wal_folder",
]
