"""Benchmark: build throughput on 1 and 2 workers on the same mock input, and the parallel efficiency.

    python benchmarks/build.py [--n 800] [--shard-mb 8] [--workers 1 2] [--dask] [--repeat R] [--keep DIR]

Makes one mock input (sky -> survey catalogs -> targets.parquet -> FITS cutout cache, as the demo does),
then times the shard phase of the build (builders.executor.run_shards: read FITS, assemble, write the tar
and the Parquet file, hash them) with each worker count into a fresh output folder, side by side in one
run: ``--repeat`` rounds, interleaved, and the fastest run of each configuration counts (the machine may
be shared). Prints samples/s for each and the parallel efficiency (rate_k / rate_1) / k. ``--dask`` adds
the same builds on a dask.distributed LocalCluster (loopback) with the same worker counts (workers warmed
up by one shard first, as on a long-lived cluster). Then one end-to-end ``build_release`` (dust, audit,
cards with plots and manifest around the shards) and the bytes per sample of each format. Every build is
checked to give byte-identical shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from builders.build import assign_splits, build_release, samples_per_shard  # noqa: E402
from builders.catalogs.compile import compile_targets, find_catalogs, write_outputs  # noqa: E402
from builders.executor import run_shards  # noqa: E402
from builders.mock.catalogs import write_catalogs  # noqa: E402
from builders.mock.cutouts import write_cutouts  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from builders.write import plan_shards  # noqa: E402
from mantis_data.cutouts.local import LocalFitsSource  # noqa: E402
from mantis_data.dust import DustMaps  # noqa: E402


def mock_inputs(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Write a mock sky's catalogs, compiled targets and cutout cache under ``folder``; return (targets, cutouts)."""
    sky = MockSky(n_galaxies=n, seed=seed)
    write_catalogs(sky, folder / "catalogs")
    targets, audit = compile_targets(find_catalogs(folder / "catalogs"))
    paths = write_outputs(targets, audit, folder / "work")
    write_cutouts(sky, targets[["target_id", "ra", "dec"]], folder / "cutouts", progress=False)
    return paths["targets"], folder / "cutouts"


def shard_tasks(targets_path: Path, shard_mb: float, dust: str = "bh") -> list:
    """The build's shard tasks for a targets file, as build_release plans them."""
    targets = assign_splits(pd.read_parquet(targets_path))
    for column, values in DustMaps(dust, None).ebv(targets["ra"].to_numpy(), targets["dec"].to_numpy()).items():
        targets[column] = values
    return plan_shards(targets, samples_per_shard(shard_mb))


def _warm_up(task, source, scratch: str) -> None:
    """Build one shard in a worker process into a scratch folder: imports and first calls done before timing."""
    from builders.executor import shard_task

    shard_task(task, source, Path(scratch) / str(os.getpid()))


def timed_shards(tasks: list, source, out: Path, workers: int, scheduler=None) -> tuple[float, int, dict]:
    """(seconds, samples written, {file: sha256}) of one fresh shard phase."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    results = run_shards(tasks, source, out, workers=workers, progress=False, scheduler=scheduler)
    seconds = time.perf_counter() - t0
    hashes = {k: v["sha256"] for r in results for k, v in r.files.items()}
    return seconds, sum(len(r.samples) for r in results), hashes


def timed_dask(tasks: list, source, root: Path, workers: int) -> tuple[float, int, dict]:
    """timed_shards on a fresh dask LocalCluster of ``workers`` processes (loopback), warmed up by one shard."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.run(_warm_up, tasks[0], source, str(root / "scratch"))  # as on a long-lived cluster
        return timed_shards(tasks, source, root / f"out-dask-{workers}", workers, scheduler=client)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=800, help="galaxies in the mock sky (default 800)")
    ap.add_argument("--shard-mb", type=float, default=8.0, help="shard size in MB (default 8: ~13 samples a shard)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dask", action="store_true", help="also run on a dask LocalCluster with the same worker counts")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest counts (default 1)")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="mantis-bench-build-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    targets_path, cutouts = mock_inputs(root / "inputs", args.n)
    tasks = shard_tasks(targets_path, args.shard_mb)
    source = LocalFitsSource(cutouts)
    timed_shards(tasks[:2], source, root / "scratch", 1)  # warm this process (imports, first calls)
    n_targets = sum(len(t.targets) for t in tasks)
    print(
        f"mock input: {args.n} galaxies -> {n_targets} targets in {len(tasks)} shards of <= "
        f"{samples_per_shard(args.shard_mb)} ({time.perf_counter() - t0:.1f} s to make); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    configs = [(kind, k) for kind in (["local", "dask"] if args.dask else ["local"]) for k in args.workers]
    best: dict[tuple[str, int], tuple[float, int, dict]] = {}
    for _ in range(args.repeat):  # interleaved, so a burst of load on a shared machine hits every configuration
        for kind, k in configs:
            run = timed_dask(tasks, source, root, k) if kind == "dask" else timed_shards(tasks, source, root / f"out-{kind}-{k}", k)
            if (kind, k) not in best or run[0] < best[kind, k][0]:
                best[kind, k] = run
    rows = []
    reference = None
    for kind, k in configs:
        seconds, samples, hashes = best[kind, k]
        reference = reference or hashes
        if hashes != reference:
            raise SystemExit(f"{kind} build with {k} workers differs from the first build")
        rows.append((kind, k, seconds, samples, n_targets / seconds))
    print(f"{'executor':<8} {'workers':>7} {'seconds':>8} {'samples':>8} {'targets/s':>10} {'samples/s':>10} {'efficiency':>10}")
    base = {kind: rate for kind, k, _, _, rate in rows if k == 1}
    for kind, k, seconds, samples, rate in rows:
        eff = (rate / base[kind]) / k if kind in base else float("nan")
        print(f"{kind:<8} {k:>7} {seconds:>8.2f} {samples:>8} {rate:>10.1f} {samples / seconds:>10.1f} {eff:>10.2f}")
    # end to end, once (the serial part around the shards: dust, audit, cards with plots, manifest)
    out = root / "out-end-to-end"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    manifest = build_release(targets_path, source, out, dust="bh", shard_mb=args.shard_mb, workers=max(args.workers), progress=False)
    total = time.perf_counter() - t0
    print(
        f"end to end build_release with {max(args.workers)} local workers: {total:.2f} s for {manifest['total']} samples "
        f"({manifest['total'] / total:.1f} samples/s)"
    )
    sizes = json.loads((out / "MANIFEST.json").read_text())["files"]
    for fmt in ("webdataset", "parquet"):
        b = sum(v["bytes"] for v in sizes.values() if v["format"] == fmt)
        print(f"  {fmt:<10} {b / 1e6:8.1f} MB, {b / manifest['total'] / 1e3:6.1f} KB/sample")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
