"""One Mantis Shrimp sample and its two on-disk encodings.

A sample, in memory, is a dict with the image cubes (``IMAGE_FIELDS``, float32, shapes from
``mantis_data.bands``) and the scalar fields (``SCALAR_FIELDS``). A missing value of a floating-point
field (today only ``ebv_csfd`` / ``ebv_planck``, outside a dust map's footprint) is **NaN in both
encodings**: the JSON member writes the bare token ``NaN`` (read by Python's ``json.loads``, the
``webdataset`` package and the 🤗 Datasets WebDataset builder; not by strict JSON parsers), the Parquet
column stores a NaN value (not a null). So ``load_dataset(...).with_format("torch")`` gives NaN tensors
and a default-collate ``DataLoader`` works on either format. Non-float fields are never missing.

WebDataset encoding (one tar member per field, key = ``target_id``, which has no dots)::

    <target_id>.galex.npy   <target_id>.ps1.npy   <target_id>.unwise.npy   <target_id>.json

Parquet encoding: one row per sample; images as ``datasets.Array3D`` extension columns, scalars as
columns (ra/dec/z float64); ``target_id`` is the first column.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from .bands import SURVEY_ORDER, SURVEYS

IMAGE_FIELDS: tuple[str, ...] = SURVEY_ORDER
"""Image fields of a sample, one cube per survey: ("galex", "ps1", "unwise")."""

IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {s: SURVEYS[s].shape for s in IMAGE_FIELDS}

IMAGE_DTYPE = np.dtype("<f4")

N_PS1 = len(SURVEYS["ps1"].bands)

# name -> (arrow type, HF feature spec as a dict understood by datasets.Features.from_dict, description)
SCALAR_FIELDS: dict[str, tuple[pa.DataType, dict, str]] = {
    "z": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "spectroscopic redshift"),
    "ra": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "right ascension, deg ICRS"),
    "dec": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "declination, deg ICRS"),
    "survey": (pa.string(), {"dtype": "string", "_type": "Value"}, "spectroscopic survey of the redshift"),
    "survey_objid": (pa.string(), {"dtype": "string", "_type": "Value"}, "object id in that survey"),
    "z_conflict": (
        pa.bool_(),
        {"dtype": "bool", "_type": "Value"},
        "a duplicate observation of this galaxy disagrees by more than 0.01(1+z)",
    ),
    "ebv_csfd": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "E(B-V), corrected SFD (Chiang 2023), mag"),
    "ebv_planck": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "E(B-V), Planck thermal dust, mag"),
    "ps1_nan_frac": (
        pa.list_(pa.float32(), N_PS1),
        {"feature": {"dtype": "float32", "_type": "Value"}, "length": N_PS1, "_type": "List"},
        "fraction of NaN pixels per Pan-STARRS band before filling with 0",
    ),
    "ps1_zp": (
        pa.list_(pa.float32(), N_PS1),
        {"feature": {"dtype": "float32", "_type": "Value"}, "length": N_PS1, "_type": "List"},
        "AB zero point per Pan-STARRS band, 25 + 2.5 log10(EXPTIME), mag",
    ),
    "galex_coverage": (
        pa.float32(),
        {"dtype": "float32", "_type": "Value"},
        "fraction of GALEX pixels with data (0 = no GALEX coverage)",
    ),
    "split": (pa.string(), {"dtype": "string", "_type": "Value"}, "train, validation or test"),
    "chunk": (pa.int32(), {"dtype": "int32", "_type": "Value"}, "one of 16 random chunks (0-15)"),
}

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def _array3d_feature(field: str) -> dict:
    return {"shape": list(IMAGE_SHAPES[field]), "dtype": "float32", "_type": "Array3D"}


def webdataset_features():
    """``datasets.Features`` of the WebDataset folder, as the HF WebDataset builder yields samples."""
    import datasets

    spec: dict[str, Any] = {f"{f}.npy": _array3d_feature(f) for f in IMAGE_FIELDS}
    spec["json"] = {"target_id": {"dtype": "string", "_type": "Value"}}
    spec["json"].update({name: hf for name, (_, hf, _) in SCALAR_FIELDS.items()})
    spec["__key__"] = {"dtype": "string", "_type": "Value"}
    spec["__url__"] = {"dtype": "string", "_type": "Value"}
    return datasets.Features.from_dict(spec)


def parquet_features():
    """``datasets.Features`` of the Parquet folder."""
    import datasets

    spec: dict[str, Any] = {"target_id": {"dtype": "string", "_type": "Value"}}
    spec.update({f: _array3d_feature(f) for f in IMAGE_FIELDS})
    spec.update({name: hf for name, (_, hf, _) in SCALAR_FIELDS.items()})
    return datasets.Features.from_dict(spec)


MISSING = math.nan
"""The value of a missing floating-point field in both encodings (see the module docstring)."""


def _is_float(arrow: pa.DataType) -> bool:
    if pa.types.is_fixed_size_list(arrow) or pa.types.is_list(arrow):
        return _is_float(arrow.value_type)
    return pa.types.is_floating(arrow)


def _clean_scalar(value, as_float: bool = False):
    """A plain Python scalar: numpy scalars -> Python, arrays -> lists; with ``as_float`` None/NaN -> NaN."""
    if isinstance(value, np.ndarray):
        return [_clean_scalar(v, as_float) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_clean_scalar(v, as_float) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if as_float:
        return MISSING if value is None else float(value)
    return value


def scalar_record(sample: dict) -> dict:
    """The scalar part of a sample (target_id first, then ``SCALAR_FIELDS`` in order); missing floats are NaN."""
    out = {"target_id": sample["target_id"]}
    for name, (arrow, _, _) in SCALAR_FIELDS.items():
        out[name] = _clean_scalar(sample.get(name), _is_float(arrow))
    return out


def encode_npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of one image cube (little-endian float32, C order)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=IMAGE_DTYPE), allow_pickle=False)
    return buf.getvalue()


def webdataset_members(sample: dict) -> list[tuple[str, bytes]]:
    """(member name, bytes) pairs of one sample in a WebDataset tar, in a fixed order."""
    key = sample["target_id"]
    if "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
    members = [(f"{key}.{f}.npy", encode_npy(sample[f])) for f in IMAGE_FIELDS]
    text = json.dumps(scalar_record(sample), sort_keys=False, allow_nan=True, separators=(",", ":"))
    members.append((f"{key}.json", text.encode("utf-8")))
    return members


def _array3d_column(stack: np.ndarray, field: str) -> pa.Array:
    """An Array3D extension column from a (n, a, b, c) float32 stack, without Python loops."""
    from datasets.features.features import Array3DExtensionType

    n, a, b, c = stack.shape
    values = pa.array(np.ascontiguousarray(stack, dtype=IMAGE_DTYPE).reshape(-1))
    level3 = pa.ListArray.from_arrays(pa.array(np.arange(n * a * b + 1, dtype=np.int32) * c), values)
    level2 = pa.ListArray.from_arrays(pa.array(np.arange(n * a + 1, dtype=np.int32) * b), level3)
    level1 = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * a), level2)
    ext_type = Array3DExtensionType(shape=IMAGE_SHAPES[field], dtype="float32")
    return pa.ExtensionArray.from_storage(ext_type, level1)


def parquet_schema() -> pa.Schema:
    """Arrow schema of the Parquet encoding, with the HF features in its metadata."""
    from datasets.features.features import Array3DExtensionType

    fields = [pa.field("target_id", pa.string(), nullable=False)]
    fields += [pa.field(f, Array3DExtensionType(shape=IMAGE_SHAPES[f], dtype="float32")) for f in IMAGE_FIELDS]
    fields += [pa.field(name, arrow) for name, (arrow, _, _) in SCALAR_FIELDS.items()]
    meta = {"huggingface": json.dumps({"info": {"features": parquet_features().to_dict()}})}
    return pa.schema(fields, metadata=meta)


def samples_to_table(samples: list[dict]) -> pa.Table:
    """An Arrow table (Parquet encoding) of a list of samples."""
    schema = parquet_schema()
    columns: dict[str, pa.Array] = {"target_id": pa.array([s["target_id"] for s in samples], pa.string())}
    for f in IMAGE_FIELDS:
        if samples:
            stack = np.stack([s[f] for s in samples])
        else:
            stack = np.zeros((0, *IMAGE_SHAPES[f]), IMAGE_DTYPE)
        columns[f] = _array3d_column(stack, f)
    records = [scalar_record(s) for s in samples]
    for name, (arrow, _, _) in SCALAR_FIELDS.items():
        columns[name] = pa.array([r[name] for r in records], type=arrow)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def validate_sample(sample: dict) -> None:
    """Raise ValueError if a sample's images have the wrong shape/dtype or a field is missing."""
    for f in IMAGE_FIELDS:
        arr = sample.get(f)
        if not isinstance(arr, np.ndarray) or arr.shape != IMAGE_SHAPES[f] or arr.dtype != IMAGE_DTYPE:
            got = None if arr is None else (getattr(arr, "shape", None), getattr(arr, "dtype", None))
            raise ValueError(f"{sample.get('target_id')}: {f} must be float32 {IMAGE_SHAPES[f]}, got {got}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{sample.get('target_id')}: {f} has non-finite pixels")
    missing = [name for name in SCALAR_FIELDS if name not in sample]
    if missing:
        raise ValueError(f"{sample.get('target_id')}: missing fields {missing}")
