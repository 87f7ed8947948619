"""How many batches a DataLoader worker sends per item (``handoff``) and how many items are in flight
(``prefetch_factor``): ours (tar, 2 workers) under each setting beside the ceiling, interleaved.

The sweep behind the automatic ``LoaderConfig.handoff`` and ``prefetch_factor`` of the tar path; the
paths, the ceiling and the per-sample checksums are those of ``benchmarks/loader.py``.

    python benchmarks/loader_handoff.py --release /tmp/i16/ms --batch-size 32 --settings 1:2 4:2 2:4 4:4
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loader as bench  # noqa: E402  (benchmarks/loader.py: Ctx, Runner, the ceiling)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", type=Path, required=True, help="release folder (python -m builders demo --out ...)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settings", nargs="+", default=["1:2", "4:2", "2:4", "4:4"], help="HANDOFF:PREFETCH pairs")
    ap.add_argument("--seconds", type=float, default=1.5, help="minimum measured time of each path per round")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the best of each is compared")
    args = ap.parse_args(argv)
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings]
    torch.set_num_threads(max(1, bench.available_cores() - args.workers))
    ctx = bench.Ctx(args.release, args.split, args.batch_size, args.seconds)
    try:
        runners = {f"handoff {k}, prefetch {p}": bench.Runner(ctx, lambda k=k, p=p: bench.ours(ctx, args.workers, "webdataset", handoff=k, prefetch_factor=p))
                   for k, p in settings}
        best = dict.fromkeys(["ceiling", *runners], 0.0)
        for _ in range(args.repeat):
            best["ceiling"] = max(best["ceiling"], bench.bench_ceiling(ctx, args.workers, 1))
            for name, runner in runners.items():
                best[name] = max(best[name], runner.round())
        print(f"{args.release}: batch {args.batch_size}, {args.workers} workers, best of {args.repeat} interleaved rounds")
        for name, rate in best.items():
            check = runners[name].check if name in runners else ""
            print(f"  {name:24s} {rate:9.0f} samples/s  {rate / best['ceiling']:5.2f}x ceiling  {check}")
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
