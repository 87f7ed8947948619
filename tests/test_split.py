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


def test_healpix_split_holds_out_whole_cells_and_is_stable_under_additions():
    from builders.split import healpix_cell, healpix_split_of

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 20_000), np.degrees(np.arcsin(rng.uniform(-0.5, 1, 20_000)))
    splits = healpix_split_of(ra, dec, 16)
    cells = healpix_cell(ra, dec, 16)
    for c in np.unique(cells):  # one split per cell
        assert len(set(splits[cells == c])) == 1
    per_cell = {c: splits[cells == c][0] for c in np.unique(cells)}
    frac = np.mean([s == "test" for s in per_cell.values()])
    assert abs(frac - 0.2) < 0.05 and abs(np.mean([s == "train" for s in per_cell.values()]) - 0.7) < 0.06
    # adding galaxies (anywhere, in any order) moves none
    ra2, dec2 = rng.uniform(0, 360, 5000), rng.uniform(-30, 90, 5000)
    again = healpix_split_of(np.r_[ra2, ra[::-1]], np.r_[dec2, dec[::-1]], 16)[5000:][::-1]
    np.testing.assert_array_equal(again, splits)


def test_demo_with_healpix_split(tmp_path):
    """`python -m builders demo --split-scheme healpix`: no cell in two splits, recorded in MANIFEST and card."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd
    import pyarrow.parquet as pq

    from builders.__main__ import main
    from builders.build import assign_splits
    from builders.split import healpix_cell

    out = tmp_path / "ms"
    rc = main(["demo", "--out", str(out), "--n", "120", "--seed", "3", "--shard-mb", "8", "--workers", "2",
               "--split-scheme", "healpix", "--nside", "64"])
    assert rc == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["parameters"]["split"] == {"scheme": "healpix", "fractions": {"train": 0.7, "validation": 0.1,
                                               "test": 0.2}, "n_chunks": 16, "nside": 64, "ordering": "nested",
                                               "frame": "icrs"}
    assert "Split scheme `healpix`" in (out / "mantis_shrimp" / "README.md").read_text()
    rows = pd.concat([pq.read_table(p, columns=["ra", "dec", "split"]).to_pandas()
                      for p in sorted((out / "mantis_shrimp-parquet" / "data").glob("*.parquet"))])
    assert set(rows["split"]) == {"train", "validation", "test"}
    rows["cell"] = healpix_cell(rows["ra"], rows["dec"], 64)
    by_cell = rows.groupby("cell")["split"].nunique()
    assert (by_cell == 1).all()
    train, test = (set(rows.loc[rows["split"] == s, "cell"]) for s in ("train", "test"))
    assert not train & test and len(train) > 5 and len(test) > 1
    # adding galaxies to the targets moves none of the existing ones
    targets = pd.read_parquet(out / "work" / "targets.parquet")
    before = assign_splits(targets, "healpix", 64)
    rng = np.random.default_rng(1)
    extra = pd.DataFrame({"target_id": [f"new-{i}" for i in range(300)], "ra": rng.uniform(140, 160, 300),
                          "dec": rng.uniform(-5, 10, 300)})
    after = assign_splits(pd.concat([extra, targets], ignore_index=True), "healpix", 64).iloc[300:]
    np.testing.assert_array_equal(after["split"].to_numpy(), before["split"].to_numpy())
    # the user sees the scheme; a bad nside is one line and exit 2
    info = subprocess.run([sys.executable, "-m", "mantis_data.cli", "info", str(out)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert "split: healpix, HEALPix nside 64 (nested)" in info.stdout
    bad = subprocess.run([sys.executable, "-m", "builders", "demo", "--out", str(tmp_path / "x"), "--split-scheme",
                          "healpix", "--nside", "48"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert bad.returncode == 2 and "power of 2" in bad.stderr and "Traceback" not in bad.stderr
