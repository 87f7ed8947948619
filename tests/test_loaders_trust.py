"""The loaders notice a damaged release, and open indexed tar shards without reading their headers."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mantis_data.errors import ReleaseError
from mantis_data.loading import make_loader
from mantis_data.loading import tar as tar_mod
from mantis_data.release import MANIFEST_NAME

SPLIT = "validation"


def copy_split(release: Path, dst: Path, index: bool = True) -> Path:
    """A release folder with one split's shards of both formats (and the tar indexes when ``index``)."""
    manifest = json.loads((release / MANIFEST_NAME).read_text())
    keep = {
        rel: info for rel, info in manifest["files"].items()
        if info.get("split") == SPLIT and (index or info["format"] in ("webdataset", "parquet"))
    }
    for rel in keep:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release / rel, dst / rel)
    (dst / MANIFEST_NAME).write_text(json.dumps({**manifest, "files": keep}))
    return dst


def tars(root: Path) -> list[Path]:
    return sorted((root / "mantis_shrimp" / "data").glob("*.tar"))


def read_all(root: Path, fmt: str = "webdataset", **kw) -> list[tuple]:
    loader = make_loader(root, SPLIT, format=fmt, order="sequential", batch_size=4, num_workers=0, **kw)
    return [(tuple(b["target_id"]), b["z"].tolist(), float(b["ps1"].double().sum())) for b in loader]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    """No tar index cached from another test; the sha256 cache in this test's folder."""
    monkeypatch.setattr(tar_mod, "_TAR_INDEX", {})
    monkeypatch.setenv("MANTIS_DATA_CACHE", str(tmp_path / "cache"))


def test_indexed_shards_open_without_reading_tar_headers(loader_release, tmp_path, monkeypatch):
    headers = []
    frombuf = tarfile.TarInfo.frombuf.__func__
    monkeypatch.setattr(tarfile.TarInfo, "frombuf", classmethod(lambda cls, *a, **k: headers.append(1) or frombuf(cls, *a, **k)))
    indexed = copy_split(loader_release, tmp_path / "with")
    assert len(list((indexed / "mantis_shrimp" / "data").glob("*.tar.idx"))) == len(tars(indexed)) > 1
    got = read_all(indexed)
    assert headers == []  # every shard opened from its index: not one tar header read
    plain = copy_split(loader_release, tmp_path / "without", index=False)
    assert read_all(plain) == got  # a release without indexes still loads, by scanning the headers
    assert len(headers) >= 4 * sum(len(ids) for ids, _, _ in got)  # four members per sample


def test_flipped_image_byte_is_caught_by_sha256(loader_release, tmp_path):
    root = copy_split(loader_release, tmp_path / "r")
    shard = tars(root)[1]
    index = tar_mod.shard_index(next(s for s in _shards(root) if s.location == str(shard)))
    data = bytearray(shard.read_bytes())
    data[int(index.offsets[0, 1]) + 1000] ^= 0x40  # a byte of the first sample's PS1 cube
    shard.write_bytes(bytes(data))
    read_all(root, images=("ps1",))  # the default check (sizes, keys, redshifts) cannot see it ...
    with pytest.raises(ReleaseError, match=f"{shard.name}.*sha256"):
        read_all(root, verify="sha256")  # ... the full check does
    parquet = sorted((root / "mantis_shrimp-parquet" / "data").glob("*.parquet"))[0]
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0x40
    parquet.write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match=parquet.name):  # sha256 mismatch, or its page fails to decode
        read_all(root, fmt="parquet", verify="sha256")


def _shards(root: Path):
    from mantis_data.loading.shards import load_manifest, split_shards

    base, manifest, is_url = load_manifest(root)
    return split_shards(base, manifest, is_url, "webdataset", SPLIT)


def _edit_first_z(path: Path) -> None:
    """Change the first sample's redshift in a tar's JSON member, keeping every size."""
    with tarfile.open(path) as tar:
        m = next(m for m in tar.getmembers() if m.name.endswith(".json"))
    data = bytearray(path.read_bytes())
    raw = bytes(data[m.offset_data : m.offset_data + m.size])
    at = raw.index(b'"z":') + 5
    data[m.offset_data + at] = ord("7") if raw[at] != ord("7") else ord("3")  # a digit of z
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("index", [False, True])
def test_edited_redshift(loader_release, tmp_path, index):
    root = copy_split(loader_release, tmp_path / "r", index=index)
    shard = tars(root)[1]
    _edit_first_z(shard)
    with pytest.raises(ReleaseError, match=shard.name):
        read_all(root)  # without an index the scan reads z; with one the spot check of its first sample does
    if index:
        idx = shard.with_name(shard.name + ".idx")
        shutil.copyfile(loader_release / "mantis_shrimp" / "data" / shard.name, shard)
        doc = json.loads(idx.read_text())
        doc["z"][0] += 0.01
        idx.write_text(json.dumps(doc))
        with pytest.raises(ReleaseError, match=f"{idx.name}.*sha256"):
            read_all(root)


@pytest.mark.parametrize("index", [False, True])
def test_swapped_shards_of_equal_sample_count(loader_release, tmp_path, index):
    root = copy_split(loader_release, tmp_path / "r", index=index)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    by_count: dict[int, list[Path]] = {}
    for path in tars(root):
        by_count.setdefault(manifest["files"][path.relative_to(root).as_posix()]["samples"], []).append(path)
    a, b = next(v for v in by_count.values() if len(v) >= 2)[:2]
    tmp = a.with_suffix(".swap")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    with pytest.raises(ReleaseError, match=f"({a.name}|{b.name}).*(swapped|bytes)"):
        read_all(root)
    pa_, pb = (root / "mantis_shrimp-parquet" / "data" / p.with_suffix(".parquet").name for p in (a, b))
    tmp = pa_.with_suffix(".swap")
    pa_.rename(tmp), pb.rename(pa_), tmp.rename(pb)
    with pytest.raises(ReleaseError, match=f"({pa_.name}|{pb.name}).*(swapped|bytes)"):
        read_all(root, fmt="parquet")


def test_manifest_that_lost_an_entry(loader_release, tmp_path):
    root = copy_split(loader_release, tmp_path / "r")
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    lost = tars(root)[2].relative_to(root).as_posix()
    del manifest["files"][lost]
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ReleaseError, match=f"{Path(lost).name}: shard not listed"):
        read_all(root)
    (root / lost).unlink()  # the file gone too: the split's count no longer adds up
    with pytest.raises(ReleaseError, match="an entry is missing from the MANIFEST"):
        read_all(root)


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_truncated_shard(loader_release, tmp_path, fmt):
    root = copy_split(loader_release, tmp_path / "r")
    folder = root / ("mantis_shrimp" if fmt == "webdataset" else "mantis_shrimp-parquet") / "data"
    shard = sorted(folder.glob("*.tar" if fmt == "webdataset" else "*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:-512])
    with pytest.raises(ReleaseError, match=f"{shard.name}.*truncated"):
        read_all(root, fmt=fmt)


def test_sha256_is_cached_by_size_and_mtime(loader_release, tmp_path):
    from mantis_data.loading import verify

    root = copy_split(loader_release, tmp_path / "r")
    assert read_all(root, verify="sha256") == read_all(root)
    cache = json.loads(verify.cache_path().read_text())
    assert {str(p) for p in tars(root)} <= set(cache)
    entry = cache[str(tars(root)[0])]
    assert entry["bytes"] == tars(root)[0].stat().st_size and len(entry["sha256"]) == 64
    assert np.all([verify.file_sha256(str(p)) == cache[str(p)]["sha256"] for p in tars(root)])


def test_verify_accepts_the_indexes_and_names_a_bad_one(loader_release, tmp_path):
    from mantis_data.release import verify

    root = copy_split(loader_release, tmp_path / "r")
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["counts"] = {s: (c if s == SPLIT else 0) for s, c in manifest["counts"].items()}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert verify(root) == []
    idx = next((root / "mantis_shrimp" / "data").glob("*.tar.idx"))
    idx.write_text(idx.read_text().replace('"tar_bytes":', '"tar_bytes":1'))
    problems = verify(root)
    assert len(problems) == 1 and idx.name in problems[0]
