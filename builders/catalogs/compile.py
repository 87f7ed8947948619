"""Compile the unified target list: read every survey, apply the common cuts, merge duplicates, audit.

Order of cuts (the first failing one is a row's ``reject_reason``): the survey reader's own, then
``bad_coordinates`` (non-finite, ra outside [0, 360) or |dec| > 90 deg), ``bad_redshift`` (non-finite),
then the common ones: ``dec_below_-30``, ``z_out_of_range`` (outside the label range 0 < z < 1.6),
``duplicate_row`` (the same target id twice: the first row in file order stays) and
``duplicate_of:<target_id>`` (another accepted target within ``match_arcsec``; the kept one is chosen
by survey ``priority``, then by the smallest target id).

The survey readers' reasons, in the order each applies them (``unreadable_row: <why>`` is a row that
could not be split into fields, or a required value that is empty or not a number; it comes first):

========  =====================================================================
survey    reasons
========  =====================================================================
sdss      unreadable_row, zwarning (zWarning != 0), class (class != GALAXY)
desi      unreadable_row, not_primary (not ZCAT_PRIMARY), zwarning (ZWARN != 0),
          class (SPECTYPE != GALAXY)
deep2     unreadable_row, zquality (ZQUALITY < 3), class (CLASS != GALAXY)
gama      unreadable_row, not_primary (another spectrum of the CATAID is kept),
          nq (NQ < 3)
vvds      unreadable_row, zflags (ZFLAGS not 3 or 4)
vipers    unreadable_row, zflg (not 2 <= zflg < 5), classflag (classFlag not 0 or 1)
6dfgs     unreadable_row, quality (QUALITY not 3 or 4)
wigglez   unreadable_row, q (Q < 4)
========  =====================================================================

A survey may come as several files (VVDS: WIDE, DEEP, UDEEP; VIPERS: W1, W4). ``source_file`` names
each row's file and ``file_row`` its 0-based data row there; ``source_row`` numbers the survey's rows
through its files in the order ``find_catalogs`` lists them, so ``(survey, source_row)`` is unique too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mantis_data.errors import InputDataError
from mantis_data.redshift import Z_MAX

from . import deep2, desi, gama, sdss, sixdfgs, vipers, vvds, wigglez
from .common import reject

READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "sdss": sdss.read,
    "desi": desi.read,
    "deep2": deep2.read,
    "gama": gama.read,
    "vvds": vvds.read,
    "vipers": vipers.read,
    "6dfgs": sixdfgs.read,
    "wigglez": wigglez.read,
}

CATALOG_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "sdss": (("sdss/SpecObjAll.csv",), ("sdss/SpecObjAll.tsv",), ("sdss/SpecObjAll.fits",)),
    "desi": (("desi/zall-pix-fuji.fits",),),
    "deep2": (deep2.FILES,),
    "gama": (gama.FILES,),
    "vvds": (vvds.FILES, vvds.FITS_FILES),
    "vipers": (vipers.FILES, vipers.TEXT_FILES),
    "6dfgs": tuple((f,) for f in sixdfgs.FILES),
    "wigglez": tuple((f,) for f in wigglez.FILES),
}
"""Where ``find_catalogs`` looks for each survey under an input folder: alternative layouts, each a
tuple of glob patterns read together (in pattern order, then name order); the first layout with any
file wins. Folder and file names match ignoring case, and each name may carry a ``.gz`` suffix."""

DEFAULT_PRIORITY: tuple[str, ...] = ("desi", "sdss", "deep2", "gama", "vipers", "vvds", "wigglez", "6dfgs")
"""Which survey's redshift is kept when one galaxy appears in several (first wins)."""

DEC_MIN = -30.0
MATCH_ARCSEC = 1.0
TARGETING_COLUMNS: tuple[str, ...] = ("legacy_target1",)
"""Targeting-bit columns of the survey tables kept in targets.parquet (SDSS legacy_target1: the MGS bits)."""
Z_CONFLICT = 0.01


def _survey_folder(folder: Path, name: str) -> Path | None:
    """The sub-folder ``name`` of ``folder``, matched ignoring case (exact name first)."""
    if (folder / name).is_dir():
        return folder / name
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    return None


def accepted_names(survey: str) -> list[str]:
    """The file names (patterns) ``find_catalogs`` accepts for ``survey``, each also with ``.gz``."""
    return [pattern.split("/", 1)[1] for layout in CATALOG_FILES[survey] for pattern in layout]


def survey_files(folder: str | Path, survey: str) -> list[Path]:
    """The files of ``survey`` under ``folder`` in reading order (empty if none), per ``CATALOG_FILES``."""
    import fnmatch

    folder = Path(folder)
    for layout in CATALOG_FILES[survey]:
        files: list[Path] = []
        for pattern in layout:
            sub, name = pattern.split("/", 1)
            where = _survey_folder(folder, sub)
            if where is None:
                continue
            name = name.lower()
            for path in sorted(where.iterdir()):
                low = path.name.lower()
                if path.is_file() and path not in files and (
                    fnmatch.fnmatchcase(low, name) or (low.endswith(".gz") and fnmatch.fnmatchcase(low[:-3], name))
                ):
                    files.append(path)
        if files:
            return files
    return []


def find_catalogs(folder: str | Path, surveys: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """The survey catalog files under ``folder`` (laid out as ``CATALOG_FILES``), per survey in reading order.

    ``surveys``: the surveys that must be there (each one missing is an error); None takes those present.
    Either way a survey folder that exists but holds no file by an accepted name is an InputDataError
    naming the folder, the files found and the names accepted, raised before anything is read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"catalog folder {folder} does not exist")
    wanted = list(CATALOG_FILES) if surveys is None else list(surveys)
    unknown = [s for s in wanted if s not in CATALOG_FILES]
    if unknown:
        raise InputDataError(f"unknown survey {unknown[0]!r}; choose from {', '.join(CATALOG_FILES)}")
    found: dict[str, list[Path]] = {}
    problems: list[str] = []
    for survey in wanted:
        files = survey_files(folder, survey)
        if files:
            found[survey] = files
            continue
        sub = _survey_folder(folder, CATALOG_FILES[survey][0][0].split("/", 1)[0])
        accepted = " or ".join(f"{n}[.gz]" for n in accepted_names(survey))
        if sub is not None:
            present = sorted(p.name for p in sub.iterdir())[:10]
            problems.append(f"{survey}: nothing readable in {sub} (found: {', '.join(present) or 'no files'}; accepted: {accepted})")
        elif surveys is not None:
            problems.append(f"{survey}: no folder {folder / survey} (accepted: {survey}/{accepted})")
    if problems:
        raise InputDataError(
            "; ".join(problems) + ("; choose surveys with --surveys" if surveys is not None else "")
        )
    if not found:
        expected = ", ".join(p for layouts in CATALOG_FILES.values() for layout in layouts for p in layout)
        raise InputDataError(f"no survey catalog found under {folder}; expected any of: {expected}")
    return found


def read_survey(survey: str, paths: str | Path | Sequence[str | Path], require_rows: bool = False) -> pd.DataFrame:
    """One survey's rows from all its files, in order: ``file_row`` within each file, ``source_row`` running through them.

    ``require_rows``: a survey whose files hold no rows (header only, 0-row table) is an InputDataError naming them.
    """
    if survey not in READERS:
        raise InputDataError(f"no reader for survey {survey!r}; known: {sorted(READERS)}")
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    frames = []
    offset = 0
    for path in files:
        frame = READERS[survey](path)
        frame.insert(frame.columns.get_loc("source_row") + 1, "file_row", frame["source_row"].to_numpy())
        frame["source_row"] = frame["source_row"].to_numpy() + offset
        offset += len(frame)
        frames.append(frame)
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed parse buffers otherwise
    if require_rows and offset == 0:
        raise InputDataError(
            f"{survey}: {', '.join(map(str, files))} hold{'s' if len(files) == 1 else ''} no rows (a header only, "
            "or an empty table); download it again or leave the survey out with --surveys"
        )
    return concat_tables(frames)


def concat_tables(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate unified tables column by column, emptying the inputs as it goes (peak ~ one copy, not two).

    Columns missing from some tables are filled with NaN (numeric) or None (others, as object).
    """
    if len(frames) == 1:
        return frames[0]
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    sizes = [len(f) for f in frames]
    index = pd.RangeIndex(sum(sizes))
    data = {}
    for name in names:
        parts = [f[name] if name in f.columns else None for f in frames]
        dtypes = {p.dtype for p in parts if p is not None}
        if any(isinstance(d, pd.StringDtype) for d in dtypes):
            fill = [p if p is not None else pd.Series(pd.array([None] * k, dtype="str")) for p, k in zip(parts, sizes, strict=True)]
            data[name] = pd.concat(fill, ignore_index=True)
        else:
            numeric = all(isinstance(d, np.dtype) and d.kind in "iuf" for d in dtypes)
            if len(dtypes) == 1 and all(p is not None for p in parts):
                arrays = [p.to_numpy() for p in parts]
            elif numeric:
                arrays = [p.to_numpy(dtype=np.float64) if p is not None else np.full(k, np.nan) for p, k in zip(parts, sizes, strict=True)]
            else:
                arrays = [p.to_numpy(dtype=object) if p is not None else np.full(k, None, dtype=object) for p, k in zip(parts, sizes, strict=True)]
            out = np.concatenate(arrays)
            data[name] = pd.Series(out, index=index, dtype=object, copy=False) if out.dtype == object else out
        del parts
        for f in frames:
            if name in f.columns:
                del f[name]
    return pd.DataFrame(data, index=index, copy=False)


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def match_groups(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Group label (int) of each position (degrees): positions linked by separations <= radius (arcsec) share a label.

    KD-tree on unit vectors (O(N log N)), then connected components of the pair graph. A group's label
    is the index of its first member, so an unmatched position's label is its own index.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(ra_deg)
    labels = np.arange(n, dtype=np.int64)
    if n == 0:
        return labels
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    tree = cKDTree(_unit_vectors(np.asarray(ra_deg), np.asarray(dec_deg)), balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(r=chord, output_type="ndarray")
    del tree
    if len(pairs) == 0:
        return labels
    nodes, local = np.unique(pairs.ravel(), return_inverse=True)
    local = local.reshape(-1, 2)
    m = len(nodes)
    graph = coo_matrix((np.ones(len(local), dtype=np.int8), (local[:, 0], local[:, 1])), shape=(m, m))
    n_comp, comp = connected_components(graph, directed=False)
    first = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(first, comp, nodes)
    labels[nodes] = first[comp]
    return labels


def merge_duplicates(
    audit: pd.DataFrame, radius_arcsec: float, priority: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mark accepted rows that duplicate another accepted target; return (z_conflict, n_duplicates) per row."""
    n = len(audit)
    z_conflict = np.zeros(n, dtype=bool)
    n_dup = np.zeros(n, dtype=np.int32)
    reason = audit["reject_reason"].to_numpy(dtype=object).copy()
    ok = np.flatnonzero(pd.isna(reason))
    if len(ok) == 0:
        return z_conflict, n_dup
    labels = match_groups(audit["ra"].to_numpy()[ok], audit["dec"].to_numpy()[ok], radius_arcsec)
    size = np.bincount(labels, minlength=len(ok))
    sel = np.flatnonzero(size[labels] > 1)  # positions (in ok) of rows that have a match
    if len(sel) == 0:
        return z_conflict, n_dup
    rows = ok[sel]
    rank = {s: i for i, s in enumerate(priority)}
    prio = audit["survey"].iloc[rows].map(rank).fillna(len(rank)).to_numpy(dtype=np.int64)
    tids = audit["target_id"].iloc[rows].to_numpy(dtype=object).astype(str)
    lab = labels[sel]
    order = np.lexsort((tids, prio, lab))
    sorted_labels = lab[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    keeper_pos = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    keeper_of = np.empty(len(order), dtype=np.int64)
    keeper_of[order] = keeper_pos  # position (in sel) of each row's kept target
    is_dup = keeper_of != np.arange(len(sel))
    z = audit["z"].to_numpy()[rows]
    disagree = is_dup & (np.abs(z - z[keeper_of]) > Z_CONFLICT * (1 + z[keeper_of]))
    dup_rows = rows[is_dup]
    reason[dup_rows] = np.array(["duplicate_of:" + t for t in tids[keeper_of[is_dup]]], dtype=object)
    audit["reject_reason"] = pd.Series(reason, index=audit.index, dtype=object)
    np.add.at(n_dup, rows[keeper_of[is_dup]], 1)
    z_conflict[rows[keeper_of[disagree]]] = True
    return z_conflict, n_dup


def repeated_ids(audit: pd.DataFrame, among: np.ndarray) -> np.ndarray:
    """Mask of the rows (where ``among``) whose target id appeared in an earlier such row (second and later of each).

    Target ids of different surveys differ by their prefix, so each survey is done alone: by sorting the
    native ids as integers where every one is a canonical integer, else by hashing the target ids.
    """
    out = np.zeros(len(audit), dtype=bool)
    codes, surveys = pd.factorize(audit["survey"].to_numpy(dtype=object))
    for k in range(len(surveys)):
        rows = np.flatnonzero(among & (codes == k))
        if len(rows) < 2:
            continue
        objid = pa.array(audit["survey_objid"].iloc[rows].array, type=pa.string())
        try:
            ints = pc.cast(objid, pa.int64())
            canonical = bool(pc.all(pc.equal(pc.cast(ints, pa.string()), objid)).as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            canonical = False
        if canonical:
            values = ints.to_numpy(zero_copy_only=False)
            order = np.argsort(values, kind="stable")  # equal ids keep file order: the first one stays
            ordered = values[order]
            repeat = np.zeros(len(rows), dtype=bool)
            repeat[order[1:][ordered[1:] == ordered[:-1]]] = True
        else:
            repeat = audit["target_id"].iloc[rows].duplicated(keep="first").to_numpy()
        out[rows] = repeat
    return out


def compile_targets(
    catalogs: dict[str, str | Path | Sequence[str | Path]],
    dec_min: float = DEC_MIN,
    z_max: float = Z_MAX,
    match_arcsec: float = MATCH_ARCSEC,
    priority: tuple[str, ...] = DEFAULT_PRIORITY,
    require_rows: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, cut and deduplicate all catalogs (a file or a list of files per survey): (accepted targets, audit of every row).

    ``require_rows`` (what ``python -m builders catalogs`` uses): every survey must yield rows (read_survey).
    """
    unknown = sorted(set(catalogs) - set(READERS))
    if unknown:
        raise InputDataError(f"no reader for survey(s) {unknown}; known: {sorted(READERS)}")
    audit = concat_tables([read_survey(s, p, require_rows) for s, p in sorted(catalogs.items())])
    reason = audit["reject_reason"].to_numpy(dtype=object).copy()
    dec = audit["dec"].to_numpy()
    z = audit["z"].to_numpy()
    with np.errstate(invalid="ignore"):
        reject(reason, dec < dec_min, f"dec_below_{dec_min:g}")
        reject(reason, ~((z > 0) & (z < z_max)), "z_out_of_range")
    reject(reason, repeated_ids(audit, pd.isna(reason)), "duplicate_row")  # among rows that passed so far
    audit["reject_reason"] = pd.Series(reason, index=audit.index, dtype=object)
    z_conflict, n_dup = merge_duplicates(audit, match_arcsec, priority)
    audit["z_conflict"] = z_conflict
    audit["n_duplicates"] = n_dup
    audit["accepted"] = pd.isna(audit["reject_reason"].to_numpy(dtype=object))
    targets = audit.loc[
        audit["accepted"].to_numpy(), ["target_id", "survey", "survey_objid", "ra", "dec", "z", "z_conflict", "n_duplicates"]
    ].reset_index(drop=True)
    for name in TARGETING_COLUMNS:  # survey targeting bits, for sub-population benchmarks (nullable int64)
        if name in audit:
            targets[name] = pd.array(audit.loc[audit["accepted"].to_numpy(), name].to_numpy(dtype=np.float64), dtype="Int64")
    return targets, audit


def reason_kind(reason: pd.Series) -> pd.Series:
    """The reason without its detail: 'duplicate_of:desi-1' -> 'duplicate_of', 'unreadable_row: x' -> 'unreadable_row'."""
    values = reason.to_numpy(dtype=object)
    out = np.full(len(values), None, dtype=object)
    present = ~pd.isna(values)
    if present.any():
        codes, uniques = pd.factorize(values[present])
        kinds = np.array([str(u).split(":")[0].strip() for u in uniques], dtype=object)
        out[present] = kinds[codes]
    return pd.Series(out, index=reason.index, dtype=object)


def summary_table(audit: pd.DataFrame) -> pd.DataFrame:
    """Per-survey counts like the paper's Table 1: rows read, accepted, rejected by reason, z conflicts."""
    kinds = reason_kind(audit["reject_reason"])
    table = pd.crosstab(audit["survey"], kinds.fillna("accepted"))
    table.columns.name = None
    if "accepted" not in table:
        table["accepted"] = 0
    reasons = sorted(c for c in table.columns if c != "accepted")
    table = table[["accepted", *reasons]]
    table.insert(0, "read", table.sum(axis=1))
    table["z_conflict"] = audit.groupby("survey")["z_conflict"].sum().reindex(table.index).astype(int)
    table.loc["total"] = table.sum(axis=0)
    return table


def write_outputs(targets: pd.DataFrame, audit: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``targets.parquet`` and ``catalog_audit.parquet`` atomically into ``out_dir``."""
    from builders.io import atomic_write_parquet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"targets": out / "targets.parquet", "audit": out / "catalog_audit.parquet"}
    atomic_write_parquet(targets, paths["targets"])
    atomic_write_parquet(audit, paths["audit"])
    return paths
