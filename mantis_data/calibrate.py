"""CalPIT recalibration of redshift PMFs (Dey et al. 2022) through the ``calpit`` package, as Engel et al. App. B.

Features (83, the released statistics files' layout, in this order):

* 72 colours: every ordered pair ``L_i - L_j`` (i != j, row-major over the nine bands in ``BANDS`` order);
* ``ebv_csfd``, ``ebv_planck`` (mag);
* 9 asinh magnitudes ``L_k = asinh(alpha * Q * f_k) / Q`` (alpha = 0.1, Q = 6, the released code's
  "luptitude") of the target's Kron flux ``f_k`` from ``sep`` (``explain_baseline.kron_fluxes``: Kron
  ellipse, or a 4-pixel central circle when no source lies within 5 px), in each band's stored unit.

Standardised as the released code: ``x = (features - mean) / std / 3``, with ``mean``/``std`` of the
calibration set, saved beside the network (``calpit_mean.npy``, ``calpit_std.npy``). The CDF coordinate
``alpha`` is the network's first input (84 inputs in all). The network is ``calpit.nn.MonotonicNN`` with a
sigmoid output (``output="probability"``), monotone in alpha; it is trained by ``calpit.CalPIT.fit`` on the
**validation** split's PMFs (as the paper) and recalibrates any PMFs with ``CalPIT.transform`` on
``calpit.GridCDE`` densities. Before both, every PMF is mixed with a uniform PMF (``floor``, default 1%)
so that mass can move into bins the model gave zero (the released code added 0.01 to every one of the 400
bins, i.e. a mix of 80%; pass ``floor=0.8`` to reproduce it).

Per-galaxy API (for ``photoz`` and the web app)::

    cal = Calibrator.load("calpit_model/")                 # or Calibrator.from_released(...)
    new_pmf = cal.apply(pmf, sample_features(ps1, galex, unwise, ebv))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path, atomic_write_text
from .bands import BANDS
from .errors import MantisDataError
from .redshift import GRID, N_BINS

__all__ = [
    "FEATURE_NAMES",
    "Calibrator",
    "feature_vector",
    "luptitude",
    "release_features",
    "sample_features",
]

LUPTITUDE_ALPHA = 0.1
LUPTITUDE_Q = 6.0
BAND_NAMES = tuple(b.name for b in BANDS)
FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"{a}-{b}" for a in BAND_NAMES for b in BAND_NAMES if a != b)
    + ("ebv_csfd", "ebv_planck")
    + tuple(f"L_{b}" for b in BAND_NAMES)
)
"""The 83 feature names in order."""
MODEL_FILE, MEAN_FILE, STD_FILE, META_FILE = "calpit_checkpoint.pt", "calpit_mean.npy", "calpit_std.npy", "calpit.json"
DEFAULT_HIDDEN = (128, 128)
"""Hidden widths of the default network (the released MonotonicNN: four layers of 1024)."""


def luptitude(flux) -> np.ndarray:
    """The released code's asinh magnitude of a flux (stored unit): ``asinh(0.1 * 6 * flux) / 6``."""
    return np.arcsinh(LUPTITUDE_ALPHA * LUPTITUDE_Q * np.asarray(flux, dtype=np.float64)) / LUPTITUDE_Q


def feature_vector(flux, ebv) -> np.ndarray:
    """(n, 83) features from Kron fluxes (n, 9) in ``BANDS`` order and E(B-V) (n, 2) = (csfd, planck)."""
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ebv = np.atleast_2d(np.asarray(ebv, dtype=np.float64))
    if flux.shape[1] != len(BANDS) or ebv.shape != (len(flux), 2):
        raise MantisDataError(f"need fluxes (n, 9) and ebv (n, 2); got {flux.shape} and {ebv.shape}")
    lup = luptitude(flux)
    diff = lup[:, :, None] - lup[:, None, :]
    off = ~np.eye(len(BANDS), dtype=bool)
    return np.concatenate([diff[:, off], ebv, lup], axis=1)


def sample_features(ps1, galex, unwise, ebv) -> np.ndarray:
    """(83,) features of one sample from its stored cubes and (ebv_csfd, ebv_planck)."""
    from .explain_baseline import kron_fluxes

    flux, _ = kron_fluxes(np.asarray(ps1), np.asarray(galex), np.asarray(unwise))
    return feature_vector(flux[None], np.asarray(ebv, dtype=np.float64).reshape(1, 2))[0]


def release_features(release, split: str, target_ids, progress: bool = False, format: str = "webdataset") -> np.ndarray:
    """(n, 83) features of the galaxies ``target_ids`` (in that order) of ``split`` of a release."""
    from .bands import SURVEY_ORDER
    from .loading import make_loader

    want = {t: i for i, t in enumerate(np.asarray(target_ids).astype(str))}
    out = np.full((len(want), len(FEATURE_NAMES)), np.nan)
    found = np.zeros(len(want), dtype=bool)
    loader = make_loader(release, split, format=format, order="sequential", batch_size=32, num_workers=0,
                         images=SURVEY_ORDER, rank=0, world_size=1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(want), desc=f"features {split}", unit="galaxy")
    for batch in loader:
        for i, tid in enumerate(batch["target_id"]):
            k = want.get(tid)
            if k is None or found[k] or not bool(batch["valid"][i]):
                continue
            out[k] = sample_features(batch["ps1"][i].numpy(), batch["galex"][i].numpy(), batch["unwise"][i].numpy(),
                                     batch["ebv"][i].numpy())
            found[k] = True
            if bar is not None:
                bar.update(1)
        if found.all():
            break
    if bar is not None:
        bar.close()
    if not found.all():
        missing = [t for t, k in want.items() if not found[k]]
        raise MantisDataError(
            f"{len(missing)} galaxies of the predictions are not in split {split!r} of {release} "
            f"(e.g. {missing[:3]}); pass the split the predictions were made on with --split"
        )
    return out


def _pmf_to_density(pmf: np.ndarray, floor: float) -> np.ndarray:
    """PMF rows (n, 400) mixed with ``floor`` of a uniform PMF -> densities on GRID (trapezoid area 1)."""
    p = np.asarray(pmf, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    p = (1.0 - floor) * p + floor / N_BINS
    area = np.trapezoid(p, GRID, axis=1)[:, None]
    return p / area


def _density_to_pmf(density: np.ndarray) -> np.ndarray:
    """Densities on GRID -> PMF rows (negative values clipped to 0, each row summing to 1), float32."""
    d = np.clip(np.nan_to_num(np.asarray(density, dtype=np.float64)), 0.0, None)
    s = d.sum(axis=1, keepdims=True)
    d = np.where(s > 0, d / np.where(s > 0, s, 1.0), 1.0 / N_BINS)
    return d.astype(np.float32)


NETWORKS = ("ispline", "monotonic")
"""``ispline``: calpit's default ``IsplineNN`` (monotone I-spline output; one MLP pass per galaxy for all
alpha: fast on a CPU). ``monotonic``: ``MonotonicNN`` with a sigmoid output, the paper's and the released
network (an integral of 50 steps per alpha: train it on a GPU)."""


def calpit_network(n_features: int = len(FEATURE_NAMES), hidden=DEFAULT_HIDDEN, network: str = "ispline",
                   nb_steps: int = 50, num_basis: int = 10, dropout: float = 0.0):
    """A calpit network with ``n_features`` features (+ alpha): ``IsplineNN`` or ``MonotonicNN`` (``NETWORKS``)."""
    try:
        from calpit.nn import IsplineNN, MonotonicNN
    except ImportError as exc:
        raise MantisDataError("CalPIT needs the 'calpit' package: pip install 'mantis-data[explain]'") from exc
    hidden = [int(h) for h in hidden]
    if network == "ispline":
        return IsplineNN(int(n_features), hidden, dropout_p=float(dropout), num_basis=int(num_basis))
    if network == "monotonic":
        return MonotonicNN(int(n_features), hidden, nb_steps=int(nb_steps), output="probability")
    raise MantisDataError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")


def _hidden_of(sd: dict) -> tuple[int, ...]:
    """Hidden widths of a MonotonicNN state dict (its offset/scale network ``net.{2k}.weight``)."""
    ws = sorted((int(k.split(".")[-2]), v) for k, v in sd.items() if k.startswith("network.net.") and k.endswith(".weight"))
    return tuple(int(v.shape[0]) for _, v in ws[:-1])


def _as_wrapper_keys(sd: dict) -> dict:
    """A MonotonicNN state dict with calpit 0.2's ``network.`` prefix (the released file has bare UMNN keys)."""
    if all(k.startswith("network.") for k in sd):
        return dict(sd)
    return {f"network.{k}": v for k, v in sd.items()}


@dataclass
class Calibrator:
    """A fitted CalPIT recalibration: the network, the feature standardisation and the PMF floor."""

    network: Any
    mean: np.ndarray
    std: np.ndarray
    floor: float = 0.01
    meta: dict = field(default_factory=dict)

    def standardise(self, features) -> np.ndarray:
        """(n, F) raw features -> the network's inputs ``(f - mean) / std / 3``."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if f.shape[1] != len(self.mean):
            raise MantisDataError(f"expected {len(self.mean)} features per galaxy, got {f.shape[1]}")
        return (f - self.mean) / self.std / 3.0

    def _estimator(self):
        import calpit

        batch = 256 if self.meta.get("network", "monotonic") == "ispline" else 16
        return calpit.CalPIT.from_fitted(self.network, predict_batch_size=batch)

    def apply(self, pmf, features) -> np.ndarray:
        """Recalibrated PMFs (n, 400) float32 of ``pmf`` (n, 400 or 400,) with raw ``features`` (n, F or F,)."""
        import calpit

        pmf = np.asarray(pmf, dtype=np.float64)
        single = pmf.ndim == 1
        pmf = np.atleast_2d(pmf)
        x = self.standardise(features)
        if len(x) != len(pmf):
            raise MantisDataError(f"{len(pmf)} PMFs but {len(x)} feature rows")
        cde = calpit.GridCDE(_pmf_to_density(pmf, self.floor), GRID)
        new = _density_to_pmf(self._estimator().transform(x, cde).pdf)
        return new[0] if single else new

    @classmethod
    def fit(
        cls,
        features,
        z,
        pmf,
        *,
        hidden=DEFAULT_HIDDEN,
        network: str = "ispline",
        num_basis: int = 10,
        nb_steps: int = 50,
        floor: float = 0.01,
        epochs: int = 100,
        batch_size: int = 2048,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        oversample: float = 1.0,
        val_fraction: float = 0.1,
        n_alpha_val: int = 201,
        patience: int = 20,
        seed: int = 0,
        verbose: bool = False,
        device: str = "cpu",
    ) -> Calibrator:
        """Fit CalPIT on a calibration set: raw ``features`` (n, F), true ``z`` (n,), ``pmf`` (n, 400)."""
        import calpit

        f = np.asarray(features, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if not (len(f) == len(z) == len(pmf)) or len(z) < 10:
            raise MantisDataError(f"need at least 10 galaxies with features, z and PMFs; got {len(f)}, {len(z)}, {len(pmf)}")
        if not np.all(np.isfinite(f)):
            raise MantisDataError("features contain NaN or infinite values")
        mean, std = f.mean(axis=0), f.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        cal = cls(calpit_network(f.shape[1], hidden, network, nb_steps, num_basis), mean, std, float(floor),
                  {"network": network, "hidden": [int(h) for h in hidden], "nb_steps": int(nb_steps),
                   "num_basis": int(num_basis),
                   "n_features": int(f.shape[1]),
                   "epochs": int(epochs), "seed": int(seed), "n_calibration": int(len(z))})
        est = calpit.CalPIT(
            cal.network, max_epochs=int(epochs), batch_size=int(batch_size), lr=lr, weight_decay=weight_decay,
            oversample=oversample, val_fraction=val_fraction, n_alpha_val=int(n_alpha_val), patience=patience, random_state=int(seed),
            verbose=verbose, predict_batch_size=256 if network == "ispline" else 16,
            trainer_kwargs={"accelerator": "gpu" if device == "cuda" else "cpu"},
        )
        cde = calpit.GridCDE(_pmf_to_density(np.asarray(pmf), floor), GRID)
        est.fit(cal.standardise(f), z, cde)
        cal.network = est.model_.cpu()
        cal.network.eval()
        cal.meta["train_loss"] = [float(v) for v in getattr(est, "train_loss_", [])]
        cal.meta["val_bce"] = [float(v) for v in getattr(est, "val_bce_", [])]
        return cal

    def save(self, folder) -> Path:
        """Write the network (``calpit_checkpoint.pt``), ``calpit_mean.npy``, ``calpit_std.npy``, ``calpit.json``."""
        import torch

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "floor": self.floor, "features": list(FEATURE_NAMES) if len(self.mean) == 83 else None,
                "format": "mantis_data.calibrate/1"}
        def npy(arr):
            def write(path: Path) -> None:
                with open(path, "wb") as fh:
                    np.save(fh, arr)
            return write

        for name, write in (
            (MODEL_FILE, lambda p: torch.save(self.network.state_dict(), p)),
            (MEAN_FILE, npy(self.mean)),
            (STD_FILE, npy(self.std)),
            (META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n")),
        ):
            with atomic_path(folder / name) as tmp:
                write(tmp)
        return folder

    @classmethod
    def load(cls, folder) -> Calibrator:
        """Load a folder written by ``save`` (or the released layout: the .pt and the two .npy files)."""
        import torch

        folder = Path(folder)
        if not folder.is_dir():
            raise MantisDataError(f"calibration model {folder} is not a folder; create it with 'calibrate fit'")
        meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).is_file() else {}
        if meta.get("network", "monotonic") == "monotonic":
            return cls.from_released(folder / MODEL_FILE, folder / MEAN_FILE, folder / STD_FILE,
                                     floor=float(meta.get("floor", 0.01)), nb_steps=int(meta.get("nb_steps", 50)), meta=meta)
        mean, std = (np.load(folder / f) for f in (MEAN_FILE, STD_FILE))
        net = calpit_network(len(mean), meta["hidden"], "ispline", num_basis=int(meta.get("num_basis", 10)))
        try:
            net.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise MantisDataError(f"{folder / MODEL_FILE} does not fit the IsplineNN of {META_FILE} ({exc})") from exc
        net.eval()
        return cls(net, mean, std, float(meta.get("floor", 0.01)), meta)

    @classmethod
    def from_released(cls, state_dict, mean, std, *, floor: float = 0.8, nb_steps: int = 50, meta=None) -> Calibrator:
        """A Calibrator from a MonotonicNN state dict (calpit 0.2 keys or the released bare UMNN keys) and the
        mean/std feature statistics (.npy files or arrays). The released app mixed 80% uniform (``floor=0.8``)."""
        import torch

        arrays = []
        for a in (mean, std):
            if isinstance(a, (str, os.PathLike)):
                if not Path(a).is_file():
                    raise MantisDataError(f"feature statistics {a} not found")
                a = np.load(a)
            arrays.append(np.asarray(a, dtype=np.float64).reshape(-1))
        if isinstance(state_dict, (str, os.PathLike)):
            if not Path(state_dict).is_file():
                raise MantisDataError(f"CalPIT network {state_dict} not found")
            try:
                state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise MantisDataError(f"{state_dict} is not a readable torch state dict ({exc})") from exc
        sd = _as_wrapper_keys(state_dict)
        n_in = int(sd["network.net.0.weight"].shape[1]) if "network.net.0.weight" in sd else -1
        if n_in != len(arrays[0]):
            raise MantisDataError(f"the network takes {n_in} features but the statistics have {len(arrays[0])}")
        net = calpit_network(n_in, _hidden_of(sd), "monotonic", nb_steps)
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise MantisDataError(f"the CalPIT state dict does not fit a MonotonicNN ({exc})") from exc
        net.eval()
        std = np.where(arrays[1] > 0, arrays[1], 1.0)
        return cls(net, arrays[0], std, float(floor), dict(meta or {}, network="monotonic", nb_steps=nb_steps,
                                                                hidden=list(_hidden_of(sd))))


# --------------------------------------------------------------------------------------------------
# CLI: mantis-data calibrate fit | apply
# --------------------------------------------------------------------------------------------------


def _features_for(preds, release, split: str, progress: bool) -> np.ndarray:
    return release_features(release, split, preds.target_id, progress=progress)


def before_after_table(z, before, after, bootstrap: int = 200, seed: int = 0) -> str:
    """Table 6 of the paper: NMAD, bias, outlier rate, CDE loss and PIT KS before and after recalibration
    (markdown, with bootstrap uncertainties)."""
    from .metrics import format_uncertainty, metrics_table

    rows = [metrics_table(z, p, B=bootstrap, seed=seed)[0] for p in (before, after)]
    lines = ["| metric | before calibration | after calibration |", "| --- | ---: | ---: |"]
    for name, label, scale in (("nmad", "NMAD (x 10^-2)", 0.01), ("bias", "bias (x 10^-2)", 0.01),
                               ("outlier_fraction", "η (%)", 1.0), ("cde_loss", "CDE loss", 1.0),
                               ("pit_ks", "PIT KS distance", 1.0)):
        cells = [format_uncertainty(getattr(r, name).value, getattr(r, name).error, scale) for r in rows]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def run_fit(args) -> int:
    """``mantis-data calibrate fit``: features of the predictions' galaxies, CalPIT fit, model folder."""
    from .evaluate import read_predictions

    preds = read_predictions(args.predictions)
    feats = _features_for(preds, args.release, args.split, not args.no_progress)
    hidden = tuple(int(h) for h in str(args.hidden).split(",") if h)
    cal = Calibrator.fit(feats, preds.z, preds.pmf, hidden=hidden, network=args.network, num_basis=args.num_basis,
                         nb_steps=args.nb_steps, floor=args.floor,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         oversample=args.oversample, seed=args.seed, verbose=not args.no_progress, device=args.device)
    cal.meta.update({"predictions": str(Path(args.predictions).resolve()), "split": args.split})
    cal.save(args.out)
    print(f"CalPIT fitted on {preds.n} galaxies of {args.split} ({len(cal.meta.get('train_loss', []))} epochs) -> {args.out}")
    return 0


def run_apply(args) -> int:
    """``mantis-data calibrate apply``: recalibrated PMFs as a new predictions file."""
    from .evaluate import read_predictions, write_predictions

    cal = Calibrator.load(args.model)
    preds = read_predictions(args.predictions)
    feats = _features_for(preds, args.release, args.split, not args.no_progress)
    new = cal.apply(preds.pmf, feats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    npy = out.with_name(out.stem + "_pmf.npy")
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, new.astype(np.float32))
    write_predictions(out, preds.target_id, preds.z, npy, survey=preds.survey)
    if args.bootstrap > 0:
        table = before_after_table(preds.z, preds.pmf, new, bootstrap=args.bootstrap)
        md = out.with_name(out.stem + "_before_after.md")
        atomic_write_text(f"# CalPIT on {preds.n} galaxies of {args.split}\n\n{table}", md)
        print(table)
    print(f"recalibrated {preds.n} PMFs -> {out} (PMFs in {npy.name}); score it with: mantis-data evaluate {out} --out REPORT")
    return 0


def register(subparsers) -> None:
    """Add ``calibrate fit`` and ``calibrate apply`` to ``mantis-data``."""
    from ._cli import nonnegative_int, positive_float, positive_int

    p = subparsers.add_parser("calibrate", help="CalPIT recalibration of a model's PMFs (fit on validation, apply to any)")
    sub = p.add_subparsers(dest="calibrate_command", required=True)
    fit = sub.add_parser("fit", help="fit CalPIT on a predictions file of the validation split")
    fit.add_argument("--predictions", required=True, type=Path, help="predictions file (docs/predictions.md)")
    fit.add_argument("--release", required=True, type=Path, help="release folder (the cutouts give the features)")
    fit.add_argument("--split", default="validation", choices=["train", "validation", "test"], help="split the calibrator is fitted on")
    fit.add_argument("--out", required=True, type=Path, help="model folder to write")
    fit.add_argument("--hidden", default=",".join(map(str, DEFAULT_HIDDEN)), help="hidden widths (released: 1024,1024,1024,1024)")
    fit.add_argument("--network", default="ispline", choices=NETWORKS, help="ispline (fast) or monotonic (the paper's)")
    fit.add_argument("--num-basis", type=int, default=10, help="I-spline basis functions of the ispline network")
    fit.add_argument("--nb-steps", type=int, default=50, help="integration steps of the monotonic network")
    fit.add_argument("--floor", type=float, default=0.01, help="fraction of a uniform PMF mixed into every PMF")
    fit.add_argument("--epochs", type=positive_int, default=100, help="training epochs of the calibrator")
    fit.add_argument("--batch-size", type=positive_int, default=2048, help="galaxies per optimiser step")
    fit.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    fit.add_argument("--weight-decay", type=float, default=1e-5, help="Adam weight decay")
    fit.add_argument("--oversample", type=float, default=1.0, help="(alpha, x) rows per galaxy per epoch")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the initialisation and batches")
    fit.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the calibrator trains")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.set_defaults(func=run_fit)
    app = sub.add_parser("apply", help="recalibrate a predictions file's PMFs into a new predictions file")
    app.add_argument("--model", required=True, type=Path, help="model folder from 'calibrate fit'")
    app.add_argument("--predictions", required=True, type=Path, help="predictions file to recalibrate (docs/predictions.md)")
    app.add_argument("--release", required=True, type=Path, help="release folder (the cutouts give the features)")
    app.add_argument("--split", default="test", choices=["train", "validation", "test"], help="split of the predictions' galaxies")
    app.add_argument("--out", required=True, type=Path, help="predictions file to write (.parquet)")
    app.add_argument("--bootstrap", type=nonnegative_int, default=200, help="resamples of the before/after table (0: no table)")
    app.add_argument("--no-progress", action="store_true", help="no progress bar")
    app.set_defaults(func=run_apply)
