"""Shared fixtures: one temp folder per session (removed at the end), an offline HF cache, demo releases."""

from __future__ import annotations

import os
import shutil
import tempfile

# Everything a test session writes to the temp folder (pytest's tmp_path, the HF cache, torchelastic and
# Dask scratch, subprocesses' temp files) goes under one folder, removed when the session ends
# (set MANTIS_KEEP_TEST_TMP=1 to keep it for debugging).
_SESSION_TMP = tempfile.mkdtemp(prefix="mantis-tests-")
os.environ["TMPDIR"] = _SESSION_TMP
tempfile.tempdir = None  # re-read TMPDIR from now on

# Before anything imports `datasets`: never touch the network or the user's cache.
_HF_HOME = os.path.join(_SESSION_TMP, "hf")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_unconfigure(config) -> None:
    """Remove the session's temp folder (every tmp_path, the HF cache, scratch) unless asked to keep it."""
    if not os.environ.get("MANTIS_KEEP_TEST_TMP"):
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


DEMO_N = 160
"""Galaxies in the test sky: enough for every planted defect, small enough for seconds."""


def build_demo(out: Path, n: int = DEMO_N, seed: int = 0, workers: int = 2) -> Path:
    """Run the demo command (the same code path as a user) into ``out``."""
    from builders.__main__ import main

    rc = main(["demo", "--out", str(out), "--n", str(n), "--seed", str(seed), "--shard-mb", "8", "--workers", str(workers)])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def demo_release(tmp_path_factory) -> Path:
    """A demo release built once for the whole test session (read-only for tests)."""
    return build_demo(tmp_path_factory.mktemp("demo") / "ms")


LOADER_N = 250
"""Galaxies in the loaders' test sky: small shards (--shard-mb 2) of unequal sizes, every split non-empty."""


@pytest.fixture(scope="session")
def loader_release(tmp_path_factory) -> Path:
    """A demo release with many small, unequal shards (2-3 samples each), built once per session (read-only)."""
    from builders.__main__ import main

    out = tmp_path_factory.mktemp("loaders") / "ms"
    rc = main(["demo", "--out", str(out), "--n", str(LOADER_N), "--seed", "1", "--shard-mb", "2", "--workers", "2"])
    assert rc == 0
    return out
