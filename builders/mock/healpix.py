"""HEALPix nested pixel indices of sky positions, computed with numpy alone (no healpy).

The mock DESI catalog's HEALPIX column and file order use ``healpix_nest``.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# HEALPix (nested) without a healpy dependency


def _spread_bits(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    out = np.zeros_like(v)
    for i in range(30):
        out |= ((v >> i) & 1) << (2 * i)
    return out


def healpix_nest(nside: int, ra_deg, dec_deg) -> np.ndarray:
    """HEALPix nested pixel index (int64) of positions in degrees (nside a power of 2)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    z = np.sin(np.radians(np.asarray(dec_deg, dtype=np.float64)))
    za = np.abs(z)
    tt = np.mod(np.radians(ra), 2 * np.pi) / (np.pi / 2)  # [0, 4)
    order = int(round(np.log2(nside)))
    # equatorial region
    t1 = nside * (0.5 + tt)
    t2 = nside * z * 0.75
    jp = (t1 - t2).astype(np.int64)
    jm = (t1 + t2).astype(np.int64)
    ifp, ifm = jp >> order, jm >> order
    face_eq = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix_eq = jm & (nside - 1)
    iy_eq = nside - (jp & (nside - 1)) - 1
    # polar caps
    ntt = np.minimum(3, tt.astype(np.int64))
    tp = tt - ntt
    tmp = nside * np.sqrt(3 * (1 - za))
    jp2 = np.minimum((tp * tmp).astype(np.int64), nside - 1)
    jm2 = np.minimum(((1.0 - tp) * tmp).astype(np.int64), nside - 1)
    north = z > 0
    face_p = np.where(north, ntt, ntt + 8)
    ix_p = np.where(north, nside - jm2 - 1, jp2)
    iy_p = np.where(north, nside - jp2 - 1, jm2)
    eq = za <= 2.0 / 3.0
    face = np.where(eq, face_eq, face_p)
    ix = np.where(eq, ix_eq, ix_p)
    iy = np.where(eq, iy_eq, iy_p)
    return (face << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)
