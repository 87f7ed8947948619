"""The evaluation report end to end on a small synthetic predictions file, and the file format's errors."""

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mantis_data import metrics as M
from mantis_data.errors import MantisDataError
from mantis_data.evaluate import (
    PREDICTIONS_FORMAT,
    add_evaluate_arguments,
    evaluate,
    read_predictions,
    run_evaluate,
    write_predictions,
)
from mantis_data.redshift import GRID, N_BINS


def synthetic(n=600, seed=0):
    """(target_id, z, pmf float32, survey): Gaussian PMFs around noisy truths."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 1.5, n)
    sigma = rng.uniform(0.01, 0.05, n)
    centre = z + rng.normal(0, 0.03, n) * (1 + z)
    pmf = np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / sigma[:, None]) ** 2) + 1e-9
    pmf = (pmf / pmf.sum(axis=1, keepdims=True)).astype(np.float32)
    ids = np.array([f"t{i:05d}" for i in range(n)])
    return ids, z, pmf, rng.choice(["SDSS", "DESI"], n)


@pytest.fixture
def preds_file(tmp_path):
    ids, z, pmf, survey = synthetic()
    path = write_predictions(tmp_path / "preds.parquet", ids, z, pmf, survey=survey)
    return path, (ids, z, pmf, survey)


def test_write_and_read_round_trip(preds_file):
    path, (ids, z, pmf, survey) = preds_file
    assert sorted(p.name for p in path.parent.iterdir()) == ["preds.parquet"]  # no temp file left
    schema = pq.read_schema(path)
    assert schema.field("pmf").type == pa.list_(pa.float32(), N_BINS)
    assert schema.metadata[b"mantis_data.format"] == PREDICTIONS_FORMAT.encode()
    p = read_predictions(path)
    assert p.n == len(z) and list(p.target_id[:2]) == ["t00000", "t00001"]
    np.testing.assert_array_equal(p.z, z)
    np.testing.assert_array_equal(p.pmf, pmf)
    np.testing.assert_array_equal(p.survey, survey)


def test_evaluate_end_to_end(preds_file, tmp_path, capsys):
    path, (ids, z, pmf, survey) = preds_file
    out = tmp_path / "report"
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(
        [str(path), "--out", str(out), "--bootstrap", "50", "--seed", "1", "--z-edges", "0,0.5,1,1.6"]
    )
    assert run_evaluate(args) == 0
    assert "600 galaxies" in capsys.readouterr().out
    for name in (
        "metrics.md",
        "metrics.json",
        "pit_histogram.png",
        "zhat_vs_ztrue.png",
        "metrics_by_redshift.png",
    ):
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, name
        if name.endswith(".png"):
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "metrics.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["all", "survey=DESI", "survey=SDSS", "0 <= z < 0.5", "0.5 <= z < 1", "1 <= z < 1.6"]
    assert report["n"] == 600 and report["bootstrap"] == 50 and report["outlier_threshold"] == 0.05

    # JSON values equal the metrics computed directly from the arrays
    masks = [np.ones(600, bool), survey == "DESI", survey == "SDSS", z < 0.5, (z >= 0.5) & (z < 1), z >= 1]
    for row, mask in zip(report["rows"], masks, strict=True):
        zm, pm = z[mask], pmf[mask]
        r = M.residuals(zm, pm.astype(np.float64) @ GRID / pm.astype(np.float64).sum(axis=1))
        assert row["n"] == mask.sum()
        assert row["nmad"]["value"] == pytest.approx(M.nmad(r), rel=1e-9)
        assert row["bias"]["value"] == pytest.approx(M.bias(r), rel=1e-9)
        assert row["outlier_fraction"]["value"] == pytest.approx(M.outlier_fraction(r), rel=1e-9)
        assert row["cde_loss"]["value"] == pytest.approx(M.cde_loss(pm, zm), rel=1e-9)
        assert row["pit_ks"]["value"] == pytest.approx(M.ks_uniform(M.pit(pm, zm)), rel=1e-9)
        assert row["nmad"]["error"] > 0
    counts, _ = M.pit_histogram(M.pit(pmf, z), 20)
    assert report["pit_histogram"]["counts"] == counts.tolist()

    md = (out / "metrics.md").read_text()
    assert "| survey=SDSS |" in md and "![PIT histogram](pit_histogram.png)" in md
    all_row = report["rows"][0]
    assert M.format_uncertainty(all_row["nmad"]["value"], all_row["nmad"]["error"], scale=1e-2) in md


def test_pmf_path_column_gives_the_same_report(preds_file, tmp_path):
    path, (ids, z, pmf, survey) = preds_file
    np.save(tmp_path / "pmf.npy", pmf)
    pq.write_table(
        pa.table({"target_id": ids, "z": z, "pmf_path": ["pmf.npy"] * len(z)}), tmp_path / "p2.parquet"
    )
    a = evaluate(path, tmp_path / "a", bootstrap=20)
    b = evaluate(tmp_path / "p2.parquet", tmp_path / "b", bootstrap=20)
    assert a["rows"][0] == b["rows"][0]
    # write_predictions can reference the .npy instead of embedding it
    p3 = write_predictions(tmp_path / "sub" / "p3.parquet", ids, z, tmp_path / "pmf.npy")
    assert pq.read_table(p3).column("pmf_path")[0].as_py() == "../pmf.npy"
    np.testing.assert_array_equal(read_predictions(p3).pmf, pmf)


def test_variable_length_lists_are_accepted(tmp_path):
    ids, z, pmf, _ = synthetic(50)
    pq.write_table(
        pa.table({"target_id": ids, "z": z, "pmf": list(pmf.astype(np.float64))}), tmp_path / "v.parquet"
    )
    np.testing.assert_allclose(read_predictions(tmp_path / "v.parquet").pmf, pmf)


def test_user_errors_name_the_file_and_the_fix(tmp_path):
    ids, z, pmf, _ = synthetic(20)
    with pytest.raises(MantisDataError, match="nope.parquet does not exist"):
        read_predictions(tmp_path / "nope.parquet")

    f = tmp_path / "noz.parquet"
    pq.write_table(pa.table({"target_id": ids, "pmf": list(pmf)}), f)
    with pytest.raises(MantisDataError, match=r"noz\.parquet has no column z.*docs/predictions\.md"):
        read_predictions(f)

    f = tmp_path / "nopmf.parquet"
    pq.write_table(pa.table({"target_id": ids, "z": z}), f)
    with pytest.raises(MantisDataError, match=r"no column pmf \(or pmf_path\)"):
        read_predictions(f)

    f = tmp_path / "width.parquet"
    flat = pa.array(np.full(20 * 399, 1 / 399, np.float32))
    pq.write_table(
        pa.table({"target_id": ids, "z": z, "pmf": pa.FixedSizeListArray.from_arrays(flat, 399)}), f
    )
    with pytest.raises(MantisDataError, match=r"width\.parquet holds lists of 399 values, not 400"):
        read_predictions(f)

    f = tmp_path / "missing_npy.parquet"
    pq.write_table(pa.table({"target_id": ids, "z": z, "pmf_path": ["gone.npy"] * 20}), f)
    with pytest.raises(MantisDataError, match=r"gone\.npy named by predictions file .*missing_npy\.parquet"):
        read_predictions(f)

    np.save(tmp_path / "short.npy", pmf[:10])
    f = tmp_path / "short.parquet"
    pq.write_table(pa.table({"target_id": ids, "z": z, "pmf_path": ["short.npy"] * 20}), f)
    with pytest.raises(MantisDataError, match=r"shape \(10, 400\); expected \(20, 400\)"):
        read_predictions(f)

    f = tmp_path / "logits.parquet"
    logits = np.random.default_rng(0).normal(size=(20, N_BINS)).astype(np.float32)
    flat = pa.array(logits.reshape(-1))
    pq.write_table(
        pa.table({"target_id": ids, "z": z, "pmf": pa.FixedSizeListArray.from_arrays(flat, N_BINS)}), f
    )
    with pytest.raises(MantisDataError, match=r"logits\.parquet.*softmax"):
        evaluate(f, tmp_path / "out", bootstrap=5)

    f = tmp_path / "junk.parquet"
    f.write_text("not parquet")
    with pytest.raises(MantisDataError, match="not a readable Parquet file"):
        read_predictions(f)


def test_bias_has_the_community_sign(tmp_path):
    """z_hat > z everywhere gives a positive bias in the report: r = (z_hat - z) / (1 + z)."""
    n = 200
    z = np.random.default_rng(3).uniform(0.05, 1.2, n)
    k = np.rint(z / 0.004).astype(int) + 10  # all mass 10 classes (0.04) above the true redshift
    pmf = np.zeros((n, N_BINS), np.float32)
    pmf[np.arange(n), k] = 1.0
    path = write_predictions(tmp_path / "high.parquet", [f"g{i}" for i in range(n)], z, pmf)
    report = evaluate(path, tmp_path / "out", bootstrap=20)
    bias = report["rows"][0]["bias"]["value"]
    assert bias > 0
    assert bias == pytest.approx(np.mean((GRID[k] - z) / (1 + z)), rel=1e-9)
    assert "(z_hat - z) / (1 + z)" in report["definitions"]["r"]
    assert "(ẑ − z)/(1 + z)" in (tmp_path / "out" / "metrics.md").read_text()
