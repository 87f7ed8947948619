"""Numbers a first user reads: no spread made of rounding noise, η printed as a percentage."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest

from mantis_data import metrics as M
from mantis_data.evaluate import add_evaluate_arguments, run_evaluate, summary_line, write_predictions
from mantis_data.redshift import GRID


@pytest.mark.parametrize(
    "value,error,scale,expected",
    [
        (22.359884933677627, 5.6e-17, 1.0, "22.36"),  # one galaxy: every replicate equal, spread is noise
        (0.22359884933677627, 5.6e-19, 1e-2, "22.36"),
        (0.0, 1e-20, 1.0, "0"),
        (2.438e-2, 4e-5, 1e-2, "2.438(4)"),  # a real spread keeps the paper style
        (77.777, 3.2, 1.0, "78(3)"),
        (1.0, float("nan"), 1.0, "1"),
    ],
)
def test_format_uncertainty(value, error, scale, expected):
    assert M.format_uncertainty(value, error, scale=scale) == expected
    assert M.Estimate(value, error, 0.0, 0.0).format(scale) == expected


def test_one_galaxy_rows_and_the_summary_print_sensibly(tmp_path, capsys):
    """A report with a one-galaxy redshift range: its cells have no 17-digit values; the CLI prints η in %."""
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.uniform(0.05, 0.9, 39), [1.45]])  # exactly one galaxy in 1.4 <= z < 1.6
    centre = z + rng.normal(0, 0.08, z.size) * (1 + z)
    pmf = np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / 0.03) ** 2) + 1e-9
    pmf = (pmf / pmf.sum(axis=1, keepdims=True)).astype(np.float32)
    path = write_predictions(tmp_path / "p.parquet", np.array([f"t{i}" for i in range(z.size)]), z, pmf)
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    out = tmp_path / "report"
    args = parser.parse_args([str(path), "--out", str(out), "--bootstrap", "30", "--z-edges", "0,0.5,1.4,1.6",
                              "--intervals", "5"])
    assert run_evaluate(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    lone = next(r for r in report["rows"] if r["name"] == "1.4 <= z < 1.6")
    assert lone["n"] == 1
    md = (out / "metrics.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1.4 <= z < 1.6 |"))
    for number in re.findall(r"\d+\.\d+", row):
        assert len(number.replace(".", "").lstrip("0")) <= 4, row
    eta = report["rows"][0]["outlier_fraction"]["value"]
    assert f"η {eta:.2f}%" in printed and "outlier_fraction" not in printed
    assert summary_line(report["rows"][0]) in printed
