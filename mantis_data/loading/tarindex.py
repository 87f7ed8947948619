"""The offset index of a WebDataset tar shard: where each sample's arrays start, its key, z and E(B-V).

The builder writes one beside each tar (``train-00003.tar`` -> ``train-00003.tar.idx``, listed in the
MANIFEST with its sha256) so that a reader opens a shard without reading its tar headers; shards without
one are scanned (``tar.scan_tar``). The file is compact JSON::

    {"format": "mantis-tar-index", "version": 1, "tar_bytes": <size of the tar>,
     "fields": ["galex", "ps1", "unwise"], "keys": [...], "offsets": [[...], ...],  # first data byte
     "json": [[offset, length], ...], "z": [...], "ebv": [[csfd, planck], ...]}     # null where missing

``samples_digest`` (sha256 over the keys and redshifts, in order) is what the MANIFEST records per shard
(``samples_sha256``) and what the loaders compare at open, so a swapped, replaced or edited shard (or
index) is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np

from ..errors import ReleaseError
from ..schema import IMAGE_DTYPE, IMAGE_FIELDS, IMAGE_SHAPES

INDEX_SUFFIX = ".idx"
"""Appended to a tar shard's file name to name its index."""
INDEX_FORMAT = "webdataset-index"
"""The ``format`` of an index file's MANIFEST entry."""
EBV_FIELDS = ("ebv_csfd", "ebv_planck")
"""The two extinction columns of a sample (mag), in the order of a batch's ``ebv``."""
NBYTES = {f: int(np.prod(IMAGE_SHAPES[f])) * np.dtype(IMAGE_DTYPE).itemsize for f in IMAGE_FIELDS}
"""Data bytes of each image field (float32)."""
_MAGIC = "mantis-tar-index"


@dataclass
class TarIndex:
    """Byte offsets of every sample's arrays in one tar shard, and its scalars."""

    path: str
    keys: list[str]
    offsets: np.ndarray  # (n, len(IMAGE_FIELDS)) int64: file offset of each array's first data byte
    z: np.ndarray  # (n,) float64
    ebv: np.ndarray  # (n, 2) float64, NaN where null
    json_at: np.ndarray | None = None  # (n, 2) int64: offset and length of each sample's JSON member

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def digest(self) -> str:
        """``samples_digest`` of the shard's keys and redshifts."""
        return samples_digest(self.keys, self.z)


def samples_digest(keys: list[str], z) -> str:
    """Hex sha256 over a shard's sample keys and redshifts (float64, in order): what the MANIFEST records."""
    h = hashlib.sha256("\n".join(keys).encode("utf-8"))
    h.update(b"\0")
    values = np.array([np.nan if v is None else v for v in z] if isinstance(z, list) else z, dtype="<f8")
    values[np.isnan(values)] = np.nan  # one NaN bit pattern for missing values, whatever their source
    h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def npy_data_offset(head: bytes, path: str, member: str, field: str) -> int:
    """Bytes before the data in a ``.npy`` member (read with ``numpy.lib.format``), checking dtype and shape."""
    fp = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise ReleaseError(f"{path}: member {member} has an unreadable .npy header ({exc}); corrupt shard?") from None
    if dtype != np.dtype(IMAGE_DTYPE).newbyteorder("<") or fortran or tuple(shape) != IMAGE_SHAPES[field]:
        raise ReleaseError(
            f"{path}: member {member} holds {dtype} {shape}, expected little-endian float32 {IMAGE_SHAPES[field]} in C order"
        )
    return fp.tell()


def sample_meta(raw: bytes, path: str, member: str) -> tuple[float, float, float]:
    """(z, ebv_csfd, ebv_planck) of a sample's JSON member (NaN where null)."""
    try:
        rec = json.loads(raw)
        vals = [rec.get("z"), *(rec.get(k) for k in EBV_FIELDS)]
    except (ValueError, AttributeError):
        raise ReleaseError(f"{path}: member {member} is not valid JSON (corrupt shard?)") from None
    return tuple(float("nan") if v is None else float(v) for v in vals)


def _nulls(a: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in a.tolist()] if a.ndim == 1 else [_nulls(r) for r in a]


def encode_index(index: TarIndex, tar_bytes: int) -> bytes:
    """The index file's bytes (deterministic JSON) for a tar shard of ``tar_bytes`` bytes."""
    doc = {
        "format": _MAGIC,
        "version": 1,
        "tar_bytes": int(tar_bytes),
        "fields": list(IMAGE_FIELDS),
        "keys": list(index.keys),
        "offsets": index.offsets.tolist(),
        "json": index.json_at.tolist() if index.json_at is not None else None,
        "z": _nulls(np.asarray(index.z, dtype=np.float64)),
        "ebv": _nulls(np.asarray(index.ebv, dtype=np.float64).reshape(-1, 2)),
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_index(raw: bytes, path: str, tar_path: str) -> tuple[TarIndex, int]:
    """(index, tar size it was written for) from an index file's bytes; ``ReleaseError`` naming it if unreadable."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != _MAGIC or doc.get("fields") != list(IMAGE_FIELDS):
            raise ValueError("not a Mantis Shrimp tar index of this schema")
        n = len(doc["keys"])
        index = TarIndex(
            path=tar_path,
            keys=[str(k) for k in doc["keys"]],
            offsets=np.asarray(doc["offsets"], dtype=np.int64).reshape(n, len(IMAGE_FIELDS)),
            z=np.asarray([np.nan if v is None else v for v in doc["z"]], dtype=np.float64).reshape(n),
            ebv=np.asarray([[np.nan if v is None else v for v in r] for r in doc["ebv"]], dtype=np.float64).reshape(n, 2),
            json_at=None if doc.get("json") is None else np.asarray(doc["json"], dtype=np.int64).reshape(n, 2),
        )
        return index, int(doc["tar_bytes"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReleaseError(f"{path}: unreadable tar index ({exc}); re-download it or delete it to scan the shard") from None
