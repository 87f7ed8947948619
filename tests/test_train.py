"""The reference training under torchrun (2 ranks, gloo, CPU) on a demo release.

* Learning: early and late fusion, tiny ConvNeXts at a reduced input scale (early: the 120 x 120 grid
  resized to 48 x 48; late: Pan-STARRS cropped to 48 x 48, GALEX and unWISE at 32 x 32), a few short
  epochs; the test split's NMAD and eta must beat the constant prior (every galaxy gets the training
  split's class histogram). The full-scale command (convnext_atto at 120 x 120) is in docs/training.md.
* Resume: an uninterrupted run against one resumed from its mid-epoch checkpoint in fresh processes:
  the same losses step by step, learning rate, validation, final weights, optimiser, scheduler and sampler.
* CLI errors (single process, no torchrun).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from conftest import build_demo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = json.dumps({"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]})
TRAIN_N = 600
"""Galaxies in the training tests' sky (about 330 train, 50 validation, 90 test)."""


@pytest.fixture(scope="module")
def train_release(tmp_path_factory) -> Path:
    """A demo release large enough to learn from, built once for this module."""
    return build_demo(tmp_path_factory.mktemp("train") / "ms", n=TRAIN_N, seed=0)


def tiny_args(fusion: str) -> list[str]:
    """Model and input-scale arguments of a tiny, fast model for ``fusion``."""
    args = ["--fusion", fusion, "--backbone", "convnext_atto", "--backbone-kwargs", TINY]
    if fusion == "early":
        return args + ["--resize", "48"]
    return args + ["--aux-backbone", "convnext_atto", "--aux-backbone-kwargs", TINY, "--ps1-crop", "48"]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``training.train`` under torchrun with ``nproc`` CPU ranks; fail the test on a non-zero exit."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "training.train", "--no-progress", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def read_log(run: Path) -> list[dict]:
    """The records of a run's log.jsonl."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_two_ranks_learn_and_beat_the_prior(train_release, tmp_path, fusion):
    from training.evaluate import main as evaluate_main

    run = tmp_path / "run"
    epochs = 4
    proc = torchrun(["--data", str(train_release), "--out", str(run), *tiny_args(fusion), "--epochs", str(epochs),
                     "--batches-per-epoch", "40", "--lr", "1e-3", "--workers", "1", "--log-every", "20"])
    log = read_log(run)
    assert log[0]["event"] == "start" and log[0]["world_size"] == 2 and log[-1]["event"] == "end"
    ep = [r for r in log if r["event"] == "epoch"]
    assert [r["epoch"] for r in ep] == list(range(epochs))
    assert all(r["n_val"] == ep[0]["n_val"] > 0 for r in ep)  # every validation galaxy once, over both ranks
    for key in ("val_loss", "nmad", "bias", "eta", "cde_loss", "lr"):
        assert all(key in r for r in ep)
    assert ep[-1]["train_loss"] < ep[0]["train_loss"]
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    assert "parameters" in proc.stderr

    report = tmp_path / "report"
    assert evaluate_main(["--checkpoint", str(run / "last.pt"), "--data", str(train_release), "--out", str(report),
                          "--prior", "--bootstrap", "50", "--workers", "0", "--no-progress"]) == 0
    summary = json.loads((report / "summary.json").read_text())
    model, prior = summary["model"], summary["prior"]
    assert summary["n"] > 50
    assert model["nmad"] < prior["nmad"], summary
    assert model["outlier_fraction"] < prior["outlier_fraction"], summary
    for name in ("metrics.md", "metrics.json", "predictions.parquet", "prior/metrics.md"):
        assert (report / name).is_file()


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(train_release, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", str(train_release), *tiny_args("late"), "--epochs", "3", "--batches-per-epoch", "3",
              "--batch-size", "4", "--val-batch-size", "16", "--workers", "1", "--log-every", "1",
              "--plateau-patience", "0", "--max-steps", "8", "--deterministic", "--hidden-width", "64"]
    # uninterrupted: steps 1-8 (epochs of 3 steps), a checkpoint kept at step 5, in the middle of epoch 1
    torchrun([*common, "--out", str(a), "--checkpoint-every", "5", "--keep-checkpoints"])
    # fresh processes continue from the step-5 checkpoint to step 8
    torchrun([*common, "--out", str(b), "--resume", str(a / "step-00000005.pt")])

    la, lb = read_log(a), read_log(b)
    assert lb[0]["event"] == "resume" and lb[0]["step"] == 5
    steps_a = {r["step"]: r for r in la if r["event"] == "train"}
    steps_b = {r["step"]: r for r in lb if r["event"] == "train"}
    assert sorted(steps_b) == [6, 7, 8]
    for s in (6, 7, 8):  # same loss, learning rate and position in the epoch, step by step
        assert (steps_b[s]["loss"], steps_b[s]["lr"], steps_b[s]["batch"]) == (
            steps_a[s]["loss"], steps_a[s]["lr"], steps_a[s]["batch"]), s
    ep_a = next(r for r in la if r["event"] == "epoch" and r["epoch"] == 1)
    ep_b = next(r for r in lb if r["event"] == "epoch" and r["epoch"] == 1)
    for key in ("train_loss", "val_loss", "nmad", "lr", "best_val_loss"):  # the resumed epoch's validation
        assert ep_a[key] == ep_b[key], key

    ca = torch.load(a / "last.pt", weights_only=True)
    cb = torch.load(b / "last.pt", weights_only=True)
    assert ca["step"] == cb["step"] == 8
    assert ca["loader"] == cb["loader"] and ca["loader"]["epoch"] == 2 and ca["loader"]["batches_done"] == 2
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    assert ca["scheduler"] == cb["scheduler"]
    oa, ob = ca["optimizer"], cb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    for i, st in oa["state"].items():
        for k, v in st.items():
            assert torch.equal(v, ob["state"][i][k]), (i, k)
    assert len(ca["rank_state"]) == 2  # every rank's RNG state and loss sums


def test_rng_state_round_trip(tmp_path):
    import random

    import numpy as np

    from training.checkpoint import rng_state as _rng_state
    from training.checkpoint import set_rng_state as _set_rng_state

    torch.save(_rng_state(torch.device("cpu")), tmp_path / "rng.pt")
    state = torch.load(tmp_path / "rng.pt", weights_only=True)  # as checkpoints are read
    want = (torch.rand(3), np.random.random(3), random.random())
    _set_rng_state(state, torch.device("cpu"))
    got = (torch.rand(3), np.random.random(3), random.random())
    assert torch.equal(want[0], got[0]) and (want[1] == got[1]).all() and want[2] == got[2]


def test_cli_errors_single_process(train_release, tmp_path, capsys):
    from training.train import main

    run = tmp_path / "run"
    base = ["--data", str(train_release), "--out", str(run), "--workers", "0", "--no-progress", "--batch-size", "4",
            "--batches-per-epoch", "2", "--max-steps", "2", "--hidden-width", "16"]
    assert main([*base, *tiny_args("early")]) == 0  # no torchrun: one process, no process group
    assert (run / "last.pt").is_file()
    assert main([*base, *tiny_args("late"), "--resume", "auto"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--workers", "0",
                 *tiny_args("early")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main([*base, *tiny_args("late"), "--resize", "64", "--out", str(tmp_path / "y")]) == 2
    assert "early fusion only" in capsys.readouterr().err


def test_gpu_code_paths_on_the_cpu(train_release, tmp_path):
    """Transforms after the transfer and bf16 autocast (the GPU defaults), here forced on the CPU."""
    from training.train import main

    run = tmp_path / "run"
    assert main(["--data", str(train_release), "--out", str(run), "--workers", "0", "--no-progress",
                 "--batch-size", "4", "--val-batch-size", "32", "--batches-per-epoch", "2", "--epochs", "1",
                 "--hidden-width", "16", "--transform-on", "device", "--amp", "bf16", *tiny_args("late")]) == 0
    ep = [r for r in read_log(run) if r["event"] == "epoch"]
    assert len(ep) == 1 and ep[0]["val_loss"] > 0 and ep[0]["n_val"] > 0


def test_plateau_schedule_halves_after_six_flat_epochs_and_stops_at_1e_6():
    from training.train import build_parser, make_scheduler

    args = build_parser().parse_args(["--data", "d", "--out", "o"])
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.NAdam([param], lr=3e-4)
    sched = make_scheduler(opt, args.plateau_factor, args.plateau_patience, args.min_lr)
    sched.step(1.0)  # the best epoch
    lrs = []
    for _ in range(6):  # six epochs flat
        sched.step(1.0)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:5] == [3e-4] * 5 and lrs[5] == pytest.approx(1.5e-4)  # halved after the sixth, not before
    for _ in range(200):
        sched.step(1.0)
        assert opt.param_groups[0]["lr"] >= 1e-6
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)
