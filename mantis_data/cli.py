"""mantis-data: inspect, verify and evaluate Mantis Shrimp releases; forced photo-z at any coordinate."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .errors import MantisDataError


def run_info(path: str | Path) -> int:
    """Print a release's version, counts per split and survey, and its files."""
    from .release import open_release
    from .schema import SPLITS

    release = open_release(path)
    m = release.manifest
    print(f"Mantis Shrimp release {m['version']} at {release.root}")
    print(f"  built by {m.get('code_version', '?')}; {m.get('total', sum(release.counts.values()))} samples")
    for split, n in sorted(release.counts.items(), key=lambda kv: SPLITS.index(kv[0]) if kv[0] in SPLITS else 99):
        surveys = ", ".join(f"{k} {v}" for k, v in m.get("counts_by_survey", {}).get(split, {}).items())
        print(f"  {split:<10} {n:>8}   {surveys}")
    for fmt in ("webdataset", "parquet"):
        shards = [i for i in m["files"].values() if i.get("format") == fmt]
        size = sum(i["bytes"] for i in shards) / 1e6
        print(f"  {fmt:<10} {len(shards):>4} shards, {size:,.1f} MB")
    if m.get("cutout_rejections"):
        print("  cutout rejections: " + ", ".join(f"{k} {v}" for k, v in m["cutout_rejections"].items()))
    print(f"  dust: {m.get('dust', {}).get('mode', '?')}")
    split = m.get("parameters", {}).get("split", {"scheme": "id"})
    cells = f", HEALPix nside {split['nside']} ({split.get('ordering', 'nested')})" if split.get("scheme") == "healpix" else ""
    print(f"  split: {split.get('scheme', 'id')}{cells}")
    for line in image_lines():
        print(f"  {line}")
    return 0


def image_lines() -> list[str]:
    """One line per survey: stored bands, pixel unit, zero points, pixel scale and cutout size (from bands.py)."""
    from .bands import SURVEY_ORDER, SURVEYS, zero_point

    lines = []
    for name in SURVEY_ORDER:
        s = SURVEYS[name]
        zps = [zero_point(b) for b in s.bands]
        zp = "per image (ps1_zp)" if None in zps else ", ".join(f"{b} {z:g}" for b, z in zip(s.bands, zps, strict=True))
        lines.append(
            f"{name:<7} {' '.join(s.bands)}: {s.flux_unit}, {s.mag_system} zero points {zp}; "
            f'{s.pixel_scale_arcsec:g}"/px, {s.cutout_size} x {s.cutout_size}'
        )
    return lines


def run_verify(path: str | Path) -> int:
    """Verify a release; print each problem and return 1 if there is any, else 0."""
    from .release import verify

    problems = verify(path, progress=sys.stderr.isatty())
    if problems:
        for p in problems:
            print(f"FAIL {p}")
        print(f"{len(problems)} problem(s) in {path}")
        return 1
    print(f"OK: {path} matches its manifest")
    return 0


EXAMPLES = {
    "": """mantis-data info /tmp/ms
mantis-data verify /tmp/ms
mantis-data evaluate predictions.parquet --out report/
mantis-data photoz --ra 150.1 --dec 2.2 --checkpoint best_early.pt
mantis-data <command> --help""",
    "info": "mantis-data info /tmp/ms",
    "verify": "mantis-data verify /tmp/ms    # exit 1 naming each bad file",
    "evaluate": """mantis-data evaluate predictions.parquet --out report/
mantis-data evaluate predictions.parquet --out report/ --bootstrap 0 --outlier-threshold 0.15""",
    "photoz": """mantis-data photoz --ra 150.1 --dec 2.2 --checkpoint best_early.pt
mantis-data photoz --ra 10:00:24 --dec=+02:12:00 --checkpoint best_early.pt --png p.png --json p.json
mantis-data photoz --coords coords.csv --out preds.parquet --checkpoint best_early.pt""",
    "serve": "mantis-data serve --checkpoint best_early.pt --port 8000",
    "explain": "mantis-data explain --checkpoint RUN/best.pt --release RELEASE --split test --n 1000 --out EXPLAIN/",
    "calibrate": """mantis-data calibrate fit --predictions VAL/predictions.parquet --release RELEASE --out CALPIT/
mantis-data calibrate apply --model CALPIT/ --predictions TEST/predictions.parquet --release RELEASE --out cal.parquet""",
    "calibrate fit": "mantis-data calibrate fit --predictions VAL/predictions.parquet --release RELEASE --out CALPIT/",
    "calibrate apply": "mantis-data calibrate apply --model CALPIT/ --predictions TEST/predictions.parquet "
                       "--release RELEASE --out cal.parquet",
}
"""Examples shown at the end of each subcommand's help (python -m mantis_data.cli works the same)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mantis-data``, in the house style (mantis_data._cli)."""
    from ._cli import HelpFormatter, style

    parser = argparse.ArgumentParser(prog="mantis-data", description=__doc__,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    info = sub.add_parser("info", help="summarise a release", description="Summarise a release: version, "
                          "counts per split and survey, shard sizes, image bands and units.")
    info.add_argument("release", type=Path, help="release folder (the one holding MANIFEST.json)")
    verify = sub.add_parser("verify", help="check a release's checksums, counts and structure",
                            description="Check every file of a release against its MANIFEST.json (sha256, sample "
                            "counts, structure); exit 1 naming each bad file.")
    verify.add_argument("release", type=Path, help="release folder (the one holding MANIFEST.json)")
    try:
        from .evaluate import add_evaluate_arguments

        evaluate = sub.add_parser("evaluate", help="photo-z metrics report of a predictions file",
                                  description="Photo-z metrics (NMAD, bias, outlier fraction, CDE loss, PIT) with "
                                  "bootstrap spreads, per redshift range and sub-population, and their plots.")
        add_evaluate_arguments(evaluate)
    except ImportError:  # evaluation needs matplotlib
        pass
    for module in ("photoz_cli", "explain_run", "calibrate"):  # each adds its subcommands, setting args.func
        importlib.import_module(f".{module}", __package__).register(sub)
    style(parser, EXAMPLES)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return run_info(args.release)
        if args.command == "verify":
            return run_verify(args.release)
        if getattr(args, "func", None) is not None:
            return args.func(args)
        from .evaluate import run_evaluate

        return run_evaluate(args)
    except MantisDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
