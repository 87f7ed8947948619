"""Benchmark: our loaders against the loaders a user would pick instead, and a memmap read ceiling.

    python benchmarks/loader.py [--release PATH | --n 2600] [--split train] [--batch-size 32]
                                [--workers 0 2] [--seconds 3] [--repeat 1] [--skip NAME ...]

One interleaved run over one release (a demo release built into a temporary folder unless --release is
given), for each worker count (0: everything in the main process; the ceiling then uses one process):

  ceiling       as many processes as workers (at least one) copy every sample's image bytes (located by
                the tar offsets) from ``numpy.memmap``s of the tar shards into one reused batch buffer,
                each with as many threads as ours copies with in one process (``copy_threads``: at 0
                workers up to 4, one per core; 1 in each worker)
  ours tar      ``make_loader(format="webdataset", order="shuffle")``
  ours parquet  ``make_loader(format="parquet", order="shuffle")``
  mds, mds-zstd MosaicML streaming: the same samples written by its ``MDSWriter`` (ndarray columns,
                uncompressed and zstd), read by its ``StreamingDataset`` + ``DataLoader``
  litdata, litdata-zstd  litdata: written by ``litdata.optimize``, read by its ``StreamingDataset`` +
                ``StreamingDataLoader``
  webdataset    plain ``webdataset.WebDataset(tar shards).shuffle(1000).decode()`` + ``DataLoader``
  hf torch      ``load_dataset(<parquet folder>).with_format("torch")`` + ``DataLoader(shuffle=True)``
  hf streaming  ``load_dataset(<parquet folder>, streaming=True).with_format("torch")`` + ``DataLoader``

Every path yields batches of the three image cubes and the sample keys; for every sample the benchmark
computes a checksum (float64 sum of every 97th value of each cube) in the main process and checks it
against the release's, and counts the samples of every epoch, so no path is fast by skipping work (the
ceiling pays the same checksum). Each figure is the rate over whole epochs lasting at least ``--seconds``
after one warm-up epoch, the best of ``--repeat`` rounds (the rounds interleave all paths). It prints
samples/s, the ratio to the ceiling, the ratio of ours to the best peer, and bytes per sample on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mantis_data.loading import make_loader  # noqa: E402
from mantis_data.loading.copy import resolve_copy_threads  # noqa: E402
from mantis_data.loading.shards import split_shards  # noqa: E402
from mantis_data.loading.tar import shard_index  # noqa: E402
from mantis_data.release import PARQUET_DIR, open_release  # noqa: E402
from mantis_data.schema import IMAGE_FIELDS, IMAGE_SHAPES  # noqa: E402

NBYTES = {f: int(np.prod(IMAGE_SHAPES[f])) * 4 for f in IMAGE_FIELDS}
STRIDE = 97


def checksums(cubes) -> np.ndarray:
    """Per-sample checksum of a batch: float64 sum of every STRIDE-th value of each cube (tensors or arrays)."""
    total = None
    for c in cubes:
        t = torch.as_tensor(c)
        s = t.reshape(t.shape[0], -1)[:, ::STRIDE].double().sum(1).numpy()
        total = s if total is None else total + s
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


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# The ceiling
# --------------------------------------------------------------------------------------------------


def _memmap_worker(spans, batch_size, seconds, threads, barrier, queue) -> None:
    from concurrent.futures import ThreadPoolExecutor

    maps = {p: np.memmap(p, dtype=np.uint8, mode="r") for p in {p for p, _ in spans}}
    buf = {f: np.empty((batch_size, NBYTES[f]), np.uint8) for f in IMAGE_FIELDS}
    views = [buf[f].view(np.float32) for f in IMAGE_FIELDS]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    parts = np.array_split(np.arange(batch_size), threads)

    def copy(rows, first):  # rows of the batch whose samples are spans[first + row]
        for b in rows.tolist():
            path, offs = spans[(first + b) % len(spans)]
            mm = maps[path]
            for k, f in enumerate(IMAGE_FIELDS):
                buf[f][b] = mm[offs[k] : offs[k] + NBYTES[f]]

    barrier.wait()
    t0, done, i, sums = time.perf_counter(), 0, 0, 0.0
    while time.perf_counter() - t0 < seconds or i < len(spans):
        if pool is None:
            copy(parts[0], i)
        else:
            list(pool.map(copy, parts, [i] * threads))
        i += batch_size
        sums += float(checksums(views).sum())
        done += batch_size
    queue.put((done, time.perf_counter() - t0))


def bench_ceiling(ctx, workers: int, threads: int) -> float:
    """samples/s of max(1, workers) processes, each copying the image bytes out of memmapped tar shards
    into one reused batch buffer with ``threads`` threads."""
    procs_n = max(1, workers)
    spans = ctx.spans
    q = mp.get_context("spawn")  # not fork: the peers' threads (MDS, litdata, HF) can hold locks a fork copies
    barrier, queue = q.Barrier(procs_n), q.Queue()
    procs = [q.Process(target=_memmap_worker,
                       args=(spans[w::procs_n], ctx.batch_size, ctx.seconds, threads, barrier, queue))
             for w in range(procs_n)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / max(r[1] for r in results)


# --------------------------------------------------------------------------------------------------
# Paths: each returns (epoch -> iterable of batches, batch -> (keys, [ps1, galex, unwise]))
# --------------------------------------------------------------------------------------------------


def ours(ctx, workers: int, fmt: str):
    loader = make_loader(ctx.root, ctx.split, format=fmt, batch_size=ctx.batch_size, order="shuffle",
                         num_workers=workers, drop_last=False)

    def epochs(e):
        loader.set_epoch(e)
        return loader

    return epochs, lambda b: (b["target_id"], [b[f] for f in IMAGE_FIELDS]), loader


def _stack(items):
    return torch.stack([torch.as_tensor(x) for x in items])


def plain_webdataset(ctx, workers: int):
    import webdataset as wds

    urls = [s.location for s in ctx.shards]
    ds = (wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, empty_check=False)
          .shuffle(1000).decode().to_tuple("__key__", "ps1.npy", "galex.npy", "unwise.npy")
          .batched(ctx.batch_size, partial=True))
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)

    def get(b):
        keys, ps1, galex, unwise = b
        return list(keys), [_stack(ps1), _stack(galex), _stack(unwise)]

    return (lambda e: dl), get, dl


def hf_torch(ctx, workers: int):
    from datasets import load_dataset

    ds = load_dataset(str(ctx.root / PARQUET_DIR), split=ctx.split).with_format("torch")
    dl = torch.utils.data.DataLoader(ds, batch_size=ctx.batch_size, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    return (lambda e: dl), (lambda b: (b["target_id"], [b[f] for f in IMAGE_FIELDS])), dl


def hf_streaming(ctx, workers: int):
    from datasets import load_dataset

    ds = load_dataset(str(ctx.root / PARQUET_DIR), split=ctx.split, streaming=True)
    ds = ds.select_columns(["target_id", *IMAGE_FIELDS]).shuffle(seed=0, buffer_size=256).with_format("torch")
    dl = torch.utils.data.DataLoader(ds, batch_size=ctx.batch_size, num_workers=workers)

    def epochs(e):
        ds.set_epoch(e)
        return dl

    return epochs, (lambda b: (b["target_id"], [b[f] for f in IMAGE_FIELDS])), dl


def _samples(ctx):
    """(key, {field: array}) of every sample of the split, read once with our sequential loader."""
    loader = make_loader(ctx.root, ctx.split, order="sequential", batch_size=64, num_workers=0)
    for b in loader:
        for i, key in enumerate(b["target_id"]):
            yield key, {f: b[f][i].numpy() for f in IMAGE_FIELDS}


def write_mds(ctx, compression: str | None) -> Path:
    from streaming import MDSWriter

    out = ctx.tmp / f"mds-{compression or 'raw'}"
    columns = {"key": "str", **{f: f"ndarray:float32:{','.join(map(str, IMAGE_SHAPES[f]))}" for f in IMAGE_FIELDS}}
    with MDSWriter(out=str(out), columns=columns, compression=compression, size_limit="64mb") as w:
        for key, arrays in _samples(ctx):
            w.write({"key": key, **arrays})
    return out


def mds(ctx, workers: int, compression: str | None):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    local = ctx.formats[f"mds{'-zstd' if compression else ''}"]
    ds = StreamingDataset(local=str(local), shuffle=True, batch_size=ctx.batch_size, shuffle_seed=0)
    dl = torch.utils.data.DataLoader(ds, batch_size=ctx.batch_size, num_workers=workers)
    return (lambda e: dl), (lambda b: (b["key"], [b[f] for f in IMAGE_FIELDS])), ds


def _lit_item(item):
    key, arrays = item
    return {"key": key, **arrays}


def write_litdata(ctx, compression: str | None) -> Path:
    import litdata

    out = ctx.tmp / f"litdata-{compression or 'raw'}"
    items = list(_samples(ctx))
    with contextlib.redirect_stdout(sys.stderr):
        litdata.optimize(fn=_lit_item, inputs=items, output_dir=str(out), chunk_bytes="64MB",
                         compression=compression, num_workers=1)
    return out


def lit(ctx, workers: int, compression: str | None):
    import litdata

    local = ctx.formats[f"litdata{'-zstd' if compression else ''}"]
    ds = litdata.StreamingDataset(str(local), shuffle=True, seed=0)
    dl = litdata.StreamingDataLoader(ds, batch_size=ctx.batch_size, num_workers=workers)
    return (lambda e: dl), (lambda b: (list(b["key"]), [b[f] for f in IMAGE_FIELDS])), dl


def bench_parquet_writer(ctx, rounds: int = 3) -> tuple[float, float]:
    """(before, now) ms per sample to write the split's first Parquet shard: zstd everywhere (the writer
    before the raw-page layout) against ``builders.tar_index.parquet_options`` (the release's now)."""
    import pyarrow.parquet as pq

    from builders.tar_index import parquet_options
    from builders.write import PARQUET_ROW_GROUP

    first = next(p for p in sorted((ctx.root / PARQUET_DIR / "data").glob(f"{ctx.split}-*.parquet")))
    table = pq.read_table(first)
    out = ctx.tmp / "writer.parquet"
    old = {"compression": "zstd", "write_statistics": ["z", "ra", "dec", "split", "survey", "chunk"]}
    best = []
    for options in (old, parquet_options(table.column_names)):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            pq.write_table(table, out, row_group_size=PARQUET_ROW_GROUP, **options)
            times.append(time.perf_counter() - t0)
        best.append(min(times) / table.num_rows * 1e3)
    return best[0], best[1]


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


def measure(ctx, build) -> tuple[float, str]:
    """(samples/s over whole epochs after a warm-up epoch, check result) of one path."""
    epochs, get, keep = build()

    def one(e):
        n, bad = 0, 0
        for b in epochs(e):
            keys, cubes = get(b)
            sums = checksums(cubes)
            for k, s in zip(keys, sums.tolist(), strict=True):
                want = ctx.reference.get(k)
                bad += want is None or abs(s - want) > 1e-6 * max(1.0, abs(want))
            n += len(keys)
        return n, bad

    counts, bad = [], 0
    c, b = one(0)
    counts.append(c)
    bad += b
    t0, n, e = time.perf_counter(), 0, 1
    while True:
        c, b = one(e)
        counts.append(c)
        bad += b
        n += c
        e += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= ctx.seconds:
            break
    ok = all(c == ctx.n for c in counts) and bad == 0
    check = "ok" if ok else f"FAILED: epochs of {sorted(set(counts))} samples (want {ctx.n}), {bad} bad checksums"
    del keep
    return n / elapsed, check


class Ctx:
    """What every path needs: the release, its split, batch size, reference checksums, converted copies."""

    def __init__(self, root: Path, split: str, batch_size: int, seconds: float):
        self.root, self.split, self.batch_size, self.seconds = Path(root), split, batch_size, seconds
        release = open_release(root)
        self.shards = split_shards(str(release.root), release.manifest, False, "webdataset", split)
        self.n = sum(s.samples for s in self.shards)
        spans = [(s.location, shard_index(s).offsets[i].tolist()) for s in self.shards for i in range(s.samples)]
        rng = np.random.default_rng(0)
        self.spans = [spans[i] for i in rng.permutation(len(spans))]
        self.reference: dict[str, float] = {}
        for key, arrays in _samples(self):
            self.reference[key] = float(checksums([a[None] for a in (arrays[f] for f in IMAGE_FIELDS)])[0])
        self.tmp = Path(tempfile.mkdtemp(prefix="mantis-bench-peers-"))
        self.formats: dict[str, Path] = {}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", type=Path, help="release folder (default: build a demo release, removed afterwards)")
    ap.add_argument("--n", type=int, default=2600, help="mock galaxies of the demo release built when --release is absent")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measured time per figure")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the best of each figure is kept")
    ap.add_argument("--skip", nargs="*", default=[], help="paths to leave out (e.g. 'hf streaming')")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    hf_cache = tempfile.mkdtemp(prefix="mantis-bench-hf-")  # HF converts the Parquet files here, not in ~/.cache
    os.environ.setdefault("HF_DATASETS_CACHE", hf_cache)
    root = args.release or build_release(args.n)
    ctx = Ctx(root, args.split, args.batch_size, args.seconds)
    load = os.getloadavg()[0]
    print(f"release {root}: split {args.split!r}, {ctx.n} samples, batch {args.batch_size}; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores (load average {load:.1f} at start); best of {args.repeat} x >= {args.seconds:g} s",
          flush=True)
    files = open_release(root).manifest["files"].values()
    sizes = {"tar + index (ours, webdataset)": sum(i["bytes"] for i in files if i.get("split") == args.split
                                                   and i["format"] in ("webdataset", "webdataset-index")),
             "parquet (ours, hf)": sum(i["bytes"] for i in files if i.get("split") == args.split and i["format"] == "parquet")}
    peers = {
        "mds": lambda w: mds(ctx, w, None), "mds-zstd": lambda w: mds(ctx, w, "zstd"),
        "litdata": lambda w: lit(ctx, w, None), "litdata-zstd": lambda w: lit(ctx, w, "zstd"),
        "webdataset": lambda w: plain_webdataset(ctx, w),
        "hf torch": lambda w: hf_torch(ctx, w), "hf streaming": lambda w: hf_streaming(ctx, w),
    }
    peers = {k: v for k, v in peers.items() if k not in args.skip}
    writers = {"mds": (write_mds, None), "mds-zstd": (write_mds, "zstd"),
               "litdata": (write_litdata, None), "litdata-zstd": (write_litdata, "zstd")}
    for name, (writer, comp) in writers.items():
        if name in peers:
            t0 = time.perf_counter()
            ctx.formats[name] = writer(ctx, comp)
            sizes[name] = folder_bytes(ctx.formats[name])
            print(f"  wrote {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    paths = {"ours tar": lambda w: ours(ctx, w, "webdataset"), "ours parquet": lambda w: ours(ctx, w, "parquet"), **peers}
    try:
        for workers in args.workers:
            rows: dict[str, tuple[float, str]] = {}
            threads = resolve_copy_threads(None) if workers == 0 else 1  # what ours uses per process
            ceiling = 0.0
            for _ in range(max(1, args.repeat)):
                ceiling = max(ceiling, bench_ceiling(ctx, workers, threads))
                for name, build in paths.items():
                    rate, check = measure(ctx, lambda build=build, w=workers: build(w))
                    if name not in rows or rate > rows[name][0]:
                        rows[name] = (rate, check)
            best_peer = max((rows[k][0] for k in peers), default=float("nan"))
            print(f"\nworkers = {workers}{'':<14}samples/s   x ceiling   x best peer   check")
            print(f"  {f'ceiling ({max(1, workers)} proc x {threads} thr)':<30} {ceiling:9.0f}   {1.0:8.2f}")
            for name, (rate, check) in rows.items():
                vs = f"{rate / best_peer:10.2f}" if name.startswith("ours") else " " * 10
                print(f"  {name:<30} {rate:9.0f}   {rate / ceiling:8.2f}   {vs}    {check}")
            sys.stdout.flush()
        before, now = bench_parquet_writer(ctx)
        print(f"\nParquet writer, one shard: {before:.2f} ms/sample before (zstd everywhere), {now:.2f} now "
              f"({before / now:.2f}x faster)")
        print("\nbytes per sample on disk")
        for name, size in sizes.items():
            print(f"  {name:<32} {size / ctx.n / 1e3:8.1f} kB")
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        shutil.rmtree(hf_cache, ignore_errors=True)
        if args.release is None:
            shutil.rmtree(Path(root).parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
