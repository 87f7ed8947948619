"""Publish a verified release to the Hugging Face Hub, one dataset repository per format.

Layout (docs/publishing.md): the Hub's data-only layout wants the card ``README.md`` at the repository
root, and ``datasets`` picks one builder per repository, so each format of a release goes to its own
dataset repository, the same way it sits in its own folder locally::

    <namespace>/mantis_shrimp           <- <out>/mantis_shrimp/          (--format webdataset, the default)
    <namespace>/mantis_shrimp-parquet   <- <out>/mantis_shrimp-parquet/  (--format parquet)

Each repository holds that folder's ``README.md``, ``assets/`` and ``data/`` at its root, plus the
release's ``MANIFEST.json`` (verbatim, so its sha256 identify the release; its paths are relative to the
release folder, i.e. ``mantis_shrimp/data/x.tar`` is ``data/x.tar`` in the repository) and
``targets_audit.parquet``. Remote files that are not part of the upload are deleted afterwards, so the
repository mirrors the release, and the commit is tagged ``v<version>`` for pinned loading.

A release is published only if ``mantis_data.release.verify`` finds nothing wrong; ``--dry-run`` runs
the same checks and lists what would be uploaded without touching the network.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mantis_data.errors import ReleaseError
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, PARQUET_DIR, WEBDATASET_DIR, open_release, verify

FORMAT_DIRS = {"webdataset": WEBDATASET_DIR, "parquet": PARQUET_DIR}
"""Release folder published for each ``--format``."""

REPO_TYPE = "dataset"
STAGING_DIR = ".build/publish"
"""Where (under the release root) the repository's tree is laid out as hard links before an upload."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PublishRefusedError(ReleaseError):
    """The release fails verification (or the request is malformed), so nothing is uploaded."""


@dataclass
class UploadPlan:
    """Everything one upload will do: which local files go to which repository paths, and the calls."""

    repo_id: str
    fmt: str
    release_root: Path
    version: str
    staging: Path
    files: dict[str, Path] = field(default_factory=dict)
    revision: str | None = None
    private: bool = False
    tag: str | None = None

    def sizes(self) -> list[tuple[str, int]]:
        """(repository path, bytes) of every file to upload, sorted by path."""
        return [(rel, self.files[rel].stat().st_size) for rel in sorted(self.files)]

    @property
    def total_bytes(self) -> int:
        """Bytes to upload in all."""
        return sum(n for _, n in self.sizes())

    def upload_call(self, api: Any = None) -> tuple[str, dict]:
        """(HfApi method name, keyword arguments) of the upload: ``upload_large_folder`` where this
        huggingface_hub has it, else ``upload_folder`` (which in huggingface_hub >= 1.x batches large
        folders into several commits and resumes when rerun)."""
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi
        if hasattr(api, "upload_large_folder"):
            kwargs = {
                "repo_id": self.repo_id,
                "folder_path": str(self.staging),
                "repo_type": REPO_TYPE,
                "revision": self.revision,
                "private": self.private,
            }
            return "upload_large_folder", kwargs
        kwargs = {
            "repo_id": self.repo_id,
            "folder_path": str(self.staging),
            "repo_type": REPO_TYPE,
            "revision": self.revision,
            "commit_message": f"Mantis Shrimp {self.version} ({self.fmt})",
        }
        return "upload_folder", kwargs

    def describe(self) -> str:
        """The dry-run listing: repository, calls, then one line per file (bytes, repository path, local path)."""
        method, _ = self.upload_call()
        lines = [
            f"would upload release {self.version} ({self.fmt}) from {self.release_root} to "
            f"https://huggingface.co/datasets/{self.repo_id}" + (f" (revision {self.revision})" if self.revision else ""),
            f"  via HfApi.{method} from the staging folder {self.staging}"
            + (f", then tag {self.tag}" if self.tag else "")
            + "; remote files not listed here are deleted afterwards",
            f"{'bytes':>14}  path in repository  <-  file in the release",
        ]
        for rel, size in self.sizes():
            lines.append(f"{size:>14,}  {rel}  <-  {self.files[rel].relative_to(self.release_root).as_posix()}")
        lines.append(f"{self.total_bytes:>14,}  total, {len(self.files)} files")
        return "\n".join(lines)


def plan_upload(
    release: str | Path,
    repo_id: str,
    fmt: str = "webdataset",
    *,
    revision: str | None = None,
    private: bool = False,
    tag: bool = True,
    staging: str | Path | None = None,
    progress: bool = False,
) -> UploadPlan:
    """Verify a release and plan its upload (no network); raise PublishRefusedError naming every bad file."""
    if fmt not in FORMAT_DIRS:
        raise PublishRefusedError(f"unknown format {fmt!r}; choose one of {sorted(FORMAT_DIRS)}")
    if not _REPO_ID.match(repo_id):
        raise PublishRefusedError(f"--repo must be <namespace>/<name>, e.g. my-org/mantis_shrimp; got {repo_id!r}")
    rel = open_release(release)
    problems = verify(rel.root, progress=progress)
    if problems:
        listing = "\n  ".join(problems)
        raise PublishRefusedError(
            f"refusing to publish {rel.root}: verify found {len(problems)} problem(s):\n  {listing}\n"
            f"rebuild the release (python -m builders build ...) and check it with `mantis-data verify {rel.root}`"
        )
    folder = FORMAT_DIRS[fmt]
    files: dict[str, Path] = {}
    for path in sorted(rel.manifest["files"]):
        if path.startswith(folder + "/"):
            files[path[len(folder) + 1 :]] = rel.root / path
    for name in (MANIFEST_NAME, AUDIT_NAME):
        files[name] = rel.root / name
    if "README.md" not in files:
        raise PublishRefusedError(f"{rel.root / folder / 'README.md'}: the dataset card is not in the manifest")
    return UploadPlan(
        repo_id=repo_id,
        fmt=fmt,
        release_root=rel.root,
        version=rel.version,
        staging=Path(staging) if staging is not None else rel.root / STAGING_DIR / fmt,
        files=files,
        revision=revision,
        private=private,
        tag=f"v{rel.version}" if tag else None,
    )


def stage(plan: UploadPlan) -> Path:
    """Lay out the repository tree in ``plan.staging`` as hard links (symlinks across filesystems); return it.

    Files left from an earlier staging that are not in the plan are removed; huggingface_hub's resume
    metadata (``.cache/``) is kept.
    """
    root = plan.staging
    root.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.rglob("*"), reverse=True):
        rel = path.relative_to(root).as_posix()
        if rel == ".cache" or rel.startswith(".cache/"):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for rel, src in plan.files.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src.resolve(), dst)
    return root


def publish(plan: UploadPlan, api: Any = None) -> dict:
    """Upload a planned release (creating the dataset repository if needed), prune stale remote files, tag it."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    staging = stage(plan)
    api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=plan.private, exist_ok=True)
    method, kwargs = plan.upload_call(api)
    getattr(api, method)(**kwargs)
    remote = set(api.list_repo_files(plan.repo_id, repo_type=REPO_TYPE, revision=plan.revision))
    stale = sorted(remote - set(plan.files) - {".gitattributes"})
    if stale:
        from huggingface_hub import CommitOperationDelete

        api.create_commit(
            plan.repo_id,
            operations=[CommitOperationDelete(path_in_repo=p) for p in stale],
            commit_message=f"Remove files not in release {plan.version}",
            repo_type=REPO_TYPE,
            revision=plan.revision,
        )
    if plan.tag:
        api.create_tag(plan.repo_id, tag=plan.tag, repo_type=REPO_TYPE, revision=plan.revision, exist_ok=True)
    return {"repo_id": plan.repo_id, "method": method, "files": len(plan.files), "deleted": stale, "tag": plan.tag, "staging": str(staging)}


def remove_staging(plan: UploadPlan) -> None:
    """Delete the staging folder (links only; the release is untouched)."""
    shutil.rmtree(plan.staging, ignore_errors=True)


__all__ = ["FORMAT_DIRS", "PublishRefusedError", "UploadPlan", "plan_upload", "publish", "remove_staging", "stage"]
