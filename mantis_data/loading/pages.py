"""Zero-copy reads of the Array3D image columns of a Parquet shard, straight from the pages' value bytes.

Arrow decodes a list column through its repetition and definition levels, one pair per float: ~1 ms per
sample for the 5 x 170 x 170 PS1 cube, ten times a copy of its bytes (``benchmarks/loader.py``). The
release writes its image columns as uncompressed, PLAIN-encoded data pages (version 2, no nulls), where
a page is its Thrift header, the level bytes (whose lengths the header gives) and then the float32 values
themselves. ``image_values`` walks the page headers of one column chunk (Thrift compact protocol, the few
fields needed) and returns the values as a ``numpy`` view of the memory-mapped file (one page per chunk,
as the builder writes) or a concatenation of the pages' value bytes. Anything else (compressed or
dictionary pages, version 1 pages, nulls) returns None and the caller decodes with pyarrow: the schema
and what Hugging Face ``datasets`` reads are unchanged.
"""

from __future__ import annotations

import numpy as np

_DATA_PAGE_V2 = 3
_DICTIONARY_PAGE = 2
_PLAIN = 0


class _Compact:
    """The few Thrift compact-protocol reads a Parquet ``PageHeader`` needs."""

    def __init__(self, buf, pos: int):
        self.buf, self.pos = buf, pos

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, ftype: int) -> None:
        if ftype in (1, 2):  # bool in the field header
            return
        if ftype == 3:
            self.pos += 1
        elif ftype in (4, 5, 6):
            self.varint()
        elif ftype == 7:
            self.pos += 8
        elif ftype == 8:
            self.pos += self.varint()
        elif ftype in (9, 10):
            head = self.buf[self.pos]
            self.pos += 1
            size, etype = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.skip(etype)
        elif ftype == 12:
            self.struct(lambda fid, t: self.skip(t))
        else:
            raise ValueError(f"thrift type {ftype} not expected in a page header")

    def struct(self, on_field) -> None:
        last = 0
        while True:
            head = self.buf[self.pos]
            self.pos += 1
            if head == 0:
                return
            delta, ftype = head >> 4, head & 0x0F
            fid = last + delta if delta else self.zigzag()
            last = fid
            on_field(fid, ftype)


def _page_header(buf, pos: int) -> tuple[dict, int]:
    """(fields of the PageHeader at ``pos`` that matter here, position after it)."""
    r = _Compact(buf, pos)
    h: dict = {}
    v2: dict = {}

    def v2_field(fid: int, t: int) -> None:
        if fid in (1, 2, 3, 4, 5, 6) and t == 5:
            v2[fid] = r.zigzag()
        elif fid == 7 and t in (1, 2):
            v2[7] = t == 1
        else:
            r.skip(t)

    def field(fid: int, t: int) -> None:
        if fid in (1, 2, 3) and t == 5:
            h[fid] = r.zigzag()
        elif fid == 8 and t == 12:
            r.struct(v2_field)
        else:
            r.skip(t)

    r.struct(field)
    h["v2"] = v2
    return h, r.pos


def image_values(buf: np.ndarray, start: int, length: int, n_values: int) -> np.ndarray | None:
    """float32 values of one column chunk (``buf`` the file's bytes as uint8) or None if not raw pages."""
    end, pos, parts, got = start + length, start, [], 0
    view = memoryview(buf)  # indexing gives Python ints (numpy uint8 scalars would overflow)
    try:
        while pos < end and got < n_values:
            h, body = _page_header(view, pos)
            size = h.get(3)
            if size is None:
                return None
            if h.get(1) == _DICTIONARY_PAGE:
                return None
            v2 = h["v2"]
            if h.get(1) != _DATA_PAGE_V2 or v2.get(4) != _PLAIN or v2.get(2, 0) or v2.get(7, True):
                return None
            skip = v2.get(5, 0) + v2.get(6, 0)
            nbytes = size - skip
            count = v2.get(1, 0)
            if nbytes != 4 * count:
                return None
            parts.append(buf[body + skip : body + size])
            got += count
            pos = body + size
    except (IndexError, ValueError):
        return None
    if got != n_values:
        return None
    raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return raw.view("<f4")
