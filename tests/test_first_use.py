"""First use with plain 🤗 Datasets + PyTorch: both formats, default collate, the same values, NaN for missing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from datasets import load_dataset

from mantis_data.release import PARQUET_DIR, WEBDATASET_DIR
from mantis_data.schema import SCALAR_FIELDS, SPLITS


def _missing_ebv(root) -> int:
    """Missing E(B-V) values of the whole release, read from the Parquet files with plain pyarrow."""
    t = pq.read_table(sorted((root / PARQUET_DIR / "data").glob("*.parquet")), columns=["ebv_csfd", "ebv_planck"])
    # NaN, never null: the Parquet encoding stores a missing float as NaN, like the JSON member.
    assert t.column("ebv_csfd").null_count == 0 and t.column("ebv_planck").null_count == 0
    return sum(int(np.isnan(t.column(c).to_numpy()).sum()) for c in ("ebv_csfd", "ebv_planck"))


@pytest.fixture(scope="module")
def both(demo_release):
    return {fmt: load_dataset(str(demo_release / folder)) for fmt, folder in
            (("webdataset", WEBDATASET_DIR), ("parquet", PARQUET_DIR))}


def test_both_formats_load_into_a_default_collate_dataloader(demo_release, both):
    manifest = json.loads((demo_release / "MANIFEST.json").read_text())
    missing = _missing_ebv(demo_release)
    assert missing > 0, "the demo release must hold galaxies without E(B-V) for this test to mean anything"
    ebv = {}
    for fmt, dsd in both.items():
        assert set(dsd) == set(SPLITS)
        seen, vals = 0, []
        for split in SPLITS:
            loader = torch.utils.data.DataLoader(dsd[split].with_format("torch"), batch_size=32)
            for batch in loader:
                scalars = batch["json"] if fmt == "webdataset" else batch
                ps1 = batch["ps1.npy"] if fmt == "webdataset" else batch["ps1"]
                assert ps1.dtype == torch.float32 and ps1.shape[1:] == (5, 170, 170)
                for name in ("z", "ebv_csfd", "ebv_planck", "galex_coverage"):
                    assert isinstance(scalars[name], torch.Tensor) and scalars[name].dtype == torch.float32
                assert scalars["ps1_zp"].shape[1:] == (5,)
                vals.append(torch.stack([scalars["ebv_csfd"], scalars["ebv_planck"]], 1))
                seen += len(ps1)
        assert seen == manifest["total"] == sum(manifest["counts"].values()) > 0
        ebv[fmt] = torch.cat(vals)
        assert int(torch.isnan(ebv[fmt]).sum()) == missing, fmt
    assert len(ebv["webdataset"]) == len(ebv["parquet"])
    assert torch.equal(torch.isnan(ebv["webdataset"]), torch.isnan(ebv["parquet"]))
    assert torch.allclose(ebv["webdataset"].nan_to_num(-1), ebv["parquet"].nan_to_num(-1))


def test_missing_is_nan_in_every_reader(demo_release, both):
    """Python format, the JSON member as plain json.loads reads it, and pandas: NaN everywhere, never None."""
    for fmt, dsd in both.items():
        rows = dsd["train"]["json"] if fmt == "webdataset" else dsd["train"].to_list()
        values = [r[k] for r in rows for k in ("ebv_csfd", "ebv_planck")]
        assert None not in values
        assert any(isinstance(v, float) and np.isnan(v) for v in values)
    frame = pq.read_table(sorted((demo_release / PARQUET_DIR / "data").glob("train-*.parquet"))).to_pandas()
    assert frame["ebv_csfd"].isna().any() and frame["ebv_csfd"].dtype == np.float64


def test_the_documented_one_liner_maps_webdataset_names_to_parquet_names(both):
    """The card's one-liner turns the WebDataset view (ps1.npy, json.z) into the Parquet view (ps1, z)."""
    ds, parquet = both["webdataset"]["train"], both["parquet"]["train"]
    assert "ps1.npy" in ds.column_names and "json" in ds.column_names and "ps1" not in ds.column_names
    # --- the one-liner, exactly as in the card and docs/loading.md ---
    flat = ds.flatten()
    flat = flat.rename_columns({c: c.removeprefix("json.").removesuffix(".npy") for c in flat.column_names})
    same = flat.select_columns(parquet.column_names)
    # ---
    assert same.column_names == parquet.column_names and same.features == parquet.features
    assert set(parquet.column_names) == {"target_id", "galex", "ps1", "unwise", *SCALAR_FIELDS}
    a, b = same.with_format("numpy")[:], parquet.with_format("numpy")[:]
    for name in parquet.column_names:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name])  # NaN == NaN here
        else:
            assert (a[name] == b[name]).all(), name


def test_the_release_root_card_makes_loading_the_root_deliberate(demo_release, monkeypatch):
    """The root README.md lists the WebDataset shards: load_dataset(root) is the WebDataset view, fast and
    documented (not a silent scan that lands on the Parquet copy); its code block runs as written."""
    import re

    import yaml

    text = (demo_release / "README.md").read_text()
    head = yaml.safe_load(text.split("---\n")[1])
    paths = [p for cfg in head["configs"] for part in cfg["data_files"] for p in part["path"]]
    assert paths and all(p.startswith(f"{WEBDATASET_DIR}/data/") and (demo_release / p).is_file() for p in paths)
    manifest = json.loads((demo_release / "MANIFEST.json").read_text())
    assert "README.md" in manifest["files"]  # checksummed like the folder cards
    ds = load_dataset(str(demo_release), split="train")
    assert "ps1.npy" in ds.column_names and len(ds) == manifest["counts"]["train"]
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(demo_release)
    scope: dict = {}
    exec(blocks[0], scope)
    assert scope["same"]["__key__"] == scope["ds"]["__key__"]
    assert scope["pq"]["target_id"] == scope["ds"]["__key__"]
