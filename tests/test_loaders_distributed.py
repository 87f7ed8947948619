"""Two real ranks under torchrun (gloo, CPU) on a release whose shards have unequal sizes.

The test runs this file with ``python -m torch.distributed.run --standalone --nproc_per_node=2``; each rank
iterates the loaders (rank and world size taken from ``torch.distributed``) doing one ``all_reduce`` per
batch, as a DDP step would, so unequal batch counts would hang (and time out) instead of passing, then
writes what it saw. The test checks: disjoint samples, the split covered once per epoch, the same number of
batches on both ranks, a flat class histogram from the balanced sampler over both ranks, a clean exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _rank_main(release: str, out: str) -> None:
    """What each rank runs (under torchrun)."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from mantis_data.loading import make_loader

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict = {"rank": rank, "world": world}
    runs = [
        ("webdataset", "sequential", False, 2),
        ("parquet", "sequential", False, 2),
        ("webdataset", "shuffle", True, 1),
        ("parquet", "shuffle", False, 1),
    ]
    for fmt, order, drop_last, workers in runs:
        loader = make_loader(release, "train", format=fmt, order=order, drop_last=drop_last, batch_size=8,
                             num_workers=workers, images=("galex",), seed=2)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            ids, n, padded = [], 0, 0
            for batch in loader:
                step = torch.ones(1)
                dist.all_reduce(step)  # a DDP step: both ranks must be here the same number of times
                ids += [t for t, v in zip(batch["target_id"], batch["valid"].tolist(), strict=True) if v]
                padded += int((~batch["valid"]).sum())
                n += 1
            result[f"{fmt}/{order}/{epoch}"] = {"ids": ids, "batches": n, "len": len(loader), "padded": padded}
    loader = make_loader(release, "train", order="balanced", batch_size=64, batches_per_epoch=30, num_workers=0,
                         images=("galex",), seed=7)
    labels, index = [], []
    for batch in loader:
        step = torch.ones(1)
        dist.all_reduce(step)
        labels += batch["label"].tolist()
        index += batch["index"].tolist()
    result["balanced"] = {"labels": labels, "index": index}
    dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_two_ranks_under_torchrun(loader_release, tmp_path):
    import pyarrow.parquet as pq
    from scipy import stats

    from mantis_data.redshift import redshift_class

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), str(loader_release), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)

    files = sorted((loader_release / "mantis_shrimp-parquet" / "data").glob("train-*.parquet"))
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert len(set(sizes)) > 1, "the test release should have shards of unequal sizes"
    table = pq.read_table(files, columns=["target_id", "z"])
    all_ids = table.column("target_id").to_pylist()
    n = len(all_ids)
    for key in r0:
        if "/" not in key:
            continue
        a, b = r0[key], r1[key]
        assert a["batches"] == b["batches"] == a["len"] == b["len"], key
        assert not set(a["ids"]) & set(b["ids"]), key  # disjoint
        assert len(a["ids"]) == len(set(a["ids"])) and len(b["ids"]) == len(set(b["ids"])), key
        if "/sequential/" in key or key.startswith("parquet/shuffle"):  # drop_last=False: the split exactly once
            assert sorted(a["ids"] + b["ids"]) == sorted(all_ids), key
            assert a["padded"] + b["padded"] == 2 * -(-n // 2) - n, key
        else:  # drop_last=True: full batches only, at most the remainder left out
            assert len(a["ids"]) == len(b["ids"]) == a["batches"] * 8 and 2 * len(a["ids"]) > n - 2 * 8, key
    assert r0["webdataset/shuffle/0"]["ids"] != r0["webdataset/shuffle/1"]["ids"]  # epochs reshuffle

    bal0, bal1 = r0["balanced"], r1["balanced"]
    assert len(bal0["labels"]) == len(bal1["labels"]) == 30 * 64
    assert bal0["index"] != bal1["index"]  # distinct streams on the two ranks
    classes = np.unique(redshift_class(table.column("z").to_numpy()))
    lab = np.array(bal0["labels"] + bal1["labels"])
    counts = np.array([(lab == c).sum() for c in classes])
    assert counts.sum() == len(lab)
    assert stats.chisquare(counts).pvalue > 1e-3


if __name__ == "__main__":
    _rank_main(sys.argv[1], sys.argv[2])
