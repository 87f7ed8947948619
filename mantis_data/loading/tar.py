"""WebDataset tar shards: a per-sample offset index (header scan), copies out of a memory map, URL streaming."""

from __future__ import annotations

import ast
import json
import mmap
import os
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ReleaseError
from ..schema import IMAGE_DTYPE, IMAGE_FIELDS, IMAGE_SHAPES
from .shards import EBV_FIELDS, Shard

_BLOCK = 512




def _tar_number(field: bytes, path: str, pos: int) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ReleaseError(f"{path}: corrupt tar header at byte {pos} (bad number {field!r})") from None


def _parse_header(block: bytes, path: str, pos: int) -> tuple[str, int, bytes]:
    """(name, size, typeflag) of one 512-byte tar header, its checksum verified."""
    stored = _tar_number(block[148:156], path, pos)
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    if stored != computed:
        raise ReleaseError(
            f"{path}: corrupt or truncated WebDataset shard (bad tar header checksum at byte {pos}); "
            "re-download it or check the release with `mantis-data verify`"
        )
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape"), _tar_number(block[124:136], path, pos), block[156:157]


def _parse_pax(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        record = data[space + 1 : pos + length - 1]  # drop the trailing newline
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _padded(n: int) -> int:
    return (n + _BLOCK - 1) // _BLOCK * _BLOCK


def _split_member(name: str) -> tuple[str, str]:
    """(sample key, field) of a WebDataset member: the key ends at the first dot of the base name."""
    folder, _, base = name.rpartition("/")
    stem, _, field = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), field


def _npy_header(head: bytes, path: str, member: str, field: str) -> int:
    """Length of the ``.npy`` header of member ``member`` (raises if dtype or shape are not the schema's)."""
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise ReleaseError(f"{path}: member {member} is not a .npy array (corrupt shard?)")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    else:
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    if len(head) < start + hlen:
        return -(start + hlen)  # caller reads more
    try:
        meta = ast.literal_eval(head[start : start + hlen].decode("latin1"))
    except (ValueError, SyntaxError):
        raise ReleaseError(f"{path}: member {member} has an unreadable .npy header") from None
    if (
        np.dtype(meta.get("descr")) != np.dtype(IMAGE_DTYPE).newbyteorder("<")
        or meta.get("fortran_order")
        or tuple(meta.get("shape", ())) != IMAGE_SHAPES[field]
    ):
        raise ReleaseError(
            f"{path}: member {member} holds {meta.get('descr')} {meta.get('shape')}, expected "
            f"little-endian float32 {IMAGE_SHAPES[field]} in C order"
        )
    return start + hlen


@dataclass
class TarIndex:
    """Byte offsets of every sample's arrays in one tar shard, and its scalars."""

    path: str
    keys: list[str]
    offsets: np.ndarray  # (n, len(IMAGE_FIELDS)) int64: file offset of each array's first data byte
    z: np.ndarray  # (n,) float64
    ebv: np.ndarray  # (n, 2) float64, NaN where null

    def __len__(self) -> int:
        return len(self.keys)


_NBYTES = {f: int(np.prod(IMAGE_SHAPES[f])) * np.dtype(IMAGE_DTYPE).itemsize for f in IMAGE_FIELDS}


def _sample_meta(raw: bytes, path: str, member: str) -> tuple[float, float, float]:
    try:
        rec = json.loads(raw)
        z = rec.get("z")
        e = [rec.get(k) for k in EBV_FIELDS]
    except (ValueError, AttributeError):
        raise ReleaseError(f"{path}: member {member} is not valid JSON (corrupt shard?)") from None
    return (
        float("nan") if z is None else float(z),
        float("nan") if e[0] is None else float(e[0]),
        float("nan") if e[1] is None else float(e[1]),
    )


class _SampleGrouper:
    """Collects tar members into samples (members of one key are adjacent), checking each sample's fields."""

    def __init__(self, path: str):
        self.path = path
        self.keys: list[str] = []
        self.offsets: list[list[int]] = []
        self.meta: list[tuple[float, float, float]] = []
        self._cur: str | None = None
        self._fields: dict[str, Any] = {}

    def add(self, key: str, field: str, value: Any) -> None:
        if key != self._cur:
            self.close()
            self._cur = key
        self._fields[field] = value

    def close(self) -> None:
        if self._cur is None:
            return
        want = [f"{f}.npy" for f in IMAGE_FIELDS] + ["json"]
        missing = [w for w in want if w not in self._fields]
        if missing:
            raise ReleaseError(f"{self.path}: sample {self._cur!r} lacks members {missing} (corrupt or truncated shard?)")
        self.keys.append(self._cur)
        self.offsets.append([self._fields[f"{f}.npy"] for f in IMAGE_FIELDS])
        self.meta.append(self._fields["json"])
        self._cur, self._fields = None, {}


def scan_tar(path: str) -> TarIndex:
    """Parse a local tar shard's headers (PAX, GNU long names) into a per-sample offset index."""
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb", buffering=0)
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot open WebDataset shard ({exc})") from exc
    group = _SampleGrouper(path)
    with fh:
        fd = fh.fileno()
        pos, pax, longname = 0, {}, None
        while True:
            if pos + _BLOCK > size:
                raise ReleaseError(f"{path}: truncated WebDataset shard (no end-of-archive after byte {pos}); re-download it")
            chunk = os.pread(fd, _BLOCK + 256, pos)
            block = chunk[:_BLOCK]
            if not any(block):
                break
            name, msize, typeflag = _parse_header(block, path, pos)
            data = pos + _BLOCK
            if typeflag in (b"x", b"g", b"L", b"K"):
                raw = os.pread(fd, msize, data)
                if typeflag == b"x":
                    pax.update(_parse_pax(raw))
                elif typeflag == b"L":
                    longname = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                pos = data + _padded(msize)
                continue
            name = pax.get("path", longname or name)
            msize = int(pax.get("size", msize))
            pax, longname = {}, None
            if data + msize > size:
                raise ReleaseError(
                    f"{path}: truncated WebDataset shard (member {name} needs bytes up to {data + msize}, "
                    f"the file has {size}); re-download it"
                )
            if typeflag in (b"0", b"\0", b"7"):
                key, field = _split_member(name)
                if field == "json":
                    group.add(key, field, _sample_meta(os.pread(fd, msize, data), path, name))
                elif field.endswith(".npy") and field[:-4] in IMAGE_FIELDS:
                    head = chunk[_BLOCK:]
                    hlen = _npy_header(head, path, name, field[:-4])
                    if hlen < 0:
                        hlen = _npy_header(os.pread(fd, -hlen, data), path, name, field[:-4])
                    if msize - hlen != _NBYTES[field[:-4]]:
                        raise ReleaseError(f"{path}: member {name} has {msize - hlen} data bytes, expected {_NBYTES[field[:-4]]}")
                    group.add(key, field, data + hlen)
            pos = data + _padded(msize)
    group.close()
    meta = np.asarray(group.meta, dtype=np.float64).reshape(-1, 3)
    return TarIndex(
        path=path,
        keys=group.keys,
        offsets=np.asarray(group.offsets, dtype=np.int64).reshape(-1, len(IMAGE_FIELDS)),
        z=meta[:, 0].copy(),
        ebv=meta[:, 1:3].copy(),
    )


_TAR_INDEX: dict[tuple[str, int, int], TarIndex] = {}


def shard_index(shard: Shard) -> TarIndex:
    """The offset index of a local tar shard (parsed once per process), checked against the manifest."""
    st = os.stat(shard.location)
    key = (shard.location, st.st_size, st.st_mtime_ns)
    index = _TAR_INDEX.get(key)
    if index is None:
        index = scan_tar(shard.location)
        if len(index) != shard.samples:
            raise ReleaseError(
                f"{shard.location}: holds {len(index)} samples, the manifest says {shard.samples} "
                "(truncated or replaced shard; re-download it)"
            )
        _TAR_INDEX[key] = index
    return index


def _read_exact(f, n: int, what: str) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        r = f.readinto(view[got:])
        if not r:
            raise ReleaseError(f"{what}: truncated WebDataset shard (stream ended {n - got} bytes early)")
        got += r
    return bytes(buf)


def _skip(f, n: int, what: str) -> None:
    while n > 0:
        chunk = f.read(min(n, 1 << 20))
        if not chunk:
            raise ReleaseError(f"{what}: truncated WebDataset shard (stream ended early)")
        n -= len(chunk)


def stream_tar(url: str, first: int, images: tuple[str, ...]) -> Iterator[tuple[int, str, dict, tuple]]:
    """Yield (local index, key, {field: array}, (z, ebv_csfd, ebv_planck)) for samples >= ``first`` of a shard URL."""
    try:
        f = urllib.request.urlopen(url, timeout=60)
    except OSError as exc:
        raise ReleaseError(f"{url}: cannot open WebDataset shard ({exc})") from exc
    with f:
        pos, pax, longname = 0, {}, None
        cur_key, cur, count = None, {}, -1
        while True:
            block = f.read(_BLOCK)
            if len(block) < _BLOCK or not any(block):
                if len(block) < _BLOCK and cur_key is None and count < 0:
                    raise ReleaseError(f"{url}: empty or truncated WebDataset shard")
                if len(block) < _BLOCK:
                    raise ReleaseError(f"{url}: truncated WebDataset shard (no end-of-archive)")
                break
            name, msize, typeflag = _parse_header(block, url, pos)
            pos += _BLOCK
            if typeflag in (b"x", b"g", b"L", b"K"):
                raw = _read_exact(f, msize, url)
                _skip(f, _padded(msize) - msize, url)
                pos += _padded(msize)
                if typeflag == b"x":
                    pax.update(_parse_pax(raw))
                elif typeflag == b"L":
                    longname = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            name = pax.get("path", longname or name)
            msize = int(pax.get("size", msize))
            pax, longname = {}, None
            key, field = _split_member(name)
            if key != cur_key:
                if cur_key is not None and count >= first:
                    yield count, cur_key, cur.get("arrays", {}), cur.get("meta")
                cur_key, cur, count = key, {}, count + 1
            wanted = count >= first and (field == "json" or (field.endswith(".npy") and field[:-4] in images))
            if typeflag in (b"0", b"\0", b"7") and wanted:
                raw = _read_exact(f, msize, url)
                if field == "json":
                    cur["meta"] = _sample_meta(raw, url, name)
                else:
                    hlen = _npy_header(raw[:4096], url, name, field[:-4])
                    cur.setdefault("arrays", {})[field[:-4]] = np.frombuffer(raw, dtype=IMAGE_DTYPE, offset=hlen).reshape(
                        IMAGE_SHAPES[field[:-4]]
                    )
                _skip(f, _padded(msize) - msize, url)
            else:
                _skip(f, _padded(msize), url)
            pos += _padded(msize)
        if cur_key is not None and count >= first:
            yield count, cur_key, cur.get("arrays", {}), cur.get("meta")


class LocalTarReader:
    """Copies samples of local tar shards out of memory maps by byte offset (the offsets of ``TarIndex``).

    A memory map beats ``os.pread``/``preadv`` here: copying from mapped page-cache pages runs at memcpy
    speed (~18 GB/s measured), while the kernel's copy through ``read`` managed ~7.6 GB/s.
    """

    MAX_OPEN = 256

    def __init__(self, shards: list[Shard]):
        self.shards = shards
        self._maps: OrderedDict = OrderedDict()
        self._index: dict[int, TarIndex] = {}
        self._pid = os.getpid()

    def _shard(self, shard_id: int) -> tuple[TarIndex, np.ndarray]:
        if self._pid != os.getpid():  # forked: map the files again in this process
            self._maps, self._pid = OrderedDict(), os.getpid()
        hit = self._maps.get(shard_id)
        if hit is not None:
            self._maps.move_to_end(shard_id)
            return hit
        shard = self.shards[shard_id]
        index = self._index.get(shard_id)
        if index is None:
            index = self._index[shard_id] = shard_index(shard)
        try:
            with open(shard.location, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"{shard.location}: cannot map WebDataset shard ({exc})") from exc
        data = np.frombuffer(mm, dtype=np.uint8)
        need = max((int(index.offsets[:, k].max()) + _NBYTES[f] for k, f in enumerate(IMAGE_FIELDS)), default=0) if len(index) else 0
        if data.size < need:
            raise ReleaseError(f"{shard.location}: truncated WebDataset shard ({data.size} bytes); re-download it")
        self._maps[shard_id] = (index, data)
        while len(self._maps) > self.MAX_OPEN:
            self._maps.popitem(last=False)
        return index, data

    def read_batch(self, shard_ids: np.ndarray, local: np.ndarray, dst: dict[str, np.ndarray]):
        """Copy samples (shard, local index) into ``dst`` (field -> (n, bytes) uint8 rows); return (keys, z, ebv)."""
        n = len(local)
        keys: list[str] = [""] * n
        z, ebv = np.empty(n), np.empty((n, 2))
        fields = [(out, _FIELD_POS[f], _NBYTES[f]) for f, out in dst.items()]
        for sid in np.unique(shard_ids).tolist():
            index, data = self._shard(sid)
            sel = np.flatnonzero(shard_ids == sid)
            loc = local[sel]
            z[sel], ebv[sel] = index.z[loc], index.ebv[loc]
            for i, j, offs in zip(sel.tolist(), loc.tolist(), index.offsets[loc].tolist(), strict=True):
                keys[i] = index.keys[j]
                for out, k, nb in fields:
                    out[i] = data[offs[k] : offs[k] + nb]
        return keys, z, ebv

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"], state["_pid"] = OrderedDict(), -1
        return state


_FIELD_POS = {f: i for i, f in enumerate(IMAGE_FIELDS)}
