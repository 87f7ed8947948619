"""Benchmark: cutout fetching from the loopback mock services, our client vs a plain sequential loop.

    python benchmarks/fetch.py [--targets 300] [--concurrency 8] [--n-sky 600]

Starts the mock server (``python -m builders.mock.server``) in its own process, with no faults (its
planted corrupt files served intact too, so nothing is retried) and no rate limit, then fetches the same targets twice in this process, side by side:

* ours: ``mantis_data.cutouts.fetch.fetch_cutouts`` (threads, keep-alive connections, validation of every
  response, atomic writes, the fetch manifest), rate limit off, ``--concurrency`` requests per host;
* baseline: a plain sequential loop with ``requests`` (one Session, so keep-alive too): the file list,
  five fitscut cutouts, two viewer cubes per target, each body written to a file, no validation.

It prints targets/s of both and the ratio, and our CPU time per target (this process only: the server
runs elsewhere), then projects the full 4.4M-target fetch for a few per-host server rate limits: a
target costs 6 requests to the Pan-STARRS host (file list + 5 bands) and 2 to the Legacy Survey host.
Note: on a 2-core machine the server and the client share the CPUs, so absolute rates are a floor.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.cutouts.fetch import FetchConfig, fetch_cutouts  # noqa: E402
from mantis_data.cutouts.legacysurvey import LEGACY_SURVEYS, layer_params  # noqa: E402
from mantis_data.cutouts.ps1 import PS1_BANDS, parse_filenames  # noqa: E402

FULL_TARGETS = 4_400_000
PS1_REQUESTS_PER_TARGET = 1 + len(PS1_BANDS)
LEGACY_REQUESTS_PER_TARGET = len(LEGACY_SURVEYS)


def start_server(n_sky: int, seed: int) -> tuple[subprocess.Popen, str]:
    """The mock server in its own process; returns (process, origin URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "builders.mock.server", "--n", str(n_sky), "--seed", str(seed), "--no-planted-corrupt"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("the mock server did not start")
    return proc, url


def baseline(targets: pd.DataFrame, url: str, out: Path) -> dict:
    """A plain sequential loop with requests (or urllib when requests is missing): bodies written, nothing checked."""
    try:
        import requests

        session = requests.Session()

        def get(u: str, params: dict) -> bytes:
            r = session.get(u, params=params, timeout=30)
            r.raise_for_status()
            return r.content

        lib = f"requests {requests.__version__} (one Session)"
    except ImportError:  # pragma: no cover - requests is usually there
        import urllib.parse
        import urllib.request

        def get(u: str, params: dict) -> bytes:
            with urllib.request.urlopen(f"{u}?{urllib.parse.urlencode(params)}", timeout=30) as r:
                return r.read()

        lib = "urllib"
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    n_req = 0
    for tid, ra, dec in zip(targets.target_id, targets.ra, targets.dec, strict=True):
        pos = {"ra": repr(float(ra)), "dec": repr(float(dec))}
        names = parse_filenames(get(f"{url}/cgi-bin/ps1filenames.py", {**pos, "filters": "grizy", "type": "stack"}))
        n_req += 1
        for b, name in names.items():
            body = get(f"{url}/cgi-bin/fitscut.cgi", {"red": name, **pos, "size": "170", "format": "fits"})
            (out / f"{tid}.{b}.fits").write_bytes(body)
            n_req += 1
        for s in LEGACY_SURVEYS:
            (out / f"{tid}.{s}.fits").write_bytes(get(f"{url}/viewer/fits-cutout", layer_params(s, ra, dec)))
            n_req += 1
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "requests": n_req, "lib": lib}


def ours(targets: pd.DataFrame, url: str, out: Path, concurrency: int) -> dict:
    """fetch_cutouts against the server, rate limit off."""
    cfg = FetchConfig(ps1_url=f"{url}/cgi-bin", legacy_url=f"{url}/viewer", concurrency=concurrency, rate=None, timeout_s=30)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = fetch_cutouts(targets, out, cfg, progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "requests": summary["requests"],
        "retries": summary["retries"],
        "summary": summary,
    }


def main() -> int:
    """Run both fetchers and print the comparison and the projection."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8, help="our requests in flight per host")
    p.add_argument("--n-sky", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    sky = MockSky(args.n_sky, seed=args.seed)
    n = min(args.targets, sky.n)
    idx = np.arange(n)
    targets = pd.DataFrame({"target_id": [f"bench-{i}" for i in idx], "ra": sky.ra[idx], "dec": sky.dec[idx]})
    proc, url = start_server(args.n_sky, args.seed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            baseline(targets.iloc[:10], url, tmp / "warm")  # warm the server (imports, caches)
            a = ours(targets, url, tmp / "ours", args.concurrency)
            b = baseline(targets, url, tmp / "baseline")
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    ours_rate, base_rate = n / a["seconds"], n / b["seconds"]
    cpu_ms = 1e3 * a["cpu"] / n
    print(f"fetch benchmark: {n} targets from the loopback mock server (no faults, no rate limit), 2 processes")
    print(f"  ours      : {a['seconds']:7.2f} s  {ours_rate:8.1f} targets/s  {a['requests'] / n:.2f} requests/target  "
          f"CPU {cpu_ms:.2f} ms/target  ({a['retries']} retries; concurrency {args.concurrency}/host, every response validated)")
    print(f"  baseline  : {b['seconds']:7.2f} s  {base_rate:8.1f} targets/s  {b['requests'] / n:.2f} requests/target  "
          f"CPU {1e3 * b['cpu'] / n:.2f} ms/target  (sequential, {b['lib']}, no validation)")
    print(f"  ratio     : {ours_rate / base_rate:.2f}x targets/s (ours / baseline)")
    s = a["summary"]["counts"]
    print("  ours ended: " + "; ".join(f"{k}: " + ", ".join(f"{x} {y}" for x, y in sorted(v.items())) for k, v in s.items()))
    print(f"\nprojection for {FULL_TARGETS:,} targets ({PS1_REQUESTS_PER_TARGET} requests/target to ps1images, "
          f"{LEGACY_REQUESTS_PER_TARGET} to legacysurvey.org; client CPU {cpu_ms:.2f} ms/target):")
    print(f"  {'rate limit per host':>20} {'targets/s':>10} {'wall time':>12} {'client CPU':>12} {'cores busy':>10}")
    cpu_hours = FULL_TARGETS * cpu_ms / 1e3 / 3600
    for rate in (2, 5, 10, 20, 50):
        tps = min(rate / PS1_REQUESTS_PER_TARGET, rate / LEGACY_REQUESTS_PER_TARGET)
        days = FULL_TARGETS / tps / 86400
        print(f"  {rate:>16} req/s {tps:>10.2f} {days:>9.1f} days {cpu_hours:>9.1f} h {tps * cpu_ms / 1e3:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
