"""Benchmark: exact 512-coalition Shapley values per galaxy, and where the time goes (sep baselines vs model).

    python benchmarks/explain.py [--release DIR] [--backbone convnext_atto] [--galaxies 4] [--batch-size 128]
                                 [--device cpu|cuda] [--naive-coalitions 64]

For each galaxy (from a release's test split, or mock cutouts without --release) it times
``mantis_data.explain.explain_galaxy``: the nine ``sep`` baselines, and the 512 + 8 coalitions through an
early-fusion model at the paper's 120 x 120 input (a randomly initialised ``--backbone``, e.g.
convnext_atto on a CPU, convnext_large on a GPU). Side by side, the naive path: compose each coalition's
stored cutouts, run the paper's transform on them, then the model (timed on ``--naive-coalitions``
coalitions and scaled to 520), to show what composing after the per-band transform saves.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def galaxies(release: str | None, n: int) -> list[tuple[dict, np.ndarray]]:
    """(cubes, ebv) of ``n`` galaxies: a release's test split, or mock cutouts with a central galaxy."""
    from mantis_data.bands import SURVEY_ORDER, SURVEYS

    if release:
        from mantis_data.loading import make_loader

        loader = make_loader(release, "test", order="sequential", batch_size=n, num_workers=0,
                             images=SURVEY_ORDER, rank=0, world_size=1)
        b = next(iter(loader))
        return [({s: b[s][i].numpy() for s in SURVEY_ORDER}, b["ebv"][i].numpy()) for i in range(min(n, len(b["z"])))]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        cubes = {}
        for s in SURVEY_ORDER:
            c, size = SURVEYS[s].shape[0], SURVEYS[s].cutout_size
            yy, xx = np.mgrid[:size, :size]
            r2 = (xx - (size - 1) / 2) ** 2 + (yy - (size - 1) / 2) ** 2
            sig = size / 40 if s == "ps1" else 1.2
            cubes[s] = (rng.normal(1.0, 1.0, (c, size, size)) + 50 * np.exp(-r2 / (2 * sig**2))).astype(np.float32)
        out.append((cubes, np.array([0.03, 0.03], np.float32)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", default=None)
    p.add_argument("--backbone", default="convnext_atto")
    p.add_argument("--galaxies", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--naive-coalitions", type=int, default=64)
    args = p.parse_args(argv)

    import torch

    from mantis_data.bands import BANDS, SURVEY_ORDER, SURVEYS
    from mantis_data.explain import _inputs, _value_fn, explain_galaxy, wrap_model
    from mantis_data.explain_baseline import baseline_images
    from mantis_data.explain_shapley import coalition_matrix
    from mantis_data.models import ModelConfig, build_model
    from mantis_data.transforms import PAPER_EARLY, Transform

    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="early", backbone=args.backbone)).to(args.device)
    em = wrap_model(model, Transform(PAPER_EARLY, train=False))
    amp = args.device == "cuda"
    gal = galaxies(args.release, args.galaxies + 1)
    cubes, ebv = gal[0]
    explain_galaxy(em, cubes["ps1"], cubes["galex"], cubes["unwise"], ebv, batch_size=args.batch_size, amp=amp)  # warm-up
    t_base = t_model = 0.0
    t0 = time.perf_counter()
    for i, (cubes, ebv) in enumerate(gal[1:]):
        r = explain_galaxy(em, cubes["ps1"], cubes["galex"], cubes["unwise"], ebv, seed=i, batch_size=args.batch_size, amp=amp)
        t_base += r["seconds"]["baseline"]
        t_model += r["seconds"]["model"]
        if args.device == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    n = len(gal) - 1
    print(f"early fusion, {args.backbone} at 120 x 120, {args.device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size} coalitions, {n} galaxies")
    print(f"  ours: {n / wall:8.3f} galaxies/s  ({wall / n:.2f} s/galaxy: sep baselines {t_base / n:.3f} s "
          f"= {100 * t_base / (t_base + t_model):.1f}%, 520 coalitions through the model {t_model / n:.2f} s "
          f"= {100 * t_model / (t_base + t_model):.1f}%)")

    # the naive path: transform every composed cutout, then the model
    cubes, ebv = gal[1]
    base = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=0)
    coal = coalition_matrix(9)[: args.naive_coalitions]
    names = [b.name for b in BANDS]
    value = _value_fn(em, amp)
    ebv_t = torch.as_tensor(ebv, dtype=torch.float32, device=em.device)
    t0 = time.perf_counter()
    for start in range(0, len(coal), args.batch_size):
        composed = []
        for S in coal[start : start + args.batch_size]:
            composed.append({s: np.where(np.array([S[names.index(b)] for b in SURVEYS[s].bands])[:, None, None],
                                         cubes[s], base[s]) for s in SURVEY_ORDER})
        value({**_inputs(em, composed), "ebv": ebv_t[None].expand(len(composed), 2)})
    if args.device == "cuda":
        torch.cuda.synchronize()
    naive = (time.perf_counter() - t0) * 520 / len(coal) + t_base / n
    print(f"  naive (compose cutouts, transform each, model): {1 / naive:8.3f} galaxies/s ({naive:.2f} s/galaxy, "
          f"timed on {len(coal)} coalitions)")
    print(f"  ratio ours / naive: {naive / (wall / n):.2f}x")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
