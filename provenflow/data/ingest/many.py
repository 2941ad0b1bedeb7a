"""A table of many files: each file one part in the store, the version a manifest of the parts.

Each file is read by the one pass (``one_pass.ingest``) with its partition columns added, into its
own canonical Parquet part; a file the stat cache knows unchanged is not read at all. Every part
must have the first file's schema, except that a CSV column's type is joined across files (an
integer column in one day's export and a decimal one in the next are read as decimals in both). The
profile and the validation sample come from each part's summary (part_summaries: exact counts and
the part's sample rows, kept under .provenflow), so they describe the whole table while an
unchanged file is read neither as a source nor as a part. What a new version's run waits for is
kept short by doing the rest beside the pass: the known parts' summaries are loaded while the new
files are read, and the new files are stored while the profile is made.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from provenflow.data import datasets, manifest
from provenflow.data.ingest.listing import Listing, SourceFile
from provenflow.data.ingest.one_pass import BLOCK_BYTES, Ingested, ingest, workdir_for
from provenflow.data.ingest.part_summaries import Summaries, Summarizer, fingerprint, fitted, threshold, up_to
from provenflow.data.ingest.profiling import SAMPLE_ROWS, Column, finish_profile
from provenflow.data.ingest.stat_cache import StatCache
from provenflow.data.ingest.widening import join_types
from provenflow.digest import Digest
from provenflow.errors import DataError
from provenflow.storage.store import ContentStore


def ingest_many(
    listing: Listing,
    store: ContentStore,
    cache: StatCache,
    block_bytes: int = BLOCK_BYTES,
    sample_rows: int = SAMPLE_ROWS,
    summaries: Summaries | None = None,
    known: Callable[[str], Digest | None] | None = None,
) -> Ingested:
    """Store every file of LISTING as a part and the manifest that lists them; describe the table.
    KNOWN finds an earlier version by the table's fingerprint (part_summaries.fingerprint): the same
    rows in the same order cut into other files are that version again, not a new one."""
    entries: dict[str, dict] = {}
    summaries = summaries or Summaries(cache.path.parent / "part-summaries" if cache.path else None)
    try:
        # The files the stat cache knows first: a new file's summary then knows (about) the table's
        # rows, and keeps about the rows the table's sample takes from it, not all of them.
        for file in listing.files:
            known_part = _cached(store, cache, file, {})
            if known_part is not None:
                entries[file.relative] = known_part
        trusted, reread = set(entries), set()
        summaries.load_ahead([Digest(e["part"]) for e in entries.values()])
        others = sum(e["rows"] for e in entries.values())  # the table has at least these rows
        for file in listing.files:
            if file.relative not in entries:
                entries[file.relative] = _part(
                    listing, file, store, cache, block_bytes, {}, others, sample_rows
                )
                others += entries[file.relative]["rows"]
        wider = _joined_types(listing, entries)
        if wider:  # read again, with the joined types, the files that had a narrower one
            total = others
            for file in listing.files:
                had = dict(entries[file.relative]["schema"])
                forced = {k: t for k, t in wider.items() if k in had and had[k] != str(t)}
                if forced:
                    reread.add(file.relative)
                    _discard(entries[file.relative])
                    others = total - entries[file.relative]["rows"]
                    entries[file.relative] = _part(
                        listing, file, store, cache, block_bytes, forced, others, sample_rows
                    )
        _check_schemas(listing, entries)
        # Only now, every file read and their schemas agreeing, does anything go into the store.
        listed = manifest.Manifest(
            [
                manifest.Part(Digest(e["part"]), e["rows"], e["size"])
                for e in (entries[f.relative] for f in listing.files)
            ],
            entries[listing.files[0].relative]["schema"],
        )
        below = threshold(listed.rows, sample_rows)
        new = [f for f in listing.files if "pending" in entries[f.relative]]
        for file in new:  # kept first: the profile reads them while the files are being stored
            entry = entries[file.relative]
            summaries.put(Digest(entry["part"]), fitted(entry.pop("summary"), below, room=1))
        # The raw files and parts are stored (copies, fsync: mostly waiting on the disk) in a thread
        # while the profile is made, in the context that notes a failed run's new objects.
        with ThreadPoolExecutor(1, thread_name_prefix="provenflow-store") as pool:
            storing = pool.submit(
                contextvars.copy_context().run,
                lambda: [_commit(listing, f, entries[f.relative], store, cache) for f in new],
            )
            try:
                profile, sample, validated_on = _describe(store, listed, sample_rows, summaries)
            finally:
                storing.result()
                cache.save()
    finally:
        for entry in entries.values():
            _discard(entry)
    earlier = known(profile["fingerprint"]) if known else None
    if earlier is not None and store.exists(earlier):
        listed = manifest.Manifest.from_bytes(store.read_bytes(earlier))
    stored = store.put_bytes(listed.to_bytes())
    notes = [
        {"level": n["level"], "message": f"{f.relative}: {n['message']}"}
        for f in listing.files
        for n in entries[f.relative].get("notes", [])
    ]
    return Ingested(
        path="",
        digest=stored.digest,
        size=listed.size,
        rows=listed.rows,
        schema=[{"name": name, "dtype": profile["columns"][name]["dtype"]} for name, _ in listed.schema],
        profile=profile,
        sample=sample,
        validated_on=validated_on,
        notes=notes,
        files=[(f.relative, Digest(entries[f.relative]["raw"])) for f in listing.files],
        parts=[p.digest for p in listed.parts],
        stored=True,
        unread=len(trusted - reread),
    )


def _part(
    listing: Listing,
    file: SourceFile,
    store: ContentStore,
    cache: StatCache,
    block_bytes: int,
    types: dict[str, pa.DataType],
    others: int = 0,
    sample_rows: int = SAMPLE_ROWS,
) -> dict:
    """FILE's part: from the stat cache when the file and both its objects are unchanged, else read,
    and summarised in the same pass (the table has at least OTHERS rows besides this file's)."""
    known = _cached(store, cache, file, types)
    if known is not None:
        return known
    ingested = ingest(
        file.url,
        workdir_for(store),
        listing.credentials,
        block_bytes=block_bytes,
        sample_rows=0,
        constants=listing.constants(file),
        types=types,
        summarize=lambda schema: Summarizer(schema, others, sample_rows),
    )
    try:
        schema = pq.read_schema(ingested.path)
    except BaseException:
        os.unlink(ingested.path)
        raise
    return {
        "part": ingested.digest.hex,
        "rows": ingested.rows,
        "size": ingested.size,
        "schema": [[f.name, str(f.type)] for f in schema],
        "notes": ingested.notes,
        "pending": ingested.path,  # the part, written but not yet stored (_commit)
        "key": _key(cache, file, types),
        "summary": ingested.summary,
    }


def _key(cache: StatCache, file: SourceFile, types: dict[str, pa.DataType]) -> str | None:
    how = {"partition": file.partition, "types": {k: str(t) for k, t in sorted(types.items())}}
    return cache.key(file.url, file.stamp, how)


def _cached(
    store: ContentStore, cache: StatCache, file: SourceFile, types: dict[str, pa.DataType]
) -> dict | None:
    """FILE's part from the stat cache, when the file and both its objects are unchanged."""
    known = cache.get(_key(cache, file, types))
    if known and store.exists(Digest(known["part"])) and store.exists(Digest(known["raw"])):
        return known
    return None


def _commit(
    listing: Listing,
    file: SourceFile,
    entry: dict,
    store: ContentStore,
    cache: StatCache,
) -> None:
    """Store a file read in this run: its raw bytes (for reproduction) and its part; remember them.
    (Its summary was kept before, cut at the whole table's sample threshold: once, not again by
    _describe.)"""
    entry["raw"] = datasets.store_source(store, file.url, listing.credentials).digest.hex
    store.put_file(entry.pop("pending"), Digest(entry["part"]), move=True)
    cache.put(entry.pop("key"), entry)


def _discard(entry: dict) -> None:
    path = entry.pop("pending", None)
    if path and os.path.exists(path):
        os.unlink(path)


def _joined_types(listing: Listing, entries: dict[str, dict]) -> dict[str, pa.DataType]:
    """Each column's type joined over every file that has it, where they differ: any types of CSV
    files (text read as numbers in one file, text in another, is text), and numbers of Parquet files
    (pandas writes a whole-number column as int64, and as double once it holds a NaN: a folder of
    daily files was refused for that). Other Parquet differences stay refused (_check_schemas)."""
    if listing.fmt not in ("csv", "tsv", "parquet"):
        return {}
    seen: dict[str, set[str]] = {}
    for file in listing.files:
        for name, text in entries[file.relative]["schema"]:
            seen.setdefault(name, set()).add(text)
    wider = {}
    for name, texts in seen.items():
        if len(texts) > 1:
            if listing.fmt == "parquet" and not all(_is_number(text) for text in texts):
                continue
            joined = pa.null()
            for text in sorted(texts):
                joined = join_types(joined, pa.type_for_alias(text))
            wider[name] = joined
    return wider


def _is_number(text: str) -> bool:
    try:
        kind = pa.type_for_alias(text)
    except (ValueError, KeyError):  # timestamp[us, tz=UTC] and other parameterised types
        return False
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _check_schemas(listing: Listing, entries: dict[str, dict]) -> None:
    first = listing.files[0].relative
    expected = dict(entries[first]["schema"])
    for file in listing.files[1:]:
        schema = dict(entries[file.relative]["schema"])
        if schema == expected:
            continue
        missing = [n for n in expected if n not in schema]
        extra = [n for n in schema if n not in expected]
        if missing:
            how = f"it has no column {missing[0]!r}"
        elif extra:
            how = f"it has a column {extra[0]!r} that {first!r} has not"
        elif list(schema) != list(expected):
            how = f"its columns are in another order ({', '.join(schema)})"
        else:
            name = next(n for n in expected if schema[n] != expected[n])
            how = f"column {name!r} is {schema[name]} there but {expected[name]} in {first!r}"
        raise DataError(
            f"{listing.shown!r}: {file.relative!r} does not have the schema of {first!r}: {how}; "
            "the files of one dataset must share their columns"
        )


def _describe(store: ContentStore, listed: manifest.Manifest, sample_rows: int, summaries: Summaries):
    """The whole table's profile and validation sample, from the parts' summaries: exact counts
    merged, the sample the rows of every part below one key threshold (part_summaries)."""
    parts: dict[str, list[Column]] = {}
    kept, sums = [], []
    below = threshold(listed.rows, sample_rows)
    for index, part in enumerate(listed.parts):
        summary = summaries.of(store, part.digest, below)
        sums.append((summary.rows, summary.sums))
        for name, column in summary.columns.items():
            parts.setdefault(name, []).append(column)
        table = summary.kept
        table = table.filter(up_to(table["__key"], below))
        kept.append(table.append_column("__part", pa.array(np.full(table.num_rows, index), pa.int64())))
    columns = {name: Column.merged(each) for name, each in parts.items()}
    sample = pa.concat_tables(kept)
    sample = sample.take(pc.sort_indices(sample, [("__part", "ascending"), ("__row", "ascending")]))
    frame = sample.drop_columns(["__key", "__row", "__part"]).to_pandas()
    if listed.rows <= sample_rows:
        profile, validated_on = datasets.profile_of(frame), "all rows"
    else:
        profile = finish_profile(datasets.profile_of(frame), columns, listed.rows, len(frame))
        validated_on = f"a seeded sample of {len(frame):,} of {listed.rows:,} rows"
    profile["fingerprint"] = fingerprint(sums, listed.schema)
    return profile, frame, validated_on
