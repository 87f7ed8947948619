"""The build against the mock's planted truth: catalog counts, cutout rejections, determinism, additions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_N, build_demo

from builders.build import build_release
from builders.catalogs.compile import compile_targets, find_catalogs, reason_kind, write_outputs
from builders.mock.catalogs import write_catalogs
from builders.mock.cutouts import cutout_truth, write_cutouts
from builders.mock.sky import MockSky
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.dust import MissingDustMapError
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, verify

PLANTED_TO_REASON = {
    "zwarning": {"zwarning"},
    "class": {"class"},
    "dec_below_-30": {"dec_below_-30"},
    "not_primary": {"not_primary"},
    "duplicate": {"duplicate_of", "duplicate_row"},
    "malformed": {"unreadable_row"},
    "z_out_of_range": {"z_out_of_range"},
}


def shard_hashes(root: Path) -> dict[str, str]:
    files = json.loads((root / MANIFEST_NAME).read_text())["files"]
    return {k: v["sha256"] for k, v in files.items() if v["format"] in ("webdataset", "parquet")}


def test_catalog_audit_matches_planted_truth(demo_release):
    audit = pd.read_parquet(demo_release / AUDIT_NAME)
    truth = pd.read_parquet(demo_release / "mock_inputs" / "catalogs" / "truth.parquet")
    merged = audit.merge(truth, left_on=["survey", "source_row"], right_on=["survey", "row"], validate="one_to_one", suffixes=("", "_truth"))
    assert len(merged) == len(truth) == len(audit)
    kinds = reason_kind(merged["reject_reason"])
    for planted, reasons in PLANTED_TO_REASON.items():
        rows = merged["planted"] == planted
        assert rows.any(), f"the mock planted no {planted}"
        assert kinds[rows].isin(reasons).all(), (planted, kinds[rows].value_counts().to_dict())
    clean = merged["planted"] == ""
    assert merged.loc[clean, "accepted"].all() and not merged.loc[~clean, "accepted"].any()
    # the reader reports the redshift the survey's rules pick (z_person > z_noqso > z)
    np.testing.assert_allclose(merged.loc[clean, "z"], merged.loc[clean, "z_expected"])
    # no two accepted targets within 1 arcsec
    acc = merged[clean]
    from builders.catalogs.compile import match_groups

    labels = match_groups(acc["ra"].to_numpy(), acc["dec"].to_numpy(), 1.0)
    assert len(np.unique(labels)) == len(acc)


def test_cutout_rejections_match_planted_faults(demo_release):
    audit = pd.read_parquet(demo_release / AUDIT_NAME)
    accepted = audit[audit["accepted"]]
    sky = MockSky(n_galaxies=DEMO_N, seed=0)
    truth = cutout_truth(sky, accepted[["target_id", "ra", "dec"]]).to_pandas()
    merged = accepted.merge(truth, on="target_id", validate="one_to_one", suffixes=("", "_truth"))
    expected = merged["expect_reject"].replace("", None)
    got = reason_kind(merged["cutout_reject_reason"]).map(
        lambda r: "ps1_nan" if isinstance(r, str) and r.startswith("ps1_nan_fraction") else r
    )
    assert (expected.fillna("-") == got.fillna("-")).all(), pd.crosstab(expected.fillna("-"), got.fillna("-"))
    assert expected.notna().sum() >= 3  # the mock planted several faults of each kind
    # GALEX no-coverage is recorded, never rejected
    release_rows = merged[merged["in_release"]]
    assert (~release_rows["galex_covered"]).any()


def test_two_builds_are_byte_identical_whatever_the_worker_count(demo_release, tmp_path):
    again = build_demo(tmp_path / "again", workers=1)
    assert shard_hashes(again) == shard_hashes(demo_release)
    assert verify(again) == []


def test_adding_galaxies_keeps_every_split_and_rerun_skips_finished_shards(demo_release, tmp_path):
    work = demo_release / "work"
    base_audit = pd.read_parquet(demo_release / AUDIT_NAME)
    # extra galaxies: a second mock sky, its own catalogs and cutouts, added to the same inputs
    extra_sky = MockSky(n_galaxies=60, seed=7)
    write_catalogs(extra_sky, tmp_path / "extra_catalogs")
    extra_targets, extra_audit = compile_targets(find_catalogs(tmp_path / "extra_catalogs"))
    extra_targets = extra_targets[~extra_targets["target_id"].isin(base_audit["target_id"])]
    extra_audit = extra_audit[~extra_audit["target_id"].isin(base_audit["target_id"]) | extra_audit["target_id"].isna()]
    cache = tmp_path / "cutouts"
    shutil.copytree(demo_release / "mock_inputs" / "cutouts", cache)
    write_cutouts(extra_sky, extra_targets[["target_id", "ra", "dec"]], cache, progress=False)
    targets = pd.concat([pd.read_parquet(work / "targets.parquet"), extra_targets], ignore_index=True)
    audit = pd.concat([pd.read_parquet(work / "catalog_audit.parquet"), extra_audit], ignore_index=True)
    write_outputs(targets, audit, tmp_path / "work")
    out = tmp_path / "bigger"
    build_release(tmp_path / "work" / "targets.parquet", LocalFitsSource(cache), out, dust="bh", shard_mb=8, progress=False)
    bigger = pd.read_parquet(out / AUDIT_NAME)
    before = base_audit[base_audit["accepted"]].set_index("target_id")["split"]
    after = bigger[bigger["accepted"]].set_index("target_id")["split"]
    assert len(after) > len(before)
    assert (after.loc[before.index] == before).all()
    # rerun: every shard is already in place, nothing is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("mantis_shrimp*/data/*")}
    build_release(tmp_path / "work" / "targets.parquet", LocalFitsSource(cache), out, dust="bh", shard_mb=8, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("mantis_shrimp*/data/*")} == mtimes
    assert verify(out) == []


def test_missing_dust_maps_stop_the_build_before_any_work(demo_release, tmp_path):
    out = tmp_path / "nodust"
    with pytest.raises(MissingDustMapError) as info:
        build_release(
            demo_release / "work" / "targets.parquet",
            LocalFitsSource(demo_release / "mock_inputs" / "cutouts"),
            out,
            dust="csfd-planck",
            dust_dir=tmp_path / "empty",
            progress=False,
        )
    message = str(info.value)
    assert "csfd_ebv.fits" in message and "HFI_CompMap_ThermalDustModel_2048_R1.20.fits" in message
    assert "dustmaps.csfd" in message and "fetch" in message
    assert not out.exists() or not any(out.rglob("*.tar"))


def test_dust_columns_and_manifest_record_the_map(demo_release):
    import pyarrow.parquet as pq

    manifest = json.loads((demo_release / MANIFEST_NAME).read_text())
    assert manifest["dust"]["mode"] == "bh"
    table = pq.read_table(next((demo_release / "mantis_shrimp-parquet" / "data").glob("train-*.parquet")), columns=["ebv_csfd", "ebv_planck"])
    csfd = np.array(table.column("ebv_csfd").to_pylist(), dtype=float)
    assert np.isfinite(csfd).mean() > 0.5  # BH covers the mock's patches away from the plane
    card = (demo_release / "mantis_shrimp" / "README.md").read_text()
    assert "Burstein" in card and "Do not train on them" in card
