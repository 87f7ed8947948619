"""Paper-fidelity checks on the demo release: pixel units in `mantis-data info` and the card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_info_and_card_show_galex_in_counts_per_second(demo_release):
    out = subprocess.run(
        [sys.executable, "-m", "mantis_data.cli", "info", str(demo_release)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    galex = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("galex")]
    assert len(galex) == 1 and "counts/s" in galex[0] and "FUV 18.82, NUV 20.08" in galex[0], out.stdout
    assert "nanomaggy" not in galex[0]
    card = (demo_release / "mantis_shrimp" / "README.md").read_text()
    rows = [ln for ln in card.splitlines() if ln.startswith("| FUV") or ln.startswith("| NUV")]
    assert len(rows) == 2 and all("counts/s" in r for r in rows), rows
    assert "18.82 AB" in rows[0] and "20.08 AB" in rows[1]
