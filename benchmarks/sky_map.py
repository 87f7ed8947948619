"""The release card's sky map: the raster that follows the HEALPix resolution against the fixed 0.5 deg one.

``mantis_data.plots.sky_density`` samples each panel's HEALPix map on a lon/lat raster that matplotlib
draws with pcolormesh on Mollweide axes. The raster used to be 0.5 deg everywhere (259,200 cells per
panel); it is now a quarter of a HEALPix pixel, 0.5 to 2 deg (``plots._raster``). This script draws the
same sky map both ways, in interleaved rounds, and prints seconds per map and the ratio.

    python benchmarks/sky_map.py            # a demo-sized release: ~2,000 galaxies over 9 panels
    python benchmarks/sky_map.py --n 4400000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mantis_data import plots  # noqa: E402

ADAPTIVE_RASTER = plots._raster
SURVEYS = ("sdss", "desi", "gama", "vvds", "vipers", "6dfgs", "deep2", "wigglez")


def fixed_raster(nside: int):
    """The raster before: 0.5 deg cells whatever the HEALPix resolution (the baseline)."""
    return ADAPTIVE_RASTER(nside, step_deg=0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="galaxies on the map")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (the best of each is compared)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, args.n), np.degrees(np.arcsin(rng.uniform(-0.5, 1, args.n)))
    survey = rng.choice(SURVEYS, args.n, p=np.array([40, 30, 8, 5, 5, 4, 4, 4]) / 100)
    adaptive = ADAPTIVE_RASTER
    tmp = Path(tempfile.mkdtemp(prefix="mantis-bench-sky-"))
    best = {"fixed 0.5 deg (before)": np.inf, "HEALPix-following (ours)": np.inf}
    try:
        for _ in range(args.repeat):
            for name, raster in zip(best, (fixed_raster, adaptive), strict=True):
                plots._raster = raster
                t0 = time.perf_counter()
                plots.sky_density(ra, dec, survey, tmp / "sky.png")
                best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        plots._raster = adaptive
        shutil.rmtree(tmp)
    print(f"sky map of {args.n:,} galaxies, 9 panels, best of {args.repeat} interleaved rounds")
    for name, s in best.items():
        print(f"  {name:28s} {s:6.2f} s")
    before, ours = best.values()
    print(f"  ratio                        {before / ours:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
