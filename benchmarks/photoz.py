"""Forced photo-z throughput in batch mode, and the batch mode under faults, against the loopback mock services.

    python benchmarks/photoz.py [--n 500] [--device cpu|cuda] [--backbone convnext_atto] [--batch-size 64]
    python benchmarks/photoz.py --faults [--n 500]

Default: a mock sky of N galaxies behind the mock server; the batch mode (``predict_catalog``, the code
``mantis-data photoz --coords`` runs) first fetches every cutout (cold), then runs again on warm cutouts
(the cache filled; the fetch step only reads the manifest). Printed: coordinates per second warm, the share
of time in fetch, preprocessing (cache files + quality rules + E(B-V) + transform) and the model (the
fetch of the next chunk runs in a thread beside the model, so the stage times add up to more than the
wall time when cold), and the
same warm run with the model called one coordinate at a time (the baseline) with the ratio.
The model is an early-fusion ConvNeXt of --backbone (random weights) at the paper's 9 x 120 x 120 input.

``--faults``: the batch command as a user runs it (a subprocess) on N coordinates with transient and
permanent faults injected, SIGKILLed after its first part file and rerun; printed: how many coordinates
have a prediction and how many a reason (they must add up to N), and how many stamps already in the cache
at the kill were requested again (must be 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from builders.mock.server import FaultPlan, MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.cutouts.fetch import FetchConfig  # noqa: E402
from mantis_data.models import ModelConfig, build_model  # noqa: E402
from mantis_data.photoz import ForcedPhotoZ, coordinate_id  # noqa: E402
from mantis_data.photoz_batch import predict_catalog  # noqa: E402


def checkpoint(path: Path, backbone: str) -> Path:
    cfg = ModelConfig(backbone=backbone)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict(), "model_config": cfg.to_dict(),
                "data_config": {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": None}}, path)
    return path


def write_csv(path: Path, sky: MockSky, n: int) -> None:
    path.write_text("id,ra,dec,z\n" + "".join(
        f"g{i},{float(sky.ra[i % sky.n])!r},{float(sky.dec[i % sky.n]) + (i // sky.n) * 1e-4!r},{float(sky.z_true[i % sky.n])}\n"
        for i in range(n)))


def shares(t: dict) -> str:
    pre = t.get("read", 0) + t.get("dust", 0) + t.get("preprocess", 0)
    total = t.get("fetch", 0) + pre + t.get("model", 0)
    return (f"fetch {100 * t.get('fetch', 0) / total:.1f}%, preprocessing {100 * pre / total:.1f}% "
            f"(read+quality {100 * t.get('read', 0) / total:.1f}%, dust {100 * t.get('dust', 0) / total:.1f}%, "
            f"transform {100 * t.get('preprocess', 0) / total:.1f}%), model {100 * t.get('model', 0) / total:.1f}%")


def throughput(args, tmp: Path) -> None:
    sky = MockSky(n_galaxies=max(args.n, 50), seed=0)
    coords = tmp / "coords.csv"
    write_csv(coords, sky, args.n)
    ckpt = checkpoint(tmp / "model.pt", args.backbone)
    with MockServer(sky) as srv:
        cfg = FetchConfig(ps1_url=srv.ps1_url, legacy_url=srv.legacy_url, rate=None, concurrency=8, backoff_s=0.01)
        pz = ForcedPhotoZ(ckpt, tmp / "cache", cfg, dust="bh", device=args.device, batch_size=args.batch_size)
        print(f"{args.n} coordinates, early fusion {args.backbone} (9 x 120 x 120), batch {args.batch_size}, "
              f"{pz.device.type}, {torch.get_num_threads()} threads")
        cold = predict_catalog(pz, coords, tmp / "cold.parquet", chunk=args.chunk, progress=False)
        print(f"cold (fetching):   {cold['coords_per_s']:8.1f} coordinates/s   {shares(cold['timings'])}")
        warm = predict_catalog(pz, coords, tmp / "warm.parquet", chunk=args.chunk, progress=False)
        print(f"warm, batched:     {warm['coords_per_s']:8.1f} coordinates/s   {shares(warm['timings'])}")
        pz.batch_size = 1
        n_base = min(args.n, args.baseline_n)
        base_csv = tmp / "base.csv"
        write_csv(base_csv, sky, n_base)
        base = predict_catalog(pz, base_csv, tmp / "base.parquet", chunk=args.chunk, progress=False)
        print(f"warm, unbatched:   {base['coords_per_s']:8.1f} coordinates/s   {shares(base['timings'])}  "
              f"(first {n_base} coordinates)")
        print(f"batched / unbatched: {warm['coords_per_s'] / base['coords_per_s']:.2f}x;  "
              f"{warm['ok']} of {args.n} predicted")
        pz.close()


def faults(args, tmp: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    sky = MockSky(n_galaxies=args.n, seed=7)
    coords, out, cache = tmp / "coords.csv", tmp / "preds.parquet", tmp / "cache"
    write_csv(coords, sky, args.n)
    cfg = ModelConfig(backbone="convnext_atto", backbone_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]}, hidden_width=16)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict(), "model_config": cfg.to_dict(),
                "data_config": {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": 32}}, tmp / "tiny.pt")
    plan = FaultPlan(transient={"503": 0.05, "429": 0.03, "drop": 0.03, "truncate": 0.03, "html": 0.03, "slow": 0.01},
                     permanent={"503": 0.02, "html": 0.01}, max_repeats=2, seed=1, retry_after_s=0.01, slow_s=0.5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with MockServer(sky, plan) as srv:
        cmd = [sys.executable, "-m", "mantis_data.cli", "photoz", "--coords", str(coords), "--out", str(out),
               "--checkpoint", str(tmp / "tiny.pt"), "--cache", str(cache), "--ps1-url", srv.ps1_url,
               "--legacy-url", srv.legacy_url, "--dust", "bh", "--attempts", "3", "--backoff", "0.01",
               "--timeout", "0.3", "--chunk", "50", "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--rate", "200"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        parts = out.with_name(out.name + ".parts")
        while not list(parts.glob("part-*.parquet")) and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {p.relative_to(cache).as_posix() for p in cache.rglob("*.fits")}
        n_parts = len(list(parts.glob("part-*.parquet")))
        n_first = len(srv.log)
        print(f"killed after {time.perf_counter() - t0:.1f} s: {n_parts} part(s), {len(before)} stamps cached, "
              f"{n_first} requests")
        rerun = subprocess.run([*cmd, "--rate", "0"], cwd=REPO, env=env, capture_output=True, text=True)
        print(rerun.stdout.strip())
        second = srv.log[n_first:]
    from mantis_data.bands import LEGACY_SURVEY_LAYERS
    from mantis_data.cutouts.layout import cutout_path

    layer = {v: k for k, v in LEGACY_SURVEY_LAYERS.items()}
    again = 0
    for r in second:
        if not r["stamp"]:
            continue
        q = r["params"]
        tid = coordinate_id(float(q["ra"]), float(q["dec"]))
        band = q["red"].split(".stk.")[1][0] if r["endpoint"] == "fitscut" else None
        path = cutout_path(".", "ps1" if band else layer[q["layer"]], tid, band).as_posix()
        again += path in before
    preds = pq.read_table(out)
    failed = pd.read_csv(out.with_name(out.name + ".failed.csv"))
    ids = set(preds.column("target_id").to_pylist()) | set(failed["target_id"])
    print(f"{args.n} coordinates: {preds.num_rows} predictions + {len(failed)} reasons = {preds.num_rows + len(failed)}; "
          f"every coordinate accounted for: {len(ids) == args.n and preds.num_rows + len(failed) == args.n}")
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in failed["reason"].str.replace(r" \[.*\]$", "", regex=True)
                                  .str.replace(r"after \d+ attempts", "after N attempts", regex=True).value_counts().items()))
    print(f"stamps cached before the kill requested again by the rerun: {again}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbone", default="convnext_atto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--baseline-n", type=int, default=100, help="coordinates in the unbatched baseline run")
    p.add_argument("--faults", action="store_true", help="the kill-and-rerun run under injected faults instead")
    args = p.parse_args()
    np.seterr(all="ignore")
    with tempfile.TemporaryDirectory(prefix="photoz-bench-") as tmp:
        (faults if args.faults else throughput)(args, Path(tmp))


if __name__ == "__main__":
    main()
