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


def _test_split(release: Path):
    """(target_id, z, ra, dec) of the release's test split, read from its Parquet shards."""
    import numpy as np
    import pyarrow.parquet as pq

    parts = [pq.read_table(p, columns=["target_id", "z", "ra", "dec"]) for p in
             sorted((release / "mantis_shrimp-parquet" / "data").glob("test-*.parquet"))]
    cols = {c: np.concatenate([t.column(c).to_numpy(zero_copy_only=False) for t in parts]) for c in parts[0].column_names}
    return cols["target_id"].astype(str), cols["z"], cols["ra"], cols["dec"]


def test_evaluate_reports_exactly_the_matched_subpopulations(demo_release, tmp_path):
    """`mantis-data evaluate` with --subpopulation sdss-mgs and an external catalog of perturbed test galaxies."""
    import json

    import numpy as np
    import pandas as pd

    from mantis_data import metrics as M
    from mantis_data.evaluate import write_predictions
    from mantis_data.redshift import GRID

    ids, z, ra, dec = _test_split(demo_release)
    n = len(ids)
    rng = np.random.default_rng(0)
    centre = z + rng.normal(0, 0.02, n) * (1 + z)
    pmf = np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / 0.03) ** 2) + 1e-9
    pmf /= pmf.sum(axis=1, keepdims=True)
    preds = write_predictions(tmp_path / "preds.parquet", ids, z, pmf.astype(np.float32))

    # the expected MGS members, straight from the mock SpecObjAll file's targeting bits
    sdss = pd.read_csv(demo_release / "mock_inputs" / "catalogs" / "sdss" / "SpecObjAll.csv", on_bad_lines="skip")
    bits = dict(zip("sdss-" + sdss["specObjID"].astype(str), sdss["legacy_target1"], strict=True))
    mgs = np.array([(int(bits.get(t, 0)) & 0x1C0) != 0 for t in ids])
    assert mgs.sum() >= 1 and (~mgs).sum() >= 1

    # an external catalog: every other test galaxy, moved by 0.2-0.9 arcsec, plus far decoys
    chosen = np.arange(0, n, 2)
    off = rng.uniform(0.2, 0.9, chosen.size) / 3600.0
    pa = rng.uniform(0, 2 * np.pi, chosen.size)
    cat = pd.DataFrame({
        "ra": ra[chosen] + off * np.sin(pa) / np.cos(np.radians(dec[chosen])),
        "dec": dec[chosen] + off * np.cos(pa),
        "z_spec": z[chosen],
        "z_phot": z[chosen] + rng.normal(0, 0.03, chosen.size),
        "z_phot_err": np.full(chosen.size, 0.04),
    })
    cat.loc[0, "z_spec"] += 0.05  # one spectroscopic disagreement: removed by --match-dz 1e-3
    decoys = pd.DataFrame({"ra": ra[1::2][:5] + 5 / 3600, "dec": dec[1::2][:5], "z_spec": 0.5, "z_phot": 0.5,
                           "z_phot_err": 0.1})  # 5 arcsec from unchosen galaxies: no match
    pd.concat([cat, decoys]).to_csv(tmp_path / "b22like.csv", index=False)
    out = subprocess.run(
        [sys.executable, "-m", "mantis_data.cli", "evaluate", str(preds), "--out", str(tmp_path / "report"),
         "--bootstrap", "40", "--targets", str(demo_release / "targets_audit.parquet"), "--subpopulation", "sdss-mgs",
         "--match-catalog", str(tmp_path / "b22like.csv"), "--match-dz", "1e-3"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    matched = np.zeros(n, bool)
    matched[chosen[1:]] = True  # all chosen galaxies but the one whose z_spec disagrees
    expected = {"sdss-mgs": mgs, "match:b22like": matched}
    for name, mask in expected.items():
        row = rows[name]
        assert row["n"] == mask.sum(), name
        r = M.residuals(z[mask], pmf[mask] @ GRID / pmf[mask].sum(axis=1))
        assert abs(row["bias"]["value"] - M.bias(r)) < 1e-9, name
        assert row["nmad"]["low"] is not None and row["nmad"]["low"] <= row["nmad"]["value"] <= row["nmad"]["high"]
    # the comparison catalog's own photo-z metrics on the same galaxies, right after its row
    names = [r["name"] for r in report["rows"]]
    own = report["rows"][names.index("match:b22like") + 1]
    assert own["name"].startswith("match:b22like (") and own["n"] == matched.sum()
    zp = cat["z_phot"].to_numpy()[1:]
    zt = z[chosen[1:]]
    assert abs(own["nmad"]["value"] - M.nmad(M.residuals(zt, zp))) < 1e-9
    assert own["cde_loss"]["value"] is not None and own["cde_loss"]["error"] > 0
    sub = {s["name"]: s for s in report["subpopulations"]}
    assert sub["match:b22like"]["n_matched_by_position"] == chosen.size
    assert sub["match:b22like"]["n_removed_by_dz"] == 1 and sub["sdss-mgs"]["n"] == mgs.sum()
    assert f"match:b22like: {matched.sum():,} galaxies" in out.stdout
    md = (tmp_path / "report" / "metrics.md").read_text()
    assert "| sdss-mgs |" in md and "| match:b22like |" in md
    # without --targets: one line, exit 2
    bad = subprocess.run([sys.executable, "-m", "mantis_data.cli", "evaluate", str(preds), "--out", str(tmp_path / "x"),
                          "--subpopulation", "sdss-mgs"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--targets" in bad.stderr and "Traceback" not in bad.stderr
