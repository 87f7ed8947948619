"""Benchmark: samples/s of the loaders against a memmap read ceiling and the Hugging Face torch format.

    python benchmarks/loader.py [--release PATH | --n 1500] [--split train] [--batch-size 64]
                                [--workers 1 2] [--seconds 4] [--repeat 1]

One run, one release (a demo release built into a temporary folder unless --release is given), for
each worker count:

  (a) the read limit: as many processes as workers copy the same image bytes (every sample's galex, ps1
      and unwise arrays, located by the tar offsets) from ``numpy.memmap``s of the tar shards into one
      reused batch buffer each (no delivery anywhere);
  (b) ``make_loader(format="webdataset")`` streaming, no transforms (through a DataLoader with that many
      workers, batches arriving in the main process);
  (c) the same with the paper's training transforms (``paper_transform("early")``: scaling, random
      rotation and flips, crops, resize to 120 x 120) in the workers, on the CPU;
  (d) the same as (b), then the same transforms batched on the GPU (when CUDA is available);
  (e) ``load_dataset(<parquet folder>).with_format("torch")`` through a DataLoader (the baseline);
  (f) for information: ``make_loader(format="parquet")`` (map-style), no transforms.

Each figure is the steady-state rate over at least ``--seconds`` seconds of whole epochs after one
warm-up epoch (page cache warm, workers started), the best of ``--repeat`` rounds. Ratios are printed
to (a) and to (e), and the CPU time spent per sample by all the processes involved (main + workers),
which does not depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mantis_data.loading import make_loader, to_device  # noqa: E402
from mantis_data.loading.shards import split_shards  # noqa: E402
from mantis_data.loading.tar import shard_index  # noqa: E402
from mantis_data.release import PARQUET_DIR, open_release  # noqa: E402
from mantis_data.schema import IMAGE_FIELDS, IMAGE_SHAPES  # noqa: E402
from mantis_data.transforms import paper_transform  # noqa: E402

NBYTES = {f: int(np.prod(IMAGE_SHAPES[f])) * 4 for f in IMAGE_FIELDS}


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid or os.getpid()]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def build_release(n: int) -> Path:
    """Build a demo release of ``n`` mock galaxies into a temporary folder (the user's code path)."""
    out = Path(tempfile.mkdtemp(prefix="mantis-bench-")) / "release"
    cmd = [sys.executable, "-m", "builders", "demo", "--out", str(out), "--n", str(n), "--shard-mb", "64"]
    print("building:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"building the demo release failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return out


# --------------------------------------------------------------------------------------------------
# (a) memmap read limit
# --------------------------------------------------------------------------------------------------


def _memmap_worker(spans, batch_size, seconds, barrier, queue) -> None:
    """Copy image bytes of ``spans`` [(path, offsets)] from memmaps into a batch buffer until time is up."""
    maps = {p: np.memmap(p, dtype=np.uint8, mode="r") for p in {p for p, _ in spans}}
    buf = {f: np.empty((batch_size, NBYTES[f]), np.uint8) for f in IMAGE_FIELDS}
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    done, i = 0, 0
    while time.perf_counter() - t0 < seconds:
        for b in range(batch_size):
            path, offs = spans[i % len(spans)]
            mm = maps[path]
            for k, f in enumerate(IMAGE_FIELDS):
                buf[f][b] = mm[offs[k] : offs[k] + NBYTES[f]]
            i += 1
        done += batch_size
    queue.put((done, time.perf_counter() - t0, time.process_time() - c0))


def bench_memmap(root: Path, split: str, batch_size: int, workers: int, seconds: float) -> tuple[float, float]:
    """(a): (samples/s, CPU s/sample) of ``workers`` processes copying the image bytes out of memmapped tar shards."""
    shards = split_shards(str(root), open_release(root).manifest, False, "webdataset", split)
    spans = [(s.location, shard_index(s).offsets[i].tolist()) for s in shards for i in range(s.samples)]
    rng = np.random.default_rng(0)
    spans = [spans[i] for i in rng.permutation(len(spans))]
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_memmap_worker, args=(spans[w::workers], batch_size, seconds, barrier, queue))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    n = sum(r[0] for r in results)
    return n / max(r[1] for r in results), sum(r[2] for r in results) / n


# --------------------------------------------------------------------------------------------------
# Loader measurements
# --------------------------------------------------------------------------------------------------


def steady_rate(epoch_iter, seconds: float, on_batch=None, sync=None) -> tuple[float, float]:
    """(samples/s, CPU s/sample of this process and its workers) over whole epochs lasting >= ``seconds``,
    after one warm-up epoch of ``epoch_iter(epoch)``."""
    for batch in epoch_iter(0):
        if on_batch:
            on_batch(batch)
    if sync:
        sync()
    n, epoch, t0, c0 = 0, 1, time.perf_counter(), tree_cpu_seconds()
    while True:
        for batch in epoch_iter(epoch):
            out = on_batch(batch) if on_batch else batch
            n += len(out["z"])
        if sync:
            sync()
        epoch += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed, (tree_cpu_seconds() - c0) / n


def bench_ours(root: Path, split: str, fmt: str, batch_size: int, workers: int, seconds: float,
               transform=None, gpu_transform=None) -> tuple[float, float]:
    """(b), (c), (d), (f): (samples/s, CPU s/sample) of ``make_loader`` (+ optional GPU transform)."""
    loader = make_loader(root, split, format=fmt, batch_size=batch_size, order="shuffle", num_workers=workers,
                         transform=transform, pin_memory=gpu_transform is not None)

    def epochs(e):
        loader.set_epoch(e)
        return loader

    on_batch, sync = None, None
    if gpu_transform is not None:
        def on_batch(batch):
            return gpu_transform(to_device(batch, "cuda"))

        sync = torch.cuda.synchronize
    return steady_rate(epochs, seconds, on_batch, sync)


def bench_hf(root: Path, split: str, batch_size: int, workers: int, seconds: float) -> tuple[float, float]:
    """(e): (samples/s, CPU s/sample) of ``load_dataset(parquet folder).with_format("torch")`` through a DataLoader."""
    from datasets import load_dataset

    ds = load_dataset(str(root / PARQUET_DIR), split=split).with_format("torch")
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0, drop_last=True)
    return steady_rate(lambda e: dl, seconds)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print samples/s and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", type=Path, help="release folder (default: build a demo release, removed afterwards)")
    ap.add_argument("--n", type=int, default=1500, help="mock galaxies of the demo release built when --release is absent")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=4.0, help="minimum measured time per figure")
    ap.add_argument("--repeat", type=int, default=1, help="measure each figure this many times, keep the best (noisy machines)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    hf_cache = tempfile.mkdtemp(prefix="mantis-bench-hf-")  # (e) converts the Parquet files here, not in ~/.cache
    os.environ.setdefault("HF_DATASETS_CACHE", hf_cache)
    root = args.release or build_release(args.n)
    release = open_release(root)
    shards = split_shards(str(release.root), release.manifest, False, "webdataset", args.split)
    n = sum(s.samples for s in shards)
    tar_mb = sum(os.path.getsize(s.location) for s in shards) / 2**20
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"release {root}: split {args.split!r}, {n} samples in {len(shards)} tar shards ({tar_mb:.0f} MiB; "
        f"{sum(NBYTES.values()) / 1024:.0f} KiB of images per sample); batch {args.batch_size}; "
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores (load average {load:.1f} at start), "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; best of {args.repeat} x >= {args.seconds:g} s per figure"
    )
    early = paper_transform("early", train=True)
    root_ = release.root

    for workers in args.workers:
        common = (root_, args.split, args.batch_size, workers, args.seconds)
        ours = (root_, args.split, "webdataset", args.batch_size, workers, args.seconds)
        figures = {
            "(a) memmap read of the image bytes (limit)": partial(bench_memmap, *common),
            "(b) ours, WebDataset stream, no transforms": partial(bench_ours, *ours),
            "(c) ours, stream + paper transforms on CPU": partial(bench_ours, *ours, transform=early),
            "(d) ours, stream + paper transforms on GPU": (
                partial(bench_ours, *ours, gpu_transform=early) if torch.cuda.is_available() else None
            ),
            "(e) HF load_dataset(...).with_format('torch')": partial(bench_hf, *common),
            "(f) ours, Parquet map-style, no transforms": partial(
                bench_ours, root_, args.split, "parquet", args.batch_size, workers, args.seconds
            ),
        }
        # rounds over all figures, best of each: on a shared machine every figure gets its quiet moments
        rows: dict[str, tuple[float, float] | None] = {name: ((0.0, 0.0) if fn else None) for name, fn in figures.items()}
        for _ in range(max(1, args.repeat)):
            for name, fn in figures.items():
                if fn is not None:
                    rows[name] = max(rows[name], fn())
        a = rows["(a) memmap read of the image bytes (limit)"][0]
        e = rows["(e) HF load_dataset(...).with_format('torch')"][0]
        print(f"\nworkers = {workers}{'':<36}samples/s    ratio to (a)   ratio to (e)   CPU us/sample (all processes)")
        for name, row in rows.items():
            if row is None:
                print(f"  {name:<48} n/a (no CUDA device)")
            else:
                rate, cpu = row
                print(f"  {name:<48} {rate:9.0f}   {rate / a:9.2f} x   {rate / e:10.2f} x   {cpu * 1e6:10.0f}")
        sys.stdout.flush()
    shutil.rmtree(hf_cache, ignore_errors=True)
    if args.release is None:  # the demo release built for this run
        shutil.rmtree(Path(root).parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
