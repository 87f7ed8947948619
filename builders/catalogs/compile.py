"""Compile the unified target list: read every survey, apply the common cuts, merge duplicates, audit.

Order of cuts (the first failing one is a row's ``reject_reason``): the survey reader's own
(unreadable_row, not_primary, zwarning, class, ...), then bad_coordinates, bad_redshift (non-finite),
``dec_below_-30``, ``z_out_of_range`` (outside the label range 0 < z < 1.6), ``duplicate_row``
(the same target id twice) and ``duplicate_of:<target_id>`` (another accepted target within
``match_arcsec``; the kept one is chosen by survey ``priority``, then by target id).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mantis_data.errors import InputDataError
from mantis_data.redshift import Z_MAX

from . import desi, sdss
from .common import reject

READERS: dict[str, Callable[[Path], pd.DataFrame]] = {"sdss": sdss.read, "desi": desi.read}

CATALOG_FILES: dict[str, tuple[str, ...]] = {
    "sdss": ("sdss/SpecObjAll.csv", "sdss/SpecObjAll.fits"),
    "desi": ("desi/zall-pix-fuji.fits",),
}
"""Where ``find_catalogs`` looks for each survey's file under an input folder."""

DEFAULT_PRIORITY: tuple[str, ...] = ("desi", "sdss", "deep2", "gama", "vipers", "vvds", "wigglez", "6dfgs")
"""Which survey's redshift is kept when one galaxy appears in several (first wins)."""

DEC_MIN = -30.0
MATCH_ARCSEC = 1.0
Z_CONFLICT = 0.01


def find_catalogs(folder: str | Path) -> dict[str, Path]:
    """The survey catalog files present under ``folder`` (laid out as ``CATALOG_FILES``)."""
    folder = Path(folder)
    found = {}
    for survey, candidates in CATALOG_FILES.items():
        for rel in candidates:
            if (folder / rel).exists():
                found[survey] = folder / rel
                break
    if not found:
        expected = ", ".join(c for cs in CATALOG_FILES.values() for c in cs)
        raise InputDataError(f"no survey catalog found under {folder}; expected any of: {expected}")
    return found


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def match_groups(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Group label (int) of each position: positions linked by separations <= radius share a label.

    KD-tree on unit vectors (O(N log N)), then connected components of the pair graph.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(ra_deg)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(_unit_vectors(ra_deg, dec_deg)).query_pairs(r=chord, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def merge_duplicates(
    audit: pd.DataFrame, radius_arcsec: float, priority: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mark accepted rows that duplicate another accepted target; return (z_conflict, n_duplicates) per row."""
    n = len(audit)
    z_conflict = np.zeros(n, dtype=bool)
    n_dup = np.zeros(n, dtype=np.int32)
    ok = np.flatnonzero(audit["reject_reason"].isna().to_numpy())
    if len(ok) == 0:
        return z_conflict, n_dup
    sub = audit.iloc[ok]
    labels = match_groups(sub["ra"].to_numpy(), sub["dec"].to_numpy(), radius_arcsec)
    rank = {s: i for i, s in enumerate(priority)}
    prio = sub["survey"].map(lambda s: rank.get(s, len(rank))).to_numpy()
    tids = sub["target_id"].to_numpy(dtype=object).astype(str)
    order = np.lexsort((tids, prio, labels))
    sorted_labels = labels[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    keeper_pos = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    keeper_of = np.empty(len(order), dtype=np.int64)
    keeper_of[order] = keeper_pos  # position (in sub) of each row's kept target
    is_dup = keeper_of != np.arange(len(sub))
    z = sub["z"].to_numpy()
    disagree = is_dup & (np.abs(z - z[keeper_of]) > Z_CONFLICT * (1 + z[keeper_of]))
    reason = audit["reject_reason"].copy()
    why = pd.Series([None] * n, dtype=object)
    why.iloc[ok[is_dup]] = ["duplicate_of:" + t for t in tids[keeper_of[is_dup]]]
    reject(reason, np.isin(np.arange(n), ok[is_dup]), why)
    audit["reject_reason"] = reason
    np.add.at(n_dup, ok[keeper_of[is_dup]], 1)
    z_conflict[ok[keeper_of[disagree]]] = True
    return z_conflict, n_dup


def compile_targets(
    catalogs: dict[str, Path],
    dec_min: float = DEC_MIN,
    z_max: float = Z_MAX,
    match_arcsec: float = MATCH_ARCSEC,
    priority: tuple[str, ...] = DEFAULT_PRIORITY,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, cut and deduplicate all catalogs: (accepted targets, audit of every input row)."""
    unknown = sorted(set(catalogs) - set(READERS))
    if unknown:
        raise InputDataError(f"no reader for survey(s) {unknown}; known: {sorted(READERS)}")
    frames = [READERS[s](Path(p)) for s, p in sorted(catalogs.items())]
    audit = pd.concat(frames, ignore_index=True)
    reason = audit["reject_reason"].copy()
    reject(reason, (audit["dec"] < dec_min).to_numpy(), f"dec_below_{dec_min:g}")
    reject(reason, ~((audit["z"] > 0) & (audit["z"] < z_max)).to_numpy(), "z_out_of_range")
    audit["reject_reason"] = reason
    ok = audit["reject_reason"].isna()
    dup_row = pd.Series(False, index=audit.index)
    dup_row[ok] = audit.loc[ok, "target_id"].duplicated(keep="first")  # among rows that passed so far
    reason = audit["reject_reason"].copy()
    reject(reason, dup_row.to_numpy(), "duplicate_row")
    audit["reject_reason"] = reason
    z_conflict, n_dup = merge_duplicates(audit, match_arcsec, priority)
    audit["z_conflict"] = z_conflict
    audit["n_duplicates"] = n_dup
    audit["accepted"] = audit["reject_reason"].isna()
    targets = audit.loc[
        audit["accepted"], ["target_id", "survey", "survey_objid", "ra", "dec", "z", "z_conflict", "n_duplicates"]
    ].reset_index(drop=True)
    return targets, audit


def reason_kind(reason: pd.Series) -> pd.Series:
    """The reason without its detail: 'duplicate_of:desi-1' -> 'duplicate_of', 'unreadable_row: x' -> 'unreadable_row'."""
    return reason.astype(object).where(reason.isna(), reason.astype(str).str.split(":").str[0].str.strip())


def summary_table(audit: pd.DataFrame) -> pd.DataFrame:
    """Per-survey counts like the paper's Table 1: rows read, accepted, rejected by reason, z conflicts."""
    kinds = reason_kind(audit["reject_reason"])
    table = pd.crosstab(audit["survey"], kinds.fillna("accepted"))
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
