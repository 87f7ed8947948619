"""``mantis-data photoz`` (one coordinate, or a CSV of them) and ``mantis-data serve`` (the web app).

    mantis-data photoz --ra 150.1 --dec 2.2 --checkpoint best_early.pt [--png photoz.png --json photoz.json]
                       [--calibrator CALPIT/] [--explain]
    mantis-data photoz --coords coords.csv --out preds.parquet --checkpoint best_early.pt [--calibrator CALPIT/]
    mantis-data serve --checkpoint best_early.pt [--calibrator CALPIT/] [--host 127.0.0.1 --port 8000]

``--calibrator`` adds the CalPIT-recalibrated PMF beside the raw one (in batch mode as a second predictions
file, ``<out stem>.calibrated.parquet``); ``--explain`` the band importance of the one galaxy.

Batch mode (``--coords``) is resumable: each chunk of coordinates is written, atomically, as a part file
in ``<out>.parts/`` when it is done; a rerun skips the coordinates already in a part (their cutouts are in
the cache anyway) and, at the end, ``<out>`` (the predictions format of docs/predictions.md, readable by
``mantis-data evaluate`` when the CSV has a ``z`` column) and ``<out>.failed.csv`` (each coordinate
without a prediction and its reason) are written from the parts. This module imports nothing heavy until
a command runs, so ``mantis-data --help`` works on the base install.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ._io import atomic_write_text
from .errors import InputDataError

ID_COLUMNS = ("target_id", "id", "name", "objid")
"""CSV columns taken as each coordinate's id, first found (default: the row number)."""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Model, cache, services, dust and device options shared by ``photoz`` and ``serve``."""
    p.add_argument("--checkpoint", required=True, help="best_early.pt (the published weights) or a training checkpoint")
    p.add_argument("--check-hash", action="store_true", help="check the file's sha256 against the published weights'")
    p.add_argument("--cache", type=Path, default=None, help="cutout cache folder (default $MANTIS_DATA_CACHE or ~/.cache/mantis-data/cutouts)")
    p.add_argument("--ps1-url", default="https://ps1images.stsci.edu/cgi-bin", help="Pan-STARRS image service base URL")
    p.add_argument("--legacy-url", default="https://www.legacysurvey.org/viewer", help="Legacy Survey viewer base URL")
    p.add_argument("--rate", type=float, default=5.0, help="requests per second per host (0: unlimited)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight per host")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds")
    p.add_argument("--attempts", type=int, default=5, help="tries per request")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds, doubling")
    p.add_argument("--dust", default="csfd-planck", help="E(B-V) maps the model was trained with (csfd-planck, csfd-gnilc, bh, none)")
    p.add_argument("--dust-dir", type=Path, default=None, help="dustmaps data directory (default: dustmaps' own)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the model runs (auto: cuda if available)")
    p.add_argument("--batch-size", type=int, default=64, help="coordinates per model call")
    p.add_argument("--calibrator", type=Path, default=None,
                   help="CalPIT folder (mantis-data calibrate fit, or the released files): adds the calibrated PMF")


def make_predictor(args: argparse.Namespace):
    """The ForcedPhotoZ of the common arguments."""
    from .cutouts.fetch import FetchConfig
    from .dust import DUST_MODES
    from .photoz import ForcedPhotoZ

    if args.dust not in DUST_MODES:
        raise InputDataError(f"--dust must be one of {', '.join(DUST_MODES)}, not {args.dust!r}")
    fetch = FetchConfig(
        ps1_url=args.ps1_url, legacy_url=args.legacy_url, rate=args.rate or None, concurrency=args.concurrency,
        timeout_s=args.timeout, attempts=args.attempts, backoff_s=args.backoff,
    )
    return ForcedPhotoZ(args.checkpoint, args.cache, fetch, dust=args.dust, dust_dir=args.dust_dir,
                        device=args.device, batch_size=args.batch_size, check_hash=args.check_hash,
                        calibrator=getattr(args, "calibrator", None))


def format_result(r) -> str:
    """Lines for the terminal: the estimate, the intervals and the flags of one result."""
    lines = [f"forced photo-z at RA {r.ra:.6f}, Dec {r.dec:+.6f} (deg)"]
    if r.ok:
        lo68, hi68 = r.intervals[0.68]
        lo95, hi95 = r.intervals[0.95]
        lines += [f"  z = {r.z_mean:.6f} (expectation)   mode {r.z_mode:.3f}",
                  f"  68% interval [{lo68:.4f}, {hi68:.4f}]   95% interval [{lo95:.4f}, {hi95:.4f}]",
                  f"  E(B-V) csfd {r.ebv[0]:.4f}, planck {r.ebv[1]:.4f}"]
        if r.calibrated is not None:
            c = r.calibrated
            (clo68, chi68), (clo95, chi95) = c["intervals"][0.68], c["intervals"][0.95]
            lines += [f"  calibrated (CalPIT): z = {c['z_mean']:.6f}   mode {c['z_mode']:.3f}",
                      f"  calibrated 68% interval [{clo68:.4f}, {chi68:.4f}]   95% interval [{clo95:.4f}, {chi95:.4f}]"]
        if r.explanation is not None:
            e = r.explanation
            lines.append(f"  band importance (exact Shapley, V(all) = {e['v_all']:.6f}, V(none) = {e['v_none']:.6f}):")
            lines.append("    band   " + " ".join(f"{b:>9}" for b in e["shapley"]))
            lines.append("    Shapley" + " ".join(f"{v:+9.5f}" for v in e["shapley"].values()))
            lines.append("    MM-SHAP" + " ".join(f"{v:9.3f}" for v in e["mm_shap"].values()))
            lines.append("    surveys: " + ", ".join(f"{s} {v:+.4f} (MM-SHAP {e['survey_mm_shap'][s]:.3f})"
                                                    for s, v in e["survey_shapley"].items()))
    flags = [k for k in ("no_galex_coverage", "below_dec_-30", "outside_ps1") if r.flags.get(k)]
    frac = r.flags.get("ps1_nan_frac")
    if frac is not None and (frac > 0).any():
        flags.append("ps1_nan_frac " + ",".join(f"{x:.4f}" for x in frac))
    lines.append("  flags: " + (", ".join(flags) if flags else "none"))
    return "\n".join(lines)


def _write_json(path: Path, obj) -> None:
    atomic_write_text(json.dumps(obj, indent=1) + "\n", path)


def run_single(args: argparse.Namespace) -> int:
    """One coordinate: print, write the PNG and the JSON; exit 2 (no coverage, rejected) or 1 (a service failed)."""
    from .photoz import parse_coordinate
    from .photoz_plot import save_png

    ra, dec = parse_coordinate(args.ra, args.dec)  # before loading anything: a bad coordinate fails at once
    pz = make_predictor(args)
    try:
        r = pz.predict([ra], [dec], keep_images=True)[0]
        if args.explain and r.ok:
            pz.explain(r, seed=args.seed)
    finally:
        pz.close()
    png, js = Path(args.png), Path(args.json)
    save_png(r, png)
    _write_json(js, r.to_dict())
    if not r.ok:
        print(format_result(r), file=sys.stderr)
        print(f"error: no prediction at RA {ra:g}, Dec {dec:g}: {r.reason} (wrote {png}, {js})", file=sys.stderr)
        return 1 if r.kind == "service" else 2
    print(format_result(r))
    print(f"wrote {png}, {js}")
    return 0


def register(subparsers) -> None:
    """Add the ``photoz`` and ``serve`` subcommands to ``mantis-data``'s subparsers (each sets ``func``)."""
    p = subparsers.add_parser("photoz", help="forced photo-z: a redshift PMF at a coordinate (or a CSV of them)")
    where = p.add_argument_group("one coordinate")
    where.add_argument("--ra", help="right ascension: degrees (150.1) or hours (10:00:24.0, 10h00m24s)")
    where.add_argument("--dec", help="declination: degrees (2.2, +02:12:00, 2d12m)")
    where.add_argument("--png", default="photoz.png", help="figure: the nine cutouts and the PMF")
    where.add_argument("--json", default="photoz.json", help="numbers, flags and the PMF")
    where.add_argument("--explain", action="store_true",
                       help="also the band importance: exact Shapley values and MM-SHAP (520 model calls; slow on CPU for ConvNeXt-L)")
    where.add_argument("--seed", type=int, default=0, help="baseline noise seed of --explain (with the coordinate's id)")
    batch = p.add_argument_group("a catalog of coordinates")
    batch.add_argument("--coords", type=Path, help="CSV with ra, dec (degrees or sexagesimal) and optional id, z columns")
    batch.add_argument("--out", type=Path, help="predictions Parquet (docs/predictions.md); failures in <out>.failed.csv")
    batch.add_argument("--chunk", type=int, default=256, help="coordinates fetched and predicted per resumable part")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_arguments(p)
    p.set_defaults(func=run_photoz)

    s = subparsers.add_parser("serve", help="the forced photo-z web app (a page, a JSON API, small CSV batches)")
    add_common_arguments(s)
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1: loopback only)")
    s.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    s.add_argument("--max-batch", type=int, default=200, help="most coordinates in one uploaded CSV")
    s.set_defaults(func=run_serve)


def run_photoz(args: argparse.Namespace) -> int:
    """``mantis-data photoz``: one coordinate (--ra/--dec) or a batch (--coords/--out)."""
    if args.coords is not None or args.out is not None:
        if args.ra is not None or args.dec is not None:
            raise InputDataError("give either --ra/--dec or --coords/--out, not both")
        if args.coords is None or args.out is None:
            raise InputDataError("batch mode needs both --coords FILE.csv and --out preds.parquet")
        if args.explain:
            raise InputDataError("--explain works on one coordinate (--ra/--dec); for a catalog use mantis-data explain")
        from .photoz_batch import run_batch

        return run_batch(args)
    if args.ra is None or args.dec is None:
        raise InputDataError("give --ra and --dec (or --coords FILE.csv --out preds.parquet)")
    return run_single(args)


def run_serve(args: argparse.Namespace) -> int:
    """``mantis-data serve``: load the model once and serve the app (threaded) until interrupted."""
    try:
        import flask  # noqa: F401

        from .app import create_app
    except ImportError as exc:
        raise InputDataError(f"the web app needs Flask: pip install 'mantis-data[app]' ({exc})") from None
    pz = make_predictor(args)
    app = create_app(pz, max_batch=args.max_batch)
    if pz.calibrator is not None:
        print(f"calibrated PMFs from {args.calibrator}", file=sys.stderr)
    print(f"serving forced photo-z on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    finally:
        pz.close()
        print(f"stopped after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0
