"""The Parquet fast path: image values read straight from raw pages equal pyarrow's decoding; others fall back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq

from mantis_data.loading import make_loader
from mantis_data.loading.parquet import ParquetReader
from mantis_data.loading.shards import load_manifest, split_shards
from mantis_data.release import MANIFEST_NAME
from mantis_data.schema import IMAGE_FIELDS


def _reader(root, split="validation") -> ParquetReader:
    base, manifest, is_url = load_manifest(root)
    return ParquetReader(split_shards(base, manifest, is_url, "parquet", split), 2)


def test_raw_page_values_equal_pyarrow_decoding(loader_release):
    fast, slow = _reader(loader_release), _reader(loader_release)
    slow.raw_pages = False
    for u in range(len(fast.unit_sizes)):
        n = int(fast.unit_sizes[u])
        view = fast._raw_images(fast.unit_shard[u], fast.unit_rg[u], "ps1", n)
        assert view is not None and not view.flags.owndata  # a view of the mapped file: no copy, no decoding
        a, b = fast.unit(u, IMAGE_FIELDS), slow.unit(u, IMAGE_FIELDS)
        for f in IMAGE_FIELDS:
            assert np.array_equal(a[f], b[f])
        assert a["keys"] == b["keys"] and np.array_equal(a["z"], b["z"])


def test_shards_of_another_writer_are_decoded_by_pyarrow(loader_release, tmp_path):
    src = loader_release / "mantis_shrimp-parquet" / "data"
    manifest = json.loads((loader_release / MANIFEST_NAME).read_text())
    files = {}
    for rel, info in manifest["files"].items():
        if info.get("split") == "validation" and info["format"] == "parquet":
            dst = tmp_path / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pq.read_table(src / dst.name), dst, row_group_size=32, compression="zstd")  # dictionary, v1
            files[rel] = {**info, "bytes": dst.stat().st_size}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**manifest, "files": files}))
    reader = _reader(tmp_path)
    assert reader._raw_images(0, 0, "ps1", int(reader.unit_sizes[0])) is None
    kw = dict(format="parquet", order="sequential", batch_size=8, num_workers=0)
    theirs = [(b["target_id"], float(b["ps1"].double().sum())) for b in make_loader(tmp_path, "validation", **kw)]
    ours = [(b["target_id"], float(b["ps1"].double().sum())) for b in make_loader(loader_release, "validation", **kw)]
    assert theirs == ours
    shutil.rmtree(tmp_path / "mantis_shrimp-parquet")
