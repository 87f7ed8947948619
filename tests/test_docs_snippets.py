"""Every ```python and ```bash block of README.md, docs/*.md and the release cards runs as written.

The blocks of one file run in order, in the folder that holds the test's demo release (the place the
README says to run them from), Python blocks in one subprocess with one shared namespace (a block may use what an earlier one
defined, as a reader following the page would), bash blocks with ``bash -euo pipefail``. The documented
example path ``/tmp/ms`` stands for that demo release. A block that cannot run here (it needs GPUs, the
Hub, or installs packages) is preceded by a line ``<!-- snippet: skip REASON -->``, which the page keeps
visible to the reader in its source; the reason must not be empty. ``python -m pytest -k snippets -rA``
lists each block with its file and line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_RELEASE = "/tmp/ms"
SNIPPET_TIMEOUT_S = 240
FENCE = re.compile(r"^```(python|bash)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"<!--\s*snippet:\s*skip\s*(.*?)\s*-->\s*$")
UNTAGGED = re.compile(r"^```[ \t]*\n(.*?)^```", re.S | re.M)
COMMANDS = ("mantis-data ", "python ", "python3 ", "torchrun ", "dask ", "pip ", "cd ", "OMP_NUM_THREADS")
"""How a command starts: an untagged block starting so must be tagged ```bash (and run, or be skipped)."""


@dataclass(frozen=True)
class Snippet:
    """One fenced block: where it is, its language, its code, and why it is not run (or None)."""

    source: str
    line: int
    lang: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}"


def snippets_of(text: str, source: str) -> list[Snippet]:
    """The python/bash blocks of a markdown text, in order, with their skip markers."""
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        if skip is not None and not skip.group(1):
            raise AssertionError(f"{source}:{line}: a skipped snippet needs a reason")
        out.append(Snippet(source, line, m.group(1), m.group(2), skip.group(1) if skip else None))
    return out


def doc_files() -> list[Path]:
    """The markdown pages a user reads in a checkout."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


PAGES = {str(p.relative_to(REPO)): p for p in doc_files()}


RUNNER = """
import json, sys, traceback
namespace = {"__name__": "__snippet__"}
for block_id, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, block_id, "exec"), namespace)
    except BaseException as exc:
        print(f"SNIPPET-FAILED {block_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def run_page(snippets: list[Snippet], release: Path, workdir: Path) -> tuple[int, int]:
    """Run one page's blocks in order in the release folder; return (ran, skipped); fail naming the first bad block.

    Python blocks run in one subprocess (one shared namespace, as a reader's session), bash blocks each in
    ``bash -euo pipefail``; both with this interpreter first on PATH and a time limit.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    ran = sum(s.skip is None for s in snippets)
    skipped = len(snippets) - ran
    pending: list[tuple[str, str]] = []

    def flush() -> None:
        if not pending:
            return
        blocks = workdir / "blocks.json"
        blocks.write_text(json.dumps(pending))
        try:
            proc = subprocess.run([sys.executable, "-c", RUNNER, str(blocks)], cwd=release, env=env,
                                  capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"python blocks {[b for b, _ in pending]} ran over {SNIPPET_TIMEOUT_S} s")
        if proc.returncode != 0:
            pytest.fail(f"the python block fails: {proc.stderr[-3000:]}")
        pending.clear()

    for s in snippets:
        if s.skip is not None:
            continue
        code = s.code.replace(EXAMPLE_RELEASE, str(release))
        if s.lang == "python":
            pending.append((s.id, code))
            continue
        flush()  # python blocks before this bash block run first, in page order
        try:
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=release, env=env,
                                  capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{s.id}: the bash block ran over {SNIPPET_TIMEOUT_S} s")
        if proc.returncode != 0:
            pytest.fail(f"{s.id}: the bash block exits {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    flush()
    return ran, skipped


@pytest.fixture(scope="module")
def snippet_release(demo_release, tmp_path_factory) -> Path:
    """A private copy of the demo release (snippets may write beside it)."""
    import shutil

    dst = tmp_path_factory.mktemp("snippets") / "ms"
    shutil.copytree(demo_release, dst)
    return dst


def test_skip_markers_have_reasons_and_blocks_exist():
    total = [s for p in PAGES.values() for s in snippets_of(p.read_text(encoding="utf-8"), p.name)]
    assert len(total) >= 10, "the docs lost their examples"


def test_commands_are_never_in_untagged_blocks():
    """A command shown in a plain ``` block would escape this test: it must be ```bash."""
    hidden = []
    for name, path in PAGES.items():
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):  # blank out the tagged blocks, then look at what is left
            text = text[: m.start()] + "\n" * m.group(0).count("\n") + text[m.end():]
        for m in UNTAGGED.finditer(text):
            if m.group(1).lstrip().startswith(COMMANDS):
                hidden.append(f"{name}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not hidden, f"commands in untagged code blocks: {hidden}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_snippets_run(page, snippet_release, tmp_path, capsys):
    snippets = snippets_of(PAGES[page].read_text(encoding="utf-8"), page)
    if not snippets:
        return
    ran, skipped = run_page(snippets, snippet_release, tmp_path)
    with capsys.disabled():
        print(f"\n{page}: ran {ran} block(s), {skipped} marked not runnable")


@pytest.mark.parametrize("folder", ["mantis_shrimp", "mantis_shrimp-parquet"])
def test_release_card_snippets_run(folder, snippet_release, tmp_path, capsys):
    card = snippet_release / folder / "README.md"
    snippets = snippets_of(card.read_text(encoding="utf-8"), f"{folder}/README.md")
    assert snippets, f"the card of {folder} has no example"
    ran, skipped = run_page(snippets, snippet_release, tmp_path)
    with capsys.disabled():
        print(f"\n{folder}/README.md: ran {ran} block(s), {skipped} marked not runnable")
