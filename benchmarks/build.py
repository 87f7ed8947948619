"""Benchmark: build throughput on 1 and 2 workers, local pool and a command-line Dask cluster, side by side.

    python benchmarks/build.py [--n 800] [--shard-mb 8] [--workers 1 2] [--repeat 3] [--local-only] [--keep DIR]

Makes one mock input (sky -> survey catalogs -> targets.parquet -> FITS cutout cache, as the demo does),
then times the shard phase of the build (builders.executor.run_shards: read FITS, assemble, write the tar
and the Parquet file, hash them) into a fresh output folder for each configuration: the local pool with
each worker count, and a real Dask cluster of `dask scheduler` + that many `dask worker` processes started
from the command line (loopback, one thread each, in a temporary folder outside the checkout; the nodes run
this interpreter with a `pip install` of this checkout first on their PYTHONPATH, the environment
docs/scaling.md prescribes), reached by its address as `--scheduler` does (connect, check the nodes, run).
The clusters are started once and warmed up by one build, as a long-lived cluster would be. ``--repeat``
rounds, interleaved (every configuration once per round, so a burst of load on a shared machine hits all
of them); each run prints the 1-minute load average before and after it, and the table reports the median
of the runs. Parallel efficiency is (rate_k / rate_1) / k per executor. Then one end-to-end
``build_release`` (dust, audit, cards with plots and manifest around the shards) and the bytes per sample
of each format. Every run is checked to give byte-identical shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
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


def timed_shards(tasks: list, source, out: Path, workers: int, scheduler=None) -> tuple[float, int, dict]:
    """(seconds, samples written, {file: sha256}) of one fresh shard phase."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    results = run_shards(tasks, source, out, workers=workers, progress=False, scheduler=scheduler)
    seconds = time.perf_counter() - t0
    hashes = {k: v["sha256"] for r in results for k, v in r.files.items()}
    return seconds, sum(len(r.samples) for r in results), hashes


class CommandLineCluster:
    """`dask scheduler` + ``workers`` x `dask worker` (one thread each) on loopback, run from ``folder``."""

    def __init__(self, folder: Path, workers: int, site: Path):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(site), DASK_TEMPORARY_DIRECTORY=str(folder / "scratch"))
        dask = [str(Path(sys.executable).parent / "dask")]
        file = folder / "scheduler.json"
        self._start(dask + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(file)], env)
        deadline = time.monotonic() + 120
        while not file.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                self.stop()
                raise SystemExit(f"the dask scheduler did not start; see {folder}")
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(file.read_text())["address"]
        for _ in range(workers):
            self._start(dask + ["worker", self.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"], env)

    def _start(self, cmd: list[str], env: dict) -> None:
        with open(self.folder / f"node{len(self.procs)}.log", "wb") as log:
            self.procs.append(
                subprocess.Popen(cmd, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def stop(self) -> None:
        """End every process of the cluster (SIGTERM, then SIGKILL), each with its whole session."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in self.procs:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 15
            for proc in self.procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


def install_checkout(site: Path, scratch: Path) -> Path:
    """`pip install` this checkout's distribution (no dependencies: this interpreter's) into ``site``, for the nodes."""
    repo = Path(__file__).resolve().parents[1]
    src = scratch / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(repo / name, src / name)
    shutil.copytree(repo / "mantis_data", src / "mantis_data", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(src)]
    subprocess.run(cmd, check=True, timeout=300)
    return site


def wait_for_workers(address: str, n: int) -> None:
    """Block until ``n`` workers have joined the scheduler at ``address`` (at most 120 s)."""
    from dask.distributed import Client

    with Client(address, set_as_default=False, timeout=120) as client:
        client.wait_for_workers(n, timeout=120)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=800, help="galaxies in the mock sky (default 800)")
    ap.add_argument("--shard-mb", type=float, default=8.0, help="shard size in MB (default 8: ~13 samples a shard)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the table reports medians (default 3)")
    ap.add_argument("--local-only", action="store_true", help="no Dask cluster: the local pool only")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="mantis-bench-build-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> int:
    """The benchmark proper, in the work folder ``root``."""
    clusters: dict[int, CommandLineCluster] = {}
    try:
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
        kinds = ["local"] if args.local_only else ["local", "dask"]
        if not args.local_only:
            site = install_checkout(root / "site", root / "pip")
            for k in args.workers:
                clusters[k] = CommandLineCluster(root / f"cluster-{k}", k, site)
            for k, cluster in clusters.items():
                wait_for_workers(cluster.address, k)
                timed_shards(tasks[: 2 * k], source, root / "scratch-dask", k, scheduler=cluster.address)  # warm up
            print("dask: " + ", ".join(f"{k} worker(s) at {c.address}" for k, c in clusters.items()))
        configs = [(kind, k) for kind in kinds for k in args.workers]
        runs: dict[tuple[str, int], list[tuple[float, int, dict]]] = {c: [] for c in configs}
        for r in range(args.repeat):  # interleaved, so a burst of load on a shared machine hits every configuration
            for kind, k in configs:
                before = os.getloadavg()[0]
                scheduler = clusters[k].address if kind == "dask" else None
                one = timed_shards(tasks, source, root / f"out-{kind}-{k}", k, scheduler=scheduler)
                runs[kind, k].append(one)
                print(f"  round {r + 1} {kind:<5} {k} worker(s): {one[0]:6.2f} s   load average {before:.2f} -> {os.getloadavg()[0]:.2f}")
        rows = []
        reference = None
        for kind, k in configs:
            for _, _, hashes in runs[kind, k]:
                reference = reference or hashes
                if hashes != reference:
                    raise SystemExit(f"{kind} build with {k} workers differs from the first build")
            seconds = statistics.median(one[0] for one in runs[kind, k])
            rows.append((kind, k, seconds, runs[kind, k][0][1], n_targets / seconds))
        print(f"medians of {args.repeat} runs; load average now {os.getloadavg()[0]:.2f}")
        print(f"{'executor':<8} {'workers':>7} {'seconds':>8} {'samples':>8} {'targets/s':>10} {'samples/s':>10} {'efficiency':>10}")
        base = {kind: rate for kind, k, _, _, rate in rows if k == 1}
        for kind, k, seconds, samples, rate in rows:
            eff = (rate / base[kind]) / k if kind in base else float("nan")
            print(f"{kind:<8} {k:>7} {seconds:>8.2f} {samples:>8} {rate:>10.1f} {samples / seconds:>10.1f} {eff:>10.2f}")
    finally:
        for cluster in clusters.values():
            cluster.stop()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
