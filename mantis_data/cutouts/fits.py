"""Parse one cutout service response (FITS bytes) into the release's arrays, in memory.

Works on bytes so an HTTP client can validate a response before caching it. A Pan-STARRS fitscut
response is one band, (170, 170) linear counts with EXPTIME (zero point 25 + 2.5 log10 EXPTIME, AB);
asinh-compressed data (BSOFTEN/BOFFSET in the header, as the raw stack files carry) is linearised.
A Legacy Survey viewer cube (galex, unwise-neo7) is (2, 32, 32) in the service's band order, named by
BAND0/BAND1; it is returned in mantis_data.bands order. Problems raise CutoutError (an InputDataError)
whose ``reason`` is the short failure string a cutout source records ("unreadable: ...", "bad_shape: ...").
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.io import fits

from mantis_data.bands import SURVEYS, band, ps1_zero_point
from mantis_data.errors import InputDataError

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_LN10_OVER_2P5 = math.log(10.0) / 2.5


class CutoutError(InputDataError):
    """A cutout response or file that cannot be used; ``reason`` is its short failure string."""

    kind = "unreadable"

    def __init__(self, detail: str, name: str = "<bytes>"):
        self.detail = detail
        self.name = name
        super().__init__(f"{name}: {self.kind}: {detail}; delete the file (or refetch) and try again")

    @property
    def reason(self) -> str:
        """Short failure string: '<kind>: <detail>'."""
        return f"{self.kind}: {self.detail}"


class CutoutShapeError(CutoutError):
    """A cutout whose array does not have the expected shape."""

    kind = "bad_shape"


def _describe_non_fits(data: bytes) -> str:
    head = data[:200].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "not FITS (an HTML page)"
    if not data:
        return "not FITS (empty)"
    return f"not FITS (starts with {data[:16]!r})"


def _header_end(data: bytes, name: str) -> int:
    """Byte offset just past the END card of the primary header."""
    n = len(data)
    for pos in range(0, n - 79, 80):
        if data[pos : pos + 8] == b"END     " or data[pos : pos + 80].rstrip() == b"END":
            return pos + 80
    raise CutoutError("truncated header (no END card)", name)


def _parse_primary(data: bytes, name: str) -> tuple[fits.Header, np.ndarray]:
    """Header and array (native byte order, BSCALE/BZERO applied) of the first HDU holding an image."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected the response body as bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(b"SIMPLE  ="):
        raise CutoutError(_describe_non_fits(data), name)
    end = _header_end(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(data[:end].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CutoutError(f"bad FITS header ({e})", name) from None
    try:
        bitpix = int(header["BITPIX"])
        naxis = int(header["NAXIS"])
        dims = [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
    except (KeyError, ValueError, TypeError) as e:
        raise CutoutError(f"bad FITS header (missing or bad {e})", name) from None
    if bitpix not in _BITPIX_DTYPES:
        raise CutoutError(f"bad BITPIX {bitpix}", name)
    if naxis == 0 or math.prod(dims) == 0:
        return _parse_extensions(data, name)
    start = -(-end // 2880) * 2880
    count = math.prod(dims)
    need = count * abs(bitpix) // 8
    if len(data) < start + need:
        raise CutoutError(f"truncated data ({max(0, len(data) - start)} of {need} bytes)", name)
    raw = np.frombuffer(data, dtype=_BITPIX_DTYPES[bitpix], count=count, offset=start).reshape(dims[::-1])
    return header, _scaled(raw, header)


def _scaled(raw: np.ndarray, header: fits.Header) -> np.ndarray:
    bscale = float(header.get("BSCALE", 1.0))
    bzero = float(header.get("BZERO", 0.0))
    if raw.dtype.kind == "f":
        arr = raw.astype(np.float32 if raw.dtype.itemsize == 4 else np.float64)
    else:
        arr = raw.astype(np.float64)
        if "BLANK" in header:
            arr[raw == int(header["BLANK"])] = np.nan
    if bscale != 1.0 or bzero != 0.0:
        arr = arr * bscale + bzero
    return arr


def _parse_extensions(data: bytes, name: str) -> tuple[fits.Header, np.ndarray]:
    """Fallback through astropy for files whose image sits in an extension (e.g. tile-compressed)."""
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                for hdu in hdul:
                    if hdu.is_image and hdu.data is not None and hdu.data.size:
                        return hdu.header.copy(), np.array(hdu.data, dtype=np.float64)
    except (OSError, ValueError, TypeError) as e:
        raise CutoutError(f"bad FITS file ({e})", name) from None
    raise CutoutError("no image data in the file", name)


def read_ps1_cutout(data: bytes, name: str = "<bytes>", size: int | None = None) -> tuple[np.ndarray, float, fits.Header]:
    """A Pan-STARRS fitscut response: image float32 (size, size) in linear counts, AB zero point (mag), header.

    ``size`` defaults to the stored cutout size (bands.py). BSOFTEN/BOFFSET (asinh-compressed) data are
    linearised: flux = BOFFSET + BSOFTEN * 2 sinh(value ln10 / 2.5). NaN pixels are kept.
    """
    size = SURVEYS["ps1"].cutout_size if size is None else size
    header, arr = _parse_primary(data, name)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (size, size):
        raise CutoutShapeError(str(tuple(arr.shape)), name)
    if "EXPTIME" not in header:
        raise CutoutError("missing keyword EXPTIME", name)
    try:
        exptime = float(header["EXPTIME"])
    except (TypeError, ValueError):
        raise CutoutError(f"bad EXPTIME {header['EXPTIME']!r}", name) from None
    if not math.isfinite(exptime) or exptime <= 0:
        raise CutoutError(f"bad EXPTIME {exptime!r}", name)
    if "BSOFTEN" in header or "BOFFSET" in header:
        if "BSOFTEN" not in header or "BOFFSET" not in header:
            raise CutoutError("asinh-compressed data needs both BSOFTEN and BOFFSET", name)
        bsoften, boffset = float(header["BSOFTEN"]), float(header["BOFFSET"])
        arr = boffset + bsoften * 2.0 * np.sinh(arr.astype(np.float64) * _LN10_OVER_2P5)
    return np.ascontiguousarray(arr, dtype=np.float32), ps1_zero_point(exptime), header


def service_band_order(header: fits.Header, n: int, name: str = "<bytes>") -> list[str]:
    """The service band codes of a cube's planes, from BAND0..BAND{n-1} (or the BANDS string)."""
    codes = []
    for k in range(n):
        key = f"BAND{k}"
        if key in header:
            codes.append(str(header[key]).strip())
        elif "BANDS" in header and len(str(header["BANDS"]).strip()) == n:
            codes.append(str(header["BANDS"]).strip()[k])
        else:
            raise CutoutError(f"missing keyword {key}", name)
    return codes


def read_legacy_cube(
    data: bytes, survey: str, name: str = "<bytes>", size: int | None = None
) -> tuple[np.ndarray, fits.Header]:
    """A Legacy Survey viewer cube ('galex' or 'unwise'): float32 (2, size, size) in bands.py order.

    Units as served (bands.py): GALEX counts/s, unWISE Vega nanomaggies.

    Planes are reordered from the service's order using the BANDn header keys.
    """
    if survey not in ("galex", "unwise"):
        raise ValueError(f"survey must be 'galex' or 'unwise', not {survey!r}")
    s = SURVEYS[survey]
    size = s.cutout_size if size is None else size
    header, arr = _parse_primary(data, name)
    want = (len(s.bands), size, size)
    if arr.shape != want:
        raise CutoutShapeError(str(tuple(arr.shape)), name)
    codes = service_band_order(header, len(s.bands), name)
    expected = [band(b).service_code for b in s.bands]
    if sorted(codes) != sorted(expected):
        raise CutoutError(f"cube bands {codes}, expected {expected} for {survey}", name)
    order = [codes.index(c) for c in expected]
    return np.ascontiguousarray(arr[order], dtype=np.float32), header


DEFAULT_MAX_OFFSET_PX = 1.0
"""Largest distance (pixels) between a cutout's centre and its target, by the file's WCS, that a source accepts."""

_WCS_KEYS = ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")


class NoWcsError(CutoutError):
    """A cutout whose header has no celestial WCS (CTYPEn/CRVALn/CRPIXn), so its position cannot be checked."""

    kind = "no_wcs"

    @property
    def reason(self) -> str:
        """Short failure string: 'no_wcs'."""
        return "no_wcs"


def wcs_centre_offset_pixels(header: fits.Header, ra: float, dec: float) -> float:
    """Distance in pixels between the image centre and the position (ra, dec) in degrees, by astropy's WCS.

    The general (slow, ~1 ms) path; :func:`centre_offset_px` uses it only for headers the fast path
    does not handle (distortion terms, non-TAN projections).
    """
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            w = WCS(header, naxis=2)
            x, y = w.all_world2pix([[float(ra), float(dec)]], 0)[0]
        except Exception as e:  # astropy raises several types for broken WCS keywords
            raise CutoutError(f"bad WCS ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
    try:
        cx = (int(header["NAXIS1"]) - 1) / 2.0
        cy = (int(header["NAXIS2"]) - 1) / 2.0
    except (KeyError, TypeError, ValueError):
        raise CutoutError("bad NAXIS1/NAXIS2") from None
    off = float(math.hypot(x - cx, y - cy))
    return off if math.isfinite(off) else math.inf


def _tan_pixel(header, ra: float, dec: float) -> tuple[float, float] | None:
    """1-based pixel (x, y) of (ra, dec) for a plain RA---TAN/DEC--TAN header (no distortion), else None."""
    if str(header.get("CTYPE1", "")).strip() != "RA---TAN" or str(header.get("CTYPE2", "")).strip() != "DEC--TAN":
        return None
    if any(k.startswith(("PV", "A_", "B_", "LONPOLE", "LATPOLE")) for k in header.keys()):
        return None
    try:
        a0, d0 = float(header["CRVAL1"]), float(header["CRVAL2"])
        p1, p2 = float(header["CRPIX1"]), float(header["CRPIX2"])
        if "CD1_1" in header or "CD2_2" in header:
            m11, m12 = float(header.get("CD1_1", 0.0)), float(header.get("CD1_2", 0.0))
            m21, m22 = float(header.get("CD2_1", 0.0)), float(header.get("CD2_2", 0.0))
        elif "CDELT1" in header and "CDELT2" in header:
            c1, c2 = float(header["CDELT1"]), float(header["CDELT2"])
            pc11, pc12 = float(header.get("PC1_1", 1.0)), float(header.get("PC1_2", 0.0))
            pc21, pc22 = float(header.get("PC2_1", 0.0)), float(header.get("PC2_2", 1.0))
            if any(k.startswith("PC00") or k == "CROTA2" for k in header.keys()):
                return None
            m11, m12, m21, m22 = c1 * pc11, c1 * pc12, c2 * pc21, c2 * pc22
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    if not all(map(math.isfinite, (a0, d0, p1, p2, m11, m12, m21, m22))):
        return None
    ra_r, dec_r, a0r, d0r = map(math.radians, (ra, dec, a0, d0))
    cosc = math.sin(d0r) * math.sin(dec_r) + math.cos(d0r) * math.cos(dec_r) * math.cos(ra_r - a0r)
    if cosc <= 0:
        return (math.inf, math.inf)
    xi = math.degrees(math.cos(dec_r) * math.sin(ra_r - a0r) / cosc)
    eta = math.degrees((math.cos(d0r) * math.sin(dec_r) - math.sin(d0r) * math.cos(dec_r) * math.cos(ra_r - a0r)) / cosc)
    det = m11 * m22 - m12 * m21
    if det == 0:
        return None
    x = (m22 * xi - m12 * eta) / det
    y = (-m21 * xi + m11 * eta) / det
    return p1 + x, p2 + y


def centre_offset_px(header, ra: float, dec: float, name: str = "<bytes>") -> float:
    """Pixels between an image's centre and (ra, dec) degrees by its WCS: the one centre check of the project.

    Plain TAN headers (what fitscut and the Legacy Survey viewer return) take a closed-form fast path
    (~10 us); anything else goes through astropy. Raises NoWcsError when the header has no celestial
    WCS, CutoutError ('unreadable: bad WCS ...') when the WCS cannot be evaluated.
    """
    if any(k not in header for k in _WCS_KEYS):
        raise NoWcsError("no WCS keywords", name)
    xy = _tan_pixel(header, ra, dec)
    if xy is None:
        return wcs_centre_offset_pixels(header, ra, dec)
    try:
        cx = (int(header["NAXIS1"]) + 1) / 2.0
        cy = (int(header["NAXIS2"]) + 1) / 2.0
    except (KeyError, TypeError, ValueError):
        raise CutoutError("bad NAXIS1/NAXIS2", name) from None
    off = math.hypot(xy[0] - cx, xy[1] - cy)
    return off if math.isfinite(off) else math.inf


def position_failure(header, ra: float, dec: float, max_offset_px: float | None = DEFAULT_MAX_OFFSET_PX) -> str | None:
    """The failure string of a cutout not centred on (ra, dec): 'wrong_position: <px> px', 'no_wcs',
    'unreadable: bad WCS ...'; None when it is within ``max_offset_px`` pixels (or the check is off: None)."""
    if max_offset_px is None:
        return None
    try:
        off = centre_offset_px(header, ra, dec)
    except CutoutError as e:
        return e.reason
    if not off <= max_offset_px:
        return f"wrong_position: {off:.1f} px" if math.isfinite(off) else "wrong_position: inf px"
    return None
