"""Batch memory: copies split over threads (``copy_threads``) give the same bytes and surface errors;
the main process reuses a batch's memory only once the batch is garbage."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
import torch.utils.data as tud

from mantis_data.errors import MantisDataError
from mantis_data.loading import LoaderConfig, make_loader
from mantis_data.loading.copy import (
    MAX_AUTO_THREADS,
    address,
    available_cores,
    copy_spans,
    resolve_copy_threads,
)
from mantis_data.loading.recycle import BufferRecycler
from mantis_data.loading.shards import load_manifest, split_shards
from mantis_data.loading.tar import LocalTarReader
from mantis_data.loading.tarindex import NBYTES


def _spans_of(pairs):
    return [(address(dst), address(src), dst.nbytes) for dst, src in pairs]


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_copy_spans_writes_every_destination(threads):
    rng = np.random.default_rng(threads)
    sizes = [578_000, 8192, 8192, 578_000, 17, 8192, 578_000, 3] * 3  # uneven, as a batch's three cubes
    srcs = [rng.integers(0, 255, n, dtype=np.uint8) for n in sizes]
    dsts = [np.zeros(n, dtype=np.uint8) for n in sizes]
    copy_spans(_spans_of(zip(dsts, srcs, strict=True)), threads)
    assert all(np.array_equal(d, s) for d, s in zip(dsts, srcs, strict=True))


def test_copy_raises_a_threads_error_and_needs_contiguous_arrays():
    with pytest.raises(ValueError, match="contiguous"):
        address(np.zeros((4, 4), np.uint8)[:, :2])
    src = np.ones(1000, np.uint8)
    dst = np.zeros(3000, np.uint8)
    ok = [(address(dst) + 1000 * i, address(src), 1000) for i in range(3)]
    with pytest.raises(ctypes.ArgumentError):
        copy_spans(ok + [(1.5, 0, 1)], threads=2)  # the bad span falls to the helper thread
    with pytest.raises(ctypes.ArgumentError):
        copy_spans([(1.5, 0, 1)] + ok, threads=2)  # or to the calling thread
    copy_spans(ok, threads=2)
    assert dst.sum() == 3000


def test_tar_reader_refuses_destinations_it_cannot_write_whole(loader_release):
    """The reader copies by address: a row of the wrong size, or read-only memory, is refused, not written."""
    base, manifest, is_url = load_manifest(loader_release)
    reader = LocalTarReader(split_shards(base, manifest, is_url, "webdataset", "train"))
    one, first = np.array([0]), np.array([0])
    nb = NBYTES["galex"]
    with pytest.raises(ValueError, match=f"writable \\(1, {nb}\\) uint8 array for galex"):
        reader.read_batch(one, first, {"galex": np.zeros((1, nb - 1), np.uint8)})
    with pytest.raises(ValueError, match="writable"):
        reader.read_batch(one, first, {"galex": np.frombuffer(bytes(nb), np.uint8).reshape(1, nb)})
    out = np.zeros((1, nb), np.uint8)
    keys, _, _ = reader.read_batch(one, first, {"galex": out}, threads=2)
    want = next(iter(make_loader(loader_release, "train", order="sequential", batch_size=1, num_workers=0)))
    assert keys == want["target_id"] and np.array_equal(out.view(np.float32).reshape(want["galex"][0].shape),
                                                        want["galex"][0].numpy())


class _ThreadsSeen(tud.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return resolve_copy_threads(None)


def test_automatic_threads_are_one_per_worker_and_cores_in_the_main_process():
    assert resolve_copy_threads(None) == max(1, min(MAX_AUTO_THREADS, available_cores()))
    assert resolve_copy_threads(3) == 3
    seen = list(tud.DataLoader(_ThreadsSeen(), batch_size=None, num_workers=1))
    assert seen == [1, 1]
    with pytest.raises(MantisDataError, match="copy_threads"):
        LoaderConfig(copy_threads=0)
    assert LoaderConfig(copy_threads="2").copy_threads == 2


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_threaded_batches_equal_single_threaded_ones(loader_release, fmt):
    kw = dict(format=fmt, order="shuffle", batch_size=16, num_workers=0, seed=5)
    one = list(make_loader(loader_release, "train", copy_threads=1, **kw))
    many = list(make_loader(loader_release, "train", copy_threads=3, **kw))
    assert len(one) == len(many) > 1
    for a, b in zip(one, many, strict=True):
        assert a["target_id"] == b["target_id"]
        for f in ("ps1", "galex", "unwise"):
            assert torch.equal(a[f], b[f]), f
        assert a["ps1"].abs().sum() > 0  # real images, not zeros on both sides


def test_recycler_reuses_a_buffer_only_when_its_tensors_are_garbage():
    rec = BufferRecycler(keep=2)
    a = rec.take((4, 5))
    a_ptr = a.data_ptr()
    view = a[1:]  # a view keeps the buffer in use
    del a
    b = rec.take((4, 5))
    assert b.data_ptr() != a_ptr
    del view
    c = rec.take((4, 5))
    assert c.data_ptr() == a_ptr  # every tensor on it gone: reused
    d = rec.take((4, 5))  # b and c hold both kept buffers: a plain allocation
    assert d.data_ptr() not in (b.data_ptr(), c.data_ptr())
    assert rec.take((2, 5)).shape == (2, 5) and rec.take((4, 5), torch.float64).dtype == torch.float64


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_main_process_batches_reuse_memory_and_held_ones_stay_intact(loader_release, fmt):
    kw = dict(format=fmt, order="shuffle", batch_size=4, num_workers=0, seed=2)
    loader = make_loader(loader_release, "train", **kw)
    reference = [(b["target_id"], b["ps1"].clone()) for b in make_loader(loader_release, "train", **kw)]
    held, ptrs = [], set()
    for i, b in enumerate(loader):
        ptrs.add(b["ps1"].data_ptr())
        if i % 3 == 0:
            held.append(b)  # kept batches must never be overwritten by later ones
    assert len(ptrs) < len(reference)  # dropped batches' memory was reused ...
    for b in held:  # ... and kept batches were not
        ids, ps1 = next(r for r in reference if r[0] == b["target_id"])
        assert torch.equal(b["ps1"], ps1)
