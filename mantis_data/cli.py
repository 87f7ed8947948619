"""``mantis-data``: inspect, verify and evaluate Mantis Shrimp releases."""

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mantis-data``."""
    parser = argparse.ArgumentParser(prog="mantis-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summarise a release")
    info.add_argument("release", type=Path)
    verify = sub.add_parser("verify", help="check a release's checksums, counts and structure")
    verify.add_argument("release", type=Path)
    try:
        from .evaluate import add_evaluate_arguments

        evaluate = sub.add_parser("evaluate", help="photo-z metrics report of a predictions file")
        add_evaluate_arguments(evaluate)
    except ImportError:  # evaluation needs matplotlib
        pass
    for module in ("photoz_cli", "explain_run", "calibrate"):  # each adds its subcommands, setting args.func
        importlib.import_module(f".{module}", __package__).register(sub)
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
