"""Named sub-populations of an evaluation (the paper's Sec. 7.2, Table 5, appendix E).

Two kinds, each selecting rows of a predictions file and reported as extra rows of the metrics table
(``mantis-data evaluate``), with N and bootstrap intervals like every row:

- ``sdss-mgs``: the SDSS Main Galaxy Sample, from the SDSS Legacy targeting bits (``legacy_target1``,
  the PRIMTARGET of SDSS-I/II: GALAXY 0x40, GALAXY_BIG 0x80, GALAXY_BRIGHT_CORE 0x100; Strauss et al.
  2002), which the catalog compilation keeps in ``targets.parquet`` and in a release's
  ``targets_audit.parquet``. The paper selected its MGS rows by a Petrosian r < 17.77 CasJobs query
  instead (appendix E); the target bits are the survey's own definition of the same sample.
- an external catalog file (Parquet, CSV or FITS) with ``ra``, ``dec`` in degrees: the galaxies matched
  to one of its rows within a radius (default 1.5 arcsec, the paper's), optionally only where the
  catalog's spectroscopic redshift agrees with ours, ``|z_cat - z| <= dz (1 + z)`` (the paper used
  dz = 1e-3 for its comparison catalogs). When the catalog carries its own photometric redshifts
  (``z_phot``, or ``z_phot_mean``), a second row gives that catalog's metrics on the same galaxies, as the
  paper's B22 and Zhou et al. comparisons: point metrics from ``z_phot``; CDE loss and PIT from a Gaussian
  of width ``z_phot_err`` (or ``z_phot_std``) discretised on the grid's cells, when that column exists
  (the paper's simplifying assumption), else not reported.

The predictions file has no coordinates: they, and the MGS bits, come from a targets table given with
``--targets`` (``target_id``, ``ra``, ``dec``; rows with ``accepted`` False, in an audit, are ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputDataError
from .metrics import GalaxyTerms, galaxy_terms, residuals
from .redshift import CELL_EDGES, N_BINS, in_label_range

MGS_BITS = 0x40 | 0x80 | 0x100
"""SDSS legacy_target1 (PRIMTARGET) bits of the Main Galaxy Sample: GALAXY, GALAXY_BIG, GALAXY_BRIGHT_CORE."""
NAMED = ("sdss-mgs",)
"""Sub-populations selectable by name (``--subpopulation``)."""
DEFAULT_MATCH_ARCSEC = 1.5
"""The paper's cross-match tolerance (arcsec)."""

_SPEC_Z = ("z_spec", "z")
_PHOT_Z = ("z_phot", "z_phot_mean")
_PHOT_ERR = ("z_phot_err", "z_phot_std")


@dataclass(frozen=True)
class Subpopulation:
    """One sub-population: a mask over the predictions' rows, and optionally a comparison catalog's own terms.

    comparison: the catalog's photo-z terms on the masked galaxies (in row order), reported as the row
    ``comparison_name``; details: what the report records about how the rows were chosen.
    """

    name: str
    mask: np.ndarray
    comparison: GalaxyTerms | None = None
    comparison_name: str | None = None
    details: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Reading tables
# --------------------------------------------------------------------------------------------------


def _read_columns(path: Path, what: str) -> dict[str, np.ndarray]:
    """All columns of a Parquet, CSV or FITS table as numpy arrays keyed by lower-case name."""
    if not path.is_file():
        raise InputDataError(f"{what} {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix in (".csv", ".txt"):
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        elif suffix in (".fits", ".fit", ".fz") or path.name.lower().endswith(".fits.gz"):
            try:
                from astropy.table import Table
            except ImportError as exc:
                raise InputDataError(f"reading FITS {what} {path} needs astropy: pip install 'mantis-data[build]'") from exc
            t = Table.read(path, hdu=1)
            return {c.lower(): np.asarray(t[c]) for c in t.colnames}
        else:
            raise InputDataError(f"{what} {path}: unknown format {suffix!r}; give a .parquet, .csv or .fits file")
    except InputDataError:
        raise
    except Exception as exc:  # pyarrow / astropy parse errors
        raise InputDataError(f"{what} {path} is not a readable table ({type(exc).__name__}: {exc})") from exc
    return {name.lower(): table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _pick(cols: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray | None:
    return next((cols[n] for n in names if n in cols), None)


def _floats(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"column {name} of {path} is not numeric ({exc})") from exc


@dataclass(frozen=True)
class Targets:
    """The predictions' galaxies located in a targets table: ra, dec (deg) and the columns read, per row."""

    path: Path
    ra: np.ndarray
    dec: np.ndarray
    columns: dict[str, np.ndarray]


def locate(target_ids: np.ndarray, path: str | Path) -> Targets:
    """Each predicted galaxy's row of a targets table (``target_id``, ``ra``, ``dec``), in predictions order."""
    path = Path(path)
    cols = _read_columns(path, "targets table")
    missing = [c for c in ("target_id", "ra", "dec") if c not in cols]
    if missing:
        raise InputDataError(
            f"targets table {path} has no column {', '.join(missing)}; give targets.parquet of the catalog "
            "compilation or a release's targets_audit.parquet"
        )
    keep = np.ones(len(cols["target_id"]), dtype=bool)
    if "accepted" in cols:
        keep = np.asarray(cols["accepted"], dtype=bool)
    ids = np.asarray(cols["target_id"], dtype=object)[keep].astype(str)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if np.any(sorted_ids[1:] == sorted_ids[:-1]):
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
        raise InputDataError(f"targets table {path}: target_id {dup!r} appears twice among accepted rows")
    want = np.asarray(target_ids, dtype=object).astype(str)
    pos = np.searchsorted(sorted_ids, want)
    found = (pos < len(sorted_ids)) & (sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == want)
    if not found.all():
        raise InputDataError(
            f"{int((~found).sum())} of {len(want)} predicted galaxies (first: {want[~found][0]!r}) are not in "
            f"targets table {path}; give the targets of the release the predictions come from"
        )
    rows = np.flatnonzero(keep)[order[pos]]
    picked = {k: v[rows] for k, v in cols.items()}
    return Targets(path, _floats(picked["ra"], path, "ra"), _floats(picked["dec"], path, "dec"), picked)


# --------------------------------------------------------------------------------------------------
# Named sub-populations
# --------------------------------------------------------------------------------------------------


def sdss_mgs(targets: Targets) -> Subpopulation:
    """The SDSS Main Galaxy Sample: galaxies whose legacy_target1 has a GALAXY, GALAXY_BIG or BRIGHT_CORE bit."""
    bits = targets.columns.get("legacy_target1")
    if bits is None:
        raise InputDataError(
            f"targets table {targets.path} has no legacy_target1 column (the SDSS targeting bits); recompile "
            "the catalogs with this version from a SpecObjAll file that has it"
        )
    b = np.asarray(bits, dtype=np.float64)  # nullable: NaN for non-SDSS rows; the bits are < 2**32, exact
    set_ = np.isfinite(b) & (b >= 0)
    ints = np.where(set_, b, 0).astype(np.int64)
    mask = set_ & ((ints & MGS_BITS) != 0)
    return Subpopulation(
        "sdss-mgs",
        mask,
        details={"definition": "SDSS legacy_target1 & (GALAXY | GALAXY_BIG | GALAXY_BRIGHT_CORE) != 0",
                 "targets": str(targets.path)},
    )


# --------------------------------------------------------------------------------------------------
# Cross-matching an external catalog
# --------------------------------------------------------------------------------------------------


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def match_nearest(ra1, dec1, ra2, dec2, radius_arcsec: float, chunk: int = 2**20) -> tuple[np.ndarray, np.ndarray]:
    """For each position 1, the index of its nearest position 2 within the radius (-1: none) and the separation (arcsec).

    Positions in degrees. Sorts the second set by declination and compares each position 1 with the
    positions 2 in its declination strip only, so memory and time scale with the strip's population.
    """
    ra1, dec1 = np.asarray(ra1, np.float64), np.asarray(dec1, np.float64)
    ra2, dec2 = np.asarray(ra2, np.float64), np.asarray(dec2, np.float64)
    n1 = ra1.size
    best = np.full(n1, -1, dtype=np.int64)
    sep = np.full(n1, np.inf)
    if n1 == 0 or ra2.size == 0:
        return best, sep
    rad = float(radius_arcsec) / 3600.0
    order = np.argsort(dec2, kind="stable")
    d2 = dec2[order]
    v2 = _unit(ra2[order], d2)
    v1 = _unit(ra1, dec1)
    lo = np.searchsorted(d2, dec1 - rad, side="left")
    hi = np.searchsorted(d2, dec1 + rad, side="right")
    width = hi - lo
    max_chord2 = (2 * math.sin(math.radians(rad) / 2)) ** 2
    start = 0
    while start < n1:  # batches of positions 1 whose candidate pairs fit in `chunk`
        stop = start + 1
        total = width[start]
        while stop < n1 and total + width[stop] <= chunk:
            total += width[stop]
            stop += 1
        w = width[start:stop]
        if w.sum():
            owner = np.repeat(np.arange(start, stop), w)
            offsets = np.arange(w.sum()) - np.repeat(np.cumsum(w) - w, w)
            cand = lo[owner] + offsets
            d = ((v1[owner] - v2[cand]) ** 2).sum(axis=1)
            ok = d <= max_chord2
            owner, cand, d = owner[ok], cand[ok], d[ok]
            if owner.size:
                # nearest per owner: sort by (owner, distance), take the first of each owner
                o = np.lexsort((d, owner))
                owner, cand, d = owner[o], cand[o], d[o]
                first = np.r_[True, owner[1:] != owner[:-1]]
                best[owner[first]] = order[cand[first]]
                sep[owner[first]] = np.degrees(2 * np.arcsin(np.sqrt(d[first]) / 2)) * 3600.0
        start = stop
    return best, sep


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (scipy's when installed, else Abramowitz & Stegun 7.1.26: |error| < 1.5e-7)."""
    try:
        from scipy.special import ndtr

        return ndtr(x)
    except ImportError:
        y = np.abs(x) / math.sqrt(2.0)
        t = 1.0 / (1.0 + 0.3275911 * y)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        erf = 1.0 - poly * np.exp(-y * y)
        return 0.5 * (1.0 + np.sign(x) * erf)


def gaussian_terms(z_true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, chunk: int = 20_000) -> GalaxyTerms:
    """Per-galaxy terms of Gaussian photo-z PDFs (mean, sigma) integrated over the grid's cells, renormalised.

    The point estimate is ``mean`` itself (as the comparison catalogs report it); PIT and CDE term come from
    the discretised Gaussian (a sigma below 1e-6 is raised to 1e-6).
    """
    z_true, mean = np.asarray(z_true, np.float64), np.asarray(mean, np.float64)
    sigma = np.maximum(np.asarray(sigma, np.float64), 1e-6)
    pit, cde = np.empty(z_true.size), np.empty(z_true.size)
    for a in range(0, z_true.size, chunk):
        b = min(z_true.size, a + chunk)
        cdf = _normal_cdf((CELL_EDGES[None, :] - mean[a:b, None]) / sigma[a:b, None])
        p = np.diff(cdf, axis=1)
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / N_BINS)  # all mass off the grid: flat
        g = galaxy_terms(z_true[a:b], p)
        pit[a:b], cde[a:b] = g.pit, g.cde_term
    return GalaxyTerms(z_true, mean, residuals(z_true, mean), pit, cde, in_label_range(z_true))


def external_catalog(
    path: str | Path,
    targets: Targets,
    z: np.ndarray,
    radius_arcsec: float = DEFAULT_MATCH_ARCSEC,
    dz: float | None = None,
    name: str | None = None,
) -> Subpopulation:
    """The predicted galaxies matched to a catalog file within ``radius_arcsec`` (and ``|dz| <= dz (1 + z)``)."""
    path = Path(path)
    if not radius_arcsec > 0:
        raise InputDataError(f"--match-radius must be > 0 arcsec, not {radius_arcsec}")
    cols = _read_columns(path, "comparison catalog")
    missing = [c for c in ("ra", "dec") if c not in cols]
    if missing:
        raise InputDataError(f"comparison catalog {path} has no column {', '.join(missing)} (degrees, ICRS)")
    cra, cdec = _floats(cols["ra"], path, "ra"), _floats(cols["dec"], path, "dec")
    idx, sep = match_nearest(targets.ra, targets.dec, cra, cdec, radius_arcsec)
    matched = idx >= 0
    # one catalog row per galaxy, and one galaxy per catalog row (the nearest)
    rows = np.flatnonzero(matched)
    if rows.size:
        o = np.lexsort((sep[rows], idx[rows]))
        r_sorted = rows[o]
        dup = np.r_[False, idx[r_sorted][1:] == idx[r_sorted][:-1]]
        matched[r_sorted[dup]] = False
    n_position = int(matched.sum())
    details = {"catalog": str(path), "match_radius_arcsec": float(radius_arcsec), "n_catalog": int(cra.size),
               "n_matched_by_position": n_position}
    if dz is not None:
        zc = _pick(cols, _SPEC_Z)
        if zc is None:
            raise InputDataError(f"--match-dz needs a spectroscopic redshift column z_spec (or z) in {path}")
        zc = _floats(zc, path, "z_spec")
        agree = np.zeros_like(matched)
        agree[matched] = np.abs(zc[idx[matched]] - z[matched]) <= float(dz) * (1.0 + z[matched])
        details.update(match_dz=float(dz), n_removed_by_dz=int((matched & ~agree).sum()))
        matched &= agree
    label = name or path.stem
    sub_name = f"match:{label}"
    comparison = None
    zp = _pick(cols, _PHOT_Z)
    if zp is not None:
        zp = _floats(zp, path, "z_phot")[idx[matched]]
        zt = z[matched]
        if not np.isfinite(zp).all():
            raise InputDataError(f"comparison catalog {path}: z_phot is NaN for {int((~np.isfinite(zp)).sum())} matched rows")
        err = _pick(cols, _PHOT_ERR)
        if err is not None:
            comparison = gaussian_terms(zt, zp, _floats(err, path, "z_phot_err")[idx[matched]])
            details["comparison_density"] = "Gaussian(z_phot, z_phot_err) on the grid's cells"
        else:
            nan = np.full(zt.size, np.nan)
            comparison = GalaxyTerms(zt, zp, residuals(zt, zp), nan, nan.copy(), in_label_range(zt))
            details["comparison_density"] = "none (no z_phot_err column): CDE loss and PIT not reported"
    return Subpopulation(sub_name, matched, comparison, f"{sub_name} ({label}'s own z_phot)" if comparison else None,
                         details)


def build(
    target_ids: np.ndarray,
    z: np.ndarray,
    targets_path: str | Path | None,
    names: list[str] | tuple[str, ...] = (),
    catalogs: list[str | Path] | tuple[str | Path, ...] = (),
    radius_arcsec: float = DEFAULT_MATCH_ARCSEC,
    dz: float | None = None,
) -> list[Subpopulation]:
    """The sub-populations asked for on the command line, over the rows of a predictions file."""
    if not names and not catalogs:
        return []
    if targets_path is None:
        raise InputDataError(
            "--subpopulation and --match-catalog need --targets (targets.parquet or a release's "
            "targets_audit.parquet) for the galaxies' coordinates and targeting bits"
        )
    unknown = [n for n in names if n not in NAMED]
    if unknown:
        raise InputDataError(f"unknown sub-population {unknown[0]!r}; known: {', '.join(NAMED)}")
    targets = locate(target_ids, targets_path)
    out = [sdss_mgs(targets) for n in names if n == "sdss-mgs"]
    stems = [Path(c).stem for c in catalogs]
    for k, c in enumerate(catalogs):  # two files with one stem get distinct row names
        label = stems[k] if stems.count(stems[k]) == 1 else f"{stems[k]}-{k + 1}"
        out.append(external_catalog(c, targets, np.asarray(z, np.float64), radius_arcsec, dz, name=label))
    return out


def with_comparisons(rows: list, subpops: list[Subpopulation], B: int, seed: int, outlier_threshold: float) -> list:
    """The metrics rows with each comparison catalog's own row inserted right after its sub-population's row."""
    from .metrics import summarize

    extra = {}
    for i, sp in enumerate(subpops):
        if sp.comparison is not None:
            extra[sp.name] = summarize(
                sp.comparison, sp.comparison_name, B=B, seed=np.random.SeedSequence([int(seed), 7919, i]),
                outlier_threshold=outlier_threshold,
            )
    out = []
    for row in rows:
        out.append(row)
        if row.name in extra:
            out.append(extra.pop(row.name))
    return out


def describe(subpops: list[Subpopulation]) -> list[dict]:
    """JSON-ready records of how each sub-population was chosen, with its N."""
    return [{"name": sp.name, "n": int(sp.mask.sum()), "comparison": sp.comparison_name, **sp.details} for sp in subpops]


def add_arguments(parser) -> None:
    """The sub-population options of ``mantis-data evaluate``."""
    parser.add_argument(
        "--targets",
        type=Path,
        default=None,
        help="targets table with target_id, ra, dec (targets.parquet, or RELEASE/targets_audit.parquet): "
        "needed by --subpopulation and --match-catalog",
    )
    parser.add_argument(
        "--subpopulation",
        action="append",
        choices=NAMED,
        default=[],
        help="add a named sub-population row: sdss-mgs (SDSS Main Galaxy Sample from its targeting bits)",
    )
    parser.add_argument(
        "--match-catalog",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="add a row for the galaxies matched to this catalog (Parquet/CSV/FITS with ra, dec; optional "
        "z_spec for --match-dz, z_phot and z_phot_err for the catalog's own metrics); repeatable",
    )
    parser.add_argument(
        "--match-radius",
        type=float,
        default=DEFAULT_MATCH_ARCSEC,
        metavar="ARCSEC",
        help=f"cross-match tolerance in arcsec ({DEFAULT_MATCH_ARCSEC:g} is the paper's)",
    )
    parser.add_argument(
        "--match-dz",
        type=float,
        default=None,
        metavar="DZ",
        help="keep matches with |z_spec - z| <= DZ (1 + z) only (the paper used 1e-3)",
    )


def from_args(args, target_ids: np.ndarray, z: np.ndarray) -> list[Subpopulation]:
    """The sub-populations of a parsed ``mantis-data evaluate`` command line."""
    return build(
        target_ids,
        z,
        getattr(args, "targets", None),
        names=getattr(args, "subpopulation", []) or [],
        catalogs=getattr(args, "match_catalog", []) or [],
        radius_arcsec=getattr(args, "match_radius", DEFAULT_MATCH_ARCSEC),
        dz=getattr(args, "match_dz", None),
    )


def markdown_notes(records: list[dict]) -> list[str]:
    """metrics.md lines saying how each sub-population row was selected."""
    lines = []
    for r in records:
        if "catalog" in r:
            how = (f"{r['n_matched_by_position']:,} of the galaxies lie within {r['match_radius_arcsec']:g}\" of a row "
                   f"of `{r['catalog']}` ({r['n_catalog']:,} rows)")
            if "match_dz" in r:
                how += f"; {r['n_removed_by_dz']:,} removed by |z_spec − z| > {r['match_dz']:g} (1 + z)"
            if r.get("comparison"):
                how += f". Row \"{r['comparison']}\": the catalog's own photo-z, density {r['comparison_density']}"
        else:
            how = f"{r['definition']} (from `{r['targets']}`)"
        lines.append(f"- **{r['name']}** ({r['n']:,} galaxies): {how}.")
    return lines + [""] if lines else []
