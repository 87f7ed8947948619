import numpy as np

from builders.split import N_CHUNKS, chunk_of, shuffle_key, split_of


def test_split_depends_on_id_alone_and_matches_fractions():
    ids = [f"sdss-{i}" for i in range(40_000)]
    splits = split_of(ids)
    fractions = {s: np.mean(splits == s) for s in ("train", "validation", "test")}
    assert abs(fractions["train"] - 0.7) < 0.01
    assert abs(fractions["validation"] - 0.1) < 0.01
    assert abs(fractions["test"] - 0.2) < 0.01
    # adding ids and reordering never changes an existing id's split or chunk
    more = ids[::-1] + [f"desi-{i}" for i in range(1000)]
    again = dict(zip(more, split_of(more), strict=True))
    assert all(again[i] == s for i, s in zip(ids, splits, strict=True))
    chunks = chunk_of(ids)
    assert dict(zip(more, chunk_of(more), strict=True))["sdss-123"] == chunks[123]


def test_chunks_are_balanced_and_split_is_70_10_20_inside_each_chunk():
    ids = [f"desi-{i}" for i in range(48_000)]
    chunks, splits = chunk_of(ids), split_of(ids)
    counts = np.bincount(chunks, minlength=N_CHUNKS)
    assert counts.min() > 0.9 * len(ids) / N_CHUNKS
    for c in range(N_CHUNKS):
        in_chunk = splits[chunks == c]
        assert abs(np.mean(in_chunk == "train") - 0.7) < 0.03
        assert abs(np.mean(in_chunk == "test") - 0.2) < 0.03


def test_shuffle_key_is_deterministic_and_not_catalog_order():
    ids = [f"sdss-{i}" for i in range(1000)]
    k = shuffle_key(ids)
    np.testing.assert_array_equal(k, shuffle_key(ids))
    order = np.argsort(k)
    assert np.corrcoef(order, np.arange(1000))[0, 1] < 0.2
