"""What one request body may cost the model server, decided before it is parsed.

Three bounds, shared by /predict, V2 ``infer`` and /feedback:

- **Bytes**: a body is read as it arrives and refused (413) once it passes its endpoint's limit.
- **Objects**: a JSON parse makes one Python object per value, ~10x the bytes of a dense body
  (a 59 MB V2 body of numbers grew the server by 912 MB). Before parsing a body over
  ``COUNT_ABOVE`` bytes, its commas and opening brackets outside strings are counted with numpy:
  every value but a container's first follows a comma, every container opens with a bracket, so
  their sum bounds the objects a parse would make, whatever the shape. Above what the endpoint's
  row limit allows, 413 without parsing.
- **Concurrency**: at most ``slots`` bodies over ``LARGE_BYTES`` are read, parsed and answered at
  once (``LargeBodies``); the others wait before their next chunk is read, holding at most
  ``LARGE_BYTES`` each, their senders held back by TCP. A slow sender of a large body keeps its slot
  for as long as it sends: small requests never wait for a slot.

Parsing is orjson's only: its depth limit (1,024) and its refusal of lone surrogates, invalid UTF-8,
NaN and Infinity make every malformed body a 400. The one exception is NaN, which Triton's client
writes for a missing FP64 value (Python's ``json.dumps``): a body orjson refuses that holds ``NaN``
outside strings is read again with those tokens as ``null`` (``nan_as_null``), never with the
standard library's parser (3 s of GIL for a 59 MB body, and a RecursionError on deep nesting).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson

from provenflow.serving.inputs import Problem, RequestError, string_quotes

LARGE_BYTES = 1024 * 1024  # a body past this holds one of the server's large-body slots
COUNT_ABOVE = 1024 * 1024  # smaller bodies make at most a few tens of MB of objects: not worth the scan
_BLOCK = 1024 * 1024
_NAN = re.compile(rb"NaN")


class LargeBodies:
    """At most ``slots`` large bodies in the server at once (read, parsed, answered)."""

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self._free = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def reading(self, request: Any, limit: int) -> AsyncIterator[list[bytearray]]:
        """The body of REQUEST (a Starlette request) in a one-item list, refused with 413 past
        ``limit`` bytes, with or without a Content-Length; a large one holds a slot until the
        ``async with`` block ends. In a list so that the parser can pop it: nothing else keeps a
        60 MB body alive through prediction."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(
                [Problem(f"the request body has {declared} bytes, more than the limit of {limit}")], 413
            )
        held = False
        try:
            if declared and declared.isdigit() and int(declared) > LARGE_BYTES:
                await self._free.acquire()  # before reading anything: a waiting body costs nothing
                held = True
            body = bytearray()
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise RequestError(
                        [
                            Problem(
                                f"the request body is more than the limit of {limit} bytes; send smaller batches"
                            )
                        ],
                        413,
                    )
                if not held and len(body) + len(chunk) > LARGE_BYTES:  # chunked, no length given
                    await self._free.acquire()
                    held = True
                body += chunk
            bodies = [body]
            del body
            yield bodies
        finally:
            if held:
                self._free.release()


def values_in(body: bytes | bytearray, stop: int | None = None) -> int:
    """Commas and opening brackets outside JSON strings: a bound on the values a parse of BODY
    makes. One 1 MB block at a time (its quotes, the string state carried over), so a dense body
    costs a few MB of arrays and is refused after its first blocks once the count passes ``stop``."""
    data = np.frombuffer(body, dtype=np.uint8)
    count, inside, escapes = 0, 0, 0
    for block in range(0, len(data), _BLOCK):
        part = data[block : block + _BLOCK]
        quotes = np.flatnonzero(part == ord('"'))
        escaped = quotes[data[np.maximum(quotes + block - 1, 0)] == ord("\\")] if len(quotes) else quotes
        if len(escaped):
            escapes += len(escaped)
            if escapes > _MAX_ESCAPES:  # not worth the loop: count every comma and bracket from here
                inside = -1
            else:
                real = [q for q in escaped.tolist() if _backslashes_before(body, q + block) % 2 == 0]
                quotes = np.setdiff1d(quotes, np.setdiff1d(escaped, real))
        marks = np.flatnonzero((part == ord(",")) | ((part | 0x20) == ord("{")))  # [ is { minus 0x20
        if inside < 0:
            count += len(marks)
        else:
            count += int(np.count_nonzero((np.searchsorted(quotes, marks) + inside) % 2 == 0))
            inside = (inside + len(quotes)) % 2
        if stop is not None and count > stop:
            break
    return count


def _backslashes_before(body: bytes | bytearray, position: int) -> int:
    count = 0
    while position - count - 1 >= 0 and body[position - count - 1] == 0x5C:
        count += 1
    return count


_MAX_ESCAPES = 10_000


def loads_within(body: bytes | bytearray, most_values: int, what: str, nan_is_null: bool = False) -> Any:
    """BODY parsed, or RequestError: 413 when it holds more than ``most_values`` values (checked
    before parsing, for bodies over ``COUNT_ABOVE`` bytes), 400 when it is not JSON. WHAT says what
    the limit counts ("rows of 7 columns"). ``nan_is_null``: bare NaN tokens read as null."""
    strings: np.ndarray | None = None
    if len(body) > COUNT_ABOVE:
        found = values_in(body, stop=most_values)
        if found > most_values:
            raise RequestError(
                [Problem(f"the request has {found} values or more, more than {what} can have; split it")], 413
            )
        strings = string_quotes(body)  # within the budget: its strings are no more than its values
        if strings is not None:
            body = compact(body, strings)  # before parsing: orjson skipped 60 MB of blanks in 355 ms of GIL
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    if nan_is_null and _NAN.search(body) is not None:
        rewritten = nan_as_null(body, strings if strings is not None else string_quotes(body))
        if rewritten is not None:
            try:
                return orjson.loads(rewritten)
            except orjson.JSONDecodeError as exc:
                error = exc
    raise RequestError([Problem(f"the request body is not valid JSON: {error}")], 400) from None


_BLANKS = np.zeros(256, dtype=bool)
_BLANKS[[ord(" "), ord("\n"), ord("\r"), ord("\t")]] = True


def compact(body: bytes | bytearray, strings: np.ndarray) -> bytes:
    """BODY without the blanks outside strings (the same JSON), built 1 MB at a time so that the
    GIL, which the event loop needs, changes hands between blocks. ``strings``: ``string_quotes``."""
    data = np.frombuffer(body, dtype=np.uint8)
    parts, inside = [], 0
    for block in range(0, len(data), _BLOCK):
        part = data[block : block + _BLOCK]
        toggles = np.zeros(len(part), dtype=np.uint8)
        first, last = np.searchsorted(strings, (block, block + len(part)))
        toggles[strings[first:last] - block] = 1
        parity = (
            np.cumsum(toggles, dtype=np.uint8) + inside
        ) & 1  # 1 inside a string (and its opening quote)
        parts.append(part[~(_BLANKS[part] & (parity == 0))].tobytes())
        inside = int(parity[-1]) if len(parity) else inside
    return b"".join(parts)


def nan_as_null(body: bytes | bytearray, strings: np.ndarray | None) -> bytes | None:
    """BODY with every ``NaN`` outside strings written ``null``; None when the strings are unknown."""
    if strings is None:
        return None
    starts = np.fromiter((m.start() for m in _NAN.finditer(body)), dtype=np.int64)
    outside = starts[np.searchsorted(strings, starts, "right") % 2 == 0]
    if not len(outside):
        return None
    view = memoryview(body)
    bounds = [0, *np.repeat(outside, 2).tolist(), len(body)]
    pieces = [view[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]
    pieces = [bytes(p) if i == 0 else bytes(p[3:]) for i, p in enumerate(pieces)]
    return b"null".join(pieces)
