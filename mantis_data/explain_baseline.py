"""The target galaxy in each band with ``sep``: detection, the ablation baseline images, Kron photometry.

One band image (a stored cutout, linear flux) at a time, as in Engel et al. (Sec. 5.1, App. B) and the
released code (``extract_magnitude.py``):

* background ``sep.Background`` (default 64 x 64 mesh), sources extracted from the background-subtracted
  image at ``DETECT_SIGMA`` = 2 times the global background RMS;
* the **target** is the extracted source nearest the cutout centre if it lies within ``CENTRE_RADIUS_PX``
  = 5 pixels, else there is none and a fixed central aperture stands in for it;
* the **mask** of a source is its ``sep`` ellipse (the second-moment semi-axes ``a``, ``b`` and angle
  ``theta``) scaled by ``MASK_SCALE[survey]``: 4 for Pan-STARRS, 2 for GALEX and unWISE. That is the
  released code's ``r``; the paper's text says "4x the Kron radius", but the code scales the moment ellipse,
  not the Kron radius, and by 2 in the coarse 32-pixel surveys. We follow the code (it produced the
  published figures). Without a target the mask is a disc of radius ``MASK_SCALE[survey]`` pixels at the
  centre (the code's unit ellipse scaled by ``r``);
* the **baseline** replaces the target's masked pixels by Gaussian noise with the median and NMAD
  (1.4826 x median absolute deviation) of the background-subtracted pixels outside every detected source's
  mask, plus the local background; every other pixel is returned bit for bit. A band that is all zero
  (GALEX without coverage) stays all zero. The noise comes from a seeded generator, so a baseline is
  reproducible;
* the **Kron flux** (for CalPIT's features) is ``sep.sum_ellipse`` within 2.5 Kron radii (``kron_radius``
  with 6 ellipse radii, as ``sep``'s documentation and the released code), or a circle of
  ``FORCED_RADIUS_PX`` = 4 pixels at the centre when there is no target or no valid Kron radius.

Pixel coordinates are ``sep``'s (0 at the first pixel's centre); the cutout centre is ``(N - 1) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bands import BANDS, SURVEY_ORDER, SURVEYS
from .errors import MantisDataError

__all__ = [
    "CENTRE_RADIUS_PX",
    "DETECT_SIGMA",
    "FORCED_RADIUS_PX",
    "MASK_SCALE",
    "Target",
    "baseline_band",
    "baseline_images",
    "detect_target",
    "kron_flux",
    "kron_fluxes",
]

DETECT_SIGMA = 2.0
"""Detection threshold in units of the global background RMS."""
CENTRE_RADIUS_PX = 5.0
"""A source is the target when its centroid is within this many pixels of the cutout centre."""
MASK_SCALE: dict[str, float] = {"galex": 2.0, "ps1": 4.0, "unwise": 2.0}
"""Scale of a source's ``sep`` ellipse (a, b in pixels) that masks it, per survey (the released code's ``r``)."""
FORCED_RADIUS_PX = 4.0
"""Radius in pixels of the central circle used for the flux when there is no target (forced photometry)."""
KRON_ELLIPSE_RADII = 6.0
"""``sep.kron_radius`` integrates the first moment out to this many ellipse radii."""
KRON_FACTOR = 2.5
"""The Kron flux is summed within this many Kron radii."""


def _sep():
    try:
        import sep
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MantisDataError("band baselines need the 'sep' package: pip install 'mantis-data[explain]'") from exc
    return sep


@dataclass(frozen=True)
class Target:
    """The target galaxy found in one band image (pixel units, ``sep``'s coordinates).

    found: a source lies within ``CENTRE_RADIUS_PX`` of the centre (else x, y are the centre, a = b = 1).
    n_sources: sources extracted in the image.
    background, background_rms: the global background level and RMS (image units).
    """

    found: bool
    x: float
    y: float
    a: float
    b: float
    theta: float
    n_sources: int
    background: float
    background_rms: float


@dataclass
class _Analysis:
    target: Target
    sub: np.ndarray  # background-subtracted image, float64
    back: np.ndarray  # background map, float64
    sources: np.ndarray | None  # sep.extract's structured array (None: nothing extracted)


def _survey_of(img: np.ndarray, survey: str) -> str:
    if survey not in SURVEYS:
        raise MantisDataError(f"unknown survey {survey!r}; known surveys: {', '.join(SURVEYS)}")
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise MantisDataError(f"a band image must be square 2-d (N, N); got shape {img.shape}")
    return survey


def _analyse(img: np.ndarray, survey: str) -> _Analysis:
    """Background, sources and target of one band image."""
    sep = _sep()
    _survey_of(img, survey)
    data = np.ascontiguousarray(img, dtype=np.float64)
    n = data.shape[0]
    c = (n - 1) / 2.0
    bkg = sep.Background(data)
    back = bkg.back()
    sub = data - back
    rms = float(bkg.globalrms)
    sources = None
    if np.isfinite(rms) and rms > 0:
        try:
            sources = sep.extract(sub, DETECT_SIGMA, err=rms)
        except Exception:  # sep's buffer/deblend overflows on pathological images: treat as no detection
            sources = None
    found, x, y, a, b, theta = False, c, c, 1.0, 1.0, 0.0
    if sources is not None and len(sources):
        d = np.hypot(sources["x"] - c, sources["y"] - c)
        k = int(np.argmin(d))
        if d[k] < CENTRE_RADIUS_PX:
            s = sources[k]
            found, x, y, a, b, theta = True, float(s["x"]), float(s["y"]), float(s["a"]), float(s["b"]), float(s["theta"])
    target = Target(found, x, y, a, b, theta, 0 if sources is None else len(sources), float(bkg.globalback), rms)
    return _Analysis(target, sub, back, sources)


def _ellipse_mask(shape: tuple[int, int], x, y, a, b, theta, r: float) -> np.ndarray:
    sep = _sep()
    mask = np.zeros(shape, dtype=bool)
    x, y, a, b, theta = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, y, a, b, theta))
    if len(x):
        sep.mask_ellipse(mask, x, y, a, b, theta, r=r)
    return mask


def detect_target(img: np.ndarray, survey: str) -> Target:
    """The target galaxy of one band image ``img`` (N, N) of ``survey`` (found or the central fallback)."""
    return _analyse(img, survey).target


def _masks(an: _Analysis, survey: str) -> tuple[np.ndarray, np.ndarray]:
    """(target mask, mask of every detected source and the target) of an analysed image."""
    r = MASK_SCALE[survey]
    t = an.target
    one = _ellipse_mask(an.sub.shape, t.x, t.y, t.a, t.b, t.theta, r)
    every = one.copy()
    if an.sources is not None and len(an.sources):
        s = an.sources
        every |= _ellipse_mask(an.sub.shape, s["x"], s["y"], s["a"], s["b"], s["theta"], r)
    return one, every


def baseline_band(
    img: np.ndarray, survey: str, rng: np.random.Generator | int = 0, return_mask: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray, Target]:
    """``img`` (N, N) with its target galaxy replaced by background noise (same dtype and unit).

    Pixels outside the target's mask are copied bit for bit; an all-zero image is returned as zeros.
    ``rng`` is a numpy Generator or a seed. With ``return_mask``: (baseline, mask (N, N) bool, target).
    """
    img = np.asarray(img)
    _survey_of(img, survey)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = img.copy()
    if not np.any(img):
        mask = np.zeros(img.shape, dtype=bool)
        n = img.shape[0]
        t = Target(False, (n - 1) / 2, (n - 1) / 2, 1.0, 1.0, 0.0, 0, 0.0, 0.0)
        return (out, mask, t) if return_mask else out
    an = _analyse(img, survey)
    one, every = _masks(an, survey)
    free = an.sub[~every]
    if free.size == 0:  # sources cover the whole cutout: fall back to every pixel outside the target
        free = an.sub[~one] if np.any(~one) else an.sub.ravel()
    med = float(np.median(free))
    nmad = float(1.4826 * np.median(np.abs(free - med)))
    noise = rng.normal(med, nmad, size=int(one.sum())) + an.back[one]
    out[one] = noise.astype(out.dtype)
    return (out, one, an.target) if return_mask else out


def band_seed(seed: int, band_index: int) -> np.random.Generator:
    """The generator of band ``band_index`` (0-8, ``BANDS`` order) for a galaxy's ``seed``."""
    return np.random.default_rng([int(seed), int(band_index)])


def baseline_images(
    ps1: np.ndarray, galex: np.ndarray, unwise: np.ndarray, seed: int = 0, with_targets: bool = False
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, Target]]:
    """Baselines of one sample's three cubes (each (C, N, N), stored band order): ``{"galex", "ps1", "unwise"}``.

    Band ``BANDS[k]`` draws its noise from ``band_seed(seed, k)``, so one band's baseline does not depend
    on the others. With ``with_targets``: (cubes, {band: Target}), all-zero bands left out of the targets.
    """
    cubes = {"galex": galex, "ps1": ps1, "unwise": unwise}
    names = [b.name for b in BANDS]
    out, targets = {}, {}
    for s in SURVEY_ORDER:
        cube = np.asarray(cubes[s])
        if cube.shape != SURVEYS[s].shape:
            raise MantisDataError(f"{s} cube must have shape {SURVEYS[s].shape}, not {cube.shape}")
        planes = []
        for i, b in enumerate(SURVEYS[s].bands):
            plane, _, target = baseline_band(cube[i], s, band_seed(seed, names.index(b)), return_mask=True)
            planes.append(plane)
            if np.any(cube[i]):
                targets[b] = target
        out[s] = np.stack(planes)
    return (out, targets) if with_targets else out


def kron_flux(img: np.ndarray, survey: str) -> tuple[float, bool]:
    """(flux in the image's unit, forced) of the target: Kron ellipse flux, or forced in the central circle.

    ``forced`` is True when no target was found, its Kron radius was not usable, or the image is all zero
    (flux 0, as the released code).
    """
    img = np.asarray(img)
    _survey_of(img, survey)
    if not np.any(img):
        return 0.0, True
    sep = _sep()
    an = _analyse(img, survey)
    t = an.target
    n = img.shape[0]
    c = np.array([(n - 1) / 2.0])
    if t.found:
        arr = [np.array([v], dtype=np.float64) for v in (t.x, t.y, t.a, t.b, t.theta)]
        try:
            kr, _ = sep.kron_radius(an.sub, *arr, KRON_ELLIPSE_RADII)
        except Exception:
            kr = np.array([np.nan])
        kr = float(np.asarray(kr).ravel()[0])
        if np.isfinite(kr) and kr > 0:
            theta = np.clip(arr[4], -np.pi / 2, np.pi / 2)  # sep rejects angles outside [-pi/2, pi/2]
            try:
                flux, _, _ = sep.sum_ellipse(an.sub, arr[0], arr[1], arr[2], arr[3], theta, KRON_FACTOR * kr, subpix=5)
                return float(np.asarray(flux).ravel()[0]), False
            except Exception:
                pass
    flux, _, _ = sep.sum_circle(an.sub, c, c, FORCED_RADIUS_PX)
    return float(np.asarray(flux).ravel()[0]), True


def kron_fluxes(ps1: np.ndarray, galex: np.ndarray, unwise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fluxes (9,), forced (9,) bool) of one sample's target in ``BANDS`` order (each band in its own unit)."""
    cubes = {"galex": galex, "ps1": ps1, "unwise": unwise}
    flux, forced = np.zeros(len(BANDS)), np.zeros(len(BANDS), dtype=bool)
    for k, b in enumerate(BANDS):
        s = b.survey
        flux[k], forced[k] = kron_flux(np.asarray(cubes[s])[SURVEYS[s].bands.index(b.name)], s)
    return flux, forced
