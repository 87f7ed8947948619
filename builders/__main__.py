"""Command line for maintainers: python -m builders {demo,catalogs,build,verify}."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mantis_data.errors import MantisDataError


def _print_catalog_table(audit) -> None:
    from .catalogs.compile import summary_table

    print("Catalog selection (rows read, accepted, rejected by reason):")
    print(summary_table(audit).to_string())


def cmd_catalogs(args: argparse.Namespace) -> int:
    """Compile targets.parquet and catalog_audit.parquet from a folder of survey catalogs."""
    from .catalogs.compile import compile_targets, find_catalogs, write_outputs

    catalogs = find_catalogs(args.input)
    targets, audit = compile_targets(catalogs, match_arcsec=args.match_arcsec)
    paths = write_outputs(targets, audit, args.out)
    _print_catalog_table(audit)
    print(f"wrote {paths['targets']} ({len(targets)} targets) and {paths['audit']} ({len(audit)} rows)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build a release from targets.parquet and a folder of cutout FITS files."""
    from .build import build_release
    from .cutouts.local import LocalFitsSource

    manifest = build_release(
        args.targets,
        LocalFitsSource(args.cutouts),
        args.out,
        version=args.release_version,
        shard_mb=args.shard_mb,
        workers=args.workers,
        dust=args.dust,
        dust_dir=args.dust_dir,
        source_description=f"local FITS folder {args.cutouts}",
    )
    _print_release(manifest, Path(args.out))
    return 0


def _print_release(manifest: dict, out: Path) -> None:
    print(f"release {manifest['version']} in {out}: {manifest['total']} samples")
    for split, n in manifest["counts"].items():
        surveys = ", ".join(f"{k} {v}" for k, v in manifest["counts_by_survey"][split].items())
        print(f"  {split:<10} {n:>7}   ({surveys})")
    if manifest["cutout_rejections"]:
        print("  rejected at the cutout stage: " + ", ".join(f"{k} {v}" for k, v in manifest["cutout_rejections"].items()))
    print(
        "load it with:\n"
        f"  cd {out} && python -c 'from datasets import load_dataset; print(load_dataset(\"mantis_shrimp\"))'\n"
        f"  (or \"mantis_shrimp-parquet\"; check it with: mantis-data verify {out})"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a mock sky's inputs under OUT and build a release from them via the real code path."""
    from .build import build_release
    from .catalogs.compile import compile_targets, find_catalogs, write_outputs
    from .cutouts.local import LocalFitsSource
    from .mock.catalogs import write_catalogs
    from .mock.cutouts import write_cutouts
    from .mock.sky import MockSky

    out = Path(args.out)
    inputs = out / "mock_inputs"
    work = out / "work"
    t0 = time.perf_counter()
    print(f"[1/4] mock sky: {args.n} galaxies (seed {args.seed}) -> survey catalogs in {inputs / 'catalogs'}")
    sky = MockSky(n_galaxies=args.n, seed=args.seed)
    write_catalogs(sky, inputs / "catalogs")
    print("[2/4] compiling targets from the catalogs")
    targets, audit = compile_targets(find_catalogs(inputs / "catalogs"))
    paths = write_outputs(targets, audit, work)
    _print_catalog_table(audit)
    print(f"[3/4] rendering cutouts of {len(targets)} targets as the services return them -> {inputs / 'cutouts'}")
    write_cutouts(sky, targets[["target_id", "ra", "dec"]], inputs / "cutouts", progress=True)
    print("[4/4] building the release")
    manifest = build_release(
        paths["targets"],
        LocalFitsSource(inputs / "cutouts"),
        out,
        version=args.release_version,
        shard_mb=args.shard_mb,
        workers=args.workers,
        dust=args.dust,
        note=f"**This is a demo release built from a mock sky ({args.n} simulated galaxies, seed {args.seed}), not real data.**",
        source_description=f"mock sky cutouts in {inputs / 'cutouts'}",
    )
    _print_release(manifest, out)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a release's checksums, counts and structure."""
    from mantis_data.cli import run_verify

    return run_verify(args.release)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m builders``."""
    from mantis_data.dust import DEFAULT_DUST_MODE, DUST_MODES

    from .build import DEFAULT_SHARD_MB

    parser = argparse.ArgumentParser(prog="python -m builders", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build a demo release from a mock sky")
    demo.add_argument("--out", required=True, type=Path, help="output folder (inputs go to OUT/mock_inputs)")
    demo.add_argument("--n", type=int, default=2400, help="galaxies in the mock sky (default 2400)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--shard-mb", type=float, default=64.0, help="target shard size in MB (default 64)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    demo.add_argument("--release-version", default="0.1.0-demo")
    demo.add_argument(
        "--dust", default="bh", choices=DUST_MODES, help="E(B-V) maps (default bh: ships with dustmaps, demo only)"
    )
    demo.set_defaults(func=cmd_demo)

    cat = sub.add_parser("catalogs", help="compile targets.parquet from survey catalogs")
    cat.add_argument("--in", dest="input", required=True, type=Path, help="folder with <survey>/<file> catalogs")
    cat.add_argument("--out", required=True, type=Path, help="folder for targets.parquet and catalog_audit.parquet")
    cat.add_argument("--match-arcsec", type=float, default=1.0, help="duplicate match radius (arcsec, default 1)")
    cat.set_defaults(func=cmd_catalogs)

    build = sub.add_parser("build", help="build a release from targets and cutouts")
    build.add_argument("--targets", required=True, type=Path, help="targets.parquet (catalog_audit.parquet beside it)")
    build.add_argument("--cutouts", required=True, type=Path, help="cutout cache folder (builders/cutouts/layout.py)")
    build.add_argument("--out", required=True, type=Path)
    build.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB)
    build.add_argument("--workers", type=int, default=None)
    build.add_argument(
        "--dust",
        default=DEFAULT_DUST_MODE,
        choices=DUST_MODES,
        help="E(B-V) maps: csfd-planck (default, the released model's), csfd-gnilc, bh (demo only), none",
    )
    build.add_argument("--dust-dir", type=Path, default=None, help="dustmaps data directory (default: dustmaps' own)")
    build.add_argument("--release-version", default="0.0.0-dev")
    build.set_defaults(func=cmd_build)

    ver = sub.add_parser("verify", help="verify a release folder")
    ver.add_argument("release", type=Path)
    ver.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MantisDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished shards are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
