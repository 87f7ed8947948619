"""Benchmark: per-sample cost of each build stage, bytes per sample in each format, and the full-build projection.

    python benchmarks/stages.py [--n 400] [--seed 0] [--workers 1 8 32 128] [--efficiency 0.85] [--io-gbps 1]
                                [--fetch-rates 5 20 50] [--no-fetch]

On one mock input (the demo's path: sky -> catalogs -> targets -> cutouts), in one process, in CPU time
(``time.process_time``: user + system, so other load on a shared machine barely moves it):

- fetch (client CPU): ``mantis_data.cutouts.fetch.fetch_cutouts`` from the loopback mock server (run as a
  separate process, so its rendering is not counted), no rate limit: the CPU our side spends per target on
  HTTP, validation and atomic cache writes. Wall time of a real fetch is set by the services' rate limits,
  not by this number (see docs/scaling.md).
- read: ``LocalFitsSource.get`` (7 FITS files per target: open, parse, check shape and WCS);
- assemble: ``assemble`` + ``validate_sample`` (quality checks, NaN fill, dust columns);
- write tar / write parquet: ``write_tar`` / ``write_parquet`` of the passing samples (encode + write);
- sha256: hashing both files (the manifest and the resume check do it);
- mock render: the mock service drawing the FITS files (server side; not a cost of the real build).

Then: bytes per sample of the FITS cache, the tar and the Parquet files; peak memory of one shard task as a
function of its sample count (fresh processes), extrapolated to the full release's ~1 GB shards; and the
projected CPU, I/O, wall time on N workers (the larger of CPU / (N x efficiency) and I/O / filesystem
bandwidth), fetch time at a few service rate limits, and storage of the full 4.4 million-galaxy build.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from builders.assemble import assemble  # noqa: E402
from builders.build import DEFAULT_SHARD_MB, SAMPLE_BYTES, assign_splits, samples_per_shard  # noqa: E402
from builders.catalogs.compile import compile_targets, find_catalogs, write_outputs  # noqa: E402
from builders.mock.catalogs import write_catalogs  # noqa: E402
from builders.mock.cutouts import write_cutouts  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from builders.write import ShardTask, plan_shards, run_shard, write_parquet, write_tar  # noqa: E402
from mantis_data.cutouts.local import LocalFitsSource  # noqa: E402
from mantis_data.dust import DustMaps  # noqa: E402
from mantis_data.release import sha256_file  # noqa: E402
from mantis_data.schema import validate_sample  # noqa: E402

FULL_RELEASE = 4_400_000
"""Galaxies in the full release (the paper's ~4.4 million)."""


def _fetch_cpu(targets_path: Path, n: int, seed: int, cache: Path) -> tuple[float, float, int, int]:
    """(client CPU s, wall s, targets, requests) of fetching every target from the mock server (a child process)."""
    from mantis_data.cutouts.fetch import FetchConfig, fetch_cutouts

    server = subprocess.Popen(
        [sys.executable, "-m", "builders.mock.server", "--n", str(n), "--seed", str(seed), "--port", "0"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"mock server did not start (said {url!r})")
        config = FetchConfig(ps1_url=url + "/cgi-bin", legacy_url=url + "/viewer", rate=None, concurrency=4)
        c0, t0 = time.process_time(), time.perf_counter()
        summary = fetch_cutouts(targets_path, cache, config, progress=False)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        return cpu, wall, int(summary["n_targets"]), int(summary["requests"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def _shard_peak_rss(task: ShardTask, source, out: str, queue) -> None:
    run_shard(task, source, out)
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork + exec on Linux)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            queue.put(int(line.split()[1]) * 1024)
            return
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def shard_peak_rss(task: ShardTask, source, out: Path) -> int:
    """Peak resident bytes of a fresh (spawned) process that runs one shard task."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_shard_peak_rss, args=(task, source, str(out), queue))
    child.start()
    peak = queue.get(timeout=600)
    child.join()
    return peak


def main(argv: list[str] | None = None) -> int:
    """Run the stage timings and print the table and the projection."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="galaxies in the mock sky (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32, 128], help="worker counts to project")
    ap.add_argument("--efficiency", type=float, default=0.85, help="parallel efficiency to assume (benchmarks/build.py)")
    ap.add_argument("--io-gbps", type=float, default=1.0, help="aggregate shared-filesystem GB/s to assume (default 1)")
    ap.add_argument("--fetch-rates", type=float, nargs="+", default=[5, 20, 50], help="service requests/s to project")
    ap.add_argument("--no-fetch", action="store_true", help="skip the fetch timing (needs mantis_data.cutouts.fetch)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mantis-bench-stages-"))
    try:
        return _run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(args: argparse.Namespace, root: Path) -> int:
    sky = MockSky(n_galaxies=args.n, seed=args.seed)
    write_catalogs(sky, root / "catalogs")
    targets, audit = compile_targets(find_catalogs(root / "catalogs"))
    paths = write_outputs(targets, audit, root / "work")
    t0 = time.process_time()
    write_cutouts(sky, targets[["target_id", "ra", "dec"]], root / "cutouts", progress=False)
    render = (time.process_time() - t0) / len(targets)
    cache_bytes = sum(p.stat().st_size for p in (root / "cutouts").rglob("*.fits*") if p.is_file())

    frame = assign_splits(pd.read_parquet(paths["targets"]))
    for column, values in DustMaps("bh", None).ebv(frame["ra"].to_numpy(), frame["dec"].to_numpy()).items():
        frame[column] = values
    rows = [t for task in plan_shards(frame, len(frame)) for t in task.targets]
    source = LocalFitsSource(root / "cutouts")
    for t in rows[:3]:  # warm up imports and first calls
        assemble(t, source.get(t.target_id, t.ra, t.dec))

    clock = time.process_time  # CPU seconds of this process (user + system): robust to other load on the machine
    wall0 = time.perf_counter()
    t_read = t_asm = 0.0
    samples = []
    for t in rows:
        c0 = clock()
        stamps = source.get(t.target_id, t.ra, t.dec)
        c1 = clock()
        sample, why = assemble(t, stamps)
        if why is None:
            validate_sample(sample)
            samples.append(sample)
        t_read += c1 - c0
        t_asm += clock() - c1
    n_t, n_s = len(rows), len(samples)
    c0 = clock()
    write_tar(samples, root / "out" / "s.tar")
    t_tar = clock() - c0
    c0 = clock()
    write_parquet(samples, root / "out" / "s.parquet")
    t_pq = clock() - c0
    c0 = clock()
    for name in ("s.tar", "s.parquet"):
        sha256_file(root / "out" / name)
    t_sha = clock() - c0
    build_wall = time.perf_counter() - wall0
    tar_b = (root / "out" / "s.tar").stat().st_size / n_s
    pq_b = (root / "out" / "s.parquet").stat().st_size / n_s

    fetch = None
    if not args.no_fetch:
        try:
            cpu, wall, n_f, requests = _fetch_cpu(paths["targets"], args.n, args.seed, root / "fetched")
            fetch = (cpu / n_f, wall / n_f, requests / n_f)
        except Exception as exc:  # the fetch module is optional for this benchmark
            print(f"fetch timing skipped: {type(exc).__name__}: {exc}")

    # peak memory of a shard task: two sizes, a line through them
    small, big = max(1, n_s // 8), n_s
    tasks = {k: ShardTask("train", 0, rows[: int(k * n_t / n_s)]) for k in (small, big)}
    rss = {k: shard_peak_rss(task, source, root / f"rss-{k}") for k, task in tasks.items()}
    per_sample_rss = (rss[big] - rss[small]) / (big - small)
    full_shard = samples_per_shard(DEFAULT_SHARD_MB)
    rss_full = rss[small] + per_sample_rss * (full_shard - small)

    print(f"mock input: {args.n} galaxies -> {n_t} targets, {n_s} pass quality; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; one process")  # fmt: skip
    print(f"{'stage (CPU time)':<36} {'ms/target':>10} {'ms/sample':>10}")
    stages = [("read FITS cache (LocalFitsSource)", t_read), ("assemble + validate", t_asm),
              ("write tar (encode + write)", t_tar), ("write parquet (encode + zstd + write)", t_pq),
              ("sha256 of both files", t_sha)]  # fmt: skip
    if fetch:
        print(f"{'fetch, client CPU (loopback mock)':<36} {fetch[0] * 1e3:>10.2f} {fetch[0] * n_t / n_s * 1e3:>10.2f}"
              f"   ({fetch[2]:.2f} requests/target; wall {fetch[1] * 1e3:.1f} ms/target unthrottled, "
              "server on the same CPUs)")  # fmt: skip
    for name, seconds in stages:
        print(f"{name:<36} {seconds / n_t * 1e3:>10.2f} {seconds / n_s * 1e3:>10.2f}")
    build_cpu = sum(s for _, s in stages) / n_s
    print(f"{'build total (read..sha256)':<36} {build_cpu * n_s / n_t * 1e3:>10.2f} {build_cpu * 1e3:>10.2f}"
          f"   (wall {build_wall / n_s * 1e3:.2f} ms/sample)")  # fmt: skip
    print(f"{'mock render (server side, not ours)':<36} {render * 1e3:>10.2f}")
    print(f"bytes per sample: images {SAMPLE_BYTES / 1e3:.1f} KB raw float32; FITS cache "
          f"{cache_bytes / n_t / 1e3:.1f} KB/target; tar {tar_b / 1e3:.1f} KB; parquet {pq_b / 1e3:.1f} KB "
          f"(parquet/tar {pq_b / tar_b:.3f})")  # fmt: skip
    print(f"peak RSS of one shard task: {rss[small] / 1e6:.0f} MB at {small} samples, {rss[big] / 1e6:.0f} MB at {big}: "
          f"{per_sample_rss / 1e3:.0f} KB/sample -> ~{rss_full / 1e9:.1f} GB for a {DEFAULT_SHARD_MB:.0f} MB shard "
          f"({full_shard} samples)")  # fmt: skip

    kept = n_s / n_t
    full = FULL_RELEASE
    print(f"\nprojection for {full:,} samples (~{full / kept:,.0f} targets at this pass rate {kept:.3f}), "
          f"parallel efficiency {args.efficiency}:")  # fmt: skip
    cpu_h = full * build_cpu / 3600
    print(f"  build CPU: {cpu_h:,.0f} core-hours; fetch client CPU: "
          + (f"{full / kept * fetch[0] / 3600:,.0f} core-hours" if fetch else "not measured"))
    io_bytes = full / kept * cache_bytes / n_t + full * (tar_b + pq_b)  # read the cache, write both formats
    io_h = io_bytes / (args.io_gbps * 1e9) / 3600
    print(f"  build I/O: {io_bytes / 1e12:.1f} TB (read the FITS cache, write both formats): {io_h:.1f} h at "
          f"{args.io_gbps:g} GB/s aggregate to the shared filesystem, a floor whatever the worker count")  # fmt: skip
    for k in args.workers:
        cpu_wall = cpu_h / (k * args.efficiency)
        print(f"  {k:>4} workers: build wall {max(cpu_wall, io_h):8.1f} h"
              f"  ({'CPU' if cpu_wall >= io_h else 'I/O'}-bound; CPU alone {cpu_wall:.1f} h)")  # fmt: skip
    # The services, not our CPU, set the fetch's wall time: per target Pan-STARRS takes 1 file-list request
    # plus 5 band cutouts, the Legacy Survey viewer 2 (GALEX and unWISE), each host rate-limited separately.
    ps1_requests = 6
    for rate in args.fetch_rates:
        days = full / kept * ps1_requests / rate / 86400
        print(f"  fetch at {rate:g} requests/s on the Pan-STARRS host (the bottleneck, {ps1_requests} per target): {days:,.1f} days")
    shards = -(-full // full_shard)
    print(f"  storage: tar {full * tar_b / 1e12:.2f} TB, parquet {full * pq_b / 1e12:.2f} TB, both "
          f"{full * (tar_b + pq_b) / 1e12:.2f} TB, FITS cache {full / kept * cache_bytes / n_t / 1e12:.2f} TB; "
          f"{shards:,} shards of {full_shard} samples per format")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
