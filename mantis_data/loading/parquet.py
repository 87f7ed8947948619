"""Parquet shards: memory-mapped files decoded one row group at a time into an LRU cache."""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ReleaseError
from ..schema import IMAGE_DTYPE, IMAGE_SHAPES
from .pages import image_values
from .shards import Shard
from .tarindex import EBV_FIELDS, samples_digest


def _array3d_values(col, n: int, field: str, path: str) -> np.ndarray:
    """(n, *shape) float32 view of an Array3D (or nested list) column's values buffer, zero-copy."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    vals = arr
    for _ in range(3):
        if vals.null_count:
            raise ReleaseError(f"{path}: column {field} has null images (corrupt shard?)")
        vals = vals.flatten()
    expected = n * int(np.prod(IMAGE_SHAPES[field]))
    if len(vals) != expected:
        raise ReleaseError(f"{path}: column {field} holds {len(vals)} values for {n} rows, expected {expected}")
    out = vals.to_numpy(zero_copy_only=True)
    if out.dtype != IMAGE_DTYPE:
        raise ReleaseError(f"{path}: column {field} is {out.dtype}, expected float32")
    return out.reshape(n, *IMAGE_SHAPES[field])


class ParquetReader:
    """Memory-mapped Parquet shards of a split, decoded one row group at a time into an LRU cache."""

    SCALAR_SHARDS = 64
    """Shards whose keys, z and E(B-V) are kept decoded (a few hundred kB each)."""

    def __init__(self, shards: list[Shard], cache_row_groups: int, verify: str = "size"):
        import pyarrow.parquet as pq

        self.shards = shards
        self.cache_row_groups = max(1, int(cache_row_groups))
        sizes: list[int] = []
        self.unit_shard: list[int] = []
        self.unit_rg: list[int] = []
        for i, shard in enumerate(shards):
            if verify != "none":
                check_size(shard)
            try:
                meta = pq.ParquetFile(shard.location, memory_map=True).metadata
            except Exception as exc:  # pyarrow raises several types for corrupt files
                raise ReleaseError(f"{shard.location}: not a readable Parquet shard ({exc}); re-download it") from exc
            if meta.num_rows != shard.samples:
                raise ReleaseError(f"{shard.location}: holds {meta.num_rows} rows, the manifest says {shard.samples}")
            if verify != "none":
                check_parquet_shard(shard)
            for rg in range(meta.num_row_groups):
                sizes.append(meta.row_group(rg).num_rows)
                self.unit_shard.append(i)
                self.unit_rg.append(rg)
        self.unit_sizes = np.asarray(sizes, dtype=np.int64)
        self.shard_first_unit = [self.unit_shard.index(i) for i in range(len(shards))]
        self.unit_starts = np.concatenate([[0], np.cumsum(self.unit_sizes)]).astype(np.int64)
        self._files: dict[int, Any] = {}
        self._maps: dict[int, tuple] = {}
        self._cache: OrderedDict = OrderedDict()
        self._scalar_cache: OrderedDict = OrderedDict()
        self._pid = os.getpid()
        self.raw_pages = True  # read image values straight from raw pages when the shard has them (pages.py)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"], state["_maps"], state["_cache"], state["_pid"] = {}, {}, OrderedDict(), -1
        state["_scalar_cache"] = OrderedDict()
        return state

    def _file(self, shard_id: int):
        import pyarrow.parquet as pq

        if self._pid != os.getpid():
            self._files, self._maps, self._cache, self._pid = {}, {}, OrderedDict(), os.getpid()
            self._scalar_cache = OrderedDict()
        f = self._files.get(shard_id)
        if f is None:
            path = self.shards[shard_id].location
            try:
                f = pq.ParquetFile(path, memory_map=True)
            except Exception as exc:
                raise ReleaseError(f"{path}: not a readable Parquet shard ({exc}); re-download it") from exc
            self._files[shard_id] = f
        return f

    def unit(self, u: int, images: tuple[str, ...]) -> dict:
        """Decoded row group ``u`` (global row-group number): arrays per image field, z, ebv, keys."""
        key = (u, images)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        shard_id, rg = self.unit_shard[u], self.unit_rg[u]
        path = self.shards[shard_id].location
        n = int(self.unit_sizes[u])
        raw = {f: self._raw_images(shard_id, rg, f, n) for f in images}
        decode = [f for f in images if raw[f] is None]  # not raw pages (another writer): pyarrow decodes them
        table = self._read(shard_id, rg, decode) if decode else None
        out = {f: raw[f] if raw[f] is not None else _array3d_values(table.column(f), n, f, path) for f in images}
        sc = self._scalars(shard_id)  # the whole shard's keys, z and ebv, read once
        lo = int(self.unit_starts[u] - self.unit_starts[self.shard_first_unit[shard_id]])
        out["z"], out["ebv"], out["keys"] = sc["z"][lo : lo + n], sc["ebv"][lo : lo + n], sc["keys"][lo : lo + n]
        self._cache[key] = out
        while len(self._cache) > self.cache_row_groups:
            self._cache.popitem(last=False)
        return out

    def _read(self, shard_id: int, rg: int | None, columns: list[str]):
        """pyarrow table of some columns of one row group (``rg`` None: the whole shard)."""
        path = self.shards[shard_id].location
        f = self._file(shard_id)
        try:
            if rg is None:
                table = f.read(columns=columns, use_threads=False)
            else:
                table = f.read_row_group(rg, columns=columns, use_threads=False)
        except Exception as exc:
            raise ReleaseError(f"{path}: cannot decode {columns} ({exc}); the shard is corrupt, re-download it") from exc
        return table

    def _scalars(self, shard_id: int) -> dict:
        """keys, z, ebv of every row of a shard (an LRU of ``SCALAR_SHARDS`` shards)."""
        hit = self._scalar_cache.get(shard_id)
        if hit is not None:
            self._scalar_cache.move_to_end(shard_id)
            return hit
        table = self._read(shard_id, None, ["target_id", "z", *EBV_FIELDS])
        if table.num_rows != self.shards[shard_id].samples:
            raise ReleaseError(f"{self.shards[shard_id].location}: holds {table.num_rows} rows, the manifest says "
                               f"{self.shards[shard_id].samples}")
        out = {
            "z": table.column("z").to_numpy().astype(np.float64, copy=False),
            "ebv": np.stack([table.column(k).to_numpy(zero_copy_only=False).astype(np.float64) for k in EBV_FIELDS], 1),
            "keys": table.column("target_id").to_pylist(),
        }
        self._scalar_cache[shard_id] = out
        while len(self._scalar_cache) > self.SCALAR_SHARDS:
            self._scalar_cache.popitem(last=False)
        return out

    def _raw_images(self, shard_id: int, rg: int, field: str, n: int) -> np.ndarray | None:
        """(n, *shape) float32 view of an image column's raw page values, or None (then pyarrow decodes)."""
        if not self.raw_pages:
            return None
        f = self._file(shard_id)
        maps = self._maps.get(shard_id)
        if maps is None:
            with open(self.shards[shard_id].location, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            leaf = {f.metadata.schema.column(j).path.split(".")[0]: j for j in range(f.metadata.num_columns)}
            maps = self._maps[shard_id] = (np.frombuffer(mm, dtype=np.uint8), leaf)
        buf, leaf = maps
        col = f.metadata.row_group(rg).column(leaf[field])
        if col.compression != "UNCOMPRESSED":
            return None
        start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        count = n * int(np.prod(IMAGE_SHAPES[field]))
        values = image_values(buf, int(start), int(col.total_compressed_size), count)
        return None if values is None else values.reshape(n, *IMAGE_SHAPES[field])

    def locate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row group, row within it) of global indices."""
        u = np.searchsorted(self.unit_starts, idx, side="right") - 1
        return u, idx - self.unit_starts[u]


def check_size(shard: Shard) -> None:
    """A local shard's size against the MANIFEST (``ReleaseError`` naming it: truncated or replaced)."""
    size = os.path.getsize(shard.location)
    if shard.bytes is not None and size != shard.bytes:
        raise ReleaseError(
            f"{shard.location}: {size} bytes, the MANIFEST says {shard.bytes} (truncated or replaced shard; re-download it)"
        )


def check_parquet_shard(shard: Shard) -> None:
    """Size, keys and redshifts of a local Parquet shard against the MANIFEST (``ReleaseError`` naming it)."""
    import pyarrow.parquet as pq

    check_size(shard)
    if not shard.digest:
        return
    try:
        t = pq.read_table(shard.location, columns=["target_id", "z"], memory_map=True)
    except Exception as exc:
        raise ReleaseError(f"{shard.location}: cannot read columns target_id, z ({exc}); re-download it") from exc
    if samples_digest(t.column("target_id").to_pylist(), t.column("z").to_numpy()) != shard.digest:
        raise ReleaseError(
            f"{shard.location}: its sample keys or redshifts differ from the MANIFEST's "
            "(replaced, swapped or edited shard; re-download it)"
        )
