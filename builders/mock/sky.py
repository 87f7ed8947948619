"""A deterministic mock sky: galaxies in a few patches whose colours follow redshift.

Each galaxy has a position, a true redshift, a type (red/passive or blue/star-forming), a rest-frame
SED with a 4000 A break, a UV drop and a near-IR stellar bump, an apparent brightness that fades with
luminosity distance, and a shape (half-light radius, axis ratio, position angle). Per-galaxy flags plant
the cutout faults the pipeline must catch (PS1 no coverage, a corrupt PS1 file, masked NaN patches).
Band wavelengths, zero points and depths come from ``mantis_data.bands``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree

from mantis_data.bands import BANDS, SURVEYS, band, ps1_zero_point, zero_point

# ---------------------------------------------------------------------------------------------
# Sky layout


@dataclass(frozen=True)
class Patch:
    """A circular sky patch galaxies are drawn in (centre and radius in degrees)."""

    name: str
    ra: float
    dec: float
    radius_deg: float
    weight: float
    galex: bool


PATCHES: tuple[Patch, ...] = (
    Patch("equatorial-a", 150.0, 2.2, 2.0, 0.24, True),
    Patch("north-a", 185.0, 32.0, 2.5, 0.22, True),
    Patch("north-b", 242.0, 54.0, 2.5, 0.14, False),  # no GALEX coverage at all
    Patch("equatorial-b", 36.0, -4.5, 2.0, 0.24, True),
    Patch("south", 52.0, -29.2, 2.2, 0.16, True),  # ~27% of it lies below dec -30
)
"""The patches; ~4% of galaxies fall below dec -30 (in 'south'), ~14% have no GALEX ('north-b')."""

GALEX_HOLES: tuple[tuple[float, float, float], ...] = (
    (150.8, 1.7, 0.35),
    (184.0, 32.6, 0.40),
    (36.3, -3.5, 0.30),
)
"""Extra GALEX no-coverage discs (ra, dec, radius) in degrees inside covered patches."""

DEC_LIMIT = -30.0
"""Southern limit of Pan-STARRS 3pi (degrees): no PS1 images below it."""

MIN_SEPARATION_ARCSEC = 5.0
"""Galaxies (and catalog interlopers) are kept at least this far apart, so 1-arcsec matching is unambiguous."""

FLAG_RADIUS_ARCSEC = 5.0
"""A cutout position inherits a galaxy's planted flags when that galaxy lies within this distance."""

# Planted cutout-fault rates (fractions of galaxies with dec >= -30, disjoint, exact counts).
PS1_MISSING_RATE = 0.015
PS1_CORRUPT_RATE = 0.01
PS1_NAN_SMALL_RATE = 0.05
PS1_NAN_LARGE_RATE = 0.04
PS1_NAN_SMALL_RADIUS_PX = (5, 7)  # disc radius range: < 1% of a 170x170 stamp
PS1_NAN_LARGE_RADIUS_PX = (16, 28)  # > 2.5% of a 170x170 stamp
PS1_NAN_DISTANCE_PX = 45.0  # disc centre distance from the galaxy

# Base Pan-STARRS stack exposure times (s) per band; position modulates them by 0.55-1.45.
PS1_BASE_EXPTIME_S = {"g": 520.0, "r": 460.0, "i": 560.0, "z": 370.0, "y": 330.0}
PS1_SKYCELL_DEG = 0.4

# ---------------------------------------------------------------------------------------------
# Cosmology (flat LCDM) and SED

_H0 = 70.0
_OMEGA_M = 0.3
_C_KMS = 299792.458
_ZGRID = np.linspace(0.0, 3.0, 3001)
_INV_E = 1.0 / np.sqrt(_OMEGA_M * (1 + _ZGRID) ** 3 + (1 - _OMEGA_M))
_DC_GRID = (_C_KMS / _H0) * np.concatenate([[0.0], np.cumsum(0.5 * (_INV_E[1:] + _INV_E[:-1]) * np.diff(_ZGRID))])


def luminosity_distance_mpc(z) -> np.ndarray:
    """Luminosity distance in Mpc (flat LCDM, H0=70, Omega_m=0.3) for redshift(s) z."""
    z = np.asarray(z, dtype=np.float64)
    return (1 + z) * np.interp(z, _ZGRID, _DC_GRID)


def angular_diameter_distance_mpc(z) -> np.ndarray:
    """Angular-diameter distance in Mpc (flat LCDM, H0=70, Omega_m=0.3)."""
    z = np.asarray(z, dtype=np.float64)
    return np.interp(z, _ZGRID, _DC_GRID) / (1 + z)


def distance_modulus(z) -> np.ndarray:
    """Distance modulus 5 log10(D_L / 10 pc) in mag."""
    return 5.0 * np.log10(luminosity_distance_mpc(z) * 1e5)


# Rest-frame SED knots: wavelength (Angstrom) and f_nu in AB mag relative to an arbitrary level.
# Red: passive (strong 4000 A break, steep UV drop). Blue: star-forming (weak break, flat UV).
# Both: Lyman drop below 1216 A, nothing below 912 A, stellar bump near 1.6 micron, Rayleigh-Jeans beyond.
_SED_WAVE = np.array(
    [500, 900, 912, 1150, 1216, 1300, 1500, 2000, 2800, 3500, 3850, 4000, 4250, 4500, 4866, 5500, 6215,
     7500, 8700, 12500, 16000, 22000, 35000, 46000, 60000, 100000], dtype=np.float64
)
_SED_RED = np.array(
    [20.0, 15.0, 12.0, 8.5, 7.5, 6.5, 6.0, 5.4, 3.9, 3.0, 2.55, 2.0, 1.55, 1.2, 0.78, 0.35, 0.0,
     -0.4, -0.7, -1.2, -1.5, -1.4, -0.6, -0.2, 0.3, 1.3]
)
_SED_BLUE = np.array(
    [20.0, 14.0, 10.0, 3.0, 1.9, 1.2, 1.1, 0.95, 1.0, 0.95, 0.85, 0.7, 0.45, 0.35, 0.25, 0.12, 0.0,
     -0.12, -0.22, -0.45, -0.6, -0.55, -0.1, 0.1, 0.3, 0.6]
)
_LOG_SED_WAVE = np.log10(_SED_WAVE)


def rest_sed_mag(rest_wavelength_angstrom, blueness) -> np.ndarray:
    """Rest-frame f_nu SED in AB mag (arbitrary zero) at the given wavelength(s); blueness 0 red .. 1 blue."""
    x = np.log10(np.clip(np.asarray(rest_wavelength_angstrom, dtype=np.float64), _SED_WAVE[0], _SED_WAVE[-1]))
    t = np.asarray(blueness, dtype=np.float64)
    red = np.interp(x, _LOG_SED_WAVE, _SED_RED)
    blue = np.interp(x, _LOG_SED_WAVE, _SED_BLUE)
    return (1 - t) * red + t * blue


def _reference_wavelength() -> float:
    return band("r").wavelength_angstrom


def apparent_mag_ab(abs_mag_ref, z, blueness, wavelength_angstrom) -> np.ndarray:
    """Apparent AB mag at observed wavelength (Angstrom) of galaxies with rest-frame r-band absolute mag."""
    z = np.asarray(z, dtype=np.float64)
    lam_ref = _reference_wavelength()
    k = rest_sed_mag(np.asarray(wavelength_angstrom) / (1 + z), blueness) - rest_sed_mag(lam_ref, blueness)
    return np.asarray(abs_mag_ref) + distance_modulus(z) - 2.5 * np.log10(1 + z) + k


# ---------------------------------------------------------------------------------------------
# Hashing helpers (deterministic, vectorised)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def hash_uniform(*keys) -> np.ndarray:
    """Deterministic uniform [0, 1) from integer key arrays (broadcast together)."""
    arrays = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in keys])
    h = np.full(arrays[0].shape, 0x9E3779B97F4A7C15, dtype=np.uint64)
    for a in arrays:
        h = _mix64(h ^ a.astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# ---------------------------------------------------------------------------------------------
# Geometry


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """(n, 3) unit vectors of positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def angular_separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in degrees (haversine)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    s = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


def gnomonic(ra0, dec0, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane offsets (xi east, eta north) in degrees of (ra, dec) about (ra0, dec0)."""
    a0, d0 = np.radians(ra0), np.radians(dec0)
    a, d = np.radians(np.asarray(ra, dtype=np.float64)), np.radians(np.asarray(dec, dtype=np.float64))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def inverse_gnomonic(ra0, dec0, xi_deg, eta_deg) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees of tangent-plane offsets (xi east, eta north, degrees) about (ra0, dec0)."""
    d0 = np.radians(dec0)
    xi, eta = np.radians(np.asarray(xi_deg, dtype=np.float64)), np.radians(np.asarray(eta_deg, dtype=np.float64))
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        sin_dec = np.cos(c) * np.sin(d0) + np.where(rho > 0, eta * np.sin(c) * np.cos(d0) / rho, 0.0)
    dec = np.arcsin(np.clip(sin_dec, -1, 1))
    ra = np.radians(ra0) + np.arctan2(xi * np.sin(c), rho * np.cos(d0) * np.cos(c) - eta * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _draw_in_patches(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = np.array([p.weight for p in PATCHES])
    patch = rng.choice(len(PATCHES), size=n, p=weights / weights.sum())
    r = np.sqrt(rng.random(n))
    theta = 2 * np.pi * rng.random(n)
    ra = np.empty(n)
    dec = np.empty(n)
    for k, p in enumerate(PATCHES):
        sel = patch == k
        ra[sel], dec[sel] = inverse_gnomonic(
            p.ra, p.dec, p.radius_deg * r[sel] * np.cos(theta[sel]), p.radius_deg * r[sel] * np.sin(theta[sel])
        )
    return ra, dec, patch


def _separate(rng, ra, dec, patch, others=None, min_sep_arcsec=MIN_SEPARATION_ARCSEC, north_of=None):
    """Redraw points closer than min_sep to each other (or to ``others``, a KD-tree), or south of
    ``north_of`` (degrees), until none are."""
    chord = 2 * np.sin(np.radians(min_sep_arcsec / 3600.0) / 2)
    for _ in range(50):
        xyz = unit_vectors(ra, dec)
        bad = np.zeros(len(ra), dtype=bool)
        pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
        if len(pairs):
            bad[pairs[:, 1]] = True
        if others is not None and len(ra):
            d, _ = others.query(xyz, k=1)
            bad |= d < chord
        if north_of is not None:
            bad |= dec < north_of
        if not bad.any():
            return ra, dec, patch
        ra, dec, patch = ra.copy(), dec.copy(), patch.copy()
        ra[bad], dec[bad], patch[bad] = _draw_in_patches(rng, int(bad.sum()))
    raise RuntimeError("could not place mock objects apart; too many for the patches")


# ---------------------------------------------------------------------------------------------
# Populations: (fraction, red probability, absolute mag mean/sd, selection band, selection limit)

_POPULATIONS = (
    # name, fraction, p_red, M_r mean, M_r sd, selection band, limit (AB mag)
    ("main", 0.38, 0.5, -21.0, 0.7, "r", 17.77),
    ("bgs", 0.10, 0.45, -20.6, 0.8, "r", 19.5),
    ("lrg", 0.30, 0.92, -22.5, 0.45, "i", 20.2),
    ("elg", 0.22, 0.04, -21.6, 0.55, "g", 23.0),
)


def _draw_redshifts(rng: np.random.Generator, pop: np.ndarray) -> np.ndarray:
    n = len(pop)
    z = np.empty(n)
    for k, name in enumerate(p[0] for p in _POPULATIONS):
        sel = pop == k
        m = int(sel.sum())
        if name == "main":
            v = 0.012 + rng.gamma(2.6, 0.042, m)
        elif name == "bgs":
            v = rng.uniform(0.03, 0.45, m)
        elif name == "lrg":
            v = rng.normal(0.52, 0.13, m)
        else:
            v = np.abs(rng.normal(0.95, 0.27, m))
        z[sel] = v
    # keep inside (0.01, 1.5): reflect / redraw tails
    z = np.where(z < 0.011, 0.011 + rng.uniform(0, 0.05, n), z)
    z = np.where(z > 1.5, rng.uniform(1.2, 1.5, n), z)
    return z


class MockSky:
    """A deterministic mock sky of ``n_galaxies`` galaxies (same n and seed give identical everything).

    Per-galaxy arrays (length n): galaxy_id (int64), ra, dec (float64 deg), z_true, patch (int),
    population ('main','bgs','lrg','elg'), is_red (bool), galaxy_type ('red'/'blue'), blueness (0..1),
    abs_mag_r (rest-frame AB at the r wavelength), mag_r (apparent AB), r_half_arcsec, axis_ratio,
    ellipticity (1 - b/a), pa_deg (east of north), galex_covered (bool), ps1_missing (bool),
    ps1_corrupt_band (int8, -1 none, else index into g r i z y), ps1_nan (int8: 0 none, 1 small <1% in one
    band, 2 large >1% in at least one band), ps1_nan_radius_px (float (n,5), 0 where no patch),
    ps1_nan_angle (radians, direction of the NaN disc from the galaxy).
    """

    def __init__(self, n_galaxies: int, seed: int = 0):
        if n_galaxies < 1:
            raise ValueError("n_galaxies must be >= 1")
        self.n = int(n_galaxies)
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0x5EED, self.n])
        n = self.n
        self.galaxy_id = np.arange(n, dtype=np.int64)

        ra, dec, patch = _draw_in_patches(rng, n)
        ra, dec, patch = _separate(rng, ra, dec, patch)
        self.ra, self.dec, self.patch = ra, dec, patch.astype(np.int16)

        fractions = np.array([p[1] for p in _POPULATIONS])
        pop = rng.choice(len(_POPULATIONS), size=n, p=fractions / fractions.sum())
        self.population = np.array([p[0] for p in _POPULATIONS], dtype=object)[pop]
        self.z_true = _draw_redshifts(rng, pop)
        p_red = np.array([p[2] for p in _POPULATIONS])[pop]
        self.is_red = rng.random(n) < p_red
        self.blueness = np.where(self.is_red, rng.uniform(0.0, 0.25, n), rng.uniform(0.55, 1.0, n))
        self.galaxy_type = np.where(self.is_red, "red", "blue").astype(object)

        # Luminosity, then the population's magnitude limit (spectroscopic targets are selected bright).
        m_mean = np.array([p[3] for p in _POPULATIONS])[pop]
        m_sd = np.array([p[4] for p in _POPULATIONS])[pop]
        abs_mag = rng.normal(m_mean, m_sd)
        sel_wave = np.array([band(p[5]).wavelength_angstrom for p in _POPULATIONS])[pop]
        limit = np.array([p[6] for p in _POPULATIONS])[pop]
        m_sel = apparent_mag_ab(abs_mag, self.z_true, self.blueness, sel_wave)
        target = np.where(m_sel > limit, limit - np.abs(rng.normal(0, 0.5, n)), m_sel)
        target = np.maximum(target, 14.0 + rng.uniform(0, 1.0, n))
        self.abs_mag_r = abs_mag + (target - m_sel)
        self.mag_r = apparent_mag_ab(self.abs_mag_r, self.z_true, self.blueness, _reference_wavelength())

        # Shapes: physical half-light radius (kpc) scaled by luminosity, seen at the angular-diameter distance.
        log_re = np.where(self.is_red, np.log10(3.5), np.log10(4.0)) - 0.12 * (self.abs_mag_r + 21.5)
        re_kpc = 10 ** (log_re + rng.normal(0, 0.15, n))
        da_kpc = angular_diameter_distance_mpc(self.z_true) * 1e3
        self.r_half_arcsec = np.clip(re_kpc / da_kpc * 206264.806, 0.15, 10.0)
        self.axis_ratio = np.where(self.is_red, rng.uniform(0.55, 1.0, n), rng.uniform(0.2, 1.0, n))
        self.ellipticity = 1.0 - self.axis_ratio
        self.pa_deg = rng.uniform(0.0, 180.0, n)

        # Coverage and planted PS1 faults.
        self.galex_covered = self.galex_covered_at(self.ra, self.dec)
        self._plant_ps1_flags(rng)

        self._tree = cKDTree(unit_vectors(self.ra, self.dec))
        self._mags: dict[str, np.ndarray] | None = None

    # -----------------------------------------------------------------------------------------
    def _plant_ps1_flags(self, rng: np.random.Generator) -> None:
        n = self.n
        eligible = np.flatnonzero(self.dec >= DEC_LIMIT)
        order = rng.permutation(eligible)
        counts = []
        for rate, minimum in (
            (PS1_MISSING_RATE, 1),
            (PS1_CORRUPT_RATE, 2),
            (PS1_NAN_SMALL_RATE, 1),
            (PS1_NAN_LARGE_RATE, 1),
        ):
            k = max(minimum, int(round(rate * len(eligible)))) if len(eligible) >= 50 else int(round(rate * len(eligible)))
            counts.append(k)
        starts = np.concatenate([[0], np.cumsum(counts)])
        if starts[-1] > len(order):
            raise ValueError("too few galaxies to plant the PS1 faults")
        missing, corrupt, small, large = (order[starts[i] : starts[i + 1]] for i in range(4))

        self.ps1_missing = np.zeros(n, dtype=bool)
        self.ps1_missing[missing] = True
        self.ps1_corrupt_band = np.full(n, -1, dtype=np.int8)
        self.ps1_corrupt_band[corrupt] = rng.integers(0, 5, len(corrupt))
        self.ps1_nan = np.zeros(n, dtype=np.int8)
        self.ps1_nan[small] = 1
        self.ps1_nan[large] = 2
        radius = np.zeros((n, 5))
        one_band = rng.integers(0, 5, len(small))
        radius[small, one_band] = rng.integers(PS1_NAN_SMALL_RADIUS_PX[0], PS1_NAN_SMALL_RADIUS_PX[1] + 1, len(small))
        lo, hi = PS1_NAN_LARGE_RADIUS_PX
        for g in large:
            k = int(rng.integers(1, 6))
            bands = rng.choice(5, size=k, replace=False)
            radius[g, bands] = rng.integers(lo, hi + 1, k)
        self.ps1_nan_radius_px = radius
        self.ps1_nan_angle = rng.uniform(0, 2 * np.pi, n)

    # -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def nearest(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Index of the nearest galaxy to each position (degrees) and its separation in arcsec."""
        xyz = unit_vectors(np.atleast_1d(ra), np.atleast_1d(dec))
        chord, idx = self._tree.query(xyz, k=1)
        sep = np.degrees(2 * np.arcsin(np.clip(chord / 2, 0, 1))) * 3600.0
        return idx.astype(np.int64), sep

    def flagged_galaxy(self, ra, dec) -> np.ndarray:
        """Index of the galaxy within FLAG_RADIUS_ARCSEC of each position, -1 where none."""
        idx, sep = self.nearest(ra, dec)
        return np.where(sep <= FLAG_RADIUS_ARCSEC, idx, -1)

    @staticmethod
    def galex_covered_at(ra, dec) -> np.ndarray:
        """Whether GALEX has coverage at each position (degrees): False in patch 'north-b' and in holes."""
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
        covered = np.ones(ra.shape, dtype=bool)
        for p in PATCHES:
            if not p.galex:
                covered &= angular_separation_deg(ra, dec, p.ra, p.dec) > p.radius_deg + 0.1
        for hra, hdec, hr in GALEX_HOLES:
            covered &= angular_separation_deg(ra, dec, hra, hdec) > hr
        return covered

    def ps1_covered(self, ra, dec) -> np.ndarray:
        """Whether Pan-STARRS returns images at each position: dec >= -30 and no planted no-coverage galaxy."""
        dec_arr = np.atleast_1d(np.asarray(dec, dtype=np.float64))
        g = self.flagged_galaxy(ra, dec)
        planted = np.where(g >= 0, self.ps1_missing[np.maximum(g, 0)], False)
        return (dec_arr >= DEC_LIMIT) & ~planted

    def ps1_exptime(self, ra, dec, band_name: str) -> np.ndarray:
        """Pan-STARRS stack EXPTIME (s) at each position (degrees) in band g/r/i/z/y; constant per ~0.4 deg cell."""
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
        bands = SURVEYS["ps1"].bands
        if band_name not in bands:
            raise ValueError(f"Pan-STARRS band must be one of {bands}, not {band_name!r}")
        iy = np.floor((dec + 90.0) / PS1_SKYCELL_DEG).astype(np.int64)
        dec_c = (iy + 0.5) * PS1_SKYCELL_DEG - 90.0
        ncell = np.maximum(1, np.floor(360.0 * np.cos(np.radians(dec_c)) / PS1_SKYCELL_DEG)).astype(np.int64)
        ix = np.floor((ra % 360.0) / 360.0 * ncell).astype(np.int64)
        u = hash_uniform(self.seed, iy, ix, bands.index(band_name))
        return np.round(PS1_BASE_EXPTIME_S[band_name] * (0.55 + 0.9 * u), 3)

    def _mag_table(self) -> dict[str, np.ndarray]:
        """The cached magnitude arrays (shared, do not modify)."""
        if self._mags is None:
            self._mags = {
                b.name: apparent_mag_ab(self.abs_mag_r, self.z_true, self.blueness, b.wavelength_angstrom)
                for b in BANDS
            }
        return self._mags

    def band_mags_ab(self) -> dict[str, np.ndarray]:
        """Total apparent AB magnitude of every galaxy in each of the 9 bands (keys: band names)."""
        return {k: v.copy() for k, v in self._mag_table().items()}

    def band_fluxes(self) -> dict[str, np.ndarray]:
        """Total flux of every galaxy per band in the survey's stored unit.

        GALEX: counts/s (AB zero points FUV 18.82, NUV 20.08); unWISE: Vega nanomaggy (22.5, AB - Vega from bands.py);
        Pan-STARRS: stack counts at the EXPTIME of the galaxy's own position (zero point 25 + 2.5 log10 EXPTIME).
        """
        mags = self.band_mags_ab()
        out: dict[str, np.ndarray] = {}
        for b in BANDS:
            s = SURVEYS[b.survey]
            if b.survey == "ps1":
                zp = np.array([ps1_zero_point(t) for t in self.ps1_exptime(self.ra, self.dec, b.name)])
                out[b.name] = 10 ** (-0.4 * (mags[b.name] - zp))
            else:
                offset = s.ab_minus_vega[s.bands.index(b.name)]
                out[b.name] = 10 ** (-0.4 * (mags[b.name] - offset - zero_point(b.name)))
        return out

    def random_positions(self, n: int, seed: int, *, north_of: float | None = DEC_LIMIT) -> tuple[np.ndarray, np.ndarray]:
        """``n`` positions (degrees) in the patches, north of ``north_of``, >= MIN_SEPARATION_ARCSEC from all galaxies."""
        rng = np.random.default_rng([self.seed, 0x0FF5, int(seed)])
        ra, dec, patch = _draw_in_patches(rng, n)
        ra, dec, patch = _separate(rng, ra, dec, patch, others=self._tree, north_of=north_of)
        return ra, dec

    def table(self) -> pa.Table:
        """All per-galaxy properties and planted flags as an Arrow table (one row per galaxy)."""
        bands = SURVEYS["ps1"].bands
        return pa.table(
            {
                "galaxy_id": self.galaxy_id,
                "ra": self.ra,
                "dec": self.dec,
                "z_true": self.z_true,
                "patch": pa.array([PATCHES[p].name for p in self.patch]),
                "population": pa.array(self.population.tolist()),
                "galaxy_type": pa.array(self.galaxy_type.tolist()),
                "blueness": self.blueness,
                "abs_mag_r": self.abs_mag_r,
                "mag_r": self.mag_r,
                "r_half_arcsec": self.r_half_arcsec,
                "axis_ratio": self.axis_ratio,
                "pa_deg": self.pa_deg,
                "galex_covered": self.galex_covered,
                "ps1_missing": self.ps1_missing,
                "ps1_corrupt_band": pa.array(
                    ["" if b < 0 else bands[b] for b in self.ps1_corrupt_band], type=pa.string()
                ),
                "ps1_nan": pa.array(np.array(["none", "small", "large"])[self.ps1_nan].tolist()),
            }
        )
