"""LoaderConfig: one frozen settings object for make_loader, serialised by state_dict; the package API."""

from __future__ import annotations

import dataclasses
import json

import pytest

import mantis_data
from mantis_data.errors import MantisDataError
from mantis_data.loading import LoaderConfig, make_loader


def test_config_and_keywords_make_the_same_loader(loader_release):
    cfg = LoaderConfig(batch_size=8, order="shuffle", seed=3, num_workers=0, images=["galex"])
    assert cfg.images == ("galex",)  # normalised to a tuple: the config stays hashable
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 4
    a = make_loader(loader_release, "train", cfg)
    b = make_loader(loader_release, "train", batch_size=8, seed=3, num_workers=0, images=("galex",))
    c = make_loader(loader_release, "train", cfg, seed=4)  # keywords replace fields of the config
    ids = [[tuple(x["target_id"]) for x in loader] for loader in (a, b, c)]
    assert ids[0] == ids[1] and ids[0] != ids[2]
    state = json.loads(json.dumps(a.state_dict()))
    assert LoaderConfig.from_dict(state["config"]) == cfg
    with pytest.raises(MantisDataError, match="seed"):
        c.load_state_dict(state)


def test_bad_options_name_themselves():
    with pytest.raises(MantisDataError, match="batchsize"):
        LoaderConfig().replace(batchsize=3)
    with pytest.raises(MantisDataError, match="verify"):
        LoaderConfig(verify="md5")
    with pytest.raises(MantisDataError, match="format"):
        LoaderConfig(format="zarr")
    with pytest.raises(MantisDataError, match="handoff"):
        LoaderConfig(handoff=0)


def test_automatic_handoff_and_prefetch_keep_512_samples_in_flight():
    configs = [LoaderConfig(batch_size=b) for b in (8, 32, 64, 100, 128, 256, 1024)]
    assert [c.resolved_handoff() for c in configs] == [4, 4, 4, 2, 2, 1, 1]
    assert [c.resolved_prefetch(c.resolved_handoff()) for c in configs] == [8, 4, 2, 2, 2, 2, 2]
    assert LoaderConfig(batch_size=8, handoff=3).resolved_handoff() == 3
    assert LoaderConfig(batch_size=8, prefetch_factor=3).resolved_prefetch(4) == 3
    parquet = LoaderConfig(format="parquet", batch_size=8)  # map-style: one batch per item, DataLoader's prefetch
    assert (parquet.resolved_handoff(), parquet.resolved_prefetch(1)) == (1, 2)


def test_package_exports_its_public_api():
    assert {"make_loader", "LoaderConfig", "open_release", "ReleaseError", "paper_transform"} <= set(mantis_data.__all__)
    assert mantis_data.make_loader is make_loader
    with pytest.deprecated_call():
        import importlib

        import mantis_data.loaders as old

        importlib.reload(old)
    assert old.make_loader is make_loader
