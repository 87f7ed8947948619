"""End to end on a demo release: load_dataset, plain readers, verify, determinism, audit invariants."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, open_release, verify
from mantis_data.schema import IMAGE_FIELDS, IMAGE_SHAPES, SPLITS


def manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


def test_load_dataset_both_formats_match_manifest(demo_release, monkeypatch):
    from datasets import load_dataset

    counts = manifest(demo_release)["counts"]
    assert all(counts[s] > 0 for s in SPLITS)
    monkeypatch.chdir(demo_release)
    wds = load_dataset("mantis_shrimp")
    par = load_dataset("mantis_shrimp-parquet")
    for ds in (wds, par):
        assert set(ds) == set(SPLITS)
        assert {s: ds[s].num_rows for s in SPLITS} == counts
    sample = wds["train"].with_format("numpy")[0]
    for f in IMAGE_FIELDS:
        arr = sample[f"{f}.npy"]
        assert arr.shape == IMAGE_SHAPES[f] and arr.dtype == np.float32
    row = par["train"].with_format("numpy")[0]
    for f in IMAGE_FIELDS:
        assert row[f].shape == IMAGE_SHAPES[f] and row[f].dtype == np.float32
    assert par["train"].features["ra"].dtype == "float64" and par["train"].features["dec"].dtype == "float64"
    assert wds["train"].features["json"]["ra"].dtype == "float64"
    keys = list(wds["train"]["__key__"]) + list(wds["test"]["__key__"])
    assert all("." not in k for k in keys)
    assert set(par["train"]["split"]) == {"train"}
    assert {j["split"] for j in wds["test"]["json"]} == {"test"}


def test_tiny_and_streaming(demo_release):
    from datasets import load_dataset

    tiny = load_dataset(str(demo_release / "mantis_shrimp"), "tiny")
    first_train = open_release(demo_release).shards("webdataset", "train")[0]
    n_first = manifest(demo_release)["files"][first_train.relative_to(demo_release).as_posix()]["samples"]
    assert tiny["train"].num_rows == n_first
    stream = load_dataset(str(demo_release / "mantis_shrimp-parquet"), split="validation", streaming=True)
    got = list(stream.take(3))
    assert len(got) == 3 and np.asarray(got[0]["ps1"], dtype=np.float32).shape == (5, 170, 170)
    wstream = load_dataset(str(demo_release / "mantis_shrimp"), split="train", streaming=True)
    one = next(iter(wstream))
    assert np.asarray(one["galex.npy"]).shape == (2, 32, 32)


def test_plain_readers_give_the_same_values_as_load_dataset(demo_release):
    import webdataset as wds
    from datasets import load_dataset

    rel = open_release(demo_release)
    tar = rel.shards("webdataset", "validation")[0]
    plain = {s["__key__"]: s for s in wds.WebDataset(str(tar), shardshuffle=False).decode()}
    table = pq.read_table(rel.shards("parquet", "validation")[0])
    hf = load_dataset(str(demo_release / "mantis_shrimp"), "tiny", split="validation").with_format("numpy")
    hfp = load_dataset(str(demo_release / "mantis_shrimp-parquet"), "tiny", split="validation").with_format("numpy")
    assert len(plain) == table.num_rows == hf.num_rows == hfp.num_rows > 0
    ps1_pq = np.asarray(table.column("ps1").combine_chunks().storage.flatten().flatten().flatten()).reshape(-1, 5, 170, 170)
    ids = table.column("target_id").to_pylist()
    for i in range(hf.num_rows):
        key = str(hf[i]["__key__"])
        j = ids.index(key)
        np.testing.assert_array_equal(plain[key]["ps1.npy"], hf[i]["ps1.npy"])
        np.testing.assert_array_equal(ps1_pq[j], hf[i]["ps1.npy"])
        np.testing.assert_array_equal(hfp[j]["ps1"], hf[i]["ps1.npy"])
        np.testing.assert_array_equal(plain[key]["galex.npy"], hfp[j]["galex"])
        np.testing.assert_array_equal(plain[key]["unwise.npy"], hfp[j]["unwise"])
        meta = plain[key]["json"]
        assert meta["z"] == table.column("z")[j].as_py() == float(hf[i]["json"]["z"])
        assert meta["ra"] == table.column("ra")[j].as_py()
        assert meta["target_id"] == key


def test_verify_passes_then_names_a_flipped_byte_and_a_deleted_shard(demo_release, tmp_path):
    assert verify(demo_release) == []
    out = subprocess.run([sys.executable, "-m", "mantis_data.cli", "verify", str(demo_release)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    copy = tmp_path / "copy"
    shutil.copytree(demo_release, copy)
    rel = open_release(copy)
    victim = rel.shards("parquet", "test")[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    gone = rel.shards("webdataset", "train")[-1]
    gone.unlink()
    out = subprocess.run([sys.executable, "-m", "mantis_data.cli", "verify", str(copy)], capture_output=True, text=True)
    assert out.returncode == 1
    assert victim.relative_to(copy).as_posix() in out.stdout and "sha256" in out.stdout
    assert gone.relative_to(copy).as_posix() in out.stdout and "missing" in out.stdout


def test_audit_accounts_for_every_input_row(demo_release):
    audit = pd.read_parquet(demo_release / AUDIT_NAME)
    truth = pd.read_parquet(demo_release / "mock_inputs" / "catalogs" / "truth.parquet")
    m = manifest(demo_release)
    assert len(audit) == len(truth)  # every catalog row exactly once
    assert not audit.duplicated(["survey", "source_row"]).any()
    assert audit["accepted"].sum() + audit["reject_reason"].notna().sum() == len(audit)
    accepted = audit[audit["accepted"]]
    assert accepted["in_release"].sum() == m["total"]
    assert (accepted["in_release"] ^ accepted["cutout_reject_reason"].notna()).all()
    assert accepted["cutout_reject_reason"].notna().sum() == sum(m["cutout_rejections"].values())
    # the release's samples are exactly the accepted targets that passed the cutout checks
    rel = open_release(demo_release)
    keys = set()
    for tar in rel.shards("webdataset"):
        import tarfile

        with tarfile.open(tar) as t:
            keys |= {n.split(".")[0] for n in t.getnames()}
    assert keys == set(accepted.loc[accepted["in_release"], "target_id"])
