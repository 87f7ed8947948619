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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.catalogs.compile import DEFAULT_PRIORITY, survey_files
from builders.catalogs.ids import make_target_id
from mantis_data._io import atomic_path, atomic_write_text

from .sky import DEC_LIMIT, PATCHES, MockSky, angular_separation_deg

SDSS_COLUMNS: tuple[str, ...] = (
    "specObjID", "ra", "dec", "z", "zErr", "zWarning", "class", "subClass", "z_noqso", "zErr_noqso",
    "zWarning_noqso", "z_person", "class_person", "plate", "mjd", "fiberID", "survey", "programname",
    "legacy_target1",
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

# SDSS-I/II PRIMTARGET (legacy_target1) bits: QSO_CAP, QSO_SKIRT, GALAXY_RED, GALAXY, GALAXY_BIG,
# GALAXY_BRIGHT_CORE, STAR_BHB, SERENDIP_BLUE
_QSO_CAP, _QSO_SKIRT, _GALAXY_RED, _GALAXY, _GALAXY_BIG, _GALAXY_BRIGHT_CORE = 0x2, 0x4, 0x20, 0x40, 0x80, 0x100
_STAR_BHB, _SERENDIP_BLUE = 0x2000, 0x100000
MGS_RATE = 0.88  # legacy-program galaxies targeted as Main Galaxy Sample (the rest: LRG or serendipity)

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


def _legacy_bits(spec_obj_id: int, program: str, cls: str) -> int:
    """SDSS legacy_target1 of one spectrum: MGS bits for most legacy galaxies, 0 outside the legacy program.

    Drawn from the spectrum's own id, so adding the column changes no other random draw of the mock.
    """
    if program != "legacy":
        return 0  # BOSS / eBOSS plates: targeted through boss_target1 / eboss_target1
    u = np.random.default_rng([spec_obj_id % 2**63, 0x7A26]).random(3)
    if cls == "QSO":
        return _QSO_CAP | (_QSO_SKIRT if u[0] < 0.3 else 0)
    if cls == "STAR":
        return _STAR_BHB if u[0] < 0.5 else _SERENDIP_BLUE
    if u[0] < MGS_RATE:
        return _GALAXY | (_GALAXY_BIG if u[1] < 0.04 else 0) | (_GALAXY_BRIGHT_CORE if u[2] < 0.03 else 0)
    return _GALAXY_RED if u[0] < MGS_RATE + 0.08 else _SERENDIP_BLUE


def _count(rate: float, pool: int, minimum: int = 1) -> int:
    """Exact planted count: round(rate * pool), at least ``minimum`` when the pool allows."""
    k = int(round(rate * pool))
    return min(pool, max(k, minimum if pool >= 10 * max(minimum, 1) else 0))


def _jitter(rng: np.random.Generator, ra: float, dec: float, max_arcsec: float) -> tuple[float, float]:
    r = max_arcsec * np.sqrt(rng.random()) / 3600.0
    t = 2 * np.pi * rng.random()
    return float((ra + r * np.cos(t) / np.cos(np.radians(dec))) % 360.0), float(dec + r * np.sin(t))



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

DEEP2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("OBJNO", "J"), ("RA", "D"), ("DEC", "D"), ("MAGB", "E"), ("MAGR", "E"), ("MAGI", "E"), ("PGAL", "E"),
    ("SFD_EBV", "E"), ("CLASS", "6A"), ("SUBCLASS", "6A"), ("MASKNAME", "J"), ("SLITNAME", "3A"), ("MJD", "J"),
    ("Z", "D"), ("ZBEST", "D"), ("ZERR", "D"), ("ZQUALITY", "J"), ("RCHI2", "E"), ("DOF", "J"), ("COMMENT", "20A"),
)
"""DEEP2 DR4 zcat columns (name, FITS format), in file order."""

GAMA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SPECID", "22A"), ("SURVEY", "10A"), ("SURVEY_CODE", "I"), ("RA", "D"), ("DEC", "D"), ("WMIN", "E"),
    ("WMAX", "E"), ("Z", "E"), ("NQ", "I"), ("PROB", "E"), ("FILENAME", "40A"), ("CATAID", "J"),
    ("GAMA_NAME", "23A"), ("IC_FLAG", "I"), ("DIST", "E"), ("IS_SBEST", "L"), ("IS_BEST", "L"),
)
"""GAMA DR4 SpecObj columns (name, FITS format), in file order."""

VVDS_COLUMNS: tuple[str, ...] = ("NUM", "ALPHA", "DELTA", "MAGI", "Z", "ZFLAGS")
"""VVDS final-release ASCII columns, in file order."""

VIPERS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("num", "K"), ("alpha", "D"), ("delta", "D"), ("selmag", "E"), ("errselmag", "E"), ("pointing", "8A"),
    ("quadrant", "I"), ("zspec", "E"), ("zflg", "E"), ("norm", "E"), ("classFlag", "I"), ("tsr", "E"), ("ssr", "E"),
)
"""VIPERS PDR2 columns (name, FITS format), in file order."""

SIXDF_COLUMNS: tuple[str, ...] = ("TARGETNAME", "TARGETID", "RA", "DEC", "BJ", "RF", "Z", "Z_ORIGIN", "QUALITY")
"""6dFGS DR3 ASCII columns (tab-separated), in file order."""

WIGGLEZ_COLUMNS: tuple[tuple[str, str], ...] = (
    ("WiggleZ_Name", "20A"), ("RA", "D"), ("Dec", "D"), ("Redshift", "D"), ("Q", "I"), ("NUV", "E"), ("r", "E"),
)
"""WiggleZ final-release columns (name, FITS format), in file order."""

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
ZERR_SCALE: dict[str, float] = {
    "deep2": 3e-5, "gama": 1e-4, "vvds": 2.8e-4, "vipers": 5.4e-4, "6dfgs": 1.5e-4, "wigglez": 1.5e-4,
}
"""Redshift error of each survey, per unit (1 + z)."""

_CLEAN_QUALITY = {
    "deep2": ((3, 4), (0.3, 0.7)), "gama": ((3, 4), (0.35, 0.65)), "vvds": ((3, 4), (0.4, 0.6)),
    "6dfgs": ((3, 4), (0.3, 0.7)), "wigglez": ((4, 5), (0.7, 0.3)),
}
_FAILED_QUALITY = {
    "deep2": (1, 2), "gama": (0, 1, 2), "vvds": (0, 1, 2, 9, 12, 13, 14, 22, 23, 24), "6dfgs": (1, 2),
    "wigglez": (1, 2, 3),
}
_VIPERS_GOOD_ZFLG = (2.0, 2.2, 2.5, 3.0, 3.1, 3.2, 3.5, 4.0, 4.1, 4.2, 4.5)
_VIPERS_BAD_ZFLG = (0.0, 1.0, 1.5, 9.2, 9.5, 12.5, 13.5, 14.5, 22.5, 23.5, 24.2)
_GAMA_SURVEYS = (("GAMA", 5), ("SDSS", 1), ("2dFGRS", 2), ("MGC", 3), ("6dFGS", 6))
_PLANTED_REASON = {"malformed": "unreadable_row", "duplicate": "duplicate_of"}


class _Rows:
    """Accumulates catalog rows of every survey with their truth."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.sdss: list[dict] = []
        self.desi: list[dict] = []
        self._spec_ids: set[int] = set()
        self._target_ids: set[int] = set()
        self.other: dict[str, list[dict]] = {}
        self._other_ids: dict[str, set[int]] = {}
        self._names: set[str] = set()

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
        legacy_target1 = _legacy_bits(sid, program, cls)
        values = {
            "specObjID": sid, "ra": ra, "dec": dec, "z": z, "zErr": zerr, "zWarning": zwarning, "class": cls,
            "subClass": subclass, "z_noqso": zn, "zErr_noqso": zn_err, "zWarning_noqso": zn_warn,
            "z_person": zp, "class_person": class_person, "plate": plate, "mjd": mjd, "fiberID": fiber,
            "survey": survey, "programname": programname, "legacy_target1": legacy_target1,
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

    # the six other surveys ----------------------------------------------------------------------
    def _unique(self, key: str, low: int, high: int) -> int:
        used = self._other_ids.setdefault(key, set())
        while True:
            v = int(self.rng.integers(low, high))
            if v not in used:
                used.add(v)
                return v

    def _quality(self, survey: str, quality) -> int:
        if quality == "clean":
            values, p = _CLEAN_QUALITY[survey]
            return int(values[self.rng.choice(len(values), p=p)])
        if quality == "fail":
            values = _FAILED_QUALITY[survey]
            return int(values[self.rng.integers(len(values))])
        return int(quality)

    def add_other(
        self, survey: str, *, galaxy_id: int, ra: float, dec: float, z_true: float, planted: str, patch: str,
        quality="clean", z: float | None = None, mag: float | None = None, duplicate_of: str = "",
        z_conflict: bool = False, **kw,
    ) -> dict:
        """One row of DEEP2, GAMA, VVDS, VIPERS, 6dFGS or WiggleZ (``quality``: 'clean', 'fail' or a flag value)."""
        rng = self.rng
        zerr = ZERR_SCALE[survey] * (1 + abs(z_true)) * 10 ** rng.normal(0, 0.15)
        if z is None:
            z = z_true + rng.normal(0, zerr)
        if mag is None:
            mag = float(rng.uniform(19.0, 23.5))
        maker = {
            "deep2": self._deep2, "gama": self._gama, "vvds": self._vvds, "vipers": self._vipers,
            "6dfgs": self._sixdfgs, "wigglez": self._wigglez,
        }[survey]
        values, objid, file_key, ra_w, dec_w, z_w, z_source = maker(
            ra=ra, dec=dec, z=float(z), zerr=zerr, quality=quality, mag=float(mag), patch=patch, **kw
        )
        row = {
            "values": values, "survey": survey, "survey_objid": str(objid), "galaxy_id": galaxy_id, "ra": ra_w,
            "dec": dec_w, "z_true": z_true, "planted": planted, "duplicate_of": duplicate_of,
            "z_conflict": z_conflict, "z_expected": float("nan") if kw.get("malformed") else z_w,
            "z_source": z_source, "file": file_key, "malformed": kw.get("malformed", ""),
        }
        self.other.setdefault(survey, []).append(row)
        return row

    def _deep2(self, *, ra, dec, z, zerr, quality, mag, cls="GALAXY", z_template=None, **_):
        rng = self.rng
        objno = self._unique("deep2", 11_000_000, 15_000_000)
        values = {
            "OBJNO": objno, "RA": ra, "DEC": dec, "MAGB": mag + 0.9 + rng.normal(0, 0.2), "MAGR": mag,
            "MAGI": mag - 0.4 + rng.normal(0, 0.1), "PGAL": 0.0 if cls == "STAR" else float(rng.uniform(0.9, 1.0)),
            "SFD_EBV": float(rng.uniform(0.005, 0.03)), "CLASS": cls, "SUBCLASS": "", "MASKNAME": int(rng.integers(1100, 1199)),
            "SLITNAME": f"{int(rng.integers(0, 150)):03d}", "MJD": int(rng.integers(52570, 54600)),
            "Z": z if z_template is None else z_template, "ZBEST": z, "ZERR": zerr,
            "ZQUALITY": self._quality("deep2", quality), "RCHI2": float(rng.uniform(0.8, 1.3)),
            "DOF": int(rng.integers(3000, 8000)), "COMMENT": "",
        }
        return values, objno, "deep2", ra, dec, float(z), "ZBEST"

    def _gama(self, *, ra, dec, z, quality, mag, cataid=None, is_best=True, is_sbest=True, gama_survey=("GAMA", 5), **_):
        rng = self.rng
        cataid = self._unique("gama", 6_800, 4_000_000) if cataid is None else int(cataid)
        name, code = gama_survey
        specid = f"{name[:5]}_{self._unique('gama-spec', 100_000, 999_999)}"
        nq = self._quality("gama", quality)
        z32 = float(np.float32(z))
        values = {
            "SPECID": specid, "SURVEY": name, "SURVEY_CODE": code, "RA": ra, "DEC": dec, "WMIN": 3727.0,
            "WMAX": 8857.0, "Z": z32, "NQ": nq, "PROB": 0.99 if nq >= 3 else float(rng.uniform(0.1, 0.8)),
            "FILENAME": f"/GAMA/dr4/data/spectra/{specid.lower()}.fit", "CATAID": cataid,
            "GAMA_NAME": _iau_name("GAMAJ", ra, dec), "IC_FLAG": 0, "DIST": float(rng.uniform(0, 0.3)),
            "IS_SBEST": bool(is_sbest), "IS_BEST": bool(is_best),
        }
        return values, cataid, "gama", ra, dec, z32, "Z"

    def _vvds(self, *, ra, dec, z, quality, mag, patch, udeep=False, **_):
        part = {"equatorial-a": "F10_WIDE", "equatorial-b": "F02_UDEEP" if udeep else "F02_DEEP", "south": "CDFS_DEEP"}[patch]
        prefix = {"F10_WIDE": 10, "F02_DEEP": 2, "F02_UDEEP": 2, "CDFS_DEEP": 53}[part]
        num = f"{prefix * 10_000_000 + self._unique(f'vvds-{prefix}', 1, 9_999_999):09d}"
        alpha, delta, z_text = f"{ra:.6f}", f"{dec:.6f}", f"{z:.4f}"
        values = {
            "NUM": num, "ALPHA": alpha, "DELTA": delta, "MAGI": f"{mag - 0.4:.3f}", "Z": z_text,
            "ZFLAGS": str(self._quality("vvds", quality)),
        }
        return values, num, f"vvds:{part}", float(alpha), float(delta), float(z_text), "Z"

    def _vipers(self, *, ra, dec, z, quality, mag, patch, class_flag="clean", **_):
        rng = self.rng
        field = "W1" if patch == "equatorial-b" else "W4"
        num = (1 if field == "W1" else 4) * 100_000_000 + self._unique("vipers", 1_000_000, 99_999_999)
        if quality == "clean":
            zflg = _VIPERS_GOOD_ZFLG[rng.integers(len(_VIPERS_GOOD_ZFLG))]
        elif quality == "fail":
            zflg = _VIPERS_BAD_ZFLG[rng.integers(len(_VIPERS_BAD_ZFLG))]
        else:
            zflg = float(quality)
        if class_flag == "clean":
            cf = 1 if rng.random() < 0.9 else 0
        else:
            cf = -1 if rng.random() < 0.6 else 2
        z32 = np.float32(z)
        values = {
            "num": num, "alpha": ra, "delta": dec, "selmag": mag - 0.4, "errselmag": 0.02,
            "pointing": f"{field}P{int(rng.integers(1, 200)):03d}", "quadrant": int(rng.integers(1, 5)), "zspec": z32,
            "zflg": np.float32(zflg), "norm": 1.0, "classFlag": cf, "tsr": float(rng.uniform(0.3, 0.6)),
            "ssr": float(rng.uniform(0.8, 1.0)),
        }
        return values, num, f"vipers:{field}", ra, dec, float(z32), "zspec"

    def _sixdfgs(self, *, ra, dec, z, quality, mag, **_):
        ra_text, dec_text, ra_w, dec_w = sexagesimal(ra, dec)
        name = "g" + ra_text.replace(" ", "").replace(".", "")[:7] + dec_text.replace(" ", "")[:7]
        while name in self._names:  # two objects in one 1.5-arcsec name cell: the survey would tell them apart
            name += "b"
        self._names.add(name)
        z_text = f"{z:.5f}"
        values = {
            "TARGETNAME": name, "TARGETID": str(self._unique("6dfgs", 100_000, 999_999)), "RA": ra_text,
            "DEC": dec_text, "BJ": f"{mag + 0.6:.2f}", "RF": f"{mag - 0.1:.2f}", "Z": z_text, "Z_ORIGIN": "1",
            "QUALITY": str(self._quality("6dfgs", quality)),
        }
        return values, name, "6dfgs", ra_w, dec_w, float(z_text), "Z"

    def _wigglez(self, *, ra, dec, z, quality, mag, **_):
        if np.isfinite(ra) and np.isfinite(dec):
            name = "R" + f"{int(ra // 15):02d}" + _iau_name("J", ra, dec).replace(".", "")
        else:
            name = f"R99J{self._unique('wigglez-bad', 0, 10**12):012d}"
        while name in self._names:
            name += "b"
        self._names.add(name)
        values = {"WiggleZ_Name": name, "RA": ra, "Dec": dec, "Redshift": z, "Q": self._quality("wigglez", quality),
                  "NUV": mag + 1.5, "r": mag}
        return values, name, "wigglez", ra, dec, float(z), "Redshift"


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
    atomic_write_text("\n".join(lines) + "\n", path, encoding="ascii")


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
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp, overwrite=True)


def sexagesimal(ra: float, dec: float) -> tuple[str, str, float, float]:
    """6dFGS-style text of a position in degrees ('hh mm ss.ss', '+dd mm ss.s') and the degrees it encodes."""
    cs = int(round(ra / 15.0 * 360000.0)) % (24 * 360000)
    h, rem = divmod(cs, 360000)
    m, rem = divmod(rem, 6000)
    ra_text = f"{h:02d} {m:02d} {rem // 100:02d}.{rem % 100:02d}"
    sign = "-" if dec < 0 else "+"
    ds = int(round(abs(dec) * 36000.0))
    d, rem2 = divmod(ds, 36000)
    m2, rem2 = divmod(rem2, 600)
    dec_text = f"{sign}{d:02d} {m2:02d} {rem2 // 10:02d}.{rem2 % 10}"
    ra_deg = (h + m / 60.0 + (rem / 100.0) / 3600.0) * 15.0
    dec_deg = (d + m2 / 60.0 + (rem2 / 10.0) / 3600.0) * (-1.0 if sign == "-" else 1.0)
    return ra_text, dec_text, ra_deg, dec_deg


def _iau_name(prefix: str, ra: float, dec: float) -> str:
    """An IAU-style name 'PREFIXhhmmss.ss+ddmmss.s' ('' for a position that is not one)."""
    if not (np.isfinite(ra) and np.isfinite(dec) and 0 <= ra < 360 and abs(dec) <= 90):
        return ""
    ra_text, dec_text, _, _ = sexagesimal(ra, dec)
    return prefix + ra_text.replace(" ", "") + dec_text.replace(" ", "")


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


def _write_fits_table(rows: list[dict], columns: tuple[tuple[str, str], ...], path: Path, extname: str | None = None) -> None:
    from astropy.io import fits

    dtypes = {"J": np.int32, "K": np.int64, "I": np.int16, "E": np.float32, "D": np.float64, "L": bool}
    cols = []
    for name, fmt in columns:
        values = [r["values"][name] for r in rows]
        if fmt.endswith("A"):
            array = np.array([str(v).encode("ascii") for v in values], dtype=f"S{int(fmt[:-1])}")
        else:
            array = np.array(values, dtype=dtypes[fmt])
        cols.append(fits.Column(name=name, format=fmt, array=array))
    table = fits.BinTableHDU.from_columns(cols, name=extname)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp, overwrite=True)


def _write_text(lines: list[str], path: Path) -> None:
    atomic_write_text("\n".join(lines) + "\n", path, encoding="ascii")


def _write_vvds_txt(rows: list[dict], path: Path, part: str) -> None:
    field, depth = part.split("_")
    lines = [
        f"# VVDS final data release (Le Fevre et al. 2013), {depth} survey, field {field}",
        "# NUM: identifier; ALPHA, DELTA: J2000 (deg); MAGI: I_AB (mag); Z: redshift; ZFLAGS: reliability flag",
        "  ".join(VVDS_COLUMNS),
    ]
    for r in rows:
        fields = [r["values"][c] for c in VVDS_COLUMNS]
        if r["malformed"] == "truncated":
            fields = fields[:-1]
        elif r["malformed"] == "z_text":
            fields[VVDS_COLUMNS.index("Z")] = "*******"
        lines.append("  ".join(fields))
    _write_text(lines, path)


def _write_6dfgs_txt(rows: list[dict], path: Path) -> None:
    lines = [
        "# 6dF Galaxy Survey final redshift release (DR3, Jones et al. 2009)",
        "# RA (J2000, h m s), DEC (J2000, d m s); Z: redshift; QUALITY: 1-4, 6 = Galactic",
        "\t".join(SIXDF_COLUMNS),
    ]
    for r in rows:
        fields = [r["values"][c] for c in SIXDF_COLUMNS]
        if r["malformed"] == "truncated":
            fields = fields[:-3]
        elif r["malformed"] == "dec_minutes":
            d, _, s = fields[SIXDF_COLUMNS.index("DEC")].split(" ")
            fields[SIXDF_COLUMNS.index("DEC")] = f"{d} 61 {s}"
        lines.append("\t".join(fields))
    _write_text(lines, path)


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
