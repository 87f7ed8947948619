"""publish: the dry run lists exactly the files of one format's repository; a corrupted release is refused;
the upload calls (checked on a recording stand-in for HfApi, no network)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from builders.__main__ import main
from builders.publish import PublishRefusedError, plan_upload, publish, stage
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME

RELEASE_PARTS = (MANIFEST_NAME, AUDIT_NAME, "mantis_shrimp", "mantis_shrimp-parquet")


def link_copy(src: Path, dst: Path) -> Path:
    """A copy of a release's files as hard links (cheap); replace a file before changing it."""
    dst.mkdir(parents=True)
    for part in RELEASE_PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, copy_function=os.link)
        else:
            os.link(src / part, dst / part)
    return dst


def expected_repo_files(release: Path, folder: str) -> dict[str, int]:
    files = json.loads((release / MANIFEST_NAME).read_text())["files"]
    out = {rel[len(folder) + 1 :]: info["bytes"] for rel, info in files.items() if rel.startswith(folder + "/")}
    out[MANIFEST_NAME] = (release / MANIFEST_NAME).stat().st_size
    out[AUDIT_NAME] = (release / AUDIT_NAME).stat().st_size
    return out


@pytest.mark.parametrize("fmt, folder", [("webdataset", "mantis_shrimp"), ("parquet", "mantis_shrimp-parquet")])
def test_dry_run_lists_every_file_of_the_repository_with_its_size(demo_release, capsys, fmt, folder):
    rc = main(["publish", str(demo_release), "--repo", "my-org/mantis_shrimp", "--format", fmt, "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    listed = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] == "<-":
            listed[parts[1]] = int(parts[0].replace(",", ""))
    expected = expected_repo_files(demo_release, folder)
    assert listed == expected
    assert "README.md" in listed and any(k.startswith("data/") for k in listed)
    other = ".parquet" if fmt == "webdataset" else ".tar"
    assert not any(k.startswith("data/") and k.endswith(other) for k in listed)
    assert f"{sum(expected.values()):,}" in out and "nothing uploaded" in out
    assert not (demo_release / ".build" / "publish").exists()  # a dry run writes nothing


def test_corrupted_release_is_refused_naming_the_bad_file(demo_release, tmp_path, capsys):
    release = link_copy(demo_release, tmp_path / "rel")
    bad = sorted((release / "mantis_shrimp" / "data").glob("train-*.tar"))[1]
    data = bytearray(bad.read_bytes())
    bad.unlink()  # break the hard link before changing the bytes
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    rc = main(["publish", str(release), "--repo", "my-org/mantis_shrimp", "--dry-run"])
    assert rc != 0
    captured = capsys.readouterr()
    assert f"mantis_shrimp/data/{bad.name}" in captured.err and "sha256" in captured.err
    assert "would upload" not in captured.out
    with pytest.raises(PublishRefusedError, match=bad.name):
        plan_upload(release, "my-org/mantis_shrimp")
    # the whole release must verify, so a bad tar blocks the Parquet repository too; a malformed repo id is refused
    with pytest.raises(PublishRefusedError):
        plan_upload(release, "my-org/mantis_shrimp-parquet", "parquet")
    with pytest.raises(PublishRefusedError, match="namespace"):
        plan_upload(demo_release, "mantis_shrimp")


class RecordingApi:
    """Stands in for HfApi: records the calls; the remote repository holds one stale shard."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        if name in ("upload_large_folder",):
            raise AttributeError(name)

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "list_repo_files":
                return [".gitattributes", "README.md", "data/train-09999.tar"]
            return None

        return record


class LargeFolderApi(RecordingApi):
    """An HfApi of a huggingface_hub that has upload_large_folder."""

    def upload_large_folder(self, **kwargs):
        self.calls.append(("upload_large_folder", (), kwargs))


@pytest.mark.parametrize("api_cls, method", [(RecordingApi, "upload_folder"), (LargeFolderApi, "upload_large_folder")])
def test_upload_calls_and_staging(demo_release, tmp_path, api_cls, method):
    plan = plan_upload(demo_release, "my-org/mantis_shrimp", staging=tmp_path / "stage", revision="main")
    assert set(plan.files) == set(expected_repo_files(demo_release, "mantis_shrimp"))
    assert plan.tag == "v0.1.0-demo"
    api = api_cls()
    name, kwargs = plan.upload_call(api)
    assert name == method
    assert kwargs["repo_id"] == "my-org/mantis_shrimp" and kwargs["repo_type"] == "dataset"
    assert kwargs["folder_path"] == str(tmp_path / "stage") and kwargs["revision"] == "main"
    done = publish(plan, api=api)
    names = [c[0] for c in api.calls]
    assert names == ["create_repo", method, "list_repo_files", "create_commit", "create_tag"]
    create_repo = api.calls[0]
    assert create_repo[1] == ("my-org/mantis_shrimp",) and create_repo[2]["repo_type"] == "dataset"
    assert create_repo[2]["exist_ok"] is True
    deletes = api.calls[3][2]["operations"]
    assert [op.path_in_repo for op in deletes] == ["data/train-09999.tar"] == done["deleted"]
    assert api.calls[4][2]["tag"] == "v0.1.0-demo"
    # the staging folder is exactly the repository tree, each file the release's own bytes
    staged = {p.relative_to(tmp_path / "stage").as_posix(): p for p in (tmp_path / "stage").rglob("*") if p.is_file()}
    assert set(staged) == set(plan.files)
    for rel, path in staged.items():
        assert os.path.samefile(path, plan.files[rel])
    # restaging after the plan shrinks removes what is no longer planned
    plan.files.pop("assets/sky_map.png")
    stage(plan)
    assert not (tmp_path / "stage" / "assets" / "sky_map.png").exists()
