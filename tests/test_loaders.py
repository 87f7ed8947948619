"""Loaders on a demo release with small unequal shards: coverage, rank splitting, balance, resume, URLs, errors."""

from __future__ import annotations

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mantis_data.errors import MantisDataError, ReleaseError
from mantis_data.loading import (
    ParquetDataset,
    WebDatasetStream,
    make_loader,
    split_redshifts,
)
from mantis_data.loading.tar import scan_tar
from mantis_data.redshift import redshift_class
from mantis_data.release import MANIFEST_NAME
from mantis_data.schema import IMAGE_SHAPES, encode_npy
from mantis_data.transforms import paper_transform

SMALL = ("galex",)  # read only the 8 KB GALEX cube where the images do not matter: fast


def split_table(root: Path, split: str) -> dict:
    """target_id, z, ebv of a split straight from the Parquet files, in release order."""
    files = sorted((root / "mantis_shrimp-parquet" / "data").glob(f"{split}-*.parquet"))
    t = pq.read_table(files, columns=["target_id", "z", "ebv_csfd", "ebv_planck"])
    return {
        "ids": t.column("target_id").to_pylist(),
        "z": t.column("z").to_numpy(),
        "ebv": np.stack([t.column(c).to_numpy(zero_copy_only=False) for c in ("ebv_csfd", "ebv_planck")], 1),
    }


def collect(loader) -> tuple[list[str], int, list[dict]]:
    ids, n, batches = [], 0, []
    for b in loader:
        n += 1
        ids += [t for t, v in zip(b["target_id"], b["valid"].tolist(), strict=True) if v]
        batches.append(b)
    return ids, n, batches


def fingerprint(batch: dict) -> tuple:
    """What a batch holds: its samples and a checksum of every image."""
    images = tuple(float(batch[k].double().sum()) for k in ("image", "ps1", "galex", "unwise") if k in batch)
    return tuple(batch["target_id"]), tuple(batch["valid"].tolist()), images


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
@pytest.mark.parametrize("workers", [0, 2])
def test_evaluation_covers_the_split_once(loader_release, fmt, workers):
    table = split_table(loader_release, "train")
    loader = make_loader(loader_release, "train", format=fmt, order="sequential", batch_size=16,
                         num_workers=workers, images=SMALL)
    ids, n, batches = collect(loader)
    assert sorted(ids) == sorted(table["ids"]) and len(ids) == len(set(ids))
    assert n == len(loader) == -(-len(table["ids"]) // 16)
    if workers == 0:  # one stream: release order
        assert ids == table["ids"]
    b = batches[0]
    assert b["galex"].shape[1:] == IMAGE_SHAPES["galex"] and b["galex"].dtype == torch.float32
    assert b["z"].dtype == torch.float64 and b["label"].dtype == torch.int64 and b["ebv"].shape[1] == 2
    assert b["ebv"].dtype == torch.float32 and b["ebv_missing"].dtype == torch.bool and b["index"].dtype == torch.int64
    assert torch.equal(b["label"], torch.from_numpy(redshift_class(b["z"].numpy(), out_of_range="mask")))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_samples_and_equal_batches(loader_release, fmt, world):
    table = split_table(loader_release, "train")
    n_total = len(table["ids"])
    for order, drop_last in (("sequential", False), ("shuffle", False), ("shuffle", True)):
        per_rank, counts, padded = [], [], 0
        for rank in range(world):
            loader = make_loader(loader_release, "train", format=fmt, order=order, drop_last=drop_last, batch_size=8,
                                 num_workers=0, images=SMALL, rank=rank, world_size=world, seed=3)
            loader.set_epoch(2)
            ids, n, batches = collect(loader)
            per_rank.append(ids)
            counts.append(n)
            padded += sum(int((~b["valid"]).sum()) for b in batches)
        assert len(set(counts)) == 1, (order, counts)
        flat = [i for ids in per_rank for i in ids]
        assert len(flat) == len(set(flat)), order  # each sample to one rank
        if drop_last:
            assert all(len(ids) == counts[0] * 8 == (n_total // world) // 8 * 8 for ids in per_rank)
        else:
            assert sorted(flat) == sorted(table["ids"]), order  # and every sample once
            assert padded == world * -(-n_total // world) - n_total


def test_formats_and_worker_counts_agree(loader_release):
    kw = dict(order="sequential", batch_size=10)
    wds = collect(make_loader(loader_release, "validation", format="webdataset", num_workers=0, **kw))[2]
    par = collect(make_loader(loader_release, "validation", format="parquet", num_workers=2, **kw))[2]
    a = {t: (b, i) for b in wds for i, t in enumerate(b["target_id"])}
    seen = 0
    for b in par:
        for i, t in enumerate(b["target_id"]):
            bw, iw = a[t]
            for f in ("galex", "ps1", "unwise"):
                assert torch.equal(b[f][i], bw[f][iw]), f
            assert b["z"][i] == bw["z"][iw] and torch.equal(b["ebv_missing"][i], bw["ebv_missing"][iw])
            assert b["index"][i] == bw["index"][iw]
            seen += 1
    assert seen == len(a)
    ds = ParquetDataset(loader_release, "validation")
    one = ds[3]
    assert one["ps1"].shape == IMAGE_SHAPES["ps1"] and isinstance(one["target_id"], str)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))  # plain map-style use
    assert batch["ps1"].shape == (4, *IMAGE_SHAPES["ps1"]) and batch["target_id"][3] == one["target_id"]


def test_missing_dust_values_are_zero_and_flagged(loader_release):
    table = split_table(loader_release, "train")
    missing = np.isnan(table["ebv"])
    assert missing.any(), "the demo sky should have samples without E(B-V)"
    for fill in (0.0, None):
        loader = make_loader(loader_release, "train", order="sequential", batch_size=32, num_workers=0,
                             images=SMALL, ebv_fill=fill)
        ebv = torch.cat([b["ebv"] for b in loader]).numpy()
        flags = torch.cat([b["ebv_missing"] for b in make_loader(loader_release, "train", order="sequential",
                                                                   batch_size=32, num_workers=0, images=SMALL)])
        assert np.array_equal(flags.numpy(), missing)
        if fill is None:
            assert np.array_equal(np.isnan(ebv), missing)
        else:
            assert np.all(ebv[missing] == 0.0)
        np.testing.assert_allclose(ebv[~missing], table["ebv"][~missing].astype(np.float32))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
@pytest.mark.parametrize("order", ["shuffle", "balanced"])
def test_resume_mid_epoch_gives_the_remaining_batches(loader_release, fmt, order):
    kw = dict(format=fmt, order=order, batch_size=8, num_workers=2, seed=5, batches_per_epoch=9,
              transform=paper_transform("early"), shuffle_buffer=16)
    full = make_loader(loader_release, "train", **kw)
    full.set_epoch(1)
    reference = [fingerprint(b) for b in full]
    assert len(reference) == len(full) and len(set(reference)) == len(reference)
    k = 3
    first = make_loader(loader_release, "train", **kw)
    first.set_epoch(1)
    seen = []
    for b in first:
        seen.append(fingerprint(b))
        if len(seen) == k:
            break
    state = json.loads(json.dumps(first.state_dict()))  # survives a checkpoint file
    assert state["epoch"] == 1 and state["batches_done"] == k
    del first
    again = make_loader(loader_release, "train", **kw)  # everything rebuilt
    again.load_state_dict(state)
    again.set_epoch(1)  # the usual loop keeps the resumed position
    rest = [fingerprint(b) for b in again]
    assert seen == reference[:k] and rest == reference[k:]
    again.set_epoch(2)
    assert [fingerprint(b) for b in again] != reference  # a new epoch, a new order


def test_resume_refuses_different_settings(loader_release):
    a = make_loader(loader_release, "train", batch_size=8, num_workers=0, images=SMALL)
    b = make_loader(loader_release, "train", batch_size=16, num_workers=0, images=SMALL)
    with pytest.raises(MantisDataError, match="batch_size"):
        b.load_state_dict(a.state_dict())


def test_class_balanced_sampling_is_flat_across_two_ranks(loader_release):
    from scipy import stats
    z = split_redshifts(loader_release, "train")
    classes = np.unique(redshift_class(z, out_of_range="mask"))
    for fmt, order in (("webdataset", "balanced"), ("parquet", "balanced"), ("webdataset", "balanced-stream")):
        labels, streams = [], []
        for rank in range(2):
            loader = make_loader(loader_release, "train", format=fmt, order=order, batch_size=64, batches_per_epoch=40,
                                 num_workers=0, images=SMALL, rank=rank, world_size=2, seed=9)
            assert len(loader) == 40
            got = [b for b in loader]
            assert len(got) == 40 and all(len(b["label"]) == 64 for b in got)
            streams.append(torch.cat([b["index"] for b in got]))
            labels.append(torch.cat([b["label"] for b in got]).numpy())
        assert not torch.equal(streams[0], streams[1])  # two different streams, not one duplicated
        lab = np.concatenate(labels)
        assert set(np.unique(lab)) <= set(classes)
        counts = np.array([(lab == c).sum() for c in classes])
        p = stats.chisquare(counts).pvalue  # H0: every class equally likely
        assert p > 1e-3, (fmt, order, p)
        # a plain (unbalanced) stream is far from flat on the same classes
        if order == "balanced":
            plain = redshift_class(z)
            n = np.array([(plain == c).sum() for c in classes])
            assert stats.chisquare(n * len(lab) / n.sum()).pvalue < 1e-6


def test_stream_balancing_reports_its_acceptance_rate(loader_release):
    z = split_redshifts(loader_release, "train")
    n_c = np.bincount(redshift_class(z))
    n_c = n_c[n_c > 0]
    loader = make_loader(loader_release, "train", order="balanced-stream", batches_per_epoch=4, num_workers=0, images=SMALL)
    assert loader.acceptance_rate == pytest.approx(len(n_c) * n_c.min() / n_c.sum())
    capped = make_loader(loader_release, "train", order="balanced-stream", balance_cap=2.0, batches_per_epoch=4,
                         num_workers=0, images=SMALL)
    assert capped.acceptance_rate == pytest.approx(np.minimum(1.0, 2.0 / n_c).dot(n_c) / n_c.sum())
    assert make_loader(loader_release, "train", num_workers=0, images=SMALL).acceptance_rate == 1.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def release_url(loader_release):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(loader_release)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_streaming_equals_local_reading(loader_release, release_url):
    kw = dict(order="shuffle", batch_size=8, shuffle_buffer=12, seed=4, num_workers=2)
    local = make_loader(loader_release, "train", **kw)
    local.set_epoch(3)
    want = [fingerprint(b) for b in local]
    for root in (release_url, loader_release.as_uri()):
        remote = make_loader(root, "train", **kw)
        remote.set_epoch(3)
        assert [fingerprint(b) for b in remote] == want
    resumed = make_loader(release_url, "train", **kw)
    resumed.load_state_dict({**local.state_dict(), "batches_done": 5})
    assert [fingerprint(b) for b in resumed] == want[5:]
    stream = make_loader(release_url, "validation", order="balanced-stream", batches_per_epoch=3, batch_size=4,
                         num_workers=0, images=SMALL)
    assert len([b for b in stream]) == 3
    with pytest.raises(MantisDataError, match="balanced-stream"):
        WebDatasetStream(release_url, "train", order="balanced")


def test_batches_held_by_the_caller_stay_intact(loader_release):
    """Workers recycle their shared-memory slots only once a batch is garbage: keeping batches is safe."""
    kw = dict(order="shuffle", batch_size=4, num_workers=2, seed=1, handoff=2, prefetch_factor=2)  # 8 slots
    loader = make_loader(loader_release, "train", **kw)
    held = list(loader)  # every batch of the epoch alive at once
    assert len(held) == len(loader) > loader.pool.slots * 2
    fresh = make_loader(loader_release, "train", shared_slots=0, **kw)
    assert [fingerprint(b) for b in held] == [fingerprint(b) for b in fresh]
    del held
    again = [fingerprint(b) for b in loader]  # slots come back once released
    assert again == [fingerprint(b) for b in fresh]


# --------------------------------------------------------------------------------------------------
# The tar reader and clear errors
# --------------------------------------------------------------------------------------------------


def test_tar_index_reads_pax_and_gnu_long_names(tmp_path):
    rng = np.random.default_rng(0)
    cube = {f: rng.normal(size=IMAGE_SHAPES[f]).astype(np.float32) for f in IMAGE_SHAPES}
    keys = ["a" * 120, "dir/" + "é" * 30, "short"]  # > 100 chars, non-ASCII, plain
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"shard-{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for key in keys:
                for name, data in [(f"{key}.{f}.npy", encode_npy(cube[f])) for f in ("galex", "ps1", "unwise")] + [
                    (f"{key}.json", json.dumps({"z": 0.5, "ebv_csfd": None, "ebv_planck": 0.01}).encode())
                ]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        index = scan_tar(str(path))
        assert index.keys == keys
        with tarfile.open(path) as tar:
            offsets = {m.name: m.offset_data for m in tar.getmembers()}
        raw = path.read_bytes()
        for i, key in enumerate(keys):
            for k, f in enumerate(("galex", "ps1", "unwise")):
                assert index.offsets[i, k] == offsets[f"{key}.{f}.npy"] + 128
                got = np.frombuffer(raw, np.float32, count=cube[f].size, offset=int(index.offsets[i, k]))
                assert np.array_equal(got.reshape(cube[f].shape), cube[f])
        assert index.z.tolist() == [0.5] * 3 and np.isnan(index.ebv[:, 0]).all()


def small_copy(release: Path, dst: Path, split: str = "validation") -> Path:
    """A release folder holding only the manifest and one split's tar shards (for damaging them)."""
    manifest = json.loads((release / MANIFEST_NAME).read_text())
    keep = {k: v for k, v in manifest["files"].items() if v.get("split") == split and v["format"] == "webdataset"}
    for rel in keep:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release / rel, dst / rel)
    (dst / MANIFEST_NAME).write_text(json.dumps({**manifest, "files": keep}))
    return dst


def test_clear_errors(loader_release, tmp_path):
    with pytest.raises(ReleaseError, match="does not exist"):
        make_loader(tmp_path / "nowhere", "train")
    with pytest.raises(ReleaseError, match="no MANIFEST.json"):
        make_loader(tmp_path, "train")
    root = small_copy(loader_release, tmp_path / "r")
    with pytest.raises(ReleaseError, match="no parquet shards for split 'validation'"):
        make_loader(root, "validation", format="parquet")
    with pytest.raises(ReleaseError, match="no webdataset shards for split 'train'"):
        make_loader(root, "train")
    shards = sorted((root / "mantis_shrimp" / "data").glob("*.tar"))
    # truncated: the error names the file
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ReleaseError, match=f"{shards[1].name}.*truncated"):
        list(make_loader(root, "validation", order="sequential", num_workers=0))
    with pytest.raises(ReleaseError, match=shards[1].name):
        list(make_loader(root, "validation", order="sequential", num_workers=1))
    # a corrupt header (the name field of the fifth member's header)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        at = tar.getmembers()[4].offset
    bad = bytearray(data)
    bad[at : at + 20] = b"x" * 20
    shards[1].write_bytes(bytes(bad))
    with pytest.raises(ReleaseError, match=f"{shards[1].name}.*(corrupt|checksum)"):
        list(make_loader(root, "validation", order="sequential", num_workers=0))
    # a missing shard
    shards[0].unlink()
    with pytest.raises(ReleaseError, match=f"{shards[0].name}.*missing"):
        make_loader(root, "validation")
    with pytest.raises(MantisDataError, match="order"):
        make_loader(loader_release, "train", order="random")


def test_too_little_shared_memory_is_a_clear_error_before_any_worker_starts(loader_release):
    from mantis_data.loading.batch import SHM_DIR

    if not SHM_DIR.is_dir():
        pytest.skip(f"no {SHM_DIR} on this system")
    free = shutil.disk_usage(SHM_DIR).free
    slots = 2 * (free // (64 * 590_000))  # 64 full samples per slot: each worker's slots alone twice the free space
    with pytest.raises(MantisDataError, match=r"GB of shared memory, but /dev/shm has .* GB free: lower shared_slots"):
        make_loader(loader_release, "train", batch_size=64, num_workers=2, shared_slots=int(slots))
    assert shutil.disk_usage(SHM_DIR).free >= free - 50_000_000  # nothing was allocated


def test_single_items_take_the_transform(loader_release):
    ds = ParquetDataset(loader_release, "validation", transform=paper_transform("early", train=False))
    item = ds[0]
    assert item["image"].shape == (9, 120, 120) and "ps1" not in item and isinstance(item["target_id"], str)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)))
    assert batch["image"].shape == (3, 9, 120, 120) and torch.equal(batch["image"][0], item["image"])


def test_grouped_handoff_keeps_the_plan_order(loader_release):
    """Workers sending 3 batches per DataLoader item yield the same batches in the same order as one per
    item, across an epoch boundary (an odd number of batches) and after a mid-epoch resume."""
    kw = dict(order="shuffle", batch_size=12, num_workers=2, seed=6, images=SMALL, drop_last=False)

    def two_epochs(loader):
        out = []
        for epoch in range(2):
            loader.set_epoch(epoch)
            out.append([fingerprint(b) for b in loader])
        return out

    single = make_loader(loader_release, "train", handoff=1, **kw)
    assert len(single) % 2 == 1
    reference = two_epochs(single)
    assert two_epochs(make_loader(loader_release, "train", handoff=3, **kw)) == reference
    resumed = make_loader(loader_release, "train", handoff=3, **kw)
    resumed.load_state_dict({**single.state_dict(), "epoch": 1, "batches_done": 5})
    resumed.set_epoch(1)
    assert [fingerprint(b) for b in resumed] == reference[1][5:]
    grouped = make_loader(loader_release, "train", handoff=3, **kw)
    grouped.dataset.continuous = True
    item = next(iter(grouped.loader))  # what one DataLoader item holds: three batches of one worker
    assert isinstance(item, list) and len(item) == 3


def test_in_plan_order_interleaves_groups_and_ends_cleanly():
    """Item i comes from worker i % 2; without grouping output t is worker t % 2's batch t // 2."""
    from mantis_data.loading.loader import in_plan_order

    per_worker = {w: [(w, m) for m in range(6)] for w in range(2)}
    items = [per_worker[i % 2][(i // 2) * 3 : (i // 2) * 3 + 3] for i in range(4)]  # 3 batches per item
    assert list(in_plan_order(iter(items), 2)) == [(t % 2, t // 2) for t in range(12)]
    assert list(in_plan_order(iter(items[:3]), 2)) == [(t % 2, t // 2) for t in range(6)]  # stopped workers


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_epochs_run_on_without_restarts_and_match_fresh_loaders(loader_release, fmt):
    """Workers carry on into the next epoch (no restart bubble); each epoch equals a fresh loader's."""
    kw = dict(format=fmt, order="shuffle", batch_size=12, num_workers=2, seed=6, images=SMALL, drop_last=False)
    loader = make_loader(loader_release, "train", **kw)
    assert len(loader) % 2 == 1  # an odd count shifts which worker starts the next epoch
    continuous = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        continuous.append([fingerprint(b) for b in loader])
    live = loader._live
    loader.set_epoch(3)
    next(iter(loader))
    assert loader._live is live  # the same DataLoader iterator all along
    for epoch in range(3):
        fresh = make_loader(loader_release, "train", **kw)
        fresh.set_epoch(epoch)
        assert [fingerprint(b) for b in fresh] == continuous[epoch], epoch
    at_end = make_loader(loader_release, "train", **kw)  # a state saved at the very end of epoch 1
    at_end.load_state_dict({**loader.state_dict(), "epoch": 1, "batches_done": len(loader)})
    at_end.set_epoch(1)
    assert list(at_end) == []
    at_end.set_epoch(2)
    assert [fingerprint(b) for b in at_end] == continuous[2]
