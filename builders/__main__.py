"""Command line for maintainers: build, verify and publish Mantis Shrimp releases
(python -m builders {demo,catalogs,fetch,build,verify,publish})."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mantis_data.errors import MantisDataError

from .split import DEFAULT_NSIDE, SPLIT_SCHEMES, check_nside


def _print_catalog_table(audit) -> None:
    from .catalogs.compile import summary_table

    print("Catalog selection (rows read, accepted, rejected by reason):")
    print(summary_table(audit).to_string())


def cmd_catalogs(args: argparse.Namespace) -> int:
    """Compile targets.parquet and catalog_audit.parquet from a folder of survey catalogs."""
    from .catalogs.compile import CATALOG_FILES, compile_targets, find_catalogs, write_outputs

    surveys = list(CATALOG_FILES) if args.surveys == "all" else [s.strip() for s in args.surveys.split(",") if s.strip()]
    catalogs = find_catalogs(args.input, surveys=surveys)  # every chosen survey must be there: checked before any work
    targets, audit = compile_targets(catalogs, match_arcsec=args.match_arcsec, require_rows=True)
    empty = [s for s in surveys if not (audit["survey"] == s).any()]
    if empty:
        raise MantisDataError(f"surveys {', '.join(empty)} yielded no rows; check their files or leave them out with --surveys")
    paths = write_outputs(targets, audit, args.out)
    _print_catalog_table(audit)
    print(f"wrote {paths['targets']} ({len(targets)} targets) and {paths['audit']} ({len(audit)} rows)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build a release from targets.parquet and a folder of cutout FITS files."""
    from mantis_data.cutouts.local import LocalFitsSource

    from .build import build_release

    manifest = build_release(
        args.targets,
        LocalFitsSource(args.cutouts),
        args.out,
        version=args.release_version,
        shard_mb=args.shard_mb,
        workers=args.workers,
        scheduler=args.scheduler,
        dust=args.dust,
        dust_dir=args.dust_dir,
        source_description=f"local FITS folder {args.cutouts}",
        split_scheme=args.split_scheme,
        nside=_nside_of(args),
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
    from mantis_data.cutouts.local import LocalFitsSource

    from .build import build_release
    from .catalogs.compile import compile_targets, find_catalogs, write_outputs
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
        scheduler=args.scheduler,
        dust=args.dust,
        note=f"**This is a demo release built from a mock sky ({args.n} simulated galaxies, seed {args.seed}), not real data.**",
        source_description=f"mock sky cutouts in {inputs / 'cutouts'}",
        split_scheme=args.split_scheme,
        nside=_nside_of(args),
    )
    _print_release(manifest, out)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch every target's cutouts from the services into a resumable cache folder."""
    from mantis_data.cutouts.fetch import FetchConfig, fetch_cutouts, format_summary

    config = FetchConfig(
        ps1_url=args.ps1_url,
        legacy_url=args.legacy_url,
        concurrency=args.concurrency,
        rate=args.rate if args.rate > 0 else None,
        timeout_s=args.timeout,
        attempts=args.attempts,
        backoff_s=args.backoff,
        surveys=tuple(s.strip() for s in args.surveys.split(",") if s.strip()),
        recheck=args.recheck,
    )
    summary = fetch_cutouts(args.targets, args.cache, config, progress=not args.no_progress)
    print(format_summary(summary))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a release's checksums, counts and structure."""
    from mantis_data.cli import run_verify

    return run_verify(args.release)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish one format of a verified release to a Hugging Face dataset repository (or list it: --dry-run)."""
    from .publish import plan_upload, publish

    plan = plan_upload(
        args.release, args.repo, args.format, revision=args.revision, private=args.private, tag=not args.no_tag, progress=True
    )
    print(plan.describe())
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    done = publish(plan)
    print(f"published {plan.version} to https://huggingface.co/datasets/{plan.repo_id}" + (f" (tag {plan.tag})" if plan.tag else ""))
    if done["deleted"]:
        print(f"removed {len(done['deleted'])} remote files not in this release")
    return 0


SCHEDULER_HELP = (
    "run shards on a Dask cluster: its scheduler address, tcp://host:port (every node needs this package "
    "installed with the client's versions, checked first; the output folder must be shared with the workers; "
    "docs/scaling.md) (default: a local process pool)"
)


def _nside(text: str) -> int:
    """--nside: a power of 2."""
    try:
        return check_nside(int(text))
    except (ValueError, MantisDataError) as exc:
        raise argparse.ArgumentTypeError(f"expected a power of 2 such as 32 or 64, not {text!r}") from exc


def _nside_of(args: argparse.Namespace) -> int | None:
    """The nside to build with: --nside, or the default for --split-scheme healpix."""
    if args.nside is None and args.split_scheme == "healpix":
        return DEFAULT_NSIDE
    return args.nside


def _add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split-scheme",
        choices=SPLIT_SCHEMES,
        default="id",
        help="id: hash of target_id (the paper's); healpix: whole HEALPix cells held out (sky regions)",
    )
    parser.add_argument(
        "--nside", type=_nside, default=None, help=f"HEALPix nside of the healpix scheme's cells, a power of 2 (default: {DEFAULT_NSIDE}, ~0.9 deg)"
    )


EXAMPLES = {
    "": """python -m builders demo --out /tmp/ms
python -m builders verify /tmp/ms
python -m builders <command> --help""",
    "demo": """python -m builders demo --out /tmp/ms
python -m builders demo --out /tmp/ms-small --n 300 --shard-mb 8 --workers 2""",
    "catalogs": "python -m builders catalogs --in catalogs/ --out work/",
    "fetch": "python -m builders fetch --targets work/targets.parquet --cache cutouts/",
    "build": """python -m builders build --targets work/targets.parquet --cutouts cutouts/ --out release/
python -m builders build --targets work/targets.parquet --cutouts cutouts/ --out release/ --scheduler tcp://head:8786""",
    "verify": "python -m builders verify release/    # exit 1 naming each bad file",
    "publish": """python -m builders publish release/ --repo my-org/mantis_shrimp --dry-run
python -m builders publish release/ --repo my-org/mantis_shrimp-parquet --format parquet""",
}
"""Examples shown at the end of each subcommand's help."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m builders``."""
    from mantis_data._cli import nonnegative_float, positive_float, positive_int, style
    from mantis_data.dust import DEFAULT_DUST_MODE, DUST_MODES

    from .build import DEFAULT_SHARD_MB

    parser = argparse.ArgumentParser(prog="python -m builders", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    demo = sub.add_parser("demo", help="build a demo release from a mock sky")
    demo.add_argument("--out", required=True, type=Path, help="output folder (inputs go to OUT/mock_inputs)")
    demo.add_argument("--n", type=positive_int, default=2600, help="galaxies in the mock sky (2600: ~2,000 release samples)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the mock sky")
    demo.add_argument("--shard-mb", type=positive_float, default=64.0, help="target shard size in MB")
    demo.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: CPUs)")
    demo.add_argument("--scheduler", default=None, help=SCHEDULER_HELP)
    demo.add_argument("--release-version", default="0.1.0-demo", help="version written into the manifest and cards")
    demo.add_argument(
        "--dust", default="bh", choices=DUST_MODES, help="E(B-V) maps (bh ships with dustmaps: demo only)"
    )
    _add_split_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    cat = sub.add_parser("catalogs", help="compile targets.parquet from survey catalogs")
    cat.add_argument("--in", dest="input", required=True, type=Path, help="folder with <survey>/<file> catalogs")
    cat.add_argument("--out", required=True, type=Path, help="folder for targets.parquet and catalog_audit.parquet")
    cat.add_argument("--match-arcsec", type=positive_float, default=1.0, help="duplicate match radius in arcsec")
    cat.add_argument(
        "--surveys", default="all",
        help="comma-separated surveys to compile, e.g. sdss,desi (default: all; each of the eight must yield rows)",
    )  # fmt: skip
    cat.set_defaults(func=cmd_catalogs)

    build = sub.add_parser("build", help="build a release from targets and cutouts")
    build.add_argument("--targets", required=True, type=Path, help="targets.parquet (catalog_audit.parquet beside it)")
    build.add_argument("--cutouts", required=True, type=Path, help="cutout cache folder (mantis_data/cutouts/layout.py)")
    build.add_argument("--out", required=True, type=Path, help="release folder to write (resumable: rerun to continue)")
    build.add_argument("--shard-mb", type=positive_float, default=DEFAULT_SHARD_MB, help="target shard size in MB")
    build.add_argument("--workers", type=positive_int, default=None, help="local worker processes (default: CPUs)")
    build.add_argument("--scheduler", default=None, help=SCHEDULER_HELP)
    build.add_argument(
        "--dust",
        default=DEFAULT_DUST_MODE,
        choices=DUST_MODES,
        help="E(B-V) maps: csfd-planck (the released model's), csfd-gnilc, bh (demo only), none",
    )
    build.add_argument("--dust-dir", type=Path, default=None, help="dustmaps data directory (default: dustmaps' own)")
    build.add_argument("--release-version", default="0.0.0-dev", help="version written into the manifest and cards")
    _add_split_arguments(build)
    build.set_defaults(func=cmd_build)

    fetch = sub.add_parser("fetch", help="fetch cutouts from the survey services into a cache folder")
    fetch.add_argument("--targets", required=True, type=Path, help="targets.parquet (target_id, ra, dec)")
    fetch.add_argument("--cache", required=True, type=Path, help="cutout cache folder (resumable; rerun to retry failures)")
    fetch.add_argument("--ps1-url", default="https://ps1images.stsci.edu/cgi-bin", help="Pan-STARRS image service base URL")
    fetch.add_argument("--legacy-url", default="https://www.legacysurvey.org/viewer", help="Legacy Survey viewer base URL")
    fetch.add_argument("--concurrency", type=positive_int, default=4, help="requests in flight per host")
    fetch.add_argument("--rate", type=nonnegative_float, default=5.0, help="requests per second per host (0: unlimited)")
    fetch.add_argument("--timeout", type=positive_float, default=30.0, help="socket timeout in seconds")
    fetch.add_argument("--attempts", type=positive_int, default=5, help="tries per request")
    fetch.add_argument("--backoff", type=nonnegative_float, default=1.0, help="first retry wait in seconds, doubling")
    fetch.add_argument("--surveys", default="galex,ps1,unwise", help="comma-separated surveys to fetch")
    fetch.add_argument("--recheck", action="store_true", help="revalidate the files of targets already fetched")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(func=cmd_fetch)

    ver = sub.add_parser("verify", help="verify a release folder")
    ver.add_argument("release", type=Path, help="release folder (the one holding MANIFEST.json)")
    ver.set_defaults(func=cmd_verify)

    pub = sub.add_parser("publish", help="upload one format of a verified release to the Hugging Face Hub")
    pub.add_argument("release", type=Path, help="release folder (the one holding MANIFEST.json)")
    pub.add_argument("--repo", required=True, help="dataset repository <namespace>/<name>, e.g. my-org/mantis_shrimp")
    pub.add_argument(
        "--format", default="webdataset", choices=["webdataset", "parquet"],
        help="which dataset folder becomes the repository (parquet: e.g. my-org/mantis_shrimp-parquet)",
    )  # fmt: skip
    pub.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    pub.add_argument("--private", action="store_true", help="create the repository as private")
    pub.add_argument("--no-tag", action="store_true", help="do not tag the commit v<version>")
    pub.add_argument("--dry-run", action="store_true", help="verify and list the files that would be uploaded; no network")
    pub.set_defaults(func=cmd_publish)
    style(parser, EXAMPLES)
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
