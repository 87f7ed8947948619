"""Forced photo-z: a redshift PMF for any sky coordinate, from fresh cutouts, exactly as for a release sample.

    coordinate -> the three surveys' cutouts (``mantis_data.cutouts``: the build's HTTP clients with their
    cache, retries and per-host rate limits) -> the release's quality rules (``mantis_data.quality``: the
    1% NaN rule, NaN -> 0, GALEX coverage; every response's WCS centre checked when it is fetched)
    -> E(B-V) (``mantis_data.dust``) -> the model's preset without augmentation (``mantis_data.transforms``)
    -> model -> PMF over ``mantis_data.redshift.GRID``, its expectation, mode and central 68% / 95% intervals.

The same stamps, dust maps and preset as the build and the loaders, so the forced photo-z of a released
galaxy equals the model's output on its release sample. Cutouts are requested at the release's scales
(``mantis_data.bands``: Pan-STARRS 0.25"/px, GALEX 1.5"/px, unWISE 2.75"/px, the scale the model was
trained at; the original web app asked unWISE at 1.5"/px). Each coordinate's cutouts are cached under its
``coordinate_id`` in a cutout cache folder (the fetch layout and manifest of ``mantis_data.cutouts.fetch``),
so nothing is fetched twice and a failed request is retried on the next call.

Coordinates are ICRS degrees or sexagesimal text (RA in hours ``10:00:24.0`` / ``10h00m24s``, Dec in
degrees ``+02:12:00`` / ``2d12m``), parsed with astropy. ``ForcedPhotoZ`` is thread-safe: one instance
(one model in memory, one HTTP client, one cache) serves concurrent callers.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bands import SURVEYS
from .errors import InputDataError, MantisDataError
from .quality import check_survey, galex_coverage
from .redshift import GRID, credible_interval, point_estimate
from .schema import IMAGE_FIELDS

PS1_MIN_DEC = -30.0
"""Pan-STARRS 3pi covers the sky north of about this declination (deg); the release's cut."""
LEVELS = (0.68, 0.95)
"""Central credible-interval levels reported."""


class CoordinateError(InputDataError):
    """A coordinate that cannot be parsed or lies outside RA [0, 360), Dec [-90, 90]."""


# --------------------------------------------------------------------------------------------------
# Coordinates
# --------------------------------------------------------------------------------------------------


def _angle(value: Any, what: str, sexagesimal_unit) -> float:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        raise CoordinateError(f"{what} is empty; give degrees (150.1) or sexagesimal text (10:00:24)")
    try:
        return float(text)
    except ValueError:
        pass
    import astropy.units as u
    from astropy.coordinates import Angle
    from astropy.utils.exceptions import AstropyWarning

    unit = u.deg if any(c in text.lower() for c in "d°") else sexagesimal_unit
    try:
        with warnings.catch_warnings():  # 24h, 60m or 60s are out of range (astropy warns and wraps)
            warnings.simplefilter("error", AstropyWarning)
            return float(Angle(text, unit=unit).deg)
    except AstropyWarning as exc:
        raise CoordinateError(f"{what} {text!r} is out of range ({exc})") from None
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise CoordinateError(
            f"cannot read {what} {text!r} ({exc}); give degrees (150.1) or sexagesimal "
            f"({'10:00:24.0 or 10h00m24s' if what == 'RA' else '+02:12:00 or 2d12m00s'})"
        ) from None


def parse_coordinate(ra: Any, dec: Any) -> tuple[float, float]:
    """(ra, dec) in degrees from numbers or text: degrees, or sexagesimal (RA in hours, Dec in degrees).

    Raises CoordinateError for unparseable text or RA outside [0, 360), Dec outside [-90, 90] (no wrapping).
    """
    import astropy.units as u

    r = _angle(ra, "RA", u.hourangle)
    d = _angle(dec, "Dec", u.deg)
    if not (math.isfinite(r) and 0.0 <= r < 360.0):
        raise CoordinateError(f"RA {ra!r} = {r:g} deg is outside [0, 360)")
    if not (math.isfinite(d) and -90.0 <= d <= 90.0):
        raise CoordinateError(f"Dec {dec!r} = {d:g} deg is outside [-90, 90]")
    return r, d


def coordinate_id(ra: float, dec: float) -> str:
    """The cache name of a coordinate (degrees): 'pz-' + 16 hex digits of sha1 of the exact float64 values."""
    return "pz-" + hashlib.sha1(f"{float(ra)!r} {float(dec)!r}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


def reason_kind(reason: str | None) -> str:
    """What a reason means for a caller: 'ok', 'no_coverage', 'service' (a service failed) or 'rejected'."""
    if reason is None:
        return "ok"
    if "no_coverage" in reason:
        return "no_coverage"
    if "failed:" in reason:
        return "service"
    return "rejected"


@dataclass
class PhotoZResult:
    """One coordinate's forced photo-z; ``reason`` (the release's rejection reason) is set when there is none.

    Redshifts are dimensionless on ``GRID``; ``z_mean`` is the PMF's expectation (the point estimate),
    ``z_mode`` the grid value of its largest mass, ``intervals[level] = (lo, hi)`` central credible intervals.
    ``flags``: ``no_galex_coverage``, ``galex_coverage`` (fraction of GALEX pixels with data),
    ``ps1_nan_frac`` (per band g r i z y, before NaN -> 0), ``below_dec_-30`` and ``outside_ps1``.
    ``ebv``: (ebv_csfd, ebv_planck) mag as fed to the model (a map without data there gives 0).
    ``images``: the cleaned stamps per survey (linear flux) when asked for.
    ``calibrated``: with a CalPIT calibrator, the recalibrated PMF and its summary
    (``{"pmf", "z_mean", "z_mode", "intervals"}``, as above). ``explanation``: after ``ForcedPhotoZ.explain``,
    the band importance (``shapley``, ``mm_shap`` per band, ``survey_shapley``, ``survey_mm_shap``, ``v_all``,
    ``v_none``, ``seed``, ``seconds``; redshift units).
    """

    ra: float
    dec: float
    target_id: str
    reason: str | None = None
    pmf: np.ndarray | None = None
    z_mean: float | None = None
    z_mode: float | None = None
    intervals: dict[float, tuple[float, float]] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    ebv: tuple[float, float] | None = None
    images: dict[str, np.ndarray] | None = None
    calibrated: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether there is a prediction."""
        return self.reason is None

    @property
    def kind(self) -> str:
        """'ok', 'no_coverage', 'service' or 'rejected' (see ``reason_kind``)."""
        return reason_kind(self.reason)

    def to_dict(self, pmf: bool = True) -> dict[str, Any]:
        """JSON-ready dict: coordinates, reason, kind, flags and, with a prediction, the numbers and the PMF."""
        out: dict[str, Any] = {"ra": self.ra, "dec": self.dec, "target_id": self.target_id, "ok": self.ok,
                               "reason": self.reason, "kind": self.kind, "flags": _jsonable(self.flags)}
        if self.ok:
            out.update(z_mean=self.z_mean, z_mode=self.z_mode,
                       intervals={f"{lvl:g}": list(v) for lvl, v in self.intervals.items()},
                       ebv={"ebv_csfd": self.ebv[0], "ebv_planck": self.ebv[1]} if self.ebv else None)
            if pmf:
                out["pmf"] = [float(p) for p in self.pmf]
            if self.calibrated is not None:
                c = self.calibrated
                out["calibrated"] = {"z_mean": c["z_mean"], "z_mode": c["z_mode"],
                                     "intervals": {f"{lvl:g}": list(v) for lvl, v in c["intervals"].items()}}
                if pmf:
                    out["calibrated"]["pmf"] = [float(p) for p in c["pmf"]]
            if self.explanation is not None:
                out["explanation"] = {k: v for k, v in self.explanation.items()}
        return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = [None if not np.isfinite(x) else float(x) for x in v.tolist()]
        elif isinstance(v, np.bool_ | bool):
            v = bool(v)
        elif isinstance(v, np.floating | float):
            v = None if not math.isfinite(float(v)) else float(v)
        out[k] = v
    return out


def summarise(pmf: np.ndarray) -> dict[str, Any]:
    """z_mean (expectation), z_mode and the central intervals of one PMF (400,) over GRID."""
    p = np.asarray(pmf, dtype=np.float64)[None]
    out: dict[str, Any] = {"z_mean": float(point_estimate(p)[0]), "z_mode": float(GRID[int(np.argmax(p[0]))])}
    out["intervals"] = {}
    for level in LEVELS:
        lo, hi = credible_interval(p, level)
        out["intervals"][level] = (float(lo[0]), float(hi[0]))
    return out


# --------------------------------------------------------------------------------------------------
# The predictor
# --------------------------------------------------------------------------------------------------


def transform_of(data_config: dict[str, Any]):
    """The evaluation transform (no augmentation) of a checkpoint's input settings (fusion, bands, crop, grid)."""
    from .transforms import Transform, preset_for

    return Transform(preset_for(data_config), train=False)


def load_calibrator(calibrator):
    """None, a ``Calibrator``, or the one in a CalPIT folder (``Calibrator.load``; errors name the folder)."""
    if calibrator is None or hasattr(calibrator, "apply"):
        return calibrator
    from .calibrate import Calibrator

    folder = Path(calibrator)
    if not folder.is_dir():
        raise InputDataError(f"--calibrator {folder} is not a folder; make one with 'mantis-data calibrate fit' "
                             "(or give the folder of the released calpit_checkpoint.pt, calpit_mean.npy, calpit_std.npy)")
    try:
        return Calibrator.load(folder)
    except MantisDataError as exc:
        raise InputDataError(f"--calibrator {folder}: {exc}; make one with 'mantis-data calibrate fit'") from None
    except (OSError, KeyError, ValueError) as exc:
        raise InputDataError(f"--calibrator {folder} is not a CalPIT folder ({type(exc).__name__}: {exc}); "
                             "make one with 'mantis-data calibrate fit'") from None


def default_cache() -> Path:
    """The default cutout cache: $MANTIS_DATA_CACHE, else $XDG_CACHE_HOME/mantis-data/cutouts (~/.cache/...)."""
    env = os.environ.get("MANTIS_DATA_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mantis-data" / "cutouts"


class ForcedPhotoZ:
    """Forced photo-z with one model: ``predict(ra, dec)`` for arrays of coordinates, ``predict_one`` for one.

    checkpoint: the published ``best_early.pt`` or a training checkpoint (``mantis_data.models.load_released``);
    cache: cutout cache folder; fetch: service URLs, politeness, retries (``FetchConfig``); dust, dust_dir:
    the E(B-V) maps the model was trained with (``mantis_data.dust``; the published model: csfd-planck);
    device: 'cpu', 'cuda' or 'auto'; batch_size: coordinates per model call. calibrator: a CalPIT folder
    (``mantis-data calibrate fit``, or the released files; ``mantis_data.calibrate.Calibrator.load``) or a
    ``Calibrator``: every prediction then also gets ``calibrated`` (``Calibrator.apply`` on its PMF and the
    83 features of its stamps, ``sample_features``). ``timings`` accumulates seconds per stage: fetch, read
    (cache files + quality rules), dust, preprocess (transform), model, calibrate, explain.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        cache: str | os.PathLike | None = None,
        fetch=None,
        *,
        dust: str = "csfd-planck",
        dust_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        check_hash: bool | str = False,
        calibrator=None,
    ):
        import torch

        from .cutouts.fetch import FetchConfig
        from .dust import DustMaps
        from .released_model import load_released

        if batch_size < 1:
            raise InputDataError(f"batch size must be >= 1, not {batch_size}")
        self.calibrator = load_calibrator(calibrator)  # a bad folder fails before the model is loaded
        self.fetch_config = fetch or FetchConfig()
        self.cache = Path(cache) if cache is not None else default_cache()
        self.dust = DustMaps(dust, dust_dir)  # names any missing map file before the model is loaded
        self.model = load_released(checkpoint, check_hash=check_hash)
        self.data_config = dict(self.model.data_config)
        use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise MantisDataError("device cuda asked for but CUDA is not available")
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.model.to(self.device)
        self.transform = transform_of(self.data_config)
        self.batch_size = int(batch_size)
        self.client = self.fetch_config.make_client()
        self.timings: Counter[str] = Counter()
        self._fetch_lock = threading.Lock()  # one fetch at a time into the cache (its manifest and tmp folder)
        self._model_lock = threading.Lock()  # the transform keeps work buffers; one model call at a time
        self._timings_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP client's kept-alive connections."""
        self.client.close()

    # ---------------------------------------------------------------------------------------------
    def fetch(self, ids: list[str], ra: np.ndarray, dec: np.ndarray) -> dict:
        """Fetch the cutouts of coordinates (degrees) into the cache; returns fetch_cutouts' summary."""
        import pandas as pd

        from .cutouts.fetch import fetch_cutouts

        frame = pd.DataFrame({"target_id": ids, "ra": ra, "dec": dec}).drop_duplicates("target_id")
        t0 = time.perf_counter()
        with self._fetch_lock:
            try:
                summary = fetch_cutouts(frame, self.cache, self.fetch_config, progress=False, client=self.client)
            except BaseException:
                # fetch_cutouts stops the client it was given on any error; later calls need a fresh one
                self.client = self.fetch_config.make_client()
                raise
        self._time("fetch", t0)
        return summary

    def _time(self, stage: str, t0: float, t1: float | None = None) -> None:
        with self._timings_lock:
            self.timings[stage] += (time.perf_counter() if t1 is None else t1) - t0

    def _read(self, ids: list[str], ra: np.ndarray, dec: np.ndarray, keep_images: bool) -> list[PhotoZResult]:
        """Results with the quality rules applied; the accepted ones carry their cleaned stamps in ``images``."""
        from .cutouts.local import LocalFitsSource

        t0 = time.perf_counter()
        source = LocalFitsSource(self.cache)  # positions were checked when each file was fetched
        out = []
        for tid, r, d in zip(ids, ra, dec, strict=True):
            stamps = source.get(tid, float(r), float(d))
            res = PhotoZResult(ra=float(r), dec=float(d), target_id=tid)
            clean: dict[str, np.ndarray] = {}
            reasons = {}
            ps1_frac = np.full(len(SURVEYS["ps1"].bands), np.nan, np.float32)
            for s in IMAGE_FIELDS:
                cube, fractions, why = check_survey(s, getattr(stamps, s), stamps.failures.get(s))
                if s == "ps1":
                    ps1_frac = fractions
                if why is not None:
                    reasons[s] = why
                else:
                    clean[s] = cube
            res.reason = next((reasons[s] for s in IMAGE_FIELDS if s in reasons), None)
            cov = galex_coverage(clean["galex"]) if "galex" in clean else float("nan")
            res.flags = {
                "no_galex_coverage": bool(cov == 0.0),
                "galex_coverage": cov,
                "ps1_nan_frac": ps1_frac,
                "below_dec_-30": bool(d < PS1_MIN_DEC),
                "outside_ps1": bool(d < PS1_MIN_DEC or "no_coverage" in reasons.get("ps1", "")),
            }
            res.images = clean if (res.ok or keep_images) else None
            out.append(res)
        self._time("read", t0)
        return out

    def _infer(self, results: list[PhotoZResult]) -> None:
        """PMF and summaries of accepted results (in batches of ``batch_size``)."""
        import torch

        from .models import model_inputs

        if not results:
            return
        t0 = time.perf_counter()
        e = self.dust.ebv(np.array([r.ra for r in results]), np.array([r.dec for r in results]))
        ebv = np.stack([e["ebv_csfd"], e["ebv_planck"]], axis=1).astype(np.float32)
        ebv[~np.isfinite(ebv)] = 0.0  # as the loaders fill a missing value (ebv_fill=0)
        self._time("dust", t0)
        for start in range(0, len(results), self.batch_size):
            chunk = results[start : start + self.batch_size]
            t0 = time.perf_counter()
            with self._model_lock:
                batch = {s: torch.from_numpy(np.stack([r.images[s] for r in chunk])).to(self.device)
                         for s in self.transform.surveys}
                batch["ebv"] = torch.from_numpy(ebv[start : start + len(chunk)]).to(self.device)
                with torch.no_grad():
                    x = self.transform(batch)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    t1 = time.perf_counter()
                    logits = self.model(*model_inputs(x, self.model.config))
                    pmf = torch.softmax(logits.float(), dim=1).cpu().numpy()
            self._time("preprocess", t0, t1)
            self._time("model", t1)
            for r, p, eb in zip(chunk, pmf, ebv[start : start + len(chunk)], strict=True):
                r.pmf = p.astype(np.float32)
                s = summarise(r.pmf)
                r.z_mean, r.z_mode, r.intervals = s["z_mean"], s["z_mode"], s["intervals"]
                r.ebv = (float(eb[0]), float(eb[1]))
        if self.calibrator is not None:
            self._calibrate(results)

    def _calibrate(self, results: list[PhotoZResult]) -> None:
        """``calibrated`` of accepted results: CalPIT on their PMFs with their stamps' 83 features."""
        from .calibrate import sample_features

        t0 = time.perf_counter()
        feats = np.stack([sample_features(r.images["ps1"], r.images["galex"], r.images["unwise"], r.ebv)
                          for r in results])
        with self._model_lock:
            new = self.calibrator.apply(np.stack([r.pmf for r in results]), feats)
        for r, p in zip(results, np.atleast_2d(new), strict=True):
            p = np.asarray(p, dtype=np.float32)
            r.calibrated = {"pmf": p, **summarise(p)}
        self._time("calibrate", t0)

    def explain(self, result: PhotoZResult, *, seed: int = 0, batch_size: int = 128) -> dict[str, Any]:
        """Band importance of one prediction (needs its stamps: ``keep_images=True``); sets ``result.explanation``.

        ``mantis_data.explain.explain_galaxy`` with this predictor's model and transform on the result's
        cleaned stamps and E(B-V), baseline noise seeded by ``galaxy_seed(target_id, seed)``: exact Shapley
        values over the bands (512 coalitions) and the surveys (8), and MM-SHAP. Slow for ConvNeXt-Large
        on a CPU (minutes); seconds for small models. Raises InputDataError for a result without a prediction.
        """
        from .explain import ExplainModel, explain_galaxy, galaxy_seed

        if not result.ok or not result.images:
            raise InputDataError(f"no band importance at RA {result.ra:g}, Dec {result.dec:g}: "
                                 + (result.reason or "its stamps were not kept (predict with keep_images=True)"))
        t0 = time.perf_counter()
        s = galaxy_seed(result.target_id, seed)
        em = ExplainModel(self.model, self.model.config, self.transform)
        with self._model_lock:
            out = explain_galaxy(em, result.images["ps1"], result.images["galex"], result.images["unwise"],
                                 result.ebv, seed=s, batch_size=batch_size)
        result.explanation = {
            "bands": list(out["bands"]), "shapley": out["shapley"], "mm_shap": out["mm_shap"],
            "survey_shapley": out["survey_shapley"], "survey_mm_shap": out["survey_mm_shap"],
            "v_all": out["v_all"], "v_none": out["v_none"], "seed": s, "seconds": out["seconds"],
        }
        self._time("explain", t0)
        return result.explanation

    def predict(self, ra, dec, *, keep_images: bool = False, fetch: bool = True) -> list[PhotoZResult]:
        """Forced photo-z of coordinates (arrays of degrees, validated): one result per coordinate, in order.

        ``fetch=False`` reads the cache only (a coordinate not fetched yet gets reason '<survey>_missing').
        """
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
        if ra.shape != dec.shape:
            raise CoordinateError(f"{ra.size} RA values but {dec.size} Dec values")
        for r, d in zip(ra, dec, strict=True):
            parse_coordinate(float(r), float(d))
        ids = [coordinate_id(r, d) for r, d in zip(ra, dec, strict=True)]
        if fetch and len(ids):
            self.fetch(ids, ra, dec)
        results = self._read(ids, ra, dec, keep_images)
        self._infer([r for r in results if r.ok])
        if not keep_images:
            for r in results:
                r.images = None
        return results

    def predict_one(self, ra: Any, dec: Any, keep_images: bool = True) -> PhotoZResult:
        """Forced photo-z of one coordinate (degrees or sexagesimal text), keeping its stamps for plotting."""
        r, d = parse_coordinate(ra, dec)
        return self.predict([r], [d], keep_images=keep_images)[0]
