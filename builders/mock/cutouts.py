"""FITS cutouts of the mock sky, shaped and headed as the real cutout services return them.

``render_ps1`` mimics a Pan-STARRS ``fitscut.cgi`` FITS response (one band, float32, linear counts);
``render_legacy`` mimics a Legacy Survey viewer ``fits-cutout`` response for the 'galex' or
'unwise-neo7' layer (one (2, N, N) cube in the service's band order, named by BAND0/BAND1).
Images are rendered by POSITION: the galaxy nearest to the requested (ra, dec) is drawn at its offset,
noise is seeded from the rounded position and band, so bytes are deterministic and independent of call
order. ``write_cutouts`` writes a cutout cache (mantis_data.cutouts.layout) for a target table, planting the
faults flagged in the sky (no PS1 coverage, a truncated PS1 band file, NaN patches, no GALEX coverage).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from mantis_data._io import atomic_write_bytes
from mantis_data.bands import LEGACY_SURVEY_LAYERS, SURVEYS, band, ps1_zero_point, zero_point
from mantis_data.cutouts.layout import cutout_path
from mantis_data.errors import InputDataError

from .sky import DEC_LIMIT, FLAG_RADIUS_ARCSEC, PS1_NAN_DISTANCE_PX, MockSky, gnomonic

PSF_FWHM_ARCSEC: dict[str, float] = {
    "FUV": 4.5,
    "NUV": 5.3,
    "g": 1.1,
    "r": 1.1,
    "i": 1.1,
    "z": 1.1,
    "y": 1.1,
    "W1": 6.1,
    "W2": 6.8,
}
"""Gaussian PSF FWHM per band used by the mock renderer (arcsec)."""

SERVICE_BAND_ORDER: dict[str, tuple[str, ...]] = {"galex": ("NUV", "FUV"), "unwise": ("W1", "W2")}
"""Order of the bands in a Legacy Survey viewer cube (the service's, not the release's)."""

RENDER_RADIUS_ARCSEC = 120.0
"""The nearest galaxy is drawn when it lies within this distance of the cutout centre."""

_LAYER_TO_SURVEY = {layer: s for s, layer in LEGACY_SURVEY_LAYERS.items()}

# Gaussian-mixture approximations of the exponential (blue) and de Vaucouleurs (red) profiles:
# component amplitudes (sum 1) and variances in units of the half-light radius squared.
_EXP_AMPS = np.array([0.02379, 0.16671, 0.47035, 0.33916])
_EXP_VARS = np.array([0.03402, 0.18594, 0.6693, 2.01663])
_DEV_AMPS = np.array([0.0128, 0.05138, 0.13111, 0.23958, 0.31183, 0.2533])
_DEV_VARS = np.array([0.00036, 0.00424, 0.03199, 0.20644, 1.33354, 10.80426])
_EXP_AMPS = _EXP_AMPS / _EXP_AMPS.sum()
_DEV_AMPS = _DEV_AMPS / _DEV_AMPS.sum()

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class NoCoverageError(InputDataError):
    """The mock service has no image at the requested position (as the real one answers with an error)."""


# ---------------------------------------------------------------------------------------------
# FITS serialisation (primary HDU only; byte-exact and fast)


def _fmt_value(value) -> str:
    if isinstance(value, bool | np.bool_):
        return ("T" if value else "F").rjust(20)
    if isinstance(value, int | np.integer):
        return str(int(value)).rjust(20)
    if isinstance(value, float | np.floating):
        s = f"{float(value):.14G}"
        if "E" in s:
            mant, exp = s.split("E")
            if "." not in mant:
                mant += ".0"
            s = f"{mant}E{exp}"
        elif "." not in s:
            s += ".0"
        return s.rjust(20)
    if isinstance(value, str):
        return ("'" + value.replace("'", "''").ljust(8) + "'").ljust(20)
    raise TypeError(f"cannot write {type(value).__name__} to a FITS card")


def _card(key: str, value, comment: str = "") -> str:
    text = f"{key:<8}= {_fmt_value(value)}"
    if comment:
        text += f" / {comment}"
    return text[:80].ljust(80)


def _hierarch(key: str, value) -> str:
    return f"HIERARCH {key} = {_fmt_value(value).strip()}"[:80].ljust(80)


def _history(text: str) -> str:
    return f"HISTORY {text}"[:80].ljust(80)


def _fits_bytes(cards: list[str], data: np.ndarray) -> bytes:
    header = "".join(cards) + "END".ljust(80)
    header += " " * (-len(header) % 2880)
    raw = np.ascontiguousarray(data, dtype=">f4").tobytes()
    raw += b"\0" * (-len(raw) % 2880)
    return header.encode("ascii") + raw


def _wcs_cards(ra: float, dec: float, size: int, pixscale_arcsec: float) -> list[str]:
    s = pixscale_arcsec / 3600.0
    crpix = (size + 1) / 2.0
    return [
        _card("CTYPE1", "RA---TAN", "TAN (gnomic) projection"),
        _card("CTYPE2", "DEC--TAN", "TAN (gnomic) projection"),
        _card("CRVAL1", float(ra), "RA  of reference point (deg)"),
        _card("CRVAL2", float(dec), "DEC of reference point (deg)"),
        _card("CRPIX1", float(crpix), "X reference pixel"),
        _card("CRPIX2", float(crpix), "Y reference pixel"),
        _card("CD1_1", -s, "Transformation matrix"),
        _card("CD1_2", 0.0, "no rotation"),
        _card("CD2_1", 0.0, "no rotation"),
        _card("CD2_2", s, "Transformation matrix"),
    ]


# ---------------------------------------------------------------------------------------------
# Rendering


def _noise_seed(sky: MockSky, ra: float, dec: float, tag: str) -> int:
    key = f"{sky.seed}|{ra:.6f}|{dec:.6f}|{tag}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _pixel_sigma(depth_mag: float, zero_point: float, fwhm_arcsec: float, pixscale_arcsec: float) -> float:
    """Per-pixel noise (stored unit) giving a 5-sigma point-source detection at ``depth_mag``."""
    f5 = 10 ** (-0.4 * (depth_mag - zero_point))
    sigma_px = fwhm_arcsec * _FWHM_TO_SIGMA / pixscale_arcsec
    return f5 / (5.0 * math.sqrt(4.0 * math.pi) * sigma_px)


def _mog_image(
    x0: float, y0: float, r_half_px: float, q: float, pa_deg: float, red: bool, psf_sigma_px: float, size: int
) -> np.ndarray:
    """Unit-flux galaxy (Gaussian mixture convolved with a Gaussian PSF) sampled on a size x size grid."""
    amps, var = (_DEV_AMPS, _DEV_VARS) if red else (_EXP_AMPS, _EXP_VARS)
    th = math.radians(pa_deg)
    u0, u1 = -math.sin(th), math.cos(th)  # major axis: north through east (+x is west)
    w0, w1 = math.cos(th), math.sin(th)
    a2, b2 = r_half_px**2, (q * r_half_px) ** 2
    sxx, sxy, syy = a2 * u0 * u0 + b2 * w0 * w0, a2 * u0 * u1 + b2 * w0 * w1, a2 * u1 * u1 + b2 * w1 * w1
    extra = psf_sigma_px**2 + 1.0 / 12.0  # PSF plus pixel-box smoothing
    dx = np.arange(size, dtype=np.float64) - x0
    dy = np.arange(size, dtype=np.float64) - y0
    dx2 = (dx * dx)[None, :]
    dy2 = (dy * dy)[:, None]
    dxy = dy[:, None] * dx[None, :]
    img = np.zeros((size, size), dtype=np.float64)
    for amp, v in zip(amps, var, strict=True):
        cxx, cxy, cyy = v * sxx + extra, v * sxy, v * syy + extra
        det = cxx * cyy - cxy * cxy
        ixx, ixy, iyy = cyy / det, -cxy / det, cxx / det
        arg = ixx * dx2 + (2.0 * ixy) * dxy + iyy * dy2
        img += (amp / (2.0 * math.pi * math.sqrt(det))) * np.exp(-0.5 * arg)
    return img


class _Scene:
    """One cutout position: the galaxy drawn there, the galaxy whose planted flags apply, cached profiles."""

    def __init__(self, sky: MockSky, ra: float, dec: float):
        self.sky = sky
        self.ra = float(ra) % 360.0
        self.dec = float(dec)
        idx, sep = sky.nearest(self.ra, self.dec)
        self.sep_arcsec = float(sep[0])
        self.g = int(idx[0]) if sep[0] <= RENDER_RADIUS_ARCSEC else -1
        self.flag_g = int(idx[0]) if sep[0] <= FLAG_RADIUS_ARCSEC else -1
        if self.g >= 0:
            xi, eta = gnomonic(self.ra, self.dec, sky.ra[self.g], sky.dec[self.g])
            self.xi_arcsec, self.eta_arcsec = float(xi) * 3600.0, float(eta) * 3600.0
        self._units: dict[tuple, np.ndarray] = {}

    def mag(self, band_name: str) -> float:
        return float(self.sky._mag_table()[band_name][self.g])

    def galaxy_xy(self, pixscale: float, size: int) -> tuple[float, float]:
        """0-based pixel position (x, y) of the drawn galaxy in a north-up, east-left cutout."""
        c = (size - 1) / 2.0
        return c - self.xi_arcsec / pixscale, c + self.eta_arcsec / pixscale

    def unit_image(self, pixscale: float, fwhm: float, size: int) -> np.ndarray:
        key = (pixscale, fwhm, size)
        if key not in self._units:
            sky, g = self.sky, self.g
            x0, y0 = self.galaxy_xy(pixscale, size)
            self._units[key] = _mog_image(
                x0,
                y0,
                sky.r_half_arcsec[g] / pixscale,
                float(sky.axis_ratio[g]),
                float(sky.pa_deg[g]),
                bool(sky.is_red[g]),
                fwhm * _FWHM_TO_SIGMA / pixscale,
                size,
            )
        return self._units[key]

    def ps1_covered(self) -> bool:
        return bool(self.dec >= DEC_LIMIT) and not (self.flag_g >= 0 and self.sky.ps1_missing[self.flag_g])

    def galex_covered(self) -> bool:
        if self.flag_g >= 0:
            return bool(self.sky.galex_covered[self.flag_g])
        return bool(self.sky.galex_covered_at(self.ra, self.dec)[0])

    def ps1_nan_mask(self, band_index: int, size: int) -> np.ndarray | None:
        """Boolean NaN mask of one PS1 band (True = masked), or None when this position has none."""
        g = self.flag_g
        if g < 0 or self.sky.ps1_nan[g] == 0:
            return None
        r = float(self.sky.ps1_nan_radius_px[g, band_index])
        if r <= 0:
            return None
        x0, y0 = self.galaxy_xy(SURVEYS["ps1"].pixel_scale_arcsec, size)
        phi = float(self.sky.ps1_nan_angle[g])
        cx, cy = x0 + PS1_NAN_DISTANCE_PX * math.cos(phi), y0 + PS1_NAN_DISTANCE_PX * math.sin(phi)
        yy, xx = np.ogrid[:size, :size]
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _ps1_array(scene: _Scene, band_name: str, size: int, exptime: float) -> np.ndarray:
    s = SURVEYS["ps1"]
    b = band(band_name)
    zp = ps1_zero_point(exptime)
    fwhm = PSF_FWHM_ARCSEC[band_name]
    sigma = _pixel_sigma(b.depth_mag_ab, zp, fwhm, s.pixel_scale_arcsec)
    rng = np.random.default_rng(_noise_seed(scene.sky, scene.ra, scene.dec, f"ps1:{band_name}:{size}"))
    img = rng.standard_normal((size, size), dtype=np.float32)
    img *= np.float32(sigma)
    if scene.g >= 0:
        flux = 10 ** (-0.4 * (scene.mag(band_name) - zp))
        img += (flux * scene.unit_image(s.pixel_scale_arcsec, fwhm, size)).astype(np.float32)
    mask = scene.ps1_nan_mask(s.bands.index(band_name), size)
    if mask is not None:
        img[mask] = np.nan
    return img


def _skycell_name(ra: float, dec: float, band_name: str) -> str:
    iy = int(math.floor((dec + 90.0) / 4.0))
    ix = int(math.floor((ra % 360.0) / 4.0))
    proj = 635 + (iy * 91 + ix) % 2000
    sub = int(math.floor(((ra % 4.0) / 4.0) * 10)) * 10 + int(math.floor(((dec + 90.0) % 4.0) / 4.0 * 10))
    return f"rings.v3.skycell.{proj:04d}.{sub:03d}.stk.{band_name}.unconv.fits"


def _ps1_bytes(scene: _Scene, band_name: str, size: int, compressed: bool) -> bytes:
    if band_name not in SURVEYS["ps1"].bands:
        raise ValueError(f"Pan-STARRS band must be one of {SURVEYS['ps1'].bands}, not {band_name!r}")
    exptime = float(scene.sky.ps1_exptime(scene.ra, scene.dec, band_name)[0])
    img = _ps1_array(scene, band_name, size, exptime)
    cards = [
        _card("SIMPLE", True, "file does conform to FITS standard"),
        _card("BITPIX", -32, "number of bits per data pixel"),
        _card("NAXIS", 2, "number of data axes"),
        _card("NAXIS1", size, "length of data axis 1"),
        _card("NAXIS2", size, "length of data axis 2"),
        _card("EXTEND", True, "FITS dataset may contain extensions"),
        _history(f"Cutout of file {_skycell_name(scene.ra, scene.dec, band_name)}"),
        _card("RADESYS", "FK5", "Reference frame"),
        _card("EQUINOX", 2000.0, "Equinox of coordinates"),
        *_wcs_cards(scene.ra, scene.dec, size, SURVEYS["ps1"].pixel_scale_arcsec),
        _card("EXPTIME", exptime, "Exposure time (s)"),
        _hierarch("FPA.TELESCOPE", "PS1"),
        _hierarch("FPA.INSTRUMENT", "GPC1"),
        _hierarch("FPA.FILTER", f"{band_name}.00000"),
    ]
    if compressed:
        zp = ps1_zero_point(exptime)
        sigma = _pixel_sigma(
            band(band_name).depth_mag_ab, zp, PSF_FWHM_ARCSEC[band_name], SURVEYS["ps1"].pixel_scale_arcsec
        )
        bsoften = float(f"{2.0 * sigma:.6G}")
        boffset = float(f"{0.25 * sigma:.6G}")
        img = (2.5 / math.log(10.0)) * np.arcsinh((img.astype(np.float64) - boffset) / (2.0 * bsoften))
        cards += [_card("BSOFTEN", bsoften, "Softening for asinh scaling"), _card("BOFFSET", boffset, "Offset")]
    return _fits_bytes(cards, img)


def render_ps1(sky: MockSky, ra: float, dec: float, band: str, size: int = 170, compressed: bool = False) -> bytes:
    """A Pan-STARRS fitscut FITS response (bytes): float32 (size, size) linear counts at (ra, dec) degrees.

    ``compressed=True`` stores asinh-scaled values with BSOFTEN/BOFFSET as the raw stack files do.
    Raises NoCoverageError where Pan-STARRS has no image (dec < -30 or a planted no-coverage galaxy).
    """
    scene = _Scene(sky, ra, dec)
    if not scene.ps1_covered():
        raise NoCoverageError(f"no Pan-STARRS image at ra={ra:.6f} dec={dec:.6f}")
    return _ps1_bytes(scene, band, size, compressed)


def _legacy_bytes(scene: _Scene, survey_name: str, size: int, pixscale: float) -> bytes:
    s = SURVEYS[survey_name]
    order = SERVICE_BAND_ORDER[survey_name]
    cube = np.zeros((len(order), size, size), dtype=np.float32)
    covered = survey_name != "galex" or scene.galex_covered()
    if covered:
        for k, name in enumerate(order):
            b = band(name)
            offset = s.ab_minus_vega[s.bands.index(name)]
            zp = zero_point(name) + offset  # AB zero point of the stored unit (GALEX counts/s, unWISE Vega nmgy)
            fwhm = PSF_FWHM_ARCSEC[name]
            rng = np.random.default_rng(_noise_seed(scene.sky, scene.ra, scene.dec, f"{survey_name}:{name}:{size}"))
            img = rng.standard_normal((size, size), dtype=np.float32)
            img *= np.float32(_pixel_sigma(b.depth_mag_ab, zp, fwhm, pixscale))
            if scene.g >= 0:
                flux = 10 ** (-0.4 * (scene.mag(name) - zp))
                img += (flux * scene.unit_image(pixscale, fwhm, size)).astype(np.float32)
            cube[k] = img
    codes = [band(n).service_code for n in order]
    cards = [
        _card("SIMPLE", True, "file does conform to FITS standard"),
        _card("BITPIX", -32, "number of bits per data pixel"),
        _card("NAXIS", 3, "number of data axes"),
        _card("NAXIS1", size, "length of data axis 1"),
        _card("NAXIS2", size, "length of data axis 2"),
        _card("NAXIS3", len(order), "length of data axis 3"),
        _card("EXTEND", True, "FITS dataset may contain extensions"),
        _card("BANDS", "".join(codes)),
        *[_card(f"BAND{k}", c) for k, c in enumerate(codes)],
        _card("LAYER", LEGACY_SURVEY_LAYERS[survey_name]),
        *_wcs_cards(scene.ra, scene.dec, size, pixscale),
        _card("IMAGEW", float(size)),
        _card("IMAGEH", float(size)),
    ]
    return _fits_bytes(cards, cube)


def render_legacy(
    sky: MockSky, ra: float, dec: float, layer: str, size: int = 32, pixscale: float | None = None
) -> bytes:
    """A Legacy Survey viewer fits-cutout response (bytes) for layer 'galex' or 'unwise-neo7' at (ra, dec) deg.

    One float32 cube (2, size, size) in the service's band order (GALEX: NUV, FUV; unWISE: W1, W2) named by
    BAND0/BAND1; GALEX in counts/s (AB zero points FUV 18.82, NUV 20.08, as the viewer's background-subtracted
    intensity maps), unWISE in Vega nanomaggies; ``pixscale`` arcsec/px defaults to bands.py's.
    GALEX has exact zeros where it has no coverage.
    """
    if layer not in _LAYER_TO_SURVEY:
        raise ValueError(f"layer must be one of {sorted(_LAYER_TO_SURVEY)}, not {layer!r}")
    survey_name = _LAYER_TO_SURVEY[layer]
    scale = SURVEYS[survey_name].pixel_scale_arcsec if pixscale is None else float(pixscale)
    return _legacy_bytes(_Scene(sky, ra, dec), survey_name, size, scale)


def ps1_nan_fraction(sky: MockSky, ra: float, dec: float, size: int = 170) -> np.ndarray:
    """Fraction of NaN pixels in each Pan-STARRS band (g r i z y) of the cutout at (ra, dec) degrees."""
    scene = _Scene(sky, ra, dec)
    out = np.zeros(len(SURVEYS["ps1"].bands))
    for k in range(len(out)):
        m = scene.ps1_nan_mask(k, size)
        if m is not None:
            out[k] = m.sum() / m.size
    return out


# ---------------------------------------------------------------------------------------------
# Writing a cutout cache


def _target_columns(targets) -> tuple[list[str], np.ndarray, np.ndarray]:
    missing = [c for c in ("target_id", "ra", "dec") if c not in targets.column_names] if isinstance(
        targets, pa.Table
    ) else [c for c in ("target_id", "ra", "dec") if c not in targets.columns]
    if missing:
        raise InputDataError(f"targets table lacks column(s) {missing}; it needs target_id, ra, dec")
    if isinstance(targets, pa.Table):
        ids = [str(t) for t in targets.column("target_id").to_pylist()]
        ra = np.asarray(targets.column("ra").to_numpy(), dtype=np.float64)
        dec = np.asarray(targets.column("dec").to_numpy(), dtype=np.float64)
    else:
        ids = [str(t) for t in targets["target_id"].tolist()]
        ra = np.asarray(targets["ra"], dtype=np.float64)
        dec = np.asarray(targets["dec"], dtype=np.float64)
    return ids, ra, dec


def _truncate(data: bytes) -> bytes:
    """A corrupt copy: the header and the first third of the data, as an interrupted download leaves it."""
    end = data.find(b"END" + b" " * 77)
    header_len = (end // 2880 + 1) * 2880
    return data[: header_len + (len(data) - header_len) // 3]


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(data, path, fsync=False)  # a mock cache: thousands of files, regenerable


def cutout_truth(sky: MockSky, targets) -> pa.Table:
    """What the pipeline should find for each target's cutouts (one row per target, in input order).

    Columns: target_id, ra, dec, galaxy_id (galaxy within FLAG_RADIUS_ARCSEC, -1 none), sep_arcsec,
    z_true, ps1_covered, ps1_corrupt_band ('' or g/r/i/z/y), ps1_nan ('none'/'small'/'large'),
    ps1_nan_frac (5 floats, g..y), ps1_nan_frac_max, galex_covered, expect_ps1_failure
    ('' | 'missing' | 'unreadable'), expect_reject ('' | 'ps1_missing' | 'ps1_unreadable' | 'ps1_nan').
    """
    ids, ra, dec = _target_columns(targets)
    bands = SURVEYS["ps1"].bands
    size = SURVEYS["ps1"].cutout_size
    rows: dict[str, list] = {k: [] for k in (
        "galaxy_id", "sep_arcsec", "z_true", "ps1_covered", "ps1_corrupt_band", "ps1_nan", "ps1_nan_frac",
        "ps1_nan_frac_max", "galex_covered", "expect_ps1_failure", "expect_reject",
    )}
    for r, d in zip(ra, dec, strict=True):
        sc = _Scene(sky, r, d)
        g = sc.flag_g
        covered = sc.ps1_covered()
        corrupt = "" if g < 0 or sky.ps1_corrupt_band[g] < 0 or not covered else bands[sky.ps1_corrupt_band[g]]
        frac = np.zeros(len(bands))
        if covered:
            for k in range(len(bands)):
                m = sc.ps1_nan_mask(k, size)
                if m is not None:
                    frac[k] = m.sum() / m.size
        failure = "missing" if not covered else ("unreadable" if corrupt else "")
        reject = {"missing": "ps1_missing", "unreadable": "ps1_unreadable"}.get(failure, "")
        if not reject and frac.max() > 0.01:
            reject = "ps1_nan"
        rows["galaxy_id"].append(g)
        rows["sep_arcsec"].append(sc.sep_arcsec)
        rows["z_true"].append(float(sky.z_true[g]) if g >= 0 else float("nan"))
        rows["ps1_covered"].append(covered)
        rows["ps1_corrupt_band"].append(corrupt)
        rows["ps1_nan"].append(("none", "small", "large")[sky.ps1_nan[g]] if g >= 0 and covered else "none")
        rows["ps1_nan_frac"].append(frac.tolist())
        rows["ps1_nan_frac_max"].append(float(frac.max()))
        rows["galex_covered"].append(sc.galex_covered())
        rows["expect_ps1_failure"].append(failure)
        rows["expect_reject"].append(reject)
    return pa.table(
        {
            "target_id": pa.array(ids, type=pa.string()),
            "ra": ra,
            "dec": dec,
            "galaxy_id": pa.array(rows["galaxy_id"], type=pa.int64()),
            "sep_arcsec": pa.array(rows["sep_arcsec"], type=pa.float64()),
            "z_true": pa.array(rows["z_true"], type=pa.float64()),
            "ps1_covered": pa.array(rows["ps1_covered"], type=pa.bool_()),
            "ps1_corrupt_band": pa.array(rows["ps1_corrupt_band"], type=pa.string()),
            "ps1_nan": pa.array(rows["ps1_nan"], type=pa.string()),
            "ps1_nan_frac": pa.array(rows["ps1_nan_frac"], type=pa.list_(pa.float64(), len(bands))),
            "ps1_nan_frac_max": pa.array(rows["ps1_nan_frac_max"], type=pa.float64()),
            "galex_covered": pa.array(rows["galex_covered"], type=pa.bool_()),
            "expect_ps1_failure": pa.array(rows["expect_ps1_failure"], type=pa.string()),
            "expect_reject": pa.array(rows["expect_reject"], type=pa.string()),
        }
    )


def write_cutouts(sky: MockSky, targets, root: str | Path, progress: bool = True) -> dict:
    """Write every target's cutout files under ``root`` (mantis_data.cutouts.layout paths), atomically.

    ``targets``: pyarrow Table or pandas DataFrame with target_id, ra, dec (degrees). Existing files are
    kept (resumable). Planted faults: no PS1 files where PS1 has no coverage, one truncated PS1 band file
    for galaxies flagged ``ps1_corrupt_band``. Returns n_targets, files_written, files_skipped,
    ps1_not_covered, seconds and ``truth`` (the ``cutout_truth`` table).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    root = Path(root)
    ids, ra, dec = _target_columns(targets)
    ps1 = SURVEYS["ps1"]
    written = skipped = not_covered = 0
    made: set[Path] = set()

    def wanted(path: Path) -> bool:
        nonlocal skipped
        if path.exists():
            skipped += 1
            return False
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        return True

    for tid, r, d in tqdm(
        zip(ids, ra, dec, strict=True), total=len(ids), disable=not progress, desc="mock cutouts", unit="target"
    ):
        scene = _Scene(sky, r, d)
        if scene.ps1_covered():
            corrupt_band = int(sky.ps1_corrupt_band[scene.flag_g]) if scene.flag_g >= 0 else -1
            for k, b in enumerate(ps1.bands):
                path = cutout_path(root, "ps1", tid, b)
                if wanted(path):
                    data = _ps1_bytes(scene, b, ps1.cutout_size, compressed=False)
                    _atomic_write(path, _truncate(data) if k == corrupt_band else data)
                    written += 1
        else:
            not_covered += 1
        for s in ("galex", "unwise"):
            sv = SURVEYS[s]
            path = cutout_path(root, s, tid)
            if wanted(path):
                _atomic_write(path, _legacy_bytes(scene, s, sv.cutout_size, sv.pixel_scale_arcsec))
                written += 1
    return {
        "n_targets": len(ids),
        "files_written": written,
        "files_skipped": skipped,
        "ps1_not_covered": not_covered,
        "seconds": time.perf_counter() - t0,
        "truth": cutout_truth(sky, targets),
    }
