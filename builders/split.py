"""Deterministic train/validation/test assignment, stable under additions.

Scheme "id" (default, the paper's): a first hash of ``target_id`` picks one of 16 chunks; a second,
independent hash places the galaxy at 70/10/20 % train/validation/test inside its chunk.

Scheme "healpix" (a sky-region holdout): the galaxy's HEALPix cell (nested, ``nside``, from its ICRS
ra/dec) is hashed instead, so whole cells (about 58.6 / nside deg on a side) go to one split: 70/10/20 %
of the cells, and no cell has galaxies in two splits. Chunks still come from ``target_id``.

Either way only the galaxy's own id (or position) enters, so rebuilding or adding galaxies never moves
an existing galaxy to another split.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mantis_data.errors import InputDataError

N_CHUNKS = 16
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.7, "validation": 0.1, "test": 0.2}
SPLIT_SCHEMES: tuple[str, ...] = ("id", "healpix")
"""Split schemes: by target_id hash (the paper's) or by HEALPix cell (whole sky regions held out)."""
DEFAULT_NSIDE = 64
"""Default HEALPix resolution of the healpix scheme: cells of about 0.92 deg (0.84 deg^2)."""


def _unit_hash(salt: str, target_id: str) -> float:
    digest = hashlib.sha256(f"{salt}:{target_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def chunk_of(target_ids) -> np.ndarray:
    """Chunk (int32, 0..15) of each target id."""
    return np.array([int(_unit_hash("chunk", t) * N_CHUNKS) for t in target_ids], dtype=np.int32)


def _split_names(u: np.ndarray, fractions: dict[str, float] | None) -> np.ndarray:
    """Split names of unit-interval values ``u`` cut at the cumulative ``fractions``."""
    fractions = fractions or SPLIT_FRACTIONS
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    if not np.isclose(edges[-1], 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return np.array(names, dtype=object)[idx]


def split_of(target_ids, fractions: dict[str, float] | None = None) -> np.ndarray:
    """Split name ("train", "validation", "test") of each target id (object array)."""
    u = np.array([_unit_hash("split", t) for t in target_ids], dtype=np.float64)
    return _split_names(u, fractions)


def check_nside(nside) -> int:
    """``nside`` as an int, or InputDataError unless it is a power of 2 from 1 to 2**29 (nested HEALPix)."""
    n = int(nside)
    if n != nside or n < 1 or n > 2**29 or n & (n - 1):
        raise InputDataError(f"--nside must be a power of 2 between 1 and 2**29 (e.g. 16, 32, 64), not {nside!r}")
    return n


def healpix_cell(ra_deg, dec_deg, nside: int) -> np.ndarray:
    """Nested HEALPix cell (int64) of ICRS positions in degrees at resolution ``nside``."""
    import healpy

    return np.asarray(
        healpy.ang2pix(check_nside(nside), np.asarray(ra_deg, float), np.asarray(dec_deg, float), nest=True, lonlat=True),
        dtype=np.int64,
    )


def healpix_split_of(ra_deg, dec_deg, nside: int, fractions: dict[str, float] | None = None) -> np.ndarray:
    """Split name of each position by its nested HEALPix cell: every galaxy of one cell in one split."""
    cells = healpix_cell(ra_deg, dec_deg, nside)
    unique, inverse = np.unique(cells, return_inverse=True)
    u = np.array([_unit_hash(f"healpix{nside}", str(int(c))) for c in unique], dtype=np.float64)
    return _split_names(u, fractions)[inverse.reshape(-1)]


def describe_split(scheme: str = "id", nside: int | None = None) -> dict:
    """The split scheme as recorded in the MANIFEST (``parameters.split``) and described in the card."""
    if scheme not in SPLIT_SCHEMES:
        raise InputDataError(f"--split-scheme must be one of {SPLIT_SCHEMES}, not {scheme!r}")
    if scheme == "id" and nside is not None:
        raise InputDataError("--nside is for --split-scheme healpix; the id scheme has no cells")
    out: dict = {"scheme": scheme, "fractions": dict(SPLIT_FRACTIONS), "n_chunks": N_CHUNKS}
    if scheme == "healpix":
        if nside is None:
            raise InputDataError("the healpix split scheme needs --nside (a power of 2, e.g. 64)")
        out.update(nside=check_nside(nside), ordering="nested", frame="icrs")
    return out


def shuffle_key(target_ids) -> np.ndarray:
    """A per-target uint64 used to order samples inside a split (a global shuffle, stable under additions)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(f"order:{t}".encode()).digest()[:8], "big") for t in target_ids],
        dtype=np.uint64,
    )
