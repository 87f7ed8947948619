"""Rows of the mock survey catalogs: ``_Rows`` draws each row's ids, column values and truth.

Holds what the rows are made of: the SDSS programs and legacy_target1 bits (``_legacy_bits``), the DESI
survey/program pairs, each survey's quality-flag values and redshift errors (``ZERR_SCALE``), and the
position text of 6dFGS rows and IAU-style names (``sexagesimal``, ``_iau_name``). Positions in degrees,
redshifts dimensionless.
"""

from __future__ import annotations

import numpy as np

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
_DESI_PAIRS = (
    ("sv3", "bright"), ("sv3", "dark"), ("sv1", "bright"), ("sv1", "dark"), ("sv1", "other"),
    ("sv2", "dark"), ("special", "dark"), ("cmx", "other"),
)
_SDSS_GAL_SUBCLASS = ("", "", "", "STARFORMING", "STARBURST", "AGN", "BROADLINE", "STARFORMING BROADLINE")

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
