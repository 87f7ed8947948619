"""The reference models: the paper's stem rule from 3-channel checkpoints, fusion layouts, band ablations.

Only tiny ConvNeXts are built here (a custom-depth convnext_atto / convnext_tiny); the paper's sizes are
counted on the meta device by ``training.param_counts`` and never built in tests.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from mantis_data.errors import MantisDataError  # noqa: E402
from mantis_data.models import (  # noqa: E402
    BAND_CHOICES,
    CheckpointError,
    EarlyFusion,
    LateFusion,
    ModelConfig,
    build_model,
    inflate_stem,
    load_released_early,
    model_inputs,
    parameter_count,
    read_state_dict,
)
from mantis_data.redshift import N_BINS  # noqa: E402
from mantis_data.schema import IMAGE_SHAPES  # noqa: E402
from mantis_data.transforms import ABLATIONS  # noqa: E402
from training.train import transforms_of  # noqa: E402

TINY = {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}


def tiny_config(**kw) -> ModelConfig:
    """A model config with tiny ConvNeXts everywhere."""
    base = dict(backbone="convnext_atto", aux_backbone="convnext_atto", backbone_kwargs=TINY,
                aux_backbone_kwargs=TINY, hidden_width=32)
    return ModelConfig(**{**base, **kw})


def three_channel_checkpoint(path, name="convnext_atto", seed=0, **kwargs):
    """Save a randomly initialised 3-channel timm model's state dict to ``path``; return the state dict."""
    torch.manual_seed(seed)
    m = timm.create_model(name, pretrained=False, in_chans=3, num_classes=10, **kwargs)
    sd = m.state_dict()
    torch.save(sd, path)
    return sd


def raw_batch(n: int = 2, seed: int = 0) -> dict:
    """A batch of random linear flux as the loaders yield it (before transforms)."""
    g = torch.Generator().manual_seed(seed)
    batch = {s: torch.rand((n, *IMAGE_SHAPES[s]), generator=g) * 50 for s in IMAGE_SHAPES}
    batch["ebv"] = torch.rand((n, 2), generator=g) * 0.1
    return batch


def test_stem_rule_from_a_3_channel_checkpoint(tmp_path):
    ckpt = tmp_path / "imagenet_like.pth"
    sd = three_channel_checkpoint(ckpt, **TINY)
    model = EarlyFusion(tiny_config(), checkpoint=ckpt)
    stem = model.Base.stem[0]
    assert stem.weight.shape[1] == 9
    expected = sd["stem.0.weight"].mean(dim=1, keepdim=True) / 9
    for c in range(9):  # every channel holds mean / 9
        torch.testing.assert_close(stem.weight[:, c : c + 1], expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(stem.bias, sd["stem.0.bias"], rtol=0, atol=0)
    own = model.Base.state_dict()
    copied = [k for k in own if k != "stem.0.weight"]
    assert copied and all(torch.equal(own[k], sd[k]) for k in copied)
    # the summed response to a flat 9-band image equals the checkpoint's to a flat 3-band one, / 3
    assert torch.allclose(stem.weight.sum(dim=1), sd["stem.0.weight"].sum(dim=1) / 3, atol=1e-6)


def test_late_fusion_encoders_use_the_same_rule(tmp_path):
    main = tmp_path / "large_like.pth"
    aux = tmp_path / "small_like.pth"
    sd_main = three_channel_checkpoint(main, seed=1, **TINY)
    sd_aux = three_channel_checkpoint(aux, seed=2, **TINY)
    model = LateFusion(tiny_config(fusion="late"), checkpoint=main, aux_checkpoint=aux)
    for survey, sd, n in (("ps1", sd_main, 5), ("galex", sd_aux, 2), ("unwise", sd_aux, 2)):
        w = model.encoders[survey].stem[0].weight
        assert w.shape[1] == n
        torch.testing.assert_close(w, sd["stem.0.weight"].mean(1, keepdim=True).expand_as(w) / n, rtol=0, atol=1e-7)


def test_inflate_stem_divisor():
    w = torch.randn(4, 3, 2, 2)
    out = inflate_stem(w, 9)
    assert out.shape == (4, 9, 2, 2)
    torch.testing.assert_close(out[:, 5], w.mean(1) / 9)
    torch.testing.assert_close(inflate_stem(w, 9, divisor=1)[:, 0], w.mean(1))


def test_checkpoint_containers_prefixes_and_safetensors(tmp_path):
    sd = three_channel_checkpoint(tmp_path / "plain.pth", **TINY)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "wrapped.pt")
    got = read_state_dict(tmp_path / "wrapped.pt")
    assert set(got) == set(sd)
    a = EarlyFusion(tiny_config(), checkpoint=tmp_path / "wrapped.pt")
    # an encoder inside a larger model: its keys are found under their common prefix
    torch.save({**{f"encoder.{k}": v for k, v in sd.items()}, "head.0.weight": torch.zeros(3, 3)}, tmp_path / "lt.ckpt")
    c = EarlyFusion(tiny_config(), checkpoint=tmp_path / "lt.ckpt")
    assert torch.equal(a.Base.stem[0].weight, c.Base.stem[0].weight)
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    b = EarlyFusion(tiny_config(), checkpoint=tmp_path / "w.safetensors")
    assert torch.equal(a.Base.stem[0].weight, b.Base.stem[0].weight)


def test_torchvision_convnext_checkpoint(tmp_path):
    tv = pytest.importorskip("torchvision.models.convnext")
    torch.manual_seed(0)
    dims = TINY["dims"]
    settings = [tv.CNBlockConfig(d, dims[i + 1] if i + 1 < len(dims) else None, 1) for i, d in enumerate(dims)]
    ref = tv.ConvNeXt(settings, num_classes=10).eval()
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(backbone="convnext_tiny")  # timm's convnext_tiny blocks use Linear MLPs, as torchvision
    model = EarlyFusion(cfg, checkpoint=tmp_path / "tv.pth").eval()
    # with a flat image the 9-band model's features equal the 3-channel model's on 3 flat bands / 3
    x3 = torch.rand(2, 1, 48, 48).expand(2, 3, 48, 48)
    with torch.no_grad():
        want = ref.classifier[:2](ref.avgpool(ref.features(x3 * 3)))
        got = model.Base(x3[:, :1].expand(2, 9, 48, 48) * 3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        EarlyFusion(tiny_config(), checkpoint=tmp_path / "missing.pth")
    three_channel_checkpoint(tmp_path / "other.pth")  # full-size atto: other widths
    with pytest.raises(CheckpointError, match="other.pth.*does not fit"):
        EarlyFusion(tiny_config(), checkpoint=tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        EarlyFusion(tiny_config(), checkpoint=tmp_path / "junk.pth")
    with pytest.raises(MantisDataError, match="unknown band selection"):
        tiny_config(bands="uv")


@pytest.mark.parametrize("bands", BAND_CHOICES)
def test_early_fusion_ablations_take_the_transform_output(bands):
    cfg = tiny_config(bands=bands)
    model = build_model(cfg).eval()
    assert model.Base.stem[0].in_channels == len(ABLATIONS[bands])
    _, t = transforms_of({"fusion": "early", "bands": bands, "ps1_crop": None, "resize": 48})
    batch = t(raw_batch())
    assert batch["image"].shape[1] == len(ABLATIONS[bands])
    with torch.no_grad():
        logits = model(*model_inputs(batch, cfg))
    assert logits.shape == (2, N_BINS)


@pytest.mark.parametrize(
    "bands, surveys",
    [("optical", {"ps1"}), ("optical+uv", {"galex", "ps1"}), ("optical+ir", {"ps1", "unwise"}),
     ("all", {"galex", "ps1", "unwise"})],
)
def test_late_fusion_ablation_removes_encoders(bands, surveys):
    cfg = tiny_config(fusion="late", bands=bands)
    model = build_model(cfg).eval()
    assert set(model.encoders) == surveys  # an ablated survey has no encoder (not one fed zeros)
    n_feat = sum(e.num_features for e in model.encoders.values())
    assert model.fc0.in_features == n_feat + 2
    _, t = transforms_of({"fusion": "late", "bands": bands, "ps1_crop": 48, "resize": None})
    batch = t(raw_batch())
    x, ebv = model_inputs(batch, cfg)
    assert set(x) == surveys
    with torch.no_grad():
        assert model(x, ebv).shape == (2, N_BINS)
    counts = parameter_count(model)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_head_and_released_layout(tmp_path):
    cfg = tiny_config(hidden_width=64)
    model = build_model(cfg)
    assert model.fc0.in_features == model.Base.num_features + 2  # image features + ebv_csfd, ebv_planck
    assert (model.fc0.out_features, model.fc1.out_features) == (64, N_BINS)
    assert {k.split(".")[0] for k in model.state_dict()} == {"Base", "fc0", "fc1"}
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "best_early.pt")
    other = build_model(cfg)
    load_released_early(other, tmp_path / "best_early.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    # the E(B-V) inputs reach the logits
    batch = {"image": torch.rand(1, 9, 32, 32), "ebv": torch.zeros(1, 2)}
    with torch.no_grad():
        a = model(*model_inputs(batch, cfg))
        b = model(batch["image"], torch.full((1, 2), 0.5))
    assert not torch.allclose(a, b)


def test_param_counts_script(capsys):
    from training.param_counts import counts, main

    cfg = ModelConfig(backbone="convnext_atto", aux_backbone="convnext_atto", fusion="late")
    assert counts(cfg) == parameter_count(build_model(cfg))  # meta-device counts equal a real build
    assert main(["--backbone", "convnext_atto", "--aux-backbone", "convnext_femto"]) == 0
    out = capsys.readouterr().out
    assert "encoder[ps1]" in out and "convnext_femto" in out and "total" in out


def test_late_fusion_head_is_the_released_definition():
    """Released LateFusionModel: ReLU(cat(ps, unwise, galex)) -> cat E(B-V) -> fc0 -> ReLU -> fc1."""
    cfg = tiny_config(fusion="late")
    model = build_model(cfg).eval()
    assert isinstance(model.feature_activation, torch.nn.ReLU) and isinstance(model.activation, torch.nn.ReLU)
    assert not any(isinstance(m, torch.nn.GELU) for m in (model.feature_activation, model.activation))
    calls, fc0_input = [], {}
    names = {m: n for n, m in model.named_modules()}
    watched = ["encoders.ps1", "encoders.unwise", "encoders.galex", "feature_activation", "fc0", "activation", "fc1"]
    hooks = [dict(model.named_modules())[n].register_forward_hook(lambda m, i, o: calls.append(names[m])) for n in watched]
    hooks.append(model.fc0.register_forward_pre_hook(lambda m, i: fc0_input.setdefault("x", i[0].clone())))
    _, t = transforms_of({"fusion": "late", "bands": "all", "ps1_crop": 48, "resize": None})
    batch = t(raw_batch(n=3))
    x, _ = model_inputs(batch, cfg)
    ebv = torch.tensor([[-0.5, 0.1], [0.2, -0.3], [0.0, 0.7]])  # negative values must reach fc0 unrectified
    with torch.no_grad():
        out = model(x, ebv)
        for h in hooks:
            h.remove()
        feats = torch.cat([model.encoders[s](x[s]) for s in ("ps1", "unwise", "galex")], dim=1)
        expected = model.fc1(torch.relu(model.fc0(torch.cat([torch.relu(feats), ebv], dim=1))))
    assert calls == watched  # the released order of operations
    assert (feats < 0).any()  # so the feature ReLU is really exercised
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    xin = fc0_input["x"]
    assert torch.equal(xin[:, -2:], ebv) and (xin[:, :-2] >= 0).all()
    # the early-fusion head keeps GELU and no feature activation (the released ConvModel)
    early = build_model(tiny_config())
    assert isinstance(early.activation, torch.nn.GELU) and not hasattr(early, "feature_activation")
