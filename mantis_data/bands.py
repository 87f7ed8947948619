"""The 9 photometric bands and 3 imaging surveys of Mantis Shrimp, as data.

Units and pixel scales live here and nowhere else: every other module asks this one.

Order convention: the release stores each survey's cube in the band order of ``SURVEYS[s].bands``
(GALEX FUV, NUV; Pan-STARRS g r i z y; unWISE W1 W2), and ``BANDS`` lists all nine in wavelength
order. Transforms that need another order (the released model's NUV-first GALEX) reorder explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MantisDataError


@dataclass(frozen=True)
class Band:
    """One photometric band.

    name: short name used in the release ("FUV", "g", "W1", ...).
    survey: key of the survey in ``SURVEYS`` ("galex", "ps1", "unwise").
    wavelength_angstrom: effective (pivot) wavelength in Angstrom.
    depth_mag_ab: approximate 5-sigma point-source depth of the survey's coadds, AB mag.
    service_code: the band's code in the cutout service (PS1 filter letter, Legacy Survey layer band).
    """

    name: str
    survey: str
    wavelength_angstrom: float
    depth_mag_ab: float
    service_code: str


@dataclass(frozen=True)
class Survey:
    """One imaging survey and the native cutouts the release stores for it.

    pixel_scale_arcsec: arcsec per pixel of the stored cutout.
    cutout_size: stored cutouts are (len(bands), cutout_size, cutout_size) float32.
    flux_unit: unit of the stored pixel values (linear flux).
    mag_system: "AB" or "Vega": the system the zero point refers to.
    zero_point: magnitude zero point, m = zero_point - 2.5 log10(flux): one value for every band, a tuple
        with one per band (in ``bands`` order), or None when per image (Pan-STARRS stacks:
        25 + 2.5 log10(EXPTIME), recorded per sample in ``ps1_zp``). ``zero_point(band)`` reads it per band.
    ab_minus_vega: per-band AB - Vega offset in mag (0 for AB surveys).
    """

    name: str
    title: str
    bands: tuple[str, ...]
    pixel_scale_arcsec: float
    cutout_size: int
    flux_unit: str
    mag_system: str
    zero_point: float | tuple[float, ...] | None
    ab_minus_vega: tuple[float, ...]
    service: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one stored cutout cube: (bands, pixels, pixels)."""
        return (len(self.bands), self.cutout_size, self.cutout_size)

    @property
    def field_of_view_arcsec(self) -> float:
        """Side of the stored cutout in arcsec."""
        return self.pixel_scale_arcsec * self.cutout_size


BANDS: tuple[Band, ...] = (
    Band("FUV", "galex", 1528.0, 19.9, "f"),
    Band("NUV", "galex", 2271.0, 20.8, "n"),
    Band("g", "ps1", 4866.0, 23.3, "g"),
    Band("r", "ps1", 6215.0, 23.2, "r"),
    Band("i", "ps1", 7545.0, 23.1, "i"),
    Band("z", "ps1", 8679.0, 22.3, "z"),
    Band("y", "ps1", 9633.0, 21.4, "y"),
    Band("W1", "unwise", 33526.0, 20.7, "1"),
    Band("W2", "unwise", 46028.0, 20.0, "2"),
)

SURVEYS: dict[str, Survey] = {
    "galex": Survey(
        name="galex",
        title="GALEX (Legacy Survey viewer layer 'galex')",
        bands=("FUV", "NUV"),
        pixel_scale_arcsec=1.5,
        cutout_size=32,
        flux_unit="counts/s",  # background-subtracted intensity maps (-intbgsub), not nanomaggies
        mag_system="AB",
        zero_point=(18.82, 20.08),  # FUV, NUV (Morrissey et al. 2007)
        ab_minus_vega=(0.0, 0.0),
        service="legacysurvey",
    ),
    "ps1": Survey(
        name="ps1",
        title="Pan-STARRS1 DR2 3pi stacks (fitscut)",
        bands=("g", "r", "i", "z", "y"),
        pixel_scale_arcsec=0.25,
        cutout_size=170,
        flux_unit="count",
        mag_system="AB",
        zero_point=None,
        ab_minus_vega=(0.0, 0.0, 0.0, 0.0, 0.0),
        service="ps1images",
    ),
    "unwise": Survey(
        name="unwise",
        title="unWISE neo7 (Legacy Survey viewer layer 'unwise-neo7')",
        bands=("W1", "W2"),
        pixel_scale_arcsec=2.75,
        cutout_size=32,
        flux_unit="nanomaggy",
        mag_system="Vega",
        zero_point=22.5,
        ab_minus_vega=(2.699, 3.339),
        service="legacysurvey",
    ),
}

PIXEL_LIMITS: dict[str, float] = {
    "galex": 1.0e7,
    "ps1": 1.0e10,
    "unwise": 1.0e10,
}
"""Largest physically possible |pixel value| of each survey's stored cutouts, in its ``flux_unit``.

A pixel beyond it (or +-inf) is corruption, not sky: the build rejects the target as
``<survey>_bad_values``. Generous by orders of magnitude: Pan-STARRS stack counts of a saturated
star stay below ~1e8 (ZP ~32.5); unWISE W1/W2 of the brightest stars below ~1e9 nanomaggy; GALEX
stays far below 1e7 in counts/s (ZP 18.82 FUV, 20.08 NUV) and in nanomaggy (ZP 22.5), so the limit
holds in either unit.
"""

SURVEY_ORDER: tuple[str, ...] = ("galex", "ps1", "unwise")
"""Surveys in wavelength order; the order of image fields in a sample."""

PS1_EXPTIME_ZP_OFFSET = 25.0
"""Pan-STARRS stack zero point: ZP = 25 + 2.5 log10(EXPTIME) (AB mag, EXPTIME in seconds)."""

LEGACY_SURVEY_LAYERS: dict[str, str] = {"galex": "galex", "unwise": "unwise-neo7"}
"""Legacy Survey viewer layer name for each survey served through it."""


def band(name: str) -> Band:
    """The band called ``name`` ("FUV", "g", "W1", ...)."""
    for b in BANDS:
        if b.name == name:
            return b
    raise MantisDataError(f"unknown band {name!r}; known bands: {', '.join(b.name for b in BANDS)}")


def survey(name: str) -> Survey:
    """The survey called ``name`` ("galex", "ps1", "unwise")."""
    try:
        return SURVEYS[name]
    except KeyError:
        raise MantisDataError(f"unknown survey {name!r}; known surveys: {', '.join(SURVEYS)}") from None


def survey_bands(name: str) -> tuple[Band, ...]:
    """The bands of survey ``name`` in stored order."""
    return tuple(band(b) for b in survey(name).bands)


def zero_point(name: str) -> float | None:
    """AB (or the survey's system) zero point in mag of band ``name``'s stored unit; None when per image (PS1)."""
    b = band(name)
    zp = SURVEYS[b.survey].zero_point
    if isinstance(zp, tuple):
        return zp[SURVEYS[b.survey].bands.index(name)]
    return zp


def ps1_zero_point(exptime_s: float) -> float:
    """AB zero point (mag) of a Pan-STARRS stack cutout with exposure time ``exptime_s`` seconds."""
    import math

    return PS1_EXPTIME_ZP_OFFSET + 2.5 * math.log10(exptime_s)
