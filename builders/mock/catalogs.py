"""Spectroscopic catalogs of the mock sky, written with the surveys' real column names and file formats.

* ``<folder>/sdss/SpecObjAll.csv``: an SDSS DR17 SpecObjAll query result (CSV, one header line).
* ``<folder>/desi/zall-pix-fuji.fits``: the DESI EDR redshift catalog (BinTableHDU ``ZCATALOG``).
* ``<folder>/truth.parquet``: one row per written catalog row: what it is and which defect was planted.

Every galaxy of the sky has one "home" row (SDSS or DESI) that is clean or carries one defect
(``dec_below_-30`` where the galaxy lies there, ``zwarning``, ``malformed``). Extra rows add the other
defects: non-galaxy objects (``class``), objects with z outside 0 < z < 1.6 (``z_out_of_range``), extra
DESI coadds of a target (``not_primary``) and second spectra of a galaxy, in the other survey within
0.3 arcsec or in the same survey under another id (``duplicate``). Of each duplicate pair, the row marked
``duplicate`` is the one builders.catalogs.compile drops (its survey priority, then the smallest target
id), so the other row stays clean; ``z_conflict`` marks both rows of the few pairs whose redshifts differ
by more than 0.01 (1 + z). Each row carries at most one defect, so a reader's counts and reasons can be
checked against ``truth.parquet`` exactly: accepted rows are those with ``planted == ''``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.catalogs.compile import DEFAULT_PRIORITY
from builders.catalogs.ids import make_target_id

from .sky import DEC_LIMIT, MockSky

SDSS_COLUMNS: tuple[str, ...] = (
    "specObjID", "ra", "dec", "z", "zErr", "zWarning", "class", "subClass", "z_noqso", "zErr_noqso",
    "zWarning_noqso", "z_person", "class_person", "plate", "mjd", "fiberID", "survey", "programname",
)
"""Columns of the SDSS SpecObjAll CSV, in file order."""

DESI_COLUMNS: tuple[str, ...] = (
    "TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "TARGET_RA", "TARGET_DEC", "Z", "ZERR", "ZWARN",
    "SPECTYPE", "SUBTYPE", "DELTACHI2", "COADD_FIBERSTATUS", "ZCAT_PRIMARY", "ZCAT_NSPEC",
)
"""Columns of the DESI ZCATALOG table, in file order."""

# Planted rates (exact counts are round(rate * pool), with small minimums so tiny skies plant each kind).
SDSS_HOME_FRACTION = 0.45  # galaxies whose home row is in SDSS (the rest: DESI)
ZWARNING_RATE = 0.05  # home rows (dec >= -30) with a redshift warning
CLASS_RATE = 0.04  # extra non-galaxy rows (stars 60%, QSOs 40%) per galaxy
Z_OUT_OF_RANGE_RATE = 0.012  # extra rows with z <= 0 or z >= 1.6 per galaxy
MALFORMED_COUNT = 3  # SDSS home rows written malformed: non-numeric ra, empty z, too few fields
NOT_PRIMARY_RATE = 0.10  # clean DESI home targets with extra (non-primary) coadd rows
DUPLICATE_RATE = 0.06  # clean galaxies with a second row in the other survey (within 0.3 arcsec)
Z_CONFLICT_FRACTION = 0.15  # of those duplicates, redshift differs by more than 0.01 (1 + z)
SDSS_REPEAT_RATE = 0.01  # clean SDSS galaxies observed twice in SDSS (another specObjID)
DESI_REPEAT_RATE = 0.01  # clean DESI galaxies targeted twice in DESI (another TARGETID)
Z_PERSON_RATE = 0.02  # clean SDSS rows whose z_person is set (and differs from z)
Z_NOQSO_RATE = 0.03  # clean BOSS/eBOSS rows whose z_noqso differs from z

DESI_HEALPIX_NSIDE = 64

_SDSS_PROGRAMS = {
    # survey, programname, plate range, mjd range, max fiber, run2d code
    "legacy": ("sdss", "legacy", (266, 2974), (51578, 54663), 640, 26),
    "boss": ("boss", "boss", (3586, 7565), (55141, 56837), 1000, 1302),
    "eboss": ("eboss", "eboss", (7566, 8190), (56898, 58543), 1000, 1302),
}
_POP_SDSS_PROGRAM = {"main": "legacy", "bgs": "legacy", "lrg": "boss", "elg": "eboss"}
_DESI_PAIRS = (
    ("sv3", "bright"), ("sv3", "dark"), ("sv1", "bright"), ("sv1", "dark"), ("sv1", "other"),
    ("sv2", "dark"), ("special", "dark"), ("cmx", "other"),
)
_POP_DESI_PAIR = {"main": 0, "bgs": 2, "lrg": 1, "elg": 3}
_SDSS_GAL_SUBCLASS = ("", "", "", "STARFORMING", "STARBURST", "AGN", "BROADLINE", "STARFORMING BROADLINE")
_STAR_SUBCLASS = ("K5", "G2", "F9", "M0", "A0", "K1", "M2V", "WD")
_DESI_STAR_SUBTYPE = ("K", "G", "F", "M", "WD", "A")


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


# ---------------------------------------------------------------------------------------------


def _count(rate: float, pool: int, minimum: int = 1) -> int:
    """Exact planted count: round(rate * pool), at least ``minimum`` when the pool allows."""
    k = int(round(rate * pool))
    return min(pool, max(k, minimum if pool >= 10 * max(minimum, 1) else 0))


def _jitter(rng: np.random.Generator, ra: float, dec: float, max_arcsec: float) -> tuple[float, float]:
    r = max_arcsec * np.sqrt(rng.random()) / 3600.0
    t = 2 * np.pi * rng.random()
    return float((ra + r * np.cos(t) / np.cos(np.radians(dec))) % 360.0), float(dec + r * np.sin(t))


class _Rows:
    """Accumulates catalog rows of both surveys with their truth."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.sdss: list[dict] = []
        self.desi: list[dict] = []
        self._spec_ids: set[int] = set()
        self._target_ids: set[int] = set()

    # ids ----------------------------------------------------------------------------------------
    def spec_obj_id(self, program: str) -> tuple[int, int, int, int]:
        _, _, (p0, p1), (m0, m1), max_fiber, run2d = _SDSS_PROGRAMS[program]
        while True:
            plate = int(self.rng.integers(p0, p1 + 1))
            mjd = m0 + (plate * 7919) % (m1 - m0 + 1)
            fiber = int(self.rng.integers(1, max_fiber + 1))
            sid = (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (run2d << 10)
            if sid not in self._spec_ids:
                self._spec_ids.add(sid)
                return sid, plate, mjd, fiber

    def target_id(self, dec: float) -> int:
        release = 9011 if dec > 32.375 else 9010
        while True:
            brick = int(self.rng.integers(1, 662175))
            objid = int(self.rng.integers(0, 6000))
            tid = objid + (brick << 22) + (release << 42)
            if tid not in self._target_ids:
                self._target_ids.add(tid)
                return tid

    # rows -----------------------------------------------------------------------------------------
    def add_sdss(
        self, *, galaxy_id: int, ra: float, dec: float, z_true: float, planted: str, program: str,
        z: float | None = None, cls: str = "GALAXY", subclass: str | None = None, zwarning: int = 0,
        z_person: float | None = None, z_noqso: float | None = None, malformed: str = "",
        duplicate_of: str = "", z_conflict: bool = False,
    ) -> dict:
        rng = self.rng
        sid, plate, mjd, fiber = self.spec_obj_id(program)
        survey, programname = _SDSS_PROGRAMS[program][:2]
        zerr = 1.2e-5 * (1 + z_true) * 10 ** rng.normal(0, 0.15)
        if z is None:
            z = z_true + rng.normal(0, zerr)
        if subclass is None:
            subclass = _SDSS_GAL_SUBCLASS[rng.integers(len(_SDSS_GAL_SUBCLASS))] if cls == "GALAXY" else ""
        # z_noqso: BOSS/eBOSS fill it (equal to z unless planted otherwise); legacy SDSS leaves it unset.
        boss = program != "legacy"
        if z_noqso is not None:
            zn, zn_err, zn_warn, z_source = z_noqso, zerr, 0, "z_noqso"
        elif boss:
            zn, zn_err, zn_warn, z_source = z, zerr, zwarning, "z_noqso"
        else:
            unset = rng.random()
            zn = 0.0 if unset < 0.95 else ""
            zn_err, zn_warn, z_source = (0.0 if zn == 0.0 else ""), 0, "z"
        if z_person is not None:
            zp, class_person, z_source = z_person, 4, "z_person"
        else:
            u = rng.random()
            zp = 0.0 if u < 0.9 else (-1.0 if u < 0.97 else "")
            class_person = 0
        z_expected = {"z": z, "z_noqso": zn, "z_person": zp}[z_source]
        values = {
            "specObjID": sid, "ra": ra, "dec": dec, "z": z, "zErr": zerr, "zWarning": zwarning, "class": cls,
            "subClass": subclass, "z_noqso": zn, "zErr_noqso": zn_err, "zWarning_noqso": zn_warn,
            "z_person": zp, "class_person": class_person, "plate": plate, "mjd": mjd, "fiberID": fiber,
            "survey": survey, "programname": programname,
        }
        row = {
            "values": values, "malformed": malformed, "survey": "sdss", "survey_objid": str(sid),
            "galaxy_id": galaxy_id, "ra": ra, "dec": dec, "z_true": z_true, "planted": planted,
            "duplicate_of": duplicate_of, "z_conflict": z_conflict,
            "z_expected": float("nan") if malformed else float(z_expected), "z_source": z_source,
        }
        self.sdss.append(row)
        return row

    def add_desi(
        self, *, galaxy_id: int, ra: float, dec: float, z_true: float, planted: str, pair: int,
        targetid: int | None = None, z: float | None = None, spectype: str = "GALAXY", subtype: str = "",
        zwarn: int = 0, primary: bool = True, nspec: int = 1, deltachi2: float | None = None,
        duplicate_of: str = "", z_conflict: bool = False,
    ) -> dict:
        rng = self.rng
        tid = self.target_id(dec) if targetid is None else targetid
        zerr = 1.0e-5 * (1 + z_true) * 10 ** rng.normal(0, 0.2)
        if z is None:
            z = z_true + rng.normal(0, zerr)
        if deltachi2 is None:
            deltachi2 = float(10 ** rng.uniform(np.log10(45.0), 4.0)) if zwarn == 0 else float(rng.uniform(0.5, 9.0))
        survey, program = _DESI_PAIRS[pair]
        values = {
            "TARGETID": tid, "SURVEY": survey, "PROGRAM": program, "HEALPIX": 0, "TARGET_RA": ra,
            "TARGET_DEC": dec, "Z": z, "ZERR": zerr, "ZWARN": zwarn, "SPECTYPE": spectype, "SUBTYPE": subtype,
            "DELTACHI2": deltachi2, "COADD_FIBERSTATUS": 0 if zwarn in (0, 4) else int(rng.choice([0, 2, 8])),
            "ZCAT_PRIMARY": primary, "ZCAT_NSPEC": nspec,
        }
        row = {
            "values": values, "survey": "desi", "survey_objid": str(tid), "galaxy_id": galaxy_id, "ra": ra,
            "dec": dec, "z_true": z_true, "planted": planted, "duplicate_of": duplicate_of,
            "z_conflict": z_conflict, "z_expected": float(z), "z_source": "Z",
        }
        self.desi.append(row)
        return row


def _write_sdss_csv(rows: list[dict], path: Path) -> None:
    def fmt(v) -> str:
        if isinstance(v, bool | np.bool_):
            return str(int(v))
        if isinstance(v, float | np.floating):
            return repr(float(v))
        if isinstance(v, np.integer):
            return str(int(v))
        return str(v)

    lines = [",".join(SDSS_COLUMNS)]
    for row in rows:
        fields = [fmt(row["values"][c]) for c in SDSS_COLUMNS]
        kind = row["malformed"]
        if kind == "ra":
            s = fields[1]
            fields[1] = s[:2] + "O" + s[3:]  # a letter where a digit belongs: non-numeric
        elif kind == "z":
            for c in ("z", "z_noqso", "zErr_noqso", "z_person"):
                fields[SDSS_COLUMNS.index(c)] = ""  # no redshift at all: the required z is missing
        elif kind == "truncated":
            fields = fields[:9]  # a row cut short: too few fields
        lines.append(",".join(fields))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    os.replace(tmp, path)


def _write_desi_fits(rows: list[dict], path: Path) -> None:
    from astropy.io import fits

    def col(name: str) -> list:
        return [r["values"][name] for r in rows]

    ra = np.array(col("TARGET_RA"), dtype=np.float64)
    dec = np.array(col("TARGET_DEC"), dtype=np.float64)
    cols = [
        fits.Column("TARGETID", "K", array=np.array(col("TARGETID"), dtype=np.int64)),
        fits.Column("SURVEY", "7A", array=np.array(col("SURVEY"), dtype="S7")),
        fits.Column("PROGRAM", "6A", array=np.array(col("PROGRAM"), dtype="S6")),
        fits.Column("HEALPIX", "J", array=healpix_nest(DESI_HEALPIX_NSIDE, ra, dec).astype(np.int32)),
        fits.Column("TARGET_RA", "D", array=ra),
        fits.Column("TARGET_DEC", "D", array=dec),
        fits.Column("Z", "D", array=np.array(col("Z"), dtype=np.float64)),
        fits.Column("ZERR", "D", array=np.array(col("ZERR"), dtype=np.float64)),
        fits.Column("ZWARN", "K", array=np.array(col("ZWARN"), dtype=np.int64)),
        fits.Column("SPECTYPE", "6A", array=np.array(col("SPECTYPE"), dtype="S6")),
        fits.Column("SUBTYPE", "20A", array=np.array(col("SUBTYPE"), dtype="S20")),
        fits.Column("DELTACHI2", "D", array=np.array(col("DELTACHI2"), dtype=np.float64)),
        fits.Column("COADD_FIBERSTATUS", "J", array=np.array(col("COADD_FIBERSTATUS"), dtype=np.int32)),
        fits.Column("ZCAT_PRIMARY", "L", array=np.array(col("ZCAT_PRIMARY"), dtype=bool)),
        fits.Column("ZCAT_NSPEC", "I", array=np.array(col("ZCAT_NSPEC"), dtype=np.int16)),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="ZCATALOG")
    table.header["SPGRP"] = ("healpix", "Spectral grouping")
    table.header["SPECPROD"] = ("fuji", "Spectroscopic production run")
    tmp = path.with_name(path.name + ".tmp")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def write_catalogs(sky: MockSky, folder: str | Path) -> dict[str, Path]:
    """Write the SDSS CSV, the DESI FITS catalog and truth.parquet for ``sky`` under ``folder``.

    Returns paths keyed 'sdss', 'desi', 'truth'. Positions in degrees, redshifts dimensionless.
    """
    folder = Path(folder)
    rng = np.random.default_rng([sky.seed, 0xCA7A, sky.n])
    rows = _Rows(rng)
    n = sky.n

    home = np.where(rng.random(n) < SDSS_HOME_FRACTION, "sdss", "desi")
    planted = np.full(n, "", dtype=object)
    planted[sky.dec < DEC_LIMIT] = "dec_below_-30"
    north = np.flatnonzero(planted == "")
    planted[rng.choice(north, _count(ZWARNING_RATE, len(north)), replace=False)] = "zwarning"
    sdss_clean = np.flatnonzero((planted == "") & (home == "sdss"))
    n_mal = min(MALFORMED_COUNT, len(sdss_clean) // 5)
    malformed = rng.choice(sdss_clean, n_mal, replace=False)
    planted[malformed] = "malformed"
    malformed_kind = dict(zip(malformed.tolist(), ("ra", "z", "truncated"), strict=False))

    # Which clean SDSS rows carry a z_person / a differing z_noqso (reader must prefer them).
    sdss_clean = np.flatnonzero((planted == "") & (home == "sdss"))
    person = set(rng.choice(sdss_clean, _count(Z_PERSON_RATE, len(sdss_clean)), replace=False).tolist())
    boss_pool = [g for g in sdss_clean if _POP_SDSS_PROGRAM[sky.population[g]] != "legacy" and g not in person]
    noqso = set(rng.choice(boss_pool, _count(Z_NOQSO_RATE, len(boss_pool)), replace=False).tolist()) if boss_pool else set()

    program = np.array([_POP_SDSS_PROGRAM[p] for p in sky.population])
    pair = np.array([_POP_DESI_PAIR[p] for p in sky.population])
    home_row: dict[int, dict] = {}

    # Home rows.
    for g in range(n):
        ra, dec, zt = float(sky.ra[g]), float(sky.dec[g]), float(sky.z_true[g])
        kind = planted[g]
        if home[g] == "sdss":
            kw: dict = {}
            if kind == "zwarning":
                kw["zwarning"] = int(rng.choice([4, 16, 128, 1, 2]))
                if rng.random() < 0.5:
                    kw["z"] = float(rng.uniform(0.0005, 1.2))
            if g in person:
                kw["z_person"] = round(zt, 4)
                kw["z"] = float(abs(zt + rng.choice([-1, 1]) * rng.uniform(0.05, 0.6)) + 0.001)
            if g in noqso:
                kw["z_noqso"] = zt + float(rng.normal(0, 1.5e-5 * (1 + zt)))
                kw["z"] = zt + float(rng.uniform(0.3, 1.2))  # the QSO template's wrong answer
            home_row[g] = rows.add_sdss(
                galaxy_id=g, ra=ra, dec=dec, z_true=zt, planted=kind, program=str(program[g]),
                malformed=malformed_kind.get(g, ""), **kw,
            )
        else:
            kw = {}
            if kind == "zwarning":
                kw["zwarn"] = int(rng.choice([4, 2, 32, 512, 1024]))
                if rng.random() < 0.5:
                    kw["z"] = float(rng.uniform(0.0005, 1.2))
            home_row[g] = rows.add_desi(
                galaxy_id=g, ra=ra, dec=dec, z_true=zt, planted=kind, pair=int(pair[g]), **kw
            )

    # Extra DESI coadds of clean DESI targets: exactly one row per TARGETID stays ZCAT_PRIMARY.
    desi_clean = np.flatnonzero((planted == "") & (home == "desi"))
    multi = rng.choice(desi_clean, _count(NOT_PRIMARY_RATE, len(desi_clean)), replace=False)
    for g in multi:
        prim = home_row[g]
        extra = 1 if rng.random() < 0.67 else 2
        prim["values"]["ZCAT_NSPEC"] = 1 + extra
        others = [k for k in range(len(_DESI_PAIRS)) if _DESI_PAIRS[k] != (prim["values"]["SURVEY"], prim["values"]["PROGRAM"])]
        for k in rng.choice(others, extra, replace=False):
            rows.add_desi(
                galaxy_id=int(g), ra=prim["ra"], dec=prim["dec"], z_true=prim["z_true"], planted="not_primary",
                pair=int(k), targetid=int(prim["survey_objid"]), primary=False, nspec=1 + extra,
                deltachi2=float(prim["values"]["DELTACHI2"] * rng.uniform(0.2, 0.9)),
            )

    # Second spectra of clean galaxies: in the other survey (a few with conflicting z), or again in the
    # same survey under another id. Of each pair, truth marks as 'duplicate' the row that compile drops:
    # all but the one of the highest-priority survey (DEFAULT_PRIORITY), then the smallest target id.
    plain = [
        g
        for g in np.flatnonzero(planted == "")
        if home_row[g]["z_source"] in ("z", "z_noqso", "Z") and g not in person and g not in noqso
    ]
    dups = rng.choice(plain, _count(DUPLICATE_RATE, len(plain), 2), replace=False) if plain else np.array([], int)
    n_conflict = _count(Z_CONFLICT_FRACTION, len(dups), 2) if len(dups) >= 4 else 0
    conflict = set(dups[:n_conflict].tolist())
    pairs: list[tuple[dict, dict]] = []
    for g in dups:
        h = home_row[g]
        ra, dec = _jitter(rng, h["ra"], h["dec"], 0.3)
        zt = h["z_true"]
        z = None
        if g in conflict:
            z = float(zt + rng.choice([-1, 1]) * rng.uniform(0.02, 0.15) * (1 + zt))
            z = z if z > 0.001 else zt + 0.05 * (1 + zt)
        common = dict(galaxy_id=int(g), ra=ra, dec=dec, z_true=zt, planted="duplicate", z_conflict=g in conflict, z=z)
        if h["survey"] == "sdss":
            pairs.append((h, rows.add_desi(pair=int(pair[g]), **common)))
        else:
            pairs.append((h, rows.add_sdss(program=str(program[g]), **common)))
        h["z_conflict"] = g in conflict
    taken = set(dups.tolist())
    for survey, rate in (("sdss", SDSS_REPEAT_RATE), ("desi", DESI_REPEAT_RATE)):
        pool = [g for g in plain if home[g] == survey and g not in taken]
        for g in rng.choice(pool, _count(rate, len(pool)), replace=False) if pool else []:
            h = home_row[g]
            ra, dec = _jitter(rng, h["ra"], h["dec"], 0.1)
            common = dict(galaxy_id=int(g), ra=ra, dec=dec, z_true=h["z_true"], planted="duplicate")
            if survey == "sdss":
                pairs.append((h, rows.add_sdss(program=str(program[g]), **common)))
            else:
                pairs.append((h, rows.add_desi(pair=int(pair[g]), **common)))
    rank = {s: i for i, s in enumerate(DEFAULT_PRIORITY)}

    def keep_key(r: dict) -> tuple[int, str]:
        return rank.get(r["survey"], len(rank)), make_target_id(r["survey"], r["survey_objid"])

    for h, d in pairs:
        kept, dropped = (h, d) if keep_key(h) <= keep_key(d) else (d, h)
        kept["planted"], kept["duplicate_of"] = "", ""
        dropped["planted"], dropped["duplicate_of"] = "duplicate", f"{kept['survey']}:{kept['survey_objid']}"

    # Objects that are not galaxies of the sky: stars and QSOs (class), and z outside the label range.
    n_class = _count(CLASS_RATE, n, 2)
    n_zout = _count(Z_OUT_OF_RANGE_RATE, n, 2)
    ra_x, dec_x = sky.random_positions(n_class + n_zout, seed=1)
    for k in range(n_class + n_zout):
        ra, dec = float(ra_x[k]), float(dec_x[k])
        survey = "sdss" if k % 2 == 0 else "desi"
        if k < n_class:
            star = rng.random() < 0.6
            zt = float(abs(rng.normal(0, 3e-4)) + 1e-5) if star else float(rng.uniform(0.3, 1.5))
            kind = "class"
            cls = "STAR" if star else "QSO"
            sub_sdss = _STAR_SUBCLASS[rng.integers(len(_STAR_SUBCLASS))] if star else "BROADLINE"
            sub_desi = _DESI_STAR_SUBTYPE[rng.integers(len(_DESI_STAR_SUBTYPE))] if star else ""
        else:
            j = k - n_class
            zt = (0.0 if j % 4 == 0 else -float(abs(rng.normal(0, 3e-4)) + 1e-5)) if j % 2 == 0 else float(rng.uniform(1.61, 2.4))
            kind, cls, sub_sdss, sub_desi = "z_out_of_range", "GALAXY", "", ""
        if survey == "sdss":
            rows.add_sdss(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt,
                          program="boss" if cls == "QSO" else "legacy", cls=cls, subclass=sub_sdss)
        else:
            rows.add_desi(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt, pair=1,
                          spectype=cls, subtype=sub_desi)

    # File order: SDSS by specObjID (as a query sorted on it returns), DESI grouped like zall-pix.
    sdss_rows = sorted(rows.sdss, key=lambda r: r["values"]["specObjID"])
    desi_hp = healpix_nest(DESI_HEALPIX_NSIDE, [r["ra"] for r in rows.desi], [r["dec"] for r in rows.desi])
    for r, hp in zip(rows.desi, desi_hp, strict=True):
        r["values"]["HEALPIX"] = int(hp)
    desi_rows = sorted(
        rows.desi,
        key=lambda r: (r["values"]["SURVEY"], r["values"]["PROGRAM"], r["values"]["HEALPIX"], r["values"]["TARGETID"]),
    )

    (folder / "sdss").mkdir(parents=True, exist_ok=True)
    (folder / "desi").mkdir(parents=True, exist_ok=True)
    paths = {
        "sdss": folder / "sdss" / "SpecObjAll.csv",
        "desi": folder / "desi" / "zall-pix-fuji.fits",
        "truth": folder / "truth.parquet",
    }
    _write_sdss_csv(sdss_rows, paths["sdss"])
    _write_desi_fits(desi_rows, paths["desi"])

    truth_rows = [(i, r) for i, r in enumerate(sdss_rows)] + [(i, r) for i, r in enumerate(desi_rows)]
    truth = pa.table(
        {
            "survey": pa.array([r["survey"] for _, r in truth_rows], type=pa.string()),
            "survey_objid": pa.array([r["survey_objid"] for _, r in truth_rows], type=pa.string()),
            "target_id": pa.array([make_target_id(r["survey"], r["survey_objid"]) for _, r in truth_rows]),
            "row": pa.array([i for i, _ in truth_rows], type=pa.int64()),
            "galaxy_id": pa.array([int(r["galaxy_id"]) for _, r in truth_rows], type=pa.int64()),
            "ra": pa.array([float(r["ra"]) for _, r in truth_rows], type=pa.float64()),
            "dec": pa.array([float(r["dec"]) for _, r in truth_rows], type=pa.float64()),
            "z_true": pa.array([float(r["z_true"]) for _, r in truth_rows], type=pa.float64()),
            "planted": pa.array([r["planted"] for _, r in truth_rows], type=pa.string()),
            "duplicate_of": pa.array([r["duplicate_of"] for _, r in truth_rows], type=pa.string()),
            "z_conflict": pa.array([bool(r["z_conflict"]) for _, r in truth_rows], type=pa.bool_()),
            "z_expected": pa.array([float(r["z_expected"]) for _, r in truth_rows], type=pa.float64()),
            "z_source": pa.array([r["z_source"] for _, r in truth_rows], type=pa.string()),
        }
    )
    tmp = paths["truth"].with_name("truth.parquet.tmp")
    pq.write_table(truth, tmp)
    os.replace(tmp, paths["truth"])
    return paths
