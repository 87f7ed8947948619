"""Where the mock catalogs' rows go: each galaxy's home survey and the survey of its second spectrum.

Holds the survey footprints and redshift ranges (``FOOTPRINT``, ``Z_RANGE``), the home mix
(``HOME_MIX``, ``_assign_home``), the survey of a second spectrum (``_partner_survey``), positions for
the extra non-galaxy rows (``_Positions``) and small position offsets (``_jitter``). Positions in degrees.
"""

from __future__ import annotations

import numpy as np

from .sky import PATCHES, MockSky, angular_separation_deg

SDSS_HOME_FRACTION = 0.45  # galaxies whose home row is in SDSS (the rest: DESI)

OTHER_SURVEYS: tuple[str, ...] = ("deep2", "gama", "vvds", "vipers", "6dfgs", "wigglez")

# Home mix: (patch, population) -> probability that a galaxy's home is that survey (before SDSS / DESI),
# and the redshift range each survey takes (outside it, the galaxy goes to SDSS or DESI).
HOME_MIX: dict[str, dict[str, dict[str, float]]] = {
    "equatorial-a": {
        "main": {"gama": 0.35}, "bgs": {"gama": 0.30, "wigglez": 0.10},
        "lrg": {"vipers": 0.15, "vvds": 0.10, "wigglez": 0.05},
        "elg": {"wigglez": 0.40, "vipers": 0.15, "vvds": 0.15},
    },
    "equatorial-b": {
        "main": {"gama": 0.25, "6dfgs": 0.20}, "bgs": {"gama": 0.30, "6dfgs": 0.05},
        "lrg": {"vipers": 0.25, "vvds": 0.10}, "elg": {"vipers": 0.20, "vvds": 0.15, "wigglez": 0.25},
    },
    "south": {
        "main": {"6dfgs": 0.55, "gama": 0.15}, "bgs": {"6dfgs": 0.30, "gama": 0.25},
        "lrg": {"vvds": 0.20}, "elg": {"vvds": 0.35},
    },
    "north-a": {},
    "north-b": {"lrg": {"deep2": 0.40}, "elg": {"deep2": 0.60}},
}
Z_RANGE: dict[str, tuple[float, float]] = {
    "deep2": (0.5, 9.0), "gama": (0.0, 0.5), "vvds": (0.0, 9.0), "vipers": (0.45, 9.0),
    "6dfgs": (0.0, 0.2), "wigglez": (0.2, 1.0), "sdss": (0.0, 9.0), "desi": (0.0, 9.0),
}
FOOTPRINT: dict[str, frozenset[str]] = {
    "sdss": frozenset(p.name for p in PATCHES),
    "desi": frozenset(p.name for p in PATCHES),
    "deep2": frozenset({"north-b"}),
    "gama": frozenset({"equatorial-a", "equatorial-b", "south"}),
    "vvds": frozenset({"equatorial-a", "equatorial-b", "south"}),
    "vipers": frozenset({"equatorial-a", "equatorial-b"}),
    "6dfgs": frozenset({"equatorial-b", "south"}),
    "wigglez": frozenset({"equatorial-a", "equatorial-b"}),
}
"""The mock patches each survey observes (6dFGS also only south of dec 0)."""


def _jitter(rng: np.random.Generator, ra: float, dec: float, max_arcsec: float) -> tuple[float, float]:
    r = max_arcsec * np.sqrt(rng.random()) / 3600.0
    t = 2 * np.pi * rng.random()
    return float((ra + r * np.cos(t) / np.cos(np.radians(dec))) % 360.0), float(dec + r * np.sin(t))


def _patch_of(ra, dec) -> np.ndarray:
    """Name of the mock patch each position (degrees) lies in (the nearest patch centre)."""
    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    sep = np.stack([angular_separation_deg(ra, dec, p.ra, p.dec) / p.radius_deg for p in PATCHES])
    return np.array([p.name for p in PATCHES], dtype=object)[np.argmin(sep, axis=0)]


class _Positions:
    """Positions away from every galaxy for the extra (non-galaxy) rows, drawn per survey footprint."""

    def __init__(self, sky: MockSky, n: int):
        self.sky = sky
        self.seed = 1
        self.ra, self.dec = sky.random_positions(n, seed=self.seed)
        self.patch = _patch_of(self.ra, self.dec)
        self.used = np.zeros(len(self.ra), dtype=bool)

    def take(self, survey: str) -> tuple[float, float, str]:
        """The next unused position inside ``survey``'s footprint: (ra, dec, patch)."""
        while True:
            ok = ~self.used & np.isin(self.patch, list(FOOTPRINT[survey]))
            if survey == "6dfgs":
                ok &= self.dec < 0
            hits = np.flatnonzero(ok)
            if len(hits):
                k = hits[0]
                self.used[k] = True
                return float(self.ra[k]), float(self.dec[k]), str(self.patch[k])
            self.seed += 1
            ra, dec = self.sky.random_positions(max(50, len(self.ra)), seed=self.seed)
            self.ra, self.dec = np.concatenate([self.ra, ra]), np.concatenate([self.dec, dec])
            self.patch = np.concatenate([self.patch, _patch_of(ra, dec)])
            self.used = np.concatenate([self.used, np.zeros(len(ra), dtype=bool)])


def _assign_home(sky: MockSky, rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    """The home survey of every galaxy (object array of survey names), per ``HOME_MIX`` and ``Z_RANGE``."""
    u = rng.random(sky.n)
    home = np.where(rng.random(sky.n) < SDSS_HOME_FRACTION, "sdss", "desi").astype(object)
    for g in range(sky.n):
        acc = 0.0
        for survey, p in HOME_MIX[patch[g]].get(sky.population[g], {}).items():
            lo, hi = Z_RANGE[survey]
            if not lo <= sky.z_true[g] < hi or (survey == "6dfgs" and sky.dec[g] >= 0):
                continue
            acc += p
            if u[g] < acc:
                home[g] = survey
                break
    return home


def _partner_survey(rng: np.random.Generator, home: str, patch: str, z: float, dec: float) -> str:
    """A survey that could hold a second spectrum of a galaxy (weighted towards SDSS and DESI)."""
    options, weights = [], []
    for s in ("sdss", "desi", *OTHER_SURVEYS):
        lo, hi = Z_RANGE[s]
        if s == home or patch not in FOOTPRINT[s] or not lo <= z < hi or (s == "6dfgs" and dec >= 0):
            continue
        options.append(s)
        weights.append(6.0 if {home, s} == {"sdss", "desi"} else (3.0 if s in ("sdss", "desi") else 1.0))
    p = np.array(weights) / np.sum(weights)
    return options[int(rng.choice(len(options), p=p))]
