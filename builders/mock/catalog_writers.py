"""File formats of the mock survey catalogs: each survey's columns (in file order) and its writer.

``_write_sdss_csv`` (SDSS SpecObjAll CSV, with the planted malformed rows), ``_write_desi_fits`` (DESI
ZCATALOG), ``_write_fits_table`` (DEEP2, GAMA, VIPERS, WiggleZ), ``_write_vvds_txt`` and
``_write_6dfgs_txt`` (ASCII tables, with the planted unreadable rows). Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mantis_data._io import atomic_path, atomic_write_text

from .healpix import healpix_nest

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

DESI_HEALPIX_NSIDE = 64

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
