"""The published early-fusion checkpoint's layout loads into our model with identical outputs.

The published ``best_early.pt`` (800 MB) is not downloadable here, so the test writes a checkpoint in the
same layout: a test-only module written as the released ``ConvModel`` is (a timm ConvNeXt ``Base`` built
with ``num_classes=0`` whose stem convolution is replaced by a 9-channel 4x4 one, ``fc0`` features+2 ->
2048, GELU, ``fc1`` 2048 -> 400), at a small ConvNeXt size with random weights, wrapped in
DistributedDataParallel (one gloo rank) and saved with ``torch.save(model.state_dict())`` as the original
training did, so every key carries the ``module.`` prefix.
"""

from __future__ import annotations

import hashlib
import socket

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from torch import nn  # noqa: E402

from mantis_data.models import (  # noqa: E402
    RELEASED_SHA256,
    CheckpointError,
    EarlyFusion,
    ModelConfig,
    build_model,
    load_released,
    released_config,
)

SMALL = {"depths": [1, 2, 1, 1], "dims": [16, 32, 48, 64]}


class ReleasedLayoutModel(nn.Module):
    """Test-only: the released early-fusion module's structure and attribute names (Base, fc0, fc1)."""

    def __init__(self, base: nn.Module, n_features: int, num_classes: int = 400):
        super().__init__()
        self.fc0 = nn.Linear(n_features + 2, 2048)
        self.fc1 = nn.Linear(2048, num_classes)
        self.Base = base

    def forward(self, x, ebv):
        x = torch.cat([self.Base(x), ebv], dim=1)
        return self.fc1(nn.functional.gelu(self.fc0(x)))


def released_layout_model(seed: int = 0) -> ReleasedLayoutModel:
    """A small ConvNeXt in the released layout with random weights everywhere (norms and layer scales too)."""
    torch.manual_seed(seed)
    base = timm.create_model("convnext_large", pretrained=False, num_classes=0, **SMALL)
    base.stem[0] = nn.Conv2d(9, SMALL["dims"][0], kernel_size=(4, 4), stride=(4, 4))
    model = ReleasedLayoutModel(base, SMALL["dims"][-1])
    with torch.no_grad():
        for p in model.parameters():  # layer scales start at 1e-6: make every block matter
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_as_the_original(model: nn.Module, path) -> dict:
    """torch.save of the DistributedDataParallel-wrapped model's state dict (keys 'module.*'); return it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        sd = ddp.state_dict()
        torch.save(sd, path)
    finally:
        dist.destroy_process_group()
    return sd


def inputs(n: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 9, 120, 120), generator=g) * 3, torch.rand((n, 2), generator=g) * 0.2


def test_released_layout_loads_with_equal_logits(tmp_path):
    ref = released_layout_model()
    path = tmp_path / "best_early.pt"
    sd = save_as_the_original(ref, path)
    assert all(k.startswith("module.") for k in sd) and "module.Base.stem.0.weight" in sd

    model = load_released(path)
    assert isinstance(model, EarlyFusion) and not model.training
    assert model.config.backbone_kwargs == SMALL and model.config.hidden_width == 2048
    assert model.data_config["fusion"] == "early" and model.data_config["bands"] == "all"
    x, ebv = inputs()
    with torch.no_grad():
        want, got = ref(x, ebv), model(x, ebv)
    diff = float((want - got).abs().max())
    print(f"released-layout checkpoint: max |logit difference| = {diff:.3g} over {tuple(got.shape)}")
    assert got.shape == (3, 400)
    assert diff <= 1e-5
    assert float(want.std()) > 0.1  # the outputs are not trivially equal (e.g. all zero)


def test_the_paper_size_is_read_as_convnext_large():
    meta = {}
    with torch.device("meta"):
        base = timm.create_model("convnext_large", pretrained=False, num_classes=0)
        base.stem[0] = nn.Conv2d(9, 192, kernel_size=(4, 4), stride=(4, 4))
        meta = ReleasedLayoutModel(base, 1536).state_dict()
    cfg = released_config(meta)
    assert cfg == ModelConfig()  # convnext_large, early fusion, all bands, 2048 hidden, 400 classes
    assert tuple(meta["fc0.weight"].shape) == (2048, 1538) and tuple(meta["fc1.weight"].shape) == (400, 2048)


def test_keys_that_do_not_fit_are_named(tmp_path):
    sd = {k: v for k, v in released_layout_model().state_dict().items()}
    sd.pop("Base.stages.1.blocks.1.gamma")
    sd["Base.extra.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_released(path)
    msg = str(err.value)
    assert "missing keys: Base.stages.1.blocks.1.gamma" in msg and "unexpected keys: Base.extra.weight" in msg
    torch.save({"fc0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not the released early-fusion layout"):
        load_released(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_released(tmp_path / "absent.pt")


def test_hash_check(tmp_path):
    path = tmp_path / "best_early.pt"
    torch.save(released_layout_model().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match=f"sha256 {digest} is not the expected {RELEASED_SHA256}"):
        load_released(path, check_hash=True)
    assert isinstance(load_released(path, check_hash=digest), EarlyFusion)


def test_our_training_checkpoint_loads_the_same_way(tmp_path):
    cfg = ModelConfig(fusion="late", backbone="convnext_atto", aux_backbone="convnext_atto",
                      backbone_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]},
                      aux_backbone_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]}, hidden_width=16)
    torch.manual_seed(0)
    ours = build_model(cfg).eval()
    data_config = {"fusion": "late", "bands": "all", "ps1_crop": 48, "resize": None}
    path = tmp_path / "best.pt"
    torch.save({"format": 1, "model": ours.state_dict(), "model_config": cfg.to_dict(), "data_config": data_config}, path)
    model = load_released(path)
    assert model.config == cfg and model.data_config == data_config
    g = torch.Generator().manual_seed(0)
    images = {"galex": torch.rand((2, 2, 32, 32), generator=g), "ps1": torch.rand((2, 5, 48, 48), generator=g),
              "unwise": torch.rand((2, 2, 32, 32), generator=g)}
    ebv = torch.rand((2, 2), generator=g)
    with torch.no_grad():
        assert torch.equal(model(images, ebv), ours(images, ebv))
