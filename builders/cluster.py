"""Dask clusters for the build: ship the shard code with each task, and check the nodes before submitting.

A Dask scheduler deserialises every task it is given, and a worker deserialises it again to run it, so
whatever a task references must be importable on both. ``builders`` is a maintainer's checkout, not part
of the installed distribution, so nothing of it is referenced by name: each task is
``mantis_data.remote.run_payload(payload)``, a function of the installed package, with one ``bytes``
argument made here by cloudpickle with the ``builders`` code *by value*. The scheduler and the workers
therefore need the installed ``mantis-data`` (with the ``build`` extra's packages) and nothing else: no
checkout, no uploaded files, no plugins; a worker that joins or restarts mid-build needs nothing either,
and a long-lived cluster never runs stale code, since every task carries the client's.

Because the code runs on the nodes against their own installed packages, :func:`check_cluster` compares
every node with the client before the first shard is submitted: the same Python minor version, the same
versions of the packages that touch a shard's bytes or the payload (:data:`CHECKED_PACKAGES`), and the
same ``mantis_data`` source (sha256 over its modules). The first node that differs is named in one line,
with the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mantis_data.errors import MantisDataError

CHECKED_PACKAGES = ("cloudpickle", "dask", "distributed", "numpy", "pandas", "pyarrow", "astropy")
"""Distributions whose versions must be equal on the client, the scheduler and every worker."""

WORKER_WAIT_S = 60.0
"""Seconds to wait for a first worker to join the scheduler before giving up."""

CHECKOUT = Path(__file__).resolve().parents[1]
"""The checkout the builders run from (named in the fix of a mismatch)."""


class ClusterEnvironmentError(MantisDataError):
    """The Dask cluster cannot run the build's tasks: no worker, or a node's environment differs from the client's."""


def payload(function: Callable, *args: Any) -> bytes:
    """``(function, args, {})`` as cloudpickle bytes for ``mantis_data.remote.run_payload``, builders code by value."""
    import cloudpickle

    import builders

    cloudpickle.register_pickle_by_value(builders)
    try:
        return cloudpickle.dumps((function, args, {}))
    finally:
        cloudpickle.unregister_pickle_by_value(builders)


def _make_probe(packages: tuple[str, ...]) -> Callable[[], dict]:
    """A self-contained function (pickled by value, stdlib only) that describes the environment it runs in."""

    def probe() -> dict:
        import hashlib
        import importlib
        import sys
        from importlib import metadata
        from pathlib import Path

        report: dict = {"python": ".".join(map(str, sys.version_info[:3])), "packages": {}, "error": None, "mantis_data": None}
        for name in packages:
            try:
                report["packages"][name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                report["packages"][name] = None
        try:
            package = importlib.import_module("mantis_data")
            remote = importlib.import_module("mantis_data.remote")
        except Exception as exc:  # noqa: BLE001 - reported to the client
            report["error"] = f"cannot import mantis_data.remote ({type(exc).__name__}: {exc})"
            return report
        root = Path(package.__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)  # modules of (sub)packages only, as the installed distribution has them
            if all((root.joinpath(*rel.parts[:i]) / "__init__.py").exists() for i in range(1, len(rel.parts))):
                digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        report["mantis_data"] = {
            "version": package.__version__,
            "path": str(root),
            "protocol": remote.PROTOCOL,
            "sha256": digest.hexdigest(),
        }
        return report

    return probe


def environment() -> dict:
    """This process's environment as the nodes report theirs: Python, CHECKED_PACKAGES, mantis_data source hash."""
    return _make_probe(CHECKED_PACKAGES)()


def differences(ours: dict, theirs: dict) -> list[str]:
    """How a node's environment report differs from the client's, as short phrases (empty: compatible)."""
    if theirs.get("error"):
        return [theirs["error"]]
    out = []
    if theirs["python"].split(".")[:2] != ours["python"].split(".")[:2]:
        out.append(f"Python {theirs['python']} there, {ours['python']} on the client")
    for name, version in ours["packages"].items():
        if theirs["packages"].get(name) != version:
            out.append(f"{name} {theirs['packages'].get(name) or 'not installed'} there, {version} on the client")
    a, b = ours["mantis_data"], theirs["mantis_data"]
    if (b["protocol"], b["sha256"]) != (a["protocol"], a["sha256"]):
        out.append(
            f"its mantis_data ({b['version']} at {b['path']}, source sha256 {b['sha256'][:12]}) is not the client's "
            f"({a['version']} at {a['path']}, {a['sha256'][:12]})"
        )
    return out


def _fix(ours: dict) -> str:
    py = ".".join(ours["python"].split(".")[:2])
    return (
        f"install the client's environment there (Python {py}, the same package versions, this checkout's "
        f"package: pip install '{CHECKOUT}[build]') and restart it (docs/scaling.md)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_cluster(client: Any, address: str, wait_s: float = WORKER_WAIT_S) -> int:
    """Check the scheduler and every worker can run this client's shard tasks; return the worker count.

    Waits up to ``wait_s`` seconds for a first worker. Raises ClusterEnvironmentError naming the first node
    that differs from the client (Python, CHECKED_PACKAGES, mantis_data source) and the fix, or when no
    worker joins.
    """
    probe = _make_probe(CHECKED_PACKAGES)
    ours = probe()
    try:
        theirs = client.run_on_scheduler(probe)
    except Exception as exc:  # noqa: BLE001 - any failure to run our probe there is the same problem
        raise ClusterEnvironmentError(
            f"scheduler {address} cannot run code from this client ({_first_line(exc)}); {_fix(ours)}"
        ) from exc
    problems = differences(ours, theirs)
    if problems:
        raise ClusterEnvironmentError(f"scheduler {address} cannot run the build's tasks: {'; '.join(problems)}; {_fix(ours)}")
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError as exc:
        raise ClusterEnvironmentError(
            f"no Dask worker joined the scheduler at {address} within {wait_s:.0f} s; "
            f"start workers with: dask worker {address} --nthreads 1 (docs/scaling.md)"
        ) from exc
    reports = client.run(probe, on_error="return")
    bad = []
    for worker, report in sorted(reports.items()):
        problems = [f"cannot run code from this client ({_first_line(report)})"] if isinstance(report, BaseException) else differences(ours, report)
        if problems:
            bad.append((worker, problems))
    if bad:
        worker, problems = bad[0]
        more = f" ({len(bad) - 1} more of the {len(reports)} workers differ too)" if len(bad) > 1 else ""
        raise ClusterEnvironmentError(f"worker {worker} cannot run the build's tasks: {'; '.join(problems)}{more}; {_fix(ours)}")
    return len(reports)
