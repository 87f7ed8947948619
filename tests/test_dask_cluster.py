"""A real Dask cluster from the command line, as docs/scaling.md prescribes.

`dask scheduler` and two `dask worker` processes (the venv's `dask` script, loopback, free ports) run in a
temporary folder outside the checkout, in the environment the docs prescribe: this interpreter's packages
(what `pip install "<checkout>[build]"` installs besides the package itself, already here) plus a real
`pip install` of this checkout's distribution, put first on the nodes' PYTHONPATH (so the nodes import
that installed `mantis_data`, never the checkout's files, and cannot import `builders` at all). The client
is `python -m builders` from the checkout. The release is byte-identical to the local `--workers 2` demo
build, also with a worker killed mid-build; a scheduler without the task entry point (an older
mantis-data) and a worker with another mantis-data version each stop the build before any shard with one
line naming the node.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from dask.distributed import Client

from builders.build import STAGE_DIR, build_release
from builders.executor import RECORD_DIR
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.release import MANIFEST_NAME, verify

REPO = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).parent / "dask"  # the venv's console script, as a maintainer types it
START_S = 60.0
LOOPBACK_HTTP = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]  # the health/metrics server stays, on loopback


def shard_hashes(root: Path) -> dict[str, str]:
    files = json.loads((root / MANIFEST_NAME).read_text())["files"]
    return {k: v["sha256"] for k, v in files.items() if v["format"] in ("webdataset", "parquet")}


def pip_install_checkout(site: Path, scratch: Path) -> Path:
    """`pip install` this checkout's distribution (no dependencies: they are this interpreter's) into ``site``.

    From a copy of the files a build of the distribution reads (pyproject.toml, README.md, mantis_data/), so
    the build leaves nothing in the checkout.
    """
    src = scratch / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "mantis_data", src / "mantis_data", ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    assert (site / "mantis_data" / "remote.py").exists() and not (site / "builders").exists()
    # The test interpreter may hold an editable install of a checkout (pip install -e), whose import hook
    # would serve mantis_data submodules missing from ``site`` out of that checkout: a node started with
    # this site must see the installed package only, as a node with a plain `pip install` does.
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__name__', type(f).__name__).lower()]\n"
    )
    return site


class Nodes:
    """Dask command-line processes, each in its own session so that stop() ends it with all its children."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], site: Path) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(site), DASK_TEMPORARY_DIRECTORY=str(self.cwd / "dask-scratch"))
        log = self.cwd / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [str(DASK), *args], cwd=self.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append((proc, log))
        return proc

    def scheduler(self, name: str, site: Path) -> str:
        """Start `dask scheduler` on a free loopback port; return its address."""
        file = self.cwd / f"{name}.json"
        proc = self.start(name, ["scheduler", "--host", "127.0.0.1", "--port", "0", *LOOPBACK_HTTP, "--scheduler-file", str(file)], site)
        deadline = time.monotonic() + START_S
        while True:
            try:
                return json.loads(file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                assert proc.poll() is None and time.monotonic() < deadline, self.logs()
                time.sleep(0.1)

    def worker(self, name: str, address: str, site: Path, *extra: str) -> subprocess.Popen:
        """Start one `dask worker` process (one thread) for the scheduler at ``address``."""
        return self.start(name, ["worker", address, "--nthreads", "1", "--host", "127.0.0.1", *LOOPBACK_HTTP, *extra], site)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for _, log in self.procs)

    def stop(self, proc: subprocess.Popen | None = None) -> None:
        """SIGTERM, then SIGKILL after 15 s, each process's whole session (all, or just ``proc``)."""
        chosen = [p for p, _ in self.procs if proc is None or p is proc]
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
            for p in chosen:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            for p in chosen:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in chosen):
                break
        for p in chosen:  # the session's other members (the nanny's worker) went with SIGTERM/SIGKILL above
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_workers(client: Client, n: int) -> None:
    deadline = time.monotonic() + START_S
    while len(client.scheduler_info(n_workers=-1)["workers"]) != n:
        assert time.monotonic() < deadline, f"expected {n} workers"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(nodes, scheduler address, client, installed site) of a scheduler and two workers in a folder outside the checkout."""
    root = tmp_path_factory.mktemp("dask-cli")
    site = pip_install_checkout(root / "site", root / "pip")
    nodes = Nodes(root / "nodes")
    nodes.cwd.mkdir()
    try:
        address = nodes.scheduler("scheduler", site)
        for i in (1, 2):
            nodes.worker(f"worker{i}", address, site)
        with Client(address, set_as_default=False, timeout=START_S) as client:
            client.wait_for_workers(2, timeout=START_S)
            yield nodes, address, client, site
    finally:
        nodes.stop()


def cli_build(demo: Path, out: Path, address: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "builders", "build",
        "--targets", str(demo / "work" / "targets.parquet"),
        "--cutouts", str(demo / "mock_inputs" / "cutouts"),
        "--out", str(out), "--shard-mb", "8", "--dust", "bh", "--scheduler", address,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_nodes_are_outside_the_checkout_and_cannot_import_builders(cluster):
    nodes, _, client, site = cluster
    where = {"scheduler": client.run_on_scheduler(os.getcwd), **client.run(os.getcwd)}
    assert all(Path(cwd) == nodes.cwd for cwd in where.values()), where

    def origins() -> dict:  # nested, so pickled by value: the nodes cannot import this test module
        import importlib.util

        specs = {name: importlib.util.find_spec(name) for name in ("builders", "mantis_data")}
        return {name: (spec.origin if spec else None) for name, spec in specs.items()}

    for spec in [client.run_on_scheduler(origins), *client.run(origins).values()]:
        assert spec["builders"] is None
        assert Path(spec["mantis_data"]).is_relative_to(site)
    # every socket the nodes listen on (scheduler, nannies, workers) is on loopback
    processes = [psutil.Process(p.pid) for p, _ in nodes.procs]
    processes += [child for proc in processes for child in proc.children(recursive=True)]
    listening = [c.laddr for proc in processes for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 5 and all(addr.ip == "127.0.0.1" for addr in listening), listening


def test_a_command_line_cluster_builds_the_local_release_and_survives_a_killed_worker(cluster, demo_release, tmp_path):
    nodes, address, client, _ = cluster
    out = tmp_path / "cli"
    run = cli_build(demo_release, out, address)
    assert run.returncode == 0, run.stderr[-3000:] + nodes.logs()
    assert shard_hashes(out) == shard_hashes(demo_release)  # demo_release: the local --workers 2 build
    assert verify(out) == []

    killed = tmp_path / "killed"
    pids = client.run(os.getpid)  # worker address -> pid of the worker process (its nanny restarts it)
    outcome: dict = {}

    def build() -> None:
        try:
            outcome["manifest"] = build_release(
                demo_release / "work" / "targets.parquet",
                LocalFitsSource(demo_release / "mock_inputs" / "cutouts"),
                killed, dust="bh", shard_mb=8, progress=False, scheduler=address,
            )  # fmt: skip
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    def records() -> list[Path]:  # shard records, in the staging area while the build runs
        return [*(killed / STAGE_DIR / RECORD_DIR).glob("*.json"), *(killed / RECORD_DIR).glob("*.json")]

    thread = threading.Thread(target=build)
    thread.start()
    stopped = list(pids.values())
    try:
        deadline = time.monotonic() + 120
        while not records():
            assert thread.is_alive() and time.monotonic() < deadline, "no shard record appeared"
            time.sleep(0.005)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)  # freeze both: the kill lands mid-build, surely
        n_done = len(records())
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        assert busy, "no worker was running a shard"
        os.kill(pids[busy[0]], signal.SIGKILL)
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    thread.join(timeout=240)
    assert not thread.is_alive()
    assert "error" not in outcome, f"{outcome.get('error')}\n{nodes.logs()}"
    assert n_done < len(shard_hashes(demo_release)) // 2
    assert shard_hashes(killed) == shard_hashes(demo_release)
    assert verify(killed) == []
    _wait_workers(client, 2)  # the nanny replaced the killed worker


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, (run.returncode, run.stderr[-3000:])
    return lines[0]


def test_a_scheduler_without_the_task_entry_point_stops_the_build_with_one_line(cluster, demo_release, tmp_path):
    nodes, _, _, site = cluster
    old = tmp_path / "old-site"  # an earlier mantis-data: installed, but without mantis_data.remote
    shutil.copytree(site, old)
    (old / "mantis_data" / "remote.py").unlink()
    address = nodes.scheduler("old-scheduler", old)
    out = tmp_path / "out"
    line = _one_error_line(cli_build(demo_release, out, address))
    assert line.startswith(f"error: scheduler {address} cannot run the build's tasks: cannot import mantis_data.remote"), line
    assert f"pip install '{REPO}[build]'" in line
    assert not list(out.glob(f"{RECORD_DIR}/*.json")) and not list(out.glob(f"{STAGE_DIR}/{RECORD_DIR}/*.json"))  # nothing was submitted


def test_a_worker_with_another_version_stops_the_build_with_one_line(cluster, demo_release, tmp_path):
    nodes, address, client, site = cluster
    other = tmp_path / "other-site"  # another release of the package on one worker
    shutil.copytree(site, other)
    init = other / "mantis_data" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9-'))
    before = set(client.scheduler_info(n_workers=-1)["workers"])
    proc = nodes.worker("other-worker", address, other, "--no-nanny")
    try:
        _wait_workers(client, len(before) + 1)
        (odd,) = set(client.scheduler_info(n_workers=-1)["workers"]) - before
        out = tmp_path / "out"
        line = _one_error_line(cli_build(demo_release, out, address))
        assert line.startswith(f"error: worker {odd} cannot run the build's tasks: its mantis_data (9.9.9-"), line
        assert "is not the client's" in line and f"pip install '{REPO}[build]'" in line
        assert not list(out.glob(f"{RECORD_DIR}/*.json")) and not list(out.glob(f"{STAGE_DIR}/{RECORD_DIR}/*.json"))
    finally:
        nodes.stop(proc)
    _wait_workers(client, len(before))


def test_differences_name_the_python_and_package_versions_that_differ():
    from builders.cluster import differences, environment

    ours = environment()
    assert differences(ours, ours) == []
    theirs = json.loads(json.dumps(ours))
    theirs["python"] = "3.99.0"
    theirs["packages"]["pyarrow"] = "1.0.0"
    theirs["packages"]["astropy"] = None
    found = differences(ours, theirs)
    assert found == [
        f"Python 3.99.0 there, {ours['python']} on the client",
        f"pyarrow 1.0.0 there, {ours['packages']['pyarrow']} on the client",
        f"astropy not installed there, {ours['packages']['astropy']} on the client",
    ]
