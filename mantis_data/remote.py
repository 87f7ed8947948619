"""Run a task shipped as bytes: the entry point of the builders' Dask tasks on every node.

A Dask scheduler deserialises each task before a worker runs it, so whatever a task references must be
importable on the scheduler and on the workers. The builders are a maintainer's checkout, not part of the
installed distribution, so a client sends each shard task as ``run_payload(payload)``: this function,
importable wherever ``mantis-data`` is installed, and one ``bytes`` argument holding the task's function
and arguments, pickled by the client with cloudpickle with the builders' code *by value* (the code travels
with the task). The scheduler sees only this function and bytes; a worker unpickles the payload (which
imports what the code needs: mantis_data, numpy, pandas, pyarrow, ... from the installed environment) and
calls it. This module imports nothing heavy and never imports ``builders``.
"""

from __future__ import annotations

from typing import Any

PROTOCOL = 1
"""Version of the payload format; the client checks every node reports the same."""


def run_payload(payload: bytes) -> Any:
    """Unpickle ``(function, args, kwargs)`` from ``payload`` (cloudpickle bytes) and return the call's result."""
    import cloudpickle

    function, args, kwargs = cloudpickle.loads(payload)
    return function(*args, **kwargs)
