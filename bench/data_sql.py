"""Benchmark: a SQL source's memory and time against the table's size (a real PostgreSQL).

    .venv/bin/python bench/data_sql.py [--rows 200000,2000000]

Starts a throwaway PostgreSQL cluster (tests/services.py), fills a table of ROWS rows (an id, two
floats, an integer, a text column and a timestamp), and versions it with the data-run's pass
(``ingest.ingest(url, query=…)``) in a fresh process per size: its time and peak RSS. The target:
memory flat in the table's size (rows are fetched through a server-side cursor in batches).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import console

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, tempfile, time, resource
from provenflow.data import ingest
url, query = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as work:
    started = time.perf_counter()
    table = ingest.ingest(url, work, query=query)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": table.rows,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="200000,2000000")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tests import services

    base = Path(tempfile.mkdtemp(prefix="provenflow-bench-pg-"))
    server = services.start_postgres(base)
    try:
        url = server.create_database("bench_sql")
        plain = url.replace("postgresql+psycopg", "postgresql")
        for rows in (int(r) for r in args.rows.split(",")):
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS t")
                conn.execute(
                    "CREATE TABLE t AS SELECT i AS id, random() AS x, random() * 100 AS y, (i % 17) AS k, "
                    "md5(i::text) AS label, timestamp '2026-01-01' + i * interval '1 second' AS at "
                    f"FROM generate_series(1, {rows}) AS i"
                )
                size = conn.execute("SELECT pg_total_relation_size('t')").fetchone()[0]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, "-c", CHILD, url, "SELECT * FROM t"], env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            console.print(
                f"{rows:,} rows ({size / 2**20:,.0f} MiB in PostgreSQL): {result['seconds']:.1f} s, "
                f"peak RSS {result['rss'] / 2**20:,.0f} MiB"
            )
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
