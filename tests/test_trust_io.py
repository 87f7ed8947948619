"""Issue 11 item 6: one atomic-write helper; files follow the umask like any file the user creates."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mantis_data._io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    remove_temp_files,
)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_bytes(b"x", tmp_path / "a.bin")
        atomic_write_json({"a": 1}, tmp_path / "sub" / "b.json")
        import pandas as pd

        atomic_write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "c.parquet")
        with atomic_path(tmp_path / "d.txt") as tmp:
            tmp.write_text("hello")
    finally:
        os.umask(old)
    for name in ("a.bin", "sub/b.json", "c.parquet", "d.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    assert (tmp_path / "d.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / ".keep.txt.abc.tmp").write_text("left by a killed writer")
    assert remove_temp_files(tmp_path) == 1


def test_no_hand_written_atomic_writes_left():
    """Every os.replace of the project lives in mantis_data/_io.py (the one helper)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for folder in ("mantis_data", "builders", "training"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "_io.py":
                continue
            text = path.read_text()
            if "os.replace(" in text or "mkstemp(" in text or "NamedTemporaryFile(" in text:
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_release_files_follow_the_umask(demo_release):
    want = 0o666 & ~_umask()
    modes = {}
    for path in Path(demo_release).rglob("*"):
        if path.is_file() and "mock_inputs" not in path.parts:
            modes[path.relative_to(demo_release).as_posix()] = stat.S_IMODE(path.stat().st_mode)
    assert len(modes) > 10
    wrong = {k: oct(v) for k, v in modes.items() if v != want}
    assert wrong == {}
