"""Forced photo-z of a catalog of coordinates, resumably: ``mantis-data photoz --coords FILE.csv --out P.parquet``.

The CSV needs ``ra`` and ``dec`` columns (any case; degrees or sexagesimal text), optionally an id
(``target_id``, ``id``, ``name`` or ``objid``; default the row number) and ``z`` (a known redshift, so the
output can be scored with ``mantis-data evaluate``). Coordinates go through ``ForcedPhotoZ`` in chunks
(the next chunk's cutouts are fetched in a background thread while the model runs on this one); each
finished chunk is one part file ``<out>.parts/part-<first row>.parquet`` (written atomically). A
rerun reads the parts, skips their rows and goes on; at the end it writes

- ``<out>``: one row per coordinate with a prediction, in the predictions format (``target_id``, ``z``,
  ``pmf``; docs/predictions.md) plus ``row``, ``ra``, ``dec``, ``z_mean``, ``z_mode``, ``z_lo68``,
  ``z_hi68``, ``z_lo95``, ``z_hi95``, ``ebv_csfd``, ``ebv_planck`` and the flags;
- with a calibrator (``--calibrator``), ``<out stem>.calibrated.parquet`` beside it: the same rows with the
  CalPIT-recalibrated PMF as ``pmf`` and its ``z_mean``, ``z_mode``, ``z_lo68`` ... ``z_hi95``, so that
  ``mantis-data evaluate`` scores it as it is (the part files keep it as ``pmf_cal``);
- ``<out>.failed.csv``: ``row``, ``target_id``, ``ra``, ``dec``, ``reason`` of every other coordinate
  (a coordinate that cannot be read, no coverage, a rejection by the quality rules, a service failure).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._io import atomic_path, atomic_write_parquet
from .errors import InputDataError
from .photoz_cli import ID_COLUMNS

FLAG_COLUMNS = ("no_galex_coverage", "galex_coverage", "ps1_nan_frac_max", "below_dec_-30", "outside_ps1")


def read_coords(path: Path | bytes, name: str | None = None) -> dict[str, np.ndarray]:
    """The CSV's rows: row, target_id, ra_text, dec_text, z (NaN where absent); InputDataError naming the file.

    ``path`` is a file, or the CSV's bytes (an upload; ``name`` then names it in messages).
    """
    import io

    import pandas as pd

    if isinstance(path, bytes | bytearray):
        source, path = io.BytesIO(path), Path(name or "<upload>")
    else:
        path = Path(path)
        if not path.is_file():
            raise InputDataError(f"coordinates file {path} does not exist; give a CSV with ra and dec columns")
        source = path
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path} is not a readable CSV ({exc}); give a CSV with ra and dec columns") from None
    cols = {c.strip().lower(): c for c in frame.columns}
    missing = [c for c in ("ra", "dec") if c not in cols]
    if missing:
        raise InputDataError(f"{path} has no {' or '.join(missing)} column (it has: {', '.join(frame.columns)}); "
                             "name the columns ra and dec")
    n = len(frame)
    idc = next((cols[c] for c in ID_COLUMNS if c in cols), None)
    ids = frame[idc].astype(str).to_numpy(object) if idc else np.array([str(i) for i in range(n)], dtype=object)
    if len(set(ids)) != n:
        raise InputDataError(f"{path}: column {idc!r} has duplicate values; ids must be unique")
    z = np.full(n, np.nan)
    if "z" in cols:
        z = pd.to_numeric(frame[cols["z"]], errors="coerce").to_numpy(np.float64)
    return {"row": np.arange(n, dtype=np.int64), "target_id": ids, "ra_text": frame[cols["ra"]].to_numpy(object),
            "dec_text": frame[cols["dec"]].to_numpy(object), "z": z}


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


SUMMARY_COLUMNS = ("z_mean", "z_mode", "z_lo68", "z_hi68", "z_lo95", "z_hi95")


def calibrated_path(out: Path) -> Path:
    """The calibrated predictions file beside ``out``: ``preds.parquet`` -> ``preds.calibrated.parquet``."""
    return out.with_name(out.stem + ".calibrated" + (out.suffix or ".parquet"))


def _summary_cols(summaries: list) -> dict[str, np.ndarray]:
    cols = {k: np.full(len(summaries), np.nan) for k in SUMMARY_COLUMNS}
    for i, s in enumerate(summaries):
        if s is not None:
            cols["z_mean"][i], cols["z_mode"][i] = s["z_mean"], s["z_mode"]
            (cols["z_lo68"][i], cols["z_hi68"][i]), (cols["z_lo95"][i], cols["z_hi95"][i]) = (
                s["intervals"][0.68], s["intervals"][0.95])
    return cols


def _part_table(rows, ids, ra, dec, z, results, reasons, calibrated: bool = False):
    """A part's Arrow table: one row per coordinate (pmf null where there is none; ``pmf_cal`` etc. if calibrated)."""
    import pyarrow as pa

    from .redshift import N_BINS

    n = len(rows)
    extra = {}
    if calibrated:
        cal = [r.calibrated if (r is not None and r.ok) else None for r in results]
        cal_pmf = np.zeros((n, N_BINS), np.float32)
        for i, c in enumerate(cal):
            if c is not None:
                cal_pmf[i] = c["pmf"]
        has = np.array([c is not None for c in cal], bool)
        extra["pmf_cal"] = pa.FixedSizeListArray.from_arrays(pa.array(cal_pmf.reshape(-1), pa.float32()), N_BINS,
                                                             mask=pa.array(~has))
        extra.update({f"{k}_cal": pa.array(v, pa.float64()) for k, v in _summary_cols(cal).items()})
    pmf = np.zeros((n, N_BINS), np.float32)
    ok = np.zeros(n, bool)
    num = {k: np.full(n, np.nan) for k in ("z_mean", "z_mode", "z_lo68", "z_hi68", "z_lo95", "z_hi95",
                                           "ebv_csfd", "ebv_planck", "galex_coverage", "ps1_nan_frac_max")}
    flags = {k: np.zeros(n, bool) for k in ("no_galex_coverage", "below_dec_-30", "outside_ps1")}
    for i, r in enumerate(results):
        if r is None:
            continue
        for k in flags:
            flags[k][i] = bool(r.flags.get(k, False))
        num["galex_coverage"][i] = r.flags.get("galex_coverage", np.nan)
        frac = r.flags.get("ps1_nan_frac")
        if frac is not None and np.isfinite(frac).any():
            num["ps1_nan_frac_max"][i] = float(np.nanmax(frac))
        if r.ok:
            ok[i] = True
            pmf[i] = r.pmf
            num["z_mean"][i], num["z_mode"][i] = r.z_mean, r.z_mode
            (num["z_lo68"][i], num["z_hi68"][i]), (num["z_lo95"][i], num["z_hi95"][i]) = r.intervals[0.68], r.intervals[0.95]
            num["ebv_csfd"][i], num["ebv_planck"][i] = r.ebv
    flat = pa.array(pmf.reshape(-1), pa.float32())
    pmf_col = pa.FixedSizeListArray.from_arrays(flat, N_BINS, mask=pa.array(~ok))
    return pa.table({
        "row": pa.array(rows, pa.int64()), "target_id": pa.array(ids, pa.string()),
        "ra": pa.array(ra, pa.float64()), "dec": pa.array(dec, pa.float64()), "z": pa.array(z, pa.float64()),
        "reason": pa.array(reasons, pa.string()), "pmf": pmf_col,
        **{k: pa.array(v, pa.float64()) for k, v in num.items()}, **{k: pa.array(v, pa.bool_()) for k, v in flags.items()},
        **extra,
    })


def _write_atomic_parquet(table, path: Path) -> None:
    atomic_write_parquet(table, path, compression="snappy")


def _done_parts(parts: Path, ids: np.ndarray):
    """(rows already done, their tables); InputDataError when a part belongs to another coordinates file."""
    import pyarrow.parquet as pq

    done, tables = set(), []
    for f in sorted(parts.glob("part-*.parquet")):
        t = pq.read_table(f)
        rows = t.column("row").to_numpy()
        if rows.max(initial=-1) >= len(ids) or list(ids[rows]) != t.column("target_id").to_pylist():
            raise InputDataError(f"{f} was written for another coordinates file; delete {parts} (or use another --out)")
        done.update(rows.tolist())
        tables.append(t)
    return done, tables


def predict_catalog(pz, coords: Path, out: Path, chunk: int = 256, progress: bool = True) -> dict:
    """Run ``pz`` (a ForcedPhotoZ) over a coordinates CSV into ``out`` resumably; return a summary dict.

    Summary: n, ok, failed (count per reason kind), already_done, seconds, coords_per_s, timings (s per stage).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from tqdm.auto import tqdm

    from .evaluate import PREDICTIONS_FORMAT
    from .photoz import CoordinateError, coordinate_id, parse_coordinate
    from .redshift import GRID, N_BINS

    if chunk < 1:
        raise InputDataError(f"--chunk must be >= 1, not {chunk}")
    cat = read_coords(Path(coords))
    n = len(cat["row"])
    parts = _parts_dir(out)
    parts.mkdir(parents=True, exist_ok=True)
    calibrated = getattr(pz, "calibrator", None) is not None
    done, tables = _done_parts(parts, cat["target_id"])
    for t in tables:
        if ("pmf_cal" in t.column_names) != calibrated:
            raise InputDataError(f"{parts} was written {'without' if calibrated else 'with'} --calibrator; rerun as "
                                 f"before, or delete {parts} (or use another --out)")
    todo = np.array([i for i in range(n) if i not in done], dtype=np.int64)
    t0 = time.perf_counter()
    timings0 = dict(pz.timings)
    bar = tqdm(total=n, initial=n - len(todo), desc="photoz", unit="coord", disable=not progress, dynamic_ncols=True)
    try:
        def parse(rows: np.ndarray):
            ra, dec = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
            reasons: list[str | None] = [None] * len(rows)
            for k, i in enumerate(rows):
                try:
                    ra[k], dec[k] = parse_coordinate(cat["ra_text"][i], cat["dec_text"][i])
                except CoordinateError as exc:
                    reasons[k] = f"bad_coordinate: {exc}"
            good = [k for k in range(len(rows)) if reasons[k] is None]
            return rows, ra, dec, reasons, good

        def fetch(job):
            _, ra, dec, _, good = job
            if good:
                pz.fetch([coordinate_id(r, d) for r, d in zip(ra[good], dec[good], strict=True)], ra[good], dec[good])

        jobs = [parse(todo[s : s + chunk]) for s in range(0, len(todo), chunk)]
        # the next chunk's cutouts are fetched while this chunk runs through the model
        with ThreadPoolExecutor(1, thread_name_prefix="photoz-fetch") as pool:
            pending = pool.submit(fetch, jobs[0]) if jobs else None
            for j, job in enumerate(jobs):
                pending.result()
                pending = pool.submit(fetch, jobs[j + 1]) if j + 1 < len(jobs) else None
                rows, ra, dec, reasons, good = job
                results: list = [None] * len(rows)
                for k, r in zip(good, pz.predict(ra[good], dec[good], fetch=False), strict=True):
                    results[k] = r
                    reasons[k] = r.reason
                table = _part_table(rows, cat["target_id"][rows], ra, dec, cat["z"][rows], results, reasons, calibrated)
                _write_atomic_parquet(table, parts / f"part-{int(rows[0]):09d}.parquet")
                bar.update(len(rows))
    finally:
        bar.close()
    _, tables = _done_parts(parts, cat["target_id"])
    full = pa.concat_tables(tables).sort_by("row") if tables else None
    if full is None or full.num_rows != n:
        raise InputDataError(f"{parts} does not hold every row of {coords}; rerun the same command")
    ok_mask = pc.is_null(full.column("reason"))
    good_t = full.filter(ok_mask)
    pmf = good_t.column("pmf").combine_chunks()
    pmf = pa.FixedSizeListArray.from_arrays(pmf.flatten().cast(pa.float32()), N_BINS) if len(good_t) else pmf
    cal_names = [c for c in good_t.column_names if c == "pmf_cal" or c.endswith("_cal")]
    cols = {"target_id": good_t.column("target_id"), "z": good_t.column("z"), "pmf": pmf}
    for c in good_t.column_names:
        if c not in cols and c != "reason" and c not in cal_names:
            cols[c] = good_t.column(c)
    meta = {"mantis_data.format": PREDICTIONS_FORMAT, "mantis_data.grid": f"0:{GRID[-1]:g}:{N_BINS}"}
    preds = pa.table(cols).replace_schema_metadata(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    if calibrated:  # the calibrated PMF as the pmf of a second predictions file; written first, out last
        pcal = good_t.column("pmf_cal").combine_chunks()
        pcal = pa.FixedSizeListArray.from_arrays(pcal.flatten().cast(pa.float32()), N_BINS) if len(good_t) else pcal
        ccols = {**cols, "pmf": pcal, **{k: good_t.column(f"{k}_cal") for k in SUMMARY_COLUMNS}}
        _write_atomic_parquet(pa.table(ccols).replace_schema_metadata({**meta, "mantis_data.calibrated": "calpit"}),
                              calibrated_path(out))
    _write_atomic_parquet(preds, out)
    bad = full.filter(pc.invert(ok_mask)).select(["row", "target_id", "ra", "dec", "reason"]).to_pandas()
    failed_csv = out.with_name(out.name + ".failed.csv")
    with atomic_path(failed_csv) as tmp:
        bad.to_csv(tmp, index=False)
    from .photoz import reason_kind

    seconds = time.perf_counter() - t0
    return {
        "n": n, "ok": int(len(good_t)), "already_done": int(n - len(todo)),
        "failed": dict(Counter(reason_kind(r) if not r.startswith("bad_coordinate") else "bad_coordinate"
                               for r in bad["reason"])),
        "seconds": seconds, "coords_per_s": len(todo) / seconds if seconds > 0 else float("nan"),
        "timings": {k: v - timings0.get(k, 0.0) for k, v in pz.timings.items()},
        "out": str(out), "failed_csv": str(failed_csv),
        "calibrated": str(calibrated_path(out)) if calibrated else None,
    }


def run_batch(args) -> int:
    """``mantis-data photoz --coords --out``: run the catalog and print a summary."""
    from .photoz_cli import make_predictor

    read_coords(Path(args.coords))  # a bad file fails before the model loads
    pz = make_predictor(args)
    try:
        s = predict_catalog(pz, Path(args.coords), Path(args.out), chunk=args.chunk, progress=not args.no_progress)
    finally:
        pz.close()
    failed = sum(s["failed"].values())
    print(f"{s['n']} coordinates: {s['ok']} predictions, {failed} without ({', '.join(f'{k} {v}' for k, v in sorted(s['failed'].items())) or 'none'}); "
          f"{s['already_done']} were already done; {s['seconds']:.1f} s ({s['coords_per_s']:.1f} coordinates/s)")
    print(f"wrote {s['out']}" + (f", {s['calibrated']} (CalPIT)" if s["calibrated"] else "") + f" and {s['failed_csv']}")
    return 0
