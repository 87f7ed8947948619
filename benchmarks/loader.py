"""Benchmark: our loaders against the loaders a user would pick instead, and a memmap read ceiling.

    python benchmarks/loader.py [--release PATH | --n 2600] [--split train] [--batch-size 32]
                                [--workers 0 2] [--seconds 1.5] [--repeat 5] [--skip NAME ...]

One interleaved run over one release (a demo release built into a temporary folder unless --release is
given), for each worker count (0: everything in the main process; the ceiling then uses one process):

  ceiling       the least work any loader must do: copy every sample's image bytes (located by the tar
                offsets) out of ``numpy.memmap``s of the tar shards into preallocated batch buffers, then
                the consumer's checksum. 0 workers: this process, one reused buffer, as many copy threads
                as ours uses there (``copy_threads``: up to 4, one per core). N workers: N spawned
                processes copy, one thread each, into rings of 4 batch buffers in shared memory (where a
                batch built in another process must be for the consumer to read it), and this process
                checksums them in turn and hands them back (a semaphore per buffer, no other messages)
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
ceiling pays the same checksum). Every path is opened once per worker count and warmed up by one epoch;
then ``--repeat`` rounds each measure the ceiling and every path in turn, over whole epochs lasting at
least ``--seconds``, so that the machine's changing load (shared cores and memory bandwidth) falls on all
paths alike. It prints each path's best and median samples/s, the ratio of bests to the ceiling and of
ours to the best peer, and bytes per sample on disk. The consumer (this process) keeps torch's default
threads with 0 workers and leaves the workers their cores otherwise (``torch.set_num_threads``).
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
from mantis_data.loading.copy import available_cores, resolve_copy_threads  # noqa: E402
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


def _copy_spans(spans, maps, buf, rows, first) -> None:
    """Copy the image bytes of samples ``spans[first + row]`` into rows ``rows`` of the batch buffers ``buf``."""
    for b in rows:
        path, offs = spans[(first + b) % len(spans)]
        mm = maps[path]
        for k, f in enumerate(IMAGE_FIELDS):
            buf[f][b] = mm[offs[k] : offs[k] + NBYTES[f]]


def _ceiling_in_process(ctx, threads: int) -> float:
    """samples/s of this process copying every sample into one reused batch buffer with ``threads``
    threads and checksumming each batch (the 0-worker ceiling)."""
    from concurrent.futures import ThreadPoolExecutor

    spans, bs = ctx.spans, ctx.batch_size
    maps = {p: np.memmap(p, dtype=np.uint8, mode="r") for p in {p for p, _ in spans}}
    buf = {f: np.empty((bs, NBYTES[f]), np.uint8) for f in IMAGE_FIELDS}
    views = [torch.from_numpy(buf[f].view(np.float32)) for f in IMAGE_FIELDS]
    parts = [a.tolist() for a in np.array_split(np.arange(bs), threads)]
    with ThreadPoolExecutor(threads) as pool:
        def epoch():
            for i in range(0, len(spans), bs):
                list(pool.map(_copy_spans, [spans] * threads, [maps] * threads, [buf] * threads, parts,
                              [i] * threads))
                checksums(views)
            return -(-len(spans) // bs) * bs

        epoch()  # warm-up: maps the pages
        t0, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - t0 < ctx.seconds:
            n += epoch()
        return n / (time.perf_counter() - t0)


def _ceiling_worker(spans, batch_size, slots, shm_name, w, free, ready, stop) -> None:
    """One ceiling worker: copy batches of ``spans`` into its ring of shared-memory slots, in turn."""
    from multiprocessing import shared_memory

    torch.set_num_threads(1)  # as DataLoader does in its workers
    shm = shared_memory.SharedMemory(name=shm_name)
    maps = {p: np.memmap(p, dtype=np.uint8, mode="r") for p in {p for p, _ in spans}}
    bufs = [_slot_arrays(shm.buf, batch_size, slots, w, k) for k in range(slots)]
    rows = range(batch_size)
    i = j = 0
    while not stop.is_set():
        if not free.acquire(timeout=0.1):
            continue
        _copy_spans(spans, maps, bufs[j % slots], rows, i)
        i, j = i + batch_size, j + 1
        ready.release()
    del bufs
    shm.close()


def _slot_arrays(buf, batch_size: int, slots: int, w: int, k: int) -> dict[str, np.ndarray]:
    """(batch_size, bytes) uint8 arrays of slot ``k`` of worker ``w`` in the shared buffer ``buf``."""
    slot_bytes = batch_size * sum(NBYTES.values())
    out, off = {}, (w * slots + k) * slot_bytes
    for f in IMAGE_FIELDS:
        out[f] = np.ndarray((batch_size, NBYTES[f]), np.uint8, buf, off)
        off += batch_size * NBYTES[f]
    return out


def _ceiling_workers(ctx, workers: int, slots: int = 4) -> float:
    """samples/s of ``workers`` spawned processes copying batches into rings of ``slots`` shared-memory batch
    buffers, which this process (the consumer) checksums in turn and hands back: the least a loader with
    workers must do (the copy, into memory the consumer can see, and the consumer's read)."""
    from multiprocessing import shared_memory

    q = mp.get_context("spawn")  # not fork: the peers' threads (MDS, litdata, HF) can hold locks a fork copies
    bs = ctx.batch_size
    shm = shared_memory.SharedMemory(create=True, size=workers * slots * bs * sum(NBYTES.values()))
    free = [q.Semaphore(slots) for _ in range(workers)]
    ready = [q.Semaphore(0) for _ in range(workers)]
    stop = q.Event()
    procs = [q.Process(target=_ceiling_worker, daemon=True,
                       args=(ctx.spans[w::workers], bs, slots, shm.name, w, free[w], ready[w], stop))
             for w in range(workers)]
    for p in procs:
        p.start()
    views = [[[torch.from_numpy(a.view(np.float32)) for a in _slot_arrays(shm.buf, bs, slots, w, k).values()]
              for k in range(slots)] for w in range(workers)]
    try:
        warm = -(-len(ctx.spans) // bs)  # batches of one pass over the split: every page mapped once
        j, n, t0 = 0, 0, None
        while t0 is None or time.perf_counter() - t0 < ctx.seconds:
            w = j % workers
            while not ready[w].acquire(timeout=5):
                if not all(p.is_alive() for p in procs):
                    raise RuntimeError("a ceiling worker died")
            checksums(views[w][(j // workers) % slots])
            free[w].release()
            j += 1
            if j == warm:
                t0 = time.perf_counter()
            elif t0 is not None:
                n += bs
        return n / (time.perf_counter() - t0)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
        del views
        shm.close()
        shm.unlink()


def bench_ceiling(ctx, workers: int, threads: int) -> float:
    """The ceiling's samples/s: with 0 workers this process copies with ``threads`` threads; with workers,
    that many processes copy into shared memory for this process to read."""
    return _ceiling_in_process(ctx, threads) if workers == 0 else _ceiling_workers(ctx, workers)


# --------------------------------------------------------------------------------------------------
# Paths: each returns (epoch -> iterable of batches, batch -> (keys, [ps1, galex, unwise]))
# --------------------------------------------------------------------------------------------------


def ours(ctx, workers: int, fmt: str, **options):
    """Our loader in ``fmt`` (``options``: further ``make_loader`` settings, e.g. handoff)."""
    loader = make_loader(ctx.root, ctx.split, format=fmt, batch_size=ctx.batch_size, order="shuffle",
                         num_workers=workers, drop_last=False, **options)

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


class Runner:
    """One path, opened once and kept open over the rounds: counts every epoch's samples and checks every
    sample's checksum against the release's; ``round()`` measures samples/s over whole epochs."""

    def __init__(self, ctx, build):
        self.ctx = ctx
        self.epochs, self.get, self.keep = build()
        self.e, self.counts, self.bad, self.rates = 0, [], 0, []
        self._epoch()  # warm-up: workers started, files mapped, caches filled

    def _epoch(self) -> int:
        n = 0
        for b in self.epochs(self.e):
            keys, cubes = self.get(b)
            sums = checksums(cubes)
            for k, s in zip(keys, sums.tolist(), strict=True):
                want = self.ctx.reference.get(k)
                self.bad += want is None or abs(s - want) > 1e-6 * max(1.0, abs(want))
            n += len(keys)
        self.e += 1
        self.counts.append(n)
        return n

    def round(self) -> float:
        """samples/s over whole epochs lasting at least ``ctx.seconds``."""
        t0, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - t0 < self.ctx.seconds:
            n += self._epoch()
        rate = n / (time.perf_counter() - t0)
        self.rates.append(rate)
        return rate

    @property
    def check(self) -> str:
        if all(c == self.ctx.n for c in self.counts) and self.bad == 0:
            return "ok"
        return f"FAILED: epochs of {sorted(set(self.counts))} samples (want {self.ctx.n}), {self.bad} bad checksums"

    def close(self) -> None:
        self.epochs = self.get = self.keep = None


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
    ap.add_argument("--seconds", type=float, default=1.5, help="minimum measured time of each path in each round")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the best of each path is compared")
    ap.add_argument("--skip", nargs="*", default=[], help="paths to leave out (e.g. 'hf streaming')")
    args = ap.parse_args(argv)
    # one scratch folder for everything this run writes: the demo release, the peers' copies, HF's cache, and
    # what the peers put in the temp folder (MDS file locks, litdata's chunks), all removed at the end
    scratch = Path(tempfile.mkdtemp(prefix="mantis-bench-loader-"))
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = None
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    """The benchmark with parsed arguments, writing under ``scratch``."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["HF_DATASETS_CACHE"] = str(scratch / "hf")  # HF converts the Parquet files here, not in ~/.cache
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
        default_threads = torch.get_num_threads()
        for workers in args.workers:
            # the consumer's torch threads: with workers, the cores the workers leave (as for a training loop
            # on a GPU); OpenMP threads spinning beside busy workers cost every path alike, the ceiling too
            torch.set_num_threads(default_threads if workers == 0 else max(1, available_cores() - workers))
            threads = resolve_copy_threads(None) if workers == 0 else 1  # what ours uses per process
            runners = {name: Runner(ctx, lambda build=build, w=workers: build(w)) for name, build in paths.items()}
            ceilings = []
            load = [os.getloadavg()[0]]
            for _ in range(max(1, args.repeat)):
                ceilings.append(bench_ceiling(ctx, workers, threads))
                for runner in runners.values():
                    runner.round()
            load.append(os.getloadavg()[0])
            best = {name: max(r.rates) for name, r in runners.items()}
            ceiling = max(ceilings)
            best_peer = max((best[k] for k in peers), default=float("nan"))
            label = f"ceiling ({threads} thread{'s' if threads > 1 else ''})" if workers == 0 else f"ceiling ({workers} procs)"
            print(f"\nworkers = {workers} (consumer: {torch.get_num_threads()} torch threads; load average "
                  f"{load[0]:.1f} at start, {load[1]:.1f} at end; best and median of {len(ceilings)} rounds)")
            print(f"{'':<32}samples/s    median   x ceiling   x best peer   check")
            print(f"  {label:<30} {ceiling:9.0f} {np.median(ceilings):9.0f}   {1.0:8.2f}")
            for name, runner in runners.items():
                vs = f"{best[name] / best_peer:10.2f}" if name.startswith("ours") else " " * 10
                print(f"  {name:<30} {best[name]:9.0f} {np.median(runner.rates):9.0f}   {best[name] / ceiling:8.2f}   "
                      f"{vs}    {runner.check}")
                runner.close()
            sys.stdout.flush()
            del runners
        before, now = bench_parquet_writer(ctx)
        print(f"\nParquet writer, one shard: {before:.2f} ms/sample before (zstd everywhere), {now:.2f} now "
              f"({before / now:.2f}x faster)")
        print("\nbytes per sample on disk")
        for name, size in sizes.items():
            print(f"  {name:<32} {size / ctx.n / 1e3:8.1f} kB")
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
