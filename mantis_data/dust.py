"""Galactic reddening E(B-V) at (ra, dec) through ``dustmaps``: the ``ebv_csfd`` and ``ebv_planck`` columns.

A *dust mode* chooses where the two columns come from:

``"csfd-planck"`` (default, the released model's inputs)
    ``ebv_csfd``: Chiang (2023) corrected SFD, ``dustmaps.csfd.CSFDQuery`` (files ``csfd/csfd_ebv.fits``,
    ``csfd/mask.fits``). ``ebv_planck``: Planck 2013 thermal-dust model
    ``planck/HFI_CompMap_ThermalDustModel_2048_R1.20.fits``, its ``EBV`` column, through
    ``dustmaps.planck.PlanckQuery`` (component ``"extragalactic"``): the map the paper's released model
    was trained with.
``"csfd-gnilc"``
    As above, but ``ebv_planck`` from the Planck 2016 GNILC map
    ``planck/COM_CompMap_Dust-GNILC-Model-Opacity_2048_R2.01.fits`` (``TAU353`` x 1.49e4) through
    ``dustmaps.planck.PlanckGNILCQuery``: the map the paper's text cites.
``"bh"``
    Demo stand-in: **both** columns from the Burstein & Heiles (1982) map that ships inside dustmaps
    (``dustmaps.bh.BHQuery``); needs no download. NaN where BH has no data: |b| < 10 deg, much of the
    south Galactic cap (b < -65 deg) and a few small patches (the ring b ~ +82 deg among them); values
    run from about -0.04 mag (BH's zero point) up.
``"none"``
    Both columns NaN; nothing is read.

Map files are read from the dustmaps data directory (``dustmaps.std_paths.data_dir()``, set in dustmaps'
config) or from ``data_dir`` when given; explicit file paths are passed to the dustmaps classes, so
dustmaps' config is never written. Call :func:`check_dust_maps` before any work: it names every missing
file and the dustmaps command that fetches it. This module never downloads anything.

``dustmaps`` and ``astropy`` come with the ``build`` extra and are imported only when needed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import InputDataError, MantisDataError

DUST_MODES: tuple[str, ...] = ("csfd-planck", "csfd-gnilc", "bh", "none")
"""Valid dust modes, see the module docstring."""

DEFAULT_DUST_MODE = "csfd-planck"
"""The released model's maps: CSFD and Planck 2013 R1.20."""

DUST_COLUMNS: tuple[str, ...] = ("ebv_csfd", "ebv_planck")
"""The two E(B-V) columns every mode fills (mag)."""

GNILC_TAU_TO_EBV = 1.49e4
"""E(B-V) per unit tau_353 that ``PlanckGNILCQuery`` applies (Planck Collaboration 2014), mag."""


@dataclass(frozen=True)
class _MapFile:
    """One dust-map file: where it lies under the data directory and how to fetch it."""

    relpath: str
    fetch_code: str


_CSFD_FILES = (
    _MapFile("csfd/csfd_ebv.fits", "import dustmaps.csfd; dustmaps.csfd.fetch()"),
    _MapFile("csfd/mask.fits", "import dustmaps.csfd; dustmaps.csfd.fetch()"),
)
_PLANCK_FILE = _MapFile(
    "planck/HFI_CompMap_ThermalDustModel_2048_R1.20.fits", "import dustmaps.planck; dustmaps.planck.fetch()"
)
_GNILC_FILE = _MapFile(
    "planck/COM_CompMap_Dust-GNILC-Model-Opacity_2048_R2.01.fits",
    "import dustmaps.planck; dustmaps.planck.fetch(which='GNILC')",
)
_MODE_FILES: dict[str, tuple[_MapFile, ...]] = {
    "csfd-planck": (*_CSFD_FILES, _PLANCK_FILE),
    "csfd-gnilc": (*_CSFD_FILES, _GNILC_FILE),
    "bh": (),
    "none": (),
}

_CSFD_INFO = {
    "map": "Corrected SFD (Chiang 2023)",
    "dustmaps_class": "dustmaps.csfd.CSFDQuery",
    "files": [f.relpath for f in _CSFD_FILES],
    "unit": "mag, E(B-V) on the SFD scale",
}
_PLANCK_INFO = {
    "map": "Planck 2013 thermal dust model R1.20 (the released model's map)",
    "dustmaps_class": "dustmaps.planck.PlanckQuery",
    "component": "extragalactic (EBV column)",
    "files": [_PLANCK_FILE.relpath],
    "unit": "mag, E(B-V)",
}
_GNILC_INFO = {
    "map": "Planck 2016 GNILC dust opacity R2.01 (the paper's cited map)",
    "dustmaps_class": "dustmaps.planck.PlanckGNILCQuery",
    "component": f"TAU353 x {GNILC_TAU_TO_EBV:g}",
    "files": [_GNILC_FILE.relpath],
    "unit": "mag, E(B-V)",
}
_BH_INFO = {
    "map": "Burstein & Heiles (1982), shipped with dustmaps (demo stand-in, not CSFD or Planck)",
    "dustmaps_class": "dustmaps.bh.BHQuery",
    "files": ["<dustmaps package>/data/bh/bh.h5"],
    "unit": "mag, E(B-V); NaN at |b| < 10 deg, in much of b < -65 deg and in small patches",
}


class MissingDustMapError(InputDataError):
    """Dust-map files the chosen mode needs are not in the data directory."""

    def __init__(self, message: str, missing: list[Path]):
        super().__init__(message)
        self.missing = missing


def _check_mode(mode: str) -> str:
    """``mode`` if it is one of ``DUST_MODES``, else a MantisDataError naming the valid ones."""
    if mode not in DUST_MODES:
        raise MantisDataError(f"unknown dust mode {mode!r}; choose one of {', '.join(DUST_MODES)}")
    return mode


def _import_dustmaps():
    """Import dustmaps quietly (no 'config file not found' warning); clear error when not installed."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"dustmaps(\..*)?")
            warnings.filterwarnings("ignore", message=".*(Configuration file not found|Overriding default).*")
            import dustmaps
            import dustmaps.std_paths
    except ImportError as exc:
        raise MantisDataError(
            f"dust maps need the 'dustmaps' package ({exc}); install the build extra: pip install 'mantis-data[build]'"
        ) from exc
    return dustmaps


def default_data_dir() -> Path:
    """The dustmaps data directory configured for this user (``dustmaps.std_paths.data_dir()``)."""
    return Path(_import_dustmaps().std_paths.data_dir())


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` as an absolute path, or dustmaps' configured one when None."""
    if data_dir is None:
        return default_data_dir()
    return Path(os.path.expandvars(os.path.expanduser(os.fspath(data_dir)))).absolute()


def required_files(mode: str = DEFAULT_DUST_MODE, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Absolute paths of the map files ``mode`` reads (empty for "bh" and "none": nothing to download)."""
    files = _MODE_FILES[_check_mode(mode)]
    if not files:
        return []
    root = _data_dir(data_dir)
    return [root / f.relpath for f in files]


def _fetch_command(code: str, root: Path, configured: Path) -> str:
    """The shell command that runs dustmaps' fetch ``code`` so it writes into ``root``."""
    if root != configured:
        code = f"from dustmaps.config import config; config['data_dir'] = {str(root)!r}; {code}"
    if any(ch in code for ch in '"$`\\!'):
        return f"python -c {shlex.quote(code)}"
    return f'python -c "{code}"'


def check_dust_maps(mode: str = DEFAULT_DUST_MODE, data_dir: str | os.PathLike | None = None) -> None:
    """Raise MissingDustMapError naming every missing map file of ``mode`` and the command that fetches it."""
    files = _MODE_FILES[_check_mode(mode)]
    if not files:
        return
    root = _data_dir(data_dir)
    missing = [f for f in files if not (root / f.relpath).is_file()]
    if not missing:
        return
    configured = default_data_dir()
    commands = list(dict.fromkeys(_fetch_command(f.fetch_code, root, configured) for f in missing))
    lines = [f"dust mode {mode!r} needs map files that are not in the dust-map directory {root}:"]
    lines += [f"    {root / f.relpath}" for f in missing]
    lines.append("Fetch them (this downloads from the map's archive) with:")
    lines += [f"    {c}" for c in commands]
    if root != configured:
        lines.append(
            f"(setting config['data_dir'] makes dustmaps save {root} as its default data directory "
            f"in {_config_file()}; dustmaps' current one is {configured})"
        )
    lines.append(
        "Or point at a directory that already holds the maps (data_dir, e.g. the build's dust-map directory "
        "option, or dustmaps' config['data_dir']), or build without maps: dust mode 'none' (`--dust none`, "
        "NaN columns) or 'bh' (`--dust bh`, the Burstein & Heiles map shipped with dustmaps, demos only)."
    )
    raise MissingDustMapError("\n".join(lines), [root / f.relpath for f in missing])


def _config_file() -> str:
    """Path of the dustmaps config file (``~/.dustmapsrc`` unless DUSTMAPS_CONFIG_FNAME says otherwise)."""
    _import_dustmaps()
    from dustmaps.config import config

    return str(config.fname)


def _load(what: str, path: Path | None, factory):
    """Build one dustmaps query object, turning a malformed file into an InputDataError naming it."""
    sink = io.StringIO()  # dustmaps prints its own "not in the data directory" text on IOError
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return factory()
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        where = f" {path}" if path is not None else ""
        raise InputDataError(
            f"cannot read the {what} dust map{where}: {type(exc).__name__}: {exc}. "
            "The file may be truncated or not the map dustmaps expects; delete it and fetch it again "
            "(see mantis_data.dust.check_dust_maps for the command)."
        ) from exc


class DustMaps:
    """The maps of one dust mode, loaded once (Planck and CSFD are ~50M pixels each); query many times."""

    def __init__(self, mode: str = DEFAULT_DUST_MODE, data_dir: str | os.PathLike | None = None):
        """Check the files of ``mode`` (MissingDustMapError before any loading) and load its maps."""
        self.mode = _check_mode(mode)
        self.data_dir = _data_dir(data_dir) if _MODE_FILES[mode] else None
        check_dust_maps(mode, self.data_dir)
        self._csfd = self._planck = self._bh = None
        if mode == "none":
            return
        _import_dustmaps()
        if mode == "bh":
            from dustmaps.bh import BHQuery

            self._bh = _load("Burstein & Heiles", None, BHQuery)
            return
        from dustmaps.csfd import CSFDQuery
        from dustmaps.planck import PlanckGNILCQuery, PlanckQuery

        root = self.data_dir
        csfd_map, csfd_mask = (root / f.relpath for f in _CSFD_FILES)
        self._csfd = _load("CSFD", csfd_map, lambda: CSFDQuery(map_fname=str(csfd_map), mask_fname=str(csfd_mask)))
        if mode == "csfd-planck":
            p = root / _PLANCK_FILE.relpath
            self._planck = _load("Planck R1.20", p, lambda: PlanckQuery(map_fname=str(p), component="extragalactic"))
        else:
            p = root / _GNILC_FILE.relpath
            self._planck = _load("Planck GNILC", p, lambda: PlanckGNILCQuery(map_fname=str(p)))

    def ebv(self, ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> dict[str, np.ndarray]:
        """E(B-V) in mag at ICRS (ra_deg, dec_deg): {"ebv_csfd", "ebv_planck"} float64 arrays of the input shape."""
        ra = np.asarray(ra_deg, dtype=np.float64)
        dec = np.asarray(dec_deg, dtype=np.float64)
        try:
            ra, dec = np.broadcast_arrays(ra, dec)
        except ValueError as exc:
            raise InputDataError(f"ra and dec have incompatible shapes {ra.shape} and {dec.shape}") from exc
        shape = ra.shape
        ra, dec = ra.ravel(), dec.ravel()
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputDataError(
                f"{int(bad.sum())} position(s) are not finite ICRS degrees with |dec| <= 90 "
                f"(first at index {i}: ra={ra[i]}, dec={dec[i]})"
            )
        if self.mode == "none" or ra.size == 0:
            nan = np.full(shape, np.nan)
            return {c: nan.copy() for c in DUST_COLUMNS}
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        coords = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")  # one transform for all positions
        if self._bh is not None:
            v = np.asarray(self._bh.query(coords), dtype=np.float64).reshape(shape)
            return {"ebv_csfd": v, "ebv_planck": v.copy()}
        return {
            "ebv_csfd": np.asarray(self._csfd.query(coords), dtype=np.float64).reshape(shape),
            "ebv_planck": np.asarray(self._planck.query(coords), dtype=np.float64).reshape(shape),
        }


def ebv(
    ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, mode: str = DEFAULT_DUST_MODE, data_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """E(B-V) in mag at ICRS degrees: {"ebv_csfd", "ebv_planck"} float64 arrays; loads the maps once per call."""
    return DustMaps(mode, data_dir).ebv(ra_deg, dec_deg)


def describe(mode: str = DEFAULT_DUST_MODE) -> dict:
    """Which maps fill each column under ``mode``, for the release manifest and card (no local paths)."""
    _check_mode(mode)
    out: dict = {"mode": mode}
    if mode == "none":
        out.update(ebv_csfd=None, ebv_planck=None)
        out["note"] = "not computed in this release (`--dust none`): `ebv_csfd` and `ebv_planck` are NaN."
        return out
    _import_dustmaps()
    out["dustmaps_version"] = importlib.metadata.version("dustmaps")
    if mode == "bh":
        out.update(ebv_csfd=dict(_BH_INFO), ebv_planck=dict(_BH_INFO))
        out["note"] = (
            "demo values (`--dust bh`): both `ebv_csfd` and `ebv_planck` hold the Burstein & Heiles (1982) "
            "map shipped with dustmaps, NOT corrected SFD or Planck; null where BH has no data (|b| < 10 deg, much of b < -65 deg). Do not train on them."
        )
        return out
    planck = _PLANCK_INFO if mode == "csfd-planck" else _GNILC_INFO
    out.update(ebv_csfd={**_CSFD_INFO, "files": list(_CSFD_INFO["files"])}, ebv_planck={**planck, "files": list(planck["files"])})
    out["note"] = (
        f"`ebv_csfd`: {_CSFD_INFO['map']} via {_CSFD_INFO['dustmaps_class']}; "
        f"`ebv_planck`: {planck['map']} via {planck['dustmaps_class']}, {planck['component']}; "
        f"E(B-V) in mag at each target's HEALPix pixel (dustmaps {out['dustmaps_version']})."
    )
    return out
