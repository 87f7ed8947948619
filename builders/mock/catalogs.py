"""Spectroscopic catalogs of the mock sky, written with the surveys' real column names and file formats.

Files under ``<folder>`` (the layouts ``builders.catalogs`` reads; see docs/catalogs.md):

* ``sdss/SpecObjAll.csv``: an SDSS DR17 SpecObjAll query result (CSV, one header line).
* ``desi/zall-pix-fuji.fits``: the DESI EDR redshift catalog (BinTableHDU ``ZCATALOG``).
* ``deep2/zcat.deep2.dr4.fits``: the DEEP2 DR4 redshift catalog (HDU 1).
* ``gama/SpecObj.fits``: the GAMA DR4 SpecObj table (HDU 1, several spectra per CATAID).
* ``vvds/cesam_vvds_sp{F10_WIDE,F02_DEEP,CDFS_DEEP,F02_UDEEP}.txt``: VVDS final-release ASCII tables.
* ``vipers/VIPERS_{W1,W4}_SPECTRO_PDR2.fits``: the VIPERS PDR2 catalogues (HDU 1).
* ``6dfgs/6dFGSzDR3.txt``: the 6dFGS DR3 catalogue (tab-separated ASCII, sexagesimal RA and DEC).
* ``wigglez/WiggleZ_final.fits``: the WiggleZ final-release catalogue (HDU 1).
* ``truth.parquet``: one row per written catalog row: what it is and which defect was planted.

Every galaxy of the sky has one "home" row, in one survey chosen to resemble the real mix (DEEP2 at
z > 0.5 in the 'north-b' patch; VVDS and VIPERS deep, z > 0.45 for VIPERS, in the equatorial patches
and, for VVDS CDFS, the south; GAMA and WiggleZ low z in the equatorial patches; 6dFGS z < 0.2 south of
the equator; the rest SDSS or DESI). The home row is clean or carries one defect: ``dec_below_-30``
where the galaxy lies there, a failed quality flag of its survey (``zwarning`` for SDSS and DESI,
``zquality``, ``nq``, ``zflags``, ``zflg``, ``classflag``, ``quality``, ``q`` for the others),
``malformed`` (3 SDSS rows: non-numeric ra, empty z, too few fields) or ``unreadable_row`` (VVDS: a row
cut short, a Z of asterisks; 6dFGS: a row cut short, DEC minutes of 61). Extra rows add the other
defects: non-galaxy objects (``class``: SDSS and DESI stars and QSOs, DEEP2 AGN), DEEP2 stars
(ZQUALITY -1, ``zquality``), 6dFGS Galactic objects (QUALITY 6, ``quality``), objects with z outside
0 < z < 1.6 (``z_out_of_range``, in every survey), sentinel or NaN coordinates (``bad_coordinates``:
GAMA, WiggleZ) and a NaN redshift (``bad_redshift``: VIPERS); extra DESI coadds of a target and extra
GAMA spectra of a CATAID (``not_primary``); second spectra of a galaxy, in another survey whose
footprint holds it, within 0.3 arcsec (0.1 with 6dFGS, whose positions are rounded), or in the same
survey under another id (SDSS, DESI) (``duplicate``). Of each duplicate pair, the row marked
``duplicate`` is the one builders.catalogs.compile drops (its survey priority, then the smallest target
id), so the other row stays clean; ``z_conflict`` marks both rows of the few pairs whose redshifts differ
by more than 0.01 (1 + z). Each row carries at most one defect, so a reader's counts and reasons can be
checked against ``truth.parquet`` exactly: accepted rows are those with ``planted == ''``, and
``expected_reason`` is the reason kind (builders.catalogs.compile.reason_kind) the compile must give.

Truth columns: survey, survey_objid, target_id, row (the survey-wide ``source_row``: rows numbered
through the survey's files in the order builders.catalogs.compile.find_catalogs lists them), galaxy_id
(-1: not a galaxy of the sky), ra, dec (degrees, as written), z_true, planted, duplicate_of
('survey:objid' of the kept row), z_conflict, z_expected (the redshift the survey's rules pick, as
written), z_source (its column), file (path under the folder), file_row, expected_reason.

Moved out, still importable from here: the rows (``_Rows``, ``sexagesimal``, ...) live in
``builders.mock.catalog_rows``; each format's columns and writer (``SDSS_COLUMNS``, ``_write_sdss_csv``,
...) in ``builders.mock.catalog_writers``; footprints, home and partner surveys and the extra rows'
positions (``FOOTPRINT``, ``HOME_MIX``, ``_assign_home``, ``_Positions``, ...) in
``builders.mock.catalog_homes``; ``healpix_nest`` in ``builders.mock.healpix``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.catalogs.compile import DEFAULT_PRIORITY, survey_files
from builders.catalogs.ids import make_target_id
from mantis_data._io import atomic_path

from .catalog_homes import (  # noqa: F401  (moved to catalog_homes.py; kept importable from here)
    FOOTPRINT,
    HOME_MIX,
    OTHER_SURVEYS,
    SDSS_HOME_FRACTION,
    Z_RANGE,
    _assign_home,
    _jitter,
    _partner_survey,
    _patch_of,
    _Positions,
)
from .catalog_rows import (  # noqa: F401  (moved to catalog_rows.py; kept importable from here)
    _CLEAN_QUALITY,
    _DESI_PAIRS,
    _FAILED_QUALITY,
    _GALAXY,
    _GALAXY_BIG,
    _GALAXY_BRIGHT_CORE,
    _GALAXY_RED,
    _QSO_CAP,
    _QSO_SKIRT,
    _SDSS_GAL_SUBCLASS,
    _SDSS_PROGRAMS,
    _SERENDIP_BLUE,
    _STAR_BHB,
    _VIPERS_BAD_ZFLG,
    _VIPERS_GOOD_ZFLG,
    MGS_RATE,
    ZERR_SCALE,
    _iau_name,
    _legacy_bits,
    _Rows,
    sexagesimal,
)
from .catalog_writers import (  # noqa: F401  (moved to catalog_writers.py; kept importable from here)
    DEEP2_COLUMNS,
    DESI_COLUMNS,
    DESI_HEALPIX_NSIDE,
    GAMA_COLUMNS,
    SDSS_COLUMNS,
    SIXDF_COLUMNS,
    VIPERS_COLUMNS,
    VVDS_COLUMNS,
    WIGGLEZ_COLUMNS,
    _write_6dfgs_txt,
    _write_desi_fits,
    _write_fits_table,
    _write_sdss_csv,
    _write_text,
    _write_vvds_txt,
)
from .healpix import (  # noqa: F401  (moved to healpix.py; kept importable from here)
    _spread_bits,
    healpix_nest,
)
from .sky import DEC_LIMIT, PATCHES, MockSky

# Planted rates (exact counts are round(rate * pool), with small minimums so tiny skies plant each kind).
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

_POP_SDSS_PROGRAM = {"main": "legacy", "bgs": "legacy", "lrg": "boss", "elg": "eboss"}
_POP_DESI_PAIR = {"main": 0, "bgs": 2, "lrg": 1, "elg": 3}
_STAR_SUBCLASS = ("K5", "G2", "F9", "M0", "A0", "K1", "M2V", "WD")
_DESI_STAR_SUBTYPE = ("K", "G", "F", "M", "WD", "A")


# ---------------------------------------------------------------------------------------------


def _count(rate: float, pool: int, minimum: int = 1) -> int:
    """Exact planted count: round(rate * pool), at least ``minimum`` when the pool allows."""
    k = int(round(rate * pool))
    return min(pool, max(k, minimum if pool >= 10 * max(minimum, 1) else 0))


# ---------------------------------------------------------------------------------------------
# The six other surveys: files, columns (in file order) and planted mixes

FILES: dict[str, str] = {
    "sdss": "sdss/SpecObjAll.csv",
    "desi": "desi/zall-pix-fuji.fits",
    "deep2": "deep2/zcat.deep2.dr4.fits",
    "gama": "gama/SpecObj.fits",
    "vvds:F10_WIDE": "vvds/cesam_vvds_spF10_WIDE.txt",
    "vvds:F02_DEEP": "vvds/cesam_vvds_spF02_DEEP.txt",
    "vvds:CDFS_DEEP": "vvds/cesam_vvds_spCDFS_DEEP.txt",
    "vvds:F02_UDEEP": "vvds/cesam_vvds_spF02_UDEEP.txt",
    "vipers:W1": "vipers/VIPERS_W1_SPECTRO_PDR2.fits",
    "vipers:W4": "vipers/VIPERS_W4_SPECTRO_PDR2.fits",
    "6dfgs": "6dfgs/6dFGSzDR3.txt",
    "wigglez": "wigglez/WiggleZ_final.fits",
}
"""Every file the mock writes, keyed as ``write_catalogs`` returns them (path relative to the folder)."""

QUALITY_FAILURES: tuple[tuple[str, str, float], ...] = (
    ("deep2", "zquality", 0.25), ("gama", "nq", 0.12), ("vvds", "zflags", 0.30), ("vipers", "zflg", 0.15),
    ("vipers", "classflag", 0.05), ("6dfgs", "quality", 0.25), ("wigglez", "q", 0.25),
)
"""(survey, planted reason, rate): home rows (dec >= -30) whose quality flag fails the survey's cut."""

UNREADABLE_KINDS: dict[str, tuple[str, ...]] = {"vvds": ("truncated", "z_text"), "6dfgs": ("truncated", "dec_minutes")}
"""Home rows written unreadable in the ASCII catalogs (one of each kind when the survey has >= 6 clean homes)."""

GAMA_EXTRA_RATE = 0.2  # clean GAMA home galaxies with other (not kept) spectra of their CATAID
DEEP2_ZTEMPLATE_RATE = 0.05  # clean DEEP2 rows whose Z differs from ZBEST (the reader must use ZBEST)
DEEP2_STAR_RATE = 0.05  # DEEP2 stars (ZQUALITY -1) per DEEP2 home galaxy
SIXDF_STAR_RATE = 0.08  # 6dFGS Galactic objects (QUALITY 6) per 6dFGS home galaxy

_GAMA_SURVEYS = (("GAMA", 5), ("SDSS", 1), ("2dFGRS", 2), ("MGC", 3), ("6dFGS", 6))
_PLANTED_REASON = {"malformed": "unreadable_row", "duplicate": "duplicate_of"}


_SORT_KEYS = {
    "deep2": lambda r: r["values"]["OBJNO"],
    "gama": lambda r: r["values"]["SPECID"],
    "vvds": lambda r: r["values"]["NUM"],
    "vipers": lambda r: r["values"]["num"],
    "6dfgs": lambda r: r["values"]["TARGETNAME"],
    "wigglez": lambda r: r["values"]["WiggleZ_Name"],
}


def write_catalogs(sky: MockSky, folder: str | Path) -> dict[str, Path]:
    """Write the eight surveys' catalogs and truth.parquet for ``sky`` under ``folder``.

    Returns paths keyed as ``FILES`` ('sdss', 'desi', 'deep2', 'gama', 'vvds:F02_DEEP', 'vipers:W1', ...)
    plus 'truth'. Positions in degrees, redshifts dimensionless.
    """
    folder = Path(folder)
    rng = np.random.default_rng([sky.seed, 0xCA7A, sky.n])
    rows = _Rows(rng)
    n = sky.n
    patch = np.array([PATCHES[p].name for p in sky.patch], dtype=object)
    home = _assign_home(sky, rng, patch)

    planted = np.full(n, "", dtype=object)
    planted[sky.dec < DEC_LIMIT] = "dec_below_-30"
    north = np.flatnonzero(planted == "")
    sd_north = north[np.isin(home[north], ["sdss", "desi"])]
    n_zwarning = min(len(sd_north), _count(ZWARNING_RATE, len(north)))
    planted[rng.choice(sd_north, n_zwarning, replace=False)] = "zwarning"
    for survey, label, rate in QUALITY_FAILURES:
        pool = np.flatnonzero((planted == "") & (home == survey))
        planted[rng.choice(pool, _count(rate, len(pool)), replace=False)] = label
    sdss_clean = np.flatnonzero((planted == "") & (home == "sdss"))
    n_mal = min(MALFORMED_COUNT, len(sdss_clean) // 5)
    malformed = rng.choice(sdss_clean, n_mal, replace=False)
    planted[malformed] = "malformed"
    malformed_kind = dict(zip(malformed.tolist(), ("ra", "z", "truncated"), strict=False))
    unreadable_kind: dict[int, str] = {}
    for survey, kinds in UNREADABLE_KINDS.items():
        pool = np.flatnonzero((planted == "") & (home == survey))
        chosen = rng.choice(pool, len(kinds) if len(pool) >= 6 else 0, replace=False)
        planted[chosen] = "unreadable_row"
        unreadable_kind.update(zip(chosen.tolist(), kinds, strict=False))

    # Which clean SDSS rows carry a z_person / a differing z_noqso (reader must prefer them).
    sdss_clean = np.flatnonzero((planted == "") & (home == "sdss"))
    person = set(rng.choice(sdss_clean, _count(Z_PERSON_RATE, len(sdss_clean)), replace=False).tolist())
    boss_pool = [g for g in sdss_clean if _POP_SDSS_PROGRAM[sky.population[g]] != "legacy" and g not in person]
    noqso = set(rng.choice(boss_pool, _count(Z_NOQSO_RATE, len(boss_pool)), replace=False).tolist()) if boss_pool else set()
    # Which clean DEEP2 rows have a template Z that differs from ZBEST (reader must use ZBEST).
    deep2_clean = np.flatnonzero((planted == "") & (home == "deep2"))
    ztemplate = set(rng.choice(deep2_clean, _count(DEEP2_ZTEMPLATE_RATE, len(deep2_clean)), replace=False).tolist())

    program = np.array([_POP_SDSS_PROGRAM[p] for p in sky.population])
    pair = np.array([_POP_DESI_PAIR[p] for p in sky.population])
    mag_r = sky.mag_r
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
        elif home[g] == "desi":
            kw = {}
            if kind == "zwarning":
                kw["zwarn"] = int(rng.choice([4, 2, 32, 512, 1024]))
                if rng.random() < 0.5:
                    kw["z"] = float(rng.uniform(0.0005, 1.2))
            home_row[g] = rows.add_desi(
                galaxy_id=g, ra=ra, dec=dec, z_true=zt, planted=kind, pair=int(pair[g]), **kw
            )
        else:
            survey = str(home[g])
            kw = {"malformed": unreadable_kind.get(g, "")}
            fails = kind in ("zquality", "nq", "zflags", "zflg", "quality", "q")
            if fails and rng.random() < 0.5:
                kw["z"] = float(rng.uniform(0.0005, 1.2))  # a failed redshift is often a wrong one
            if survey == "vipers":
                kw["class_flag"] = "fail" if kind == "classflag" else "clean"
            if survey == "vvds":
                kw["udeep"] = sky.population[g] == "elg" and rng.random() < 0.3
            if g in ztemplate:
                kw["z_template"] = zt + float(rng.uniform(0.1, 0.5))
            home_row[g] = rows.add_other(
                survey, galaxy_id=g, ra=ra, dec=dec, z_true=zt, planted=kind, patch=str(patch[g]),
                quality="fail" if fails else "clean", mag=float(mag_r[g]), **kw,
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
    # Other GAMA spectra of clean GAMA galaxies (other surveys' or repeats): the kept one has the highest
    # NQ and IS_BEST, so these are not_primary.
    gama_clean = np.flatnonzero((planted == "") & (home == "gama"))
    for g in rng.choice(gama_clean, _count(GAMA_EXTRA_RATE, len(gama_clean)), replace=False):
        prim = home_row[g]
        for _ in range(1 if rng.random() < 0.7 else 2):
            name, code = _GAMA_SURVEYS[rng.integers(len(_GAMA_SURVEYS))]
            ra, dec = _jitter(rng, prim["ra"], prim["dec"], 0.3)
            rows.add_other(
                "gama", galaxy_id=int(g), ra=ra, dec=dec, z_true=prim["z_true"], planted="not_primary",
                patch=str(patch[g]), quality=int(rng.integers(1, prim["values"]["NQ"] + 1)),
                cataid=int(prim["survey_objid"]), is_best=False, is_sbest=name != "GAMA", gama_survey=(name, code),
            )

    # Second spectra of clean galaxies: in another survey whose footprint holds the galaxy (a few with
    # conflicting z), or again in SDSS or DESI under another id. Of each pair, truth marks as 'duplicate'
    # the row that compile drops: the one of the lower-priority survey (DEFAULT_PRIORITY), then the
    # larger target id.
    plain_sources = ("z", "z_noqso", "Z", "ZBEST", "zspec", "Redshift")
    plain = [
        g
        for g in np.flatnonzero(planted == "")
        if home_row[g]["z_source"] in plain_sources and g not in person and g not in noqso and g not in ztemplate
    ]
    dups = rng.choice(plain, _count(DUPLICATE_RATE, len(plain), 2), replace=False) if plain else np.array([], int)
    n_conflict = _count(Z_CONFLICT_FRACTION, len(dups), 2) if len(dups) >= 4 else 0
    conflict = set(dups[:n_conflict].tolist())
    pairs: list[tuple[dict, dict]] = []
    for g in dups:
        h = home_row[g]
        zt = h["z_true"]
        partner = _partner_survey(rng, h["survey"], str(patch[g]), zt, h["dec"])
        ra, dec = _jitter(rng, h["ra"], h["dec"], 0.1 if "6dfgs" in (h["survey"], partner) else 0.3)
        z = None
        if g in conflict:
            z = float(zt + rng.choice([-1, 1]) * rng.uniform(0.02, 0.15) * (1 + zt))
            z = z if z > 0.001 else zt + 0.05 * (1 + zt)
        common = dict(galaxy_id=int(g), ra=ra, dec=dec, z_true=zt, planted="duplicate", z_conflict=g in conflict, z=z)
        if partner == "desi":
            pairs.append((h, rows.add_desi(pair=int(pair[g]), **common)))
        elif partner == "sdss":
            pairs.append((h, rows.add_sdss(program=str(program[g]), **common)))
        else:
            pairs.append((h, rows.add_other(partner, patch=str(patch[g]), mag=float(mag_r[g]), **common)))
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

    # Objects that are not galaxies of the sky: stars, QSOs and AGN (class), z outside the label range,
    # DEEP2 stars, 6dFGS Galactic objects, and rows with sentinel coordinates or no redshift.
    n_class = _count(CLASS_RATE, n, 2)
    n_zout = _count(Z_OUT_OF_RANGE_RATE, n, 2)
    class_cycle = ("sdss", "desi", "sdss", "desi", "sdss", "desi", "deep2")
    zout_cycle = ("sdss", "desi", "deep2", "vvds", "vipers", "gama", "wigglez", "6dfgs")
    specs = [(class_cycle[k % len(class_cycle)], "class", k) for k in range(n_class)]
    specs += [(zout_cycle[j % len(zout_cycle)], "z_out_of_range", j) for j in range(n_zout)]
    specs += [("deep2", "star", 0)] * _count(DEEP2_STAR_RATE, int((home == "deep2").sum()))
    specs += [("6dfgs", "galactic", 0)] * _count(SIXDF_STAR_RATE, int((home == "6dfgs").sum()))
    specs += [("gama", "bad_coordinates", 0), ("wigglez", "bad_coordinates", 1), ("vipers", "bad_redshift", 0)]
    positions = _Positions(sky, len(specs) * 3 + 20)
    for survey, kind, j in specs:
        ra, dec, where = positions.take(survey)
        if kind == "class":
            star = rng.random() < 0.6 and survey != "deep2"
            zt = float(abs(rng.normal(0, 3e-4)) + 1e-5) if star else float(rng.uniform(0.3, 1.5))
            cls = "STAR" if star else ("AGN" if survey == "deep2" else "QSO")
            if survey == "sdss":
                sub = _STAR_SUBCLASS[rng.integers(len(_STAR_SUBCLASS))] if star else "BROADLINE"
                rows.add_sdss(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt,
                              program="boss" if cls == "QSO" else "legacy", cls=cls, subclass=sub)
            elif survey == "desi":
                sub = _DESI_STAR_SUBTYPE[rng.integers(len(_DESI_STAR_SUBTYPE))] if star else ""
                rows.add_desi(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt, pair=1, spectype=cls, subtype=sub)
            else:
                rows.add_other(survey, galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, patch=where, z=zt, cls=cls)
        elif kind == "z_out_of_range":
            zt = (0.0 if j % 4 == 0 else -float(abs(rng.normal(0, 3e-4)) + 1e-5)) if j % 2 == 0 else float(rng.uniform(1.61, 2.4))
            if survey == "sdss":
                rows.add_sdss(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt, program="legacy")
            elif survey == "desi":
                rows.add_desi(galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, z=zt, pair=1)
            else:
                rows.add_other(survey, galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, patch=where, z=zt)
        elif kind == "star":
            zt = float(rng.normal(0, 3e-4))
            rows.add_other("deep2", galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted="zquality", patch=where, z=zt,
                           quality=-1, cls="STAR")
        elif kind == "galactic":
            zt = float(rng.normal(0, 3e-4))
            rows.add_other("6dfgs", galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted="quality", patch=where, z=zt, quality=6)
        elif kind == "bad_coordinates":
            bad = -999.0 if survey == "gama" else float("nan")  # GAMA's sentinel; a NaN in WiggleZ
            zt = float(rng.uniform(0.05, 0.3))
            rows.add_other(survey, galaxy_id=-1, ra=bad, dec=bad if survey == "gama" else dec, z_true=zt,
                           planted=kind, patch=where, z=zt)
        else:  # bad_redshift
            zt = float(rng.uniform(0.5, 1.0))
            rows.add_other(survey, galaxy_id=-1, ra=ra, dec=dec, z_true=zt, planted=kind, patch=where, z=float("nan"))

    # File order: SDSS by specObjID (as a query sorted on it returns), DESI grouped like zall-pix, the
    # others by their id.
    per_file: dict[str, list[dict]] = {key: [] for key in FILES}
    per_file["sdss"] = sorted(rows.sdss, key=lambda r: r["values"]["specObjID"])
    desi_hp = healpix_nest(DESI_HEALPIX_NSIDE, [r["ra"] for r in rows.desi], [r["dec"] for r in rows.desi])
    for r, hp in zip(rows.desi, desi_hp, strict=True):
        r["values"]["HEALPIX"] = int(hp)
    per_file["desi"] = sorted(
        rows.desi,
        key=lambda r: (r["values"]["SURVEY"], r["values"]["PROGRAM"], r["values"]["HEALPIX"], r["values"]["TARGETID"]),
    )
    for survey, survey_rows in rows.other.items():
        for r in sorted(survey_rows, key=_SORT_KEYS[survey]):
            per_file[r["file"]].append(r)

    paths = {key: folder / rel for key, rel in FILES.items()}
    for key in ("sdss", "desi"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
    _write_sdss_csv(per_file["sdss"], paths["sdss"])
    _write_desi_fits(per_file["desi"], paths["desi"])
    _write_fits_table(per_file["deep2"], DEEP2_COLUMNS, paths["deep2"])
    _write_fits_table(per_file["gama"], GAMA_COLUMNS, paths["gama"], extname="SPECOBJ")
    for key in FILES:
        if key.startswith("vvds:"):
            _write_vvds_txt(per_file[key], paths[key], key.split(":")[1])
        elif key.startswith("vipers:"):
            _write_fits_table(per_file[key], VIPERS_COLUMNS, paths[key])
    _write_6dfgs_txt(per_file["6dfgs"], paths["6dfgs"])
    _write_fits_table(per_file["wigglez"], WIGGLEZ_COLUMNS, paths["wigglez"])

    # Truth, with each row's survey-wide row number in the order the compile reads the files.
    key_of = {paths[key].resolve(): key for key in FILES}
    truth_rows: list[tuple[int, int, str, dict]] = []
    for survey in ("sdss", "desi", *OTHER_SURVEYS):
        offset = 0
        for path in survey_files(folder, survey):
            key = key_of[path.resolve()]
            for i, r in enumerate(per_file[key]):
                truth_rows.append((offset + i, i, FILES[key], r))
            offset += len(per_file[key])

    def column(name: str, kind) -> pa.Array:
        return pa.array([r[name] for _, _, _, r in truth_rows], type=kind)

    truth = pa.table(
        {
            "survey": column("survey", pa.string()),
            "survey_objid": column("survey_objid", pa.string()),
            "target_id": pa.array([make_target_id(r["survey"], r["survey_objid"]) for _, _, _, r in truth_rows]),
            "row": pa.array([i for i, _, _, _ in truth_rows], type=pa.int64()),
            "galaxy_id": pa.array([int(r["galaxy_id"]) for _, _, _, r in truth_rows], type=pa.int64()),
            "ra": pa.array([float(r["ra"]) for _, _, _, r in truth_rows], type=pa.float64()),
            "dec": pa.array([float(r["dec"]) for _, _, _, r in truth_rows], type=pa.float64()),
            "z_true": pa.array([float(r["z_true"]) for _, _, _, r in truth_rows], type=pa.float64()),
            "planted": column("planted", pa.string()),
            "duplicate_of": column("duplicate_of", pa.string()),
            "z_conflict": pa.array([bool(r["z_conflict"]) for _, _, _, r in truth_rows], type=pa.bool_()),
            "z_expected": pa.array([float(r["z_expected"]) for _, _, _, r in truth_rows], type=pa.float64()),
            "z_source": column("z_source", pa.string()),
            "file": pa.array([f for _, _, f, _ in truth_rows], type=pa.string()),
            "file_row": pa.array([i for _, i, _, _ in truth_rows], type=pa.int64()),
            "expected_reason": pa.array(
                [_PLANTED_REASON.get(r["planted"], r["planted"]) for _, _, _, r in truth_rows], type=pa.string()
            ),
        }
    )
    paths["truth"] = folder / "truth.parquet"
    with atomic_path(paths["truth"]) as tmp:
        pq.write_table(truth, tmp)
    return paths
