"""A loopback HTTP server that serves the mock sky behind the real cutout services' paths and parameters.

    GET /cgi-bin/ps1filenames.py?ra=&dec=&filters=grizy&type=stack     Pan-STARRS file table (empty: no
        coverage); type=stack is required (400 without it), so a client that relies on the default shows
    GET /cgi-bin/fitscut.cgi?red=<filename>&ra=&dec=&size=&format=fits     one band, render_ps1 bytes
    GET /viewer/fits-cutout?ra=&dec=&layer=galex|unwise-neo7&pixscale=&size=     render_legacy bytes

Bodies are exactly what ``builders.mock.cutouts`` renders (and ``write_cutouts`` writes), so a fetch from
this server gives a cache byte-identical to ``write_cutouts``'s. A planted corrupt PS1 band is served as
the truncated file ``write_cutouts`` writes (a complete HTTP response with a broken FITS body, on every
attempt). fitscut at a position without coverage answers 404; a malformed request answers 400.

Injectable faults (``FaultPlan``), decided deterministically per request key (endpoint, band or layer,
ra, dec) and attempt number: 'slow' (sleep, then answer), '429' (with Retry-After), '503', 'drop'
(close the connection without answering), 'truncate' (full Content-Length, a third of the body, then
close), 'html' (an HTML error page with status 200) and '404'. A *transient* fault hits the first
1..max_repeats attempts of a key, a *permanent* one every attempt. ``MockServer.log`` records every
request; ``MockServer.expected_status`` says what a client with N attempts should end with per survey.

Run standalone (e.g. for benchmarks/fetch.py): ``python -m builders.mock.server --n 600 --port 0``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mantis_data.bands import LEGACY_SURVEY_LAYERS, SURVEYS

from .cutouts import _Scene, _skycell_name, _truncate, render_legacy, render_ps1
from .sky import MockSky

FAULT_KINDS: tuple[str, ...] = ("slow", "429", "503", "drop", "truncate", "html", "404")
"""Fault kinds the server can inject."""

PS1_PREFIX = "/cgi-bin"
LEGACY_PREFIX = "/viewer"
_LAYER_TO_SURVEY = {layer: s for s, layer in LEGACY_SURVEY_LAYERS.items()}
_RED_RE = re.compile(r"rings\.v3\.skycell\.(\d{4})\.(\d{3})\.stk\.([grizy])\.unconv\.fits$")
_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
    b"<body><h1>Temporarily unavailable</h1><p>The server is busy; please try again later.</p></body></html>\n"
)


def _u(*parts) -> float:
    """Deterministic uniform [0, 1) from the parts' text."""
    h = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0**64


@dataclass
class FaultPlan:
    """Which requests fail and how: fractions of request keys per fault kind, transient or permanent.

    A key draws one number u: the first ``permanent`` fractions (in FAULT_KINDS order) fail every attempt,
    the next ``transient`` fractions fail their first k attempts (k uniform in 1..max_repeats, per key).
    ``retry_after_s`` is the Retry-After sent with 429 (fractional seconds allowed for tests); ``slow_s``
    how long a 'slow' answer sleeps before it is sent.
    """

    transient: dict[str, float] = field(default_factory=dict)
    permanent: dict[str, float] = field(default_factory=dict)
    max_repeats: int = 2
    seed: int = 0
    retry_after_s: float = 1.0
    slow_s: float = 2.0

    def __post_init__(self) -> None:
        for kind in (*self.transient, *self.permanent):
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; kinds: {FAULT_KINDS}")
        total = sum(self.transient.values()) + sum(self.permanent.values())
        if total > 1.0 + 1e-9 or any(v < 0 for v in (*self.transient.values(), *self.permanent.values())):
            raise ValueError(f"fault fractions must be >= 0 and sum to <= 1 (they sum to {total})")
        if self.max_repeats < 1:
            raise ValueError("max_repeats must be >= 1")

    def assignment(self, key: str) -> tuple[str | None, int | None]:
        """(fault kind or None, attempts it lasts: k, or None for every attempt) of a request key."""
        u = _u(self.seed, "fault", key)
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += self.permanent.get(kind, 0.0)
            if u < acc:
                return kind, None
        for kind in FAULT_KINDS:
            acc += self.transient.get(kind, 0.0)
            if u < acc:
                return kind, 1 + int(_u(self.seed, "repeat", key) * self.max_repeats)
        return None, 0

    def fault(self, key: str, attempt: int) -> str | None:
        """The fault for the ``attempt``-th (0-based) request of ``key``, or None to answer normally."""
        kind, repeats = self.assignment(key)
        if kind is None or (repeats is not None and attempt >= repeats):
            return None
        return kind

    def served_within(self, key: str, attempts: int) -> bool:
        """Whether a client making ``attempts`` requests of ``key`` gets a normal answer ('slow' counts as failed)."""
        kind, repeats = self.assignment(key)
        return kind is None or (repeats is not None and repeats < attempts)


def canonical(value: str) -> str:
    """The canonical text of a coordinate parameter (the float's repr), for request keys."""
    return repr(float(value))


def request_key(endpoint: str, ra: str, dec: str, what: str = "") -> str:
    """The key faults and attempt counts are tracked by: endpoint, band or layer, canonical ra and dec."""
    return f"{endpoint}|{what}|{canonical(ra)}|{canonical(dec)}"


def ps1_filename(ra: float, dec: float, band: str) -> str:
    """The mock stack path ps1filenames.py lists for (ra, dec) degrees and ``band``."""
    short = _skycell_name(ra, dec, band)
    m = _RED_RE.search(short)
    return f"/rings.v3.skycell/{m.group(1)}/{m.group(2)}/{short}"


class _BadRequest(Exception):
    pass


class MockServer:
    """The mock services on 127.0.0.1 (a ThreadingHTTPServer in a background thread); a context manager.

    ``url`` is the origin; pass ``ps1_url`` and ``legacy_url`` to the client. ``log`` is a list of dicts per
    request: t0 (request read), t_send (answer starts), t1 (answer written; time.monotonic), path, params, endpoint, key, attempt (0-based per key), status, fault,
    bytes, complete (the whole intended body was written), stamp (a fitscut/fits-cutout request), user_agent.
    ``log_path``: also append each record as a JSON line (for a server in another process).
    ``ps1_compressed``: serve Pan-STARRS cutouts asinh-compressed (BSOFTEN/BOFFSET), as raw skycells are.
    """

    def __init__(
        self,
        sky: MockSky,
        faults: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        planted_corrupt: bool = True,
        ps1_compressed: bool = False,
        log_path: str | Path | None = None,
        idle_timeout_s: float = 15.0,
    ):
        self.sky = sky
        self.faults = faults or FaultPlan()
        self.planted_corrupt = planted_corrupt
        self.ps1_compressed = ps1_compressed
        self.log: list[dict] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._log_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class(idle_timeout_s))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The server's origin, http://127.0.0.1:<port>."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def ps1_url(self) -> str:
        """Base URL for the Pan-STARRS client (``--ps1-url``)."""
        return self.url + PS1_PREFIX

    @property
    def legacy_url(self) -> str:
        """Base URL for the Legacy Survey client (``--legacy-url``)."""
        return self.url + LEGACY_PREFIX

    def start(self) -> MockServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and the log file."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset_log(self) -> None:
        """Forget the request log (attempt counters per key are kept)."""
        with self._lock:
            self.log.clear()

    # ------------------------------------------------------------------ truth for tests
    def ps1_keys(self, ra: float, dec: float) -> list[str]:
        """Request keys of a target's Pan-STARRS requests: the file list, then g r i z y cutouts."""
        r, d = repr(float(ra)), repr(float(dec))
        return [request_key("filenames", r, d)] + [request_key("fitscut", r, d, b) for b in SURVEYS["ps1"].bands]

    def legacy_key(self, survey: str, ra: float, dec: float) -> str:
        """Request key of a target's viewer request for ``survey`` ('galex' or 'unwise')."""
        return request_key("fits-cutout", repr(float(ra)), repr(float(dec)), LEGACY_SURVEY_LAYERS[survey])

    def expected_status(self, ra: float, dec: float, attempts: int) -> dict[str, str]:
        """What a client making ``attempts`` tries per request should end with: per survey 'ok' | 'no_coverage' | 'failed'."""
        keys = self.ps1_keys(ra, dec)
        if not self.faults.served_within(keys[0], attempts):
            ps1 = "failed"
        elif not _Scene(self.sky, ra, dec).ps1_covered():
            ps1 = "no_coverage"
        else:
            scene = _Scene(self.sky, ra, dec)
            corrupt = self.planted_corrupt and scene.flag_g >= 0 and self.sky.ps1_corrupt_band[scene.flag_g] >= 0
            ok = not corrupt and all(self.faults.served_within(k, attempts) for k in keys[1:])
            ps1 = "ok" if ok else "failed"
        out = {"ps1": ps1}
        for s in ("galex", "unwise"):
            out[s] = "ok" if self.faults.served_within(self.legacy_key(s, ra, dec), attempts) else "failed"
        return out

    # ------------------------------------------------------------------ serving
    def _record(self, rec: dict) -> None:
        with self._lock:
            self.log.append(rec)
            self.counts[f"{rec['endpoint']}:{rec['status']}"] += 1
            if self._log_file is not None:
                self._log_file.write(json.dumps(rec) + "\n")

    def _next_attempt(self, key: str) -> int:
        with self._lock:
            n = self.counts[f"attempt|{key}"]
            self.counts[f"attempt|{key}"] = n + 1
            return n

    def _route(self, path: str, q: dict[str, str]) -> tuple[str, str, Callable[[], tuple[int, str, bytes]]]:
        """(endpoint, key, body factory) of a request, or _BadRequest / LookupError (404)."""

        def need(name: str) -> str:
            if name not in q or q[name] == "":
                raise _BadRequest(f"missing parameter {name}")
            return q[name]

        def coord(name: str, lo: float, hi: float) -> float:
            try:
                v = float(need(name))
            except ValueError:
                raise _BadRequest(f"bad {name}={q[name]!r}") from None
            if not (math.isfinite(v) and lo <= v <= hi):
                raise _BadRequest(f"{name} out of range: {v}")
            return v

        def integer(name: str, lo: int, hi: int) -> int:
            try:
                v = int(need(name))
            except ValueError:
                raise _BadRequest(f"bad {name}={q[name]!r}") from None
            if not lo <= v <= hi:
                raise _BadRequest(f"{name} out of range: {v}")
            return v

        if path == f"{PS1_PREFIX}/ps1filenames.py":
            ra, dec = coord("ra", -360, 720), coord("dec", -90, 90)
            filters = q.get("filters", "grizy") or "grizy"
            if any(f not in "grizy" for f in filters):
                raise _BadRequest(f"bad filters={filters!r}")
            if q.get("type") != "stack":
                raise _BadRequest(f"type={q.get('type')!r}: the mock serves stacks only and requires type=stack")
            key = request_key("filenames", q["ra"], q["dec"])
            return "filenames", key, lambda: self._filenames_body(ra, dec, filters, q["ra"], q["dec"])
        if path == f"{PS1_PREFIX}/fitscut.cgi":
            ra, dec = coord("ra", -360, 720), coord("dec", -90, 90)
            size = integer("size", 1, 6000)
            if q.get("format", "jpg") != "fits":
                raise _BadRequest("only format=fits is served by the mock")
            m = _RED_RE.search(need("red"))
            if not m:
                raise _BadRequest(f"red={q['red']!r} is not a stack file name")
            band = m.group(3)
            key = request_key("fitscut", q["ra"], q["dec"], band)
            return "fitscut", key, lambda: self._fitscut_body(ra, dec, band, size, q["red"])
        if path == f"{LEGACY_PREFIX}/fits-cutout":
            ra, dec = coord("ra", -360, 720), coord("dec", -90, 90)
            layer = need("layer")
            if layer not in _LAYER_TO_SURVEY:
                raise _BadRequest(f"unknown layer {layer!r}")
            size = integer("size", 1, 512)
            pixscale = float(q.get("pixscale", SURVEYS[_LAYER_TO_SURVEY[layer]].pixel_scale_arcsec))
            if not (math.isfinite(pixscale) and pixscale > 0):
                raise _BadRequest("bad pixscale")
            key = request_key("fits-cutout", q["ra"], q["dec"], layer)
            return "fits-cutout", key, lambda: (200, "application/fits", render_legacy(self.sky, ra, dec, layer, size, pixscale))
        raise LookupError(path)

    def _filenames_body(self, ra: float, dec: float, filters: str, ra_text: str, dec_text: str) -> tuple[int, str, bytes]:
        lines = [" ".join(("projcell", "subcell", "ra", "dec", "filter", "mjd", "type", "filename", "shortname", "badflag"))]
        if _Scene(self.sky, ra, dec).ps1_covered():
            for b in sorted(filters):  # the service's own order, not the request's
                path = ps1_filename(ra, dec, b)
                m = _RED_RE.search(path)
                lines.append(f"{m.group(1)} {m.group(2)} {ra_text} {dec_text} {b} 0 stack {path} {path.rsplit('/', 1)[1]} 0")
        return 200, "text/plain", ("\n".join(lines) + "\n").encode()

    def _fitscut_body(self, ra: float, dec: float, band: str, size: int, red: str) -> tuple[int, str, bytes]:
        scene = _Scene(self.sky, ra, dec)
        if not scene.ps1_covered():
            return 404, "text/plain", b"fitscut: position not in any image\n"
        if red.rsplit("/", 1)[-1] != _skycell_name(ra, dec, band):
            return 400, "text/plain", b"fitscut: position outside the requested image\n"
        data = render_ps1(self.sky, ra, dec, band, size=size, compressed=self.ps1_compressed)
        if self.planted_corrupt:
            g = scene.flag_g
            if g >= 0 and self.sky.ps1_corrupt_band[g] == SURVEYS["ps1"].bands.index(band):
                data = _truncate(data)
        return 200, "application/fits", data

    def _handler_class(self, idle_timeout_s: float):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = idle_timeout_s
            server_version = "MantisMock/1.0"

            def log_message(self, format, *args):  # noqa: A002 - the base class's signature
                return

            def _send(self, status: int, ctype: str, body: bytes, extra: dict | None = None, cut: int | None = None) -> bool:
                self._t_send = time.monotonic()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body if cut is None else body[:cut])
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return False
                if cut is not None:
                    self.close_connection = True
                    return False
                return True

            def do_GET(self):  # noqa: N802 - the base class's name
                t0 = time.monotonic()
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                rec = {"t0": t0, "path": parts.path, "params": q, "endpoint": "?", "key": None, "attempt": None,
                       "fault": None, "status": None, "bytes": 0, "complete": False, "stamp": False,
                       "user_agent": self.headers.get("User-Agent", "")}
                try:
                    endpoint, key, make = server._route(parts.path, q)
                except _BadRequest as exc:
                    rec.update(status=400, complete=self._send(400, "text/plain", f"{exc}\n".encode()))
                    return self._done(rec)
                except LookupError:
                    rec.update(status=404, complete=self._send(404, "text/plain", b"not found\n"))
                    return self._done(rec)
                attempt = server._next_attempt(key)
                fault = server.faults.fault(key, attempt)
                rec.update(endpoint=endpoint, key=key, attempt=attempt, fault=fault, stamp=endpoint != "filenames")
                plan = server.faults
                if fault == "slow":
                    time.sleep(plan.slow_s)
                if fault == "429":
                    ra_s = f"{plan.retry_after_s:g}"
                    rec.update(status=429, complete=self._send(429, "text/plain", b"Too Many Requests\n", {"Retry-After": ra_s}))
                    return self._done(rec)
                if fault == "503":
                    rec.update(status=503, complete=self._send(503, "text/html", _HTML_ERROR))
                    return self._done(rec)
                if fault == "404":
                    rec.update(status=404, complete=self._send(404, "text/plain", b"not found\n"))
                    return self._done(rec)
                if fault == "drop":
                    self.close_connection = True
                    rec.update(status=0)
                    return self._done(rec)
                if fault == "html":
                    rec.update(status=200, complete=self._send(200, "text/html", _HTML_ERROR))
                    return self._done(rec)
                try:
                    status, ctype, body = make()
                except Exception as exc:  # a bug in the mock must show up as a 500, not a hung client
                    rec.update(status=500, complete=self._send(500, "text/plain", f"mock error: {exc!r}\n".encode()))
                    return self._done(rec)
                cut = len(body) // 3 if fault == "truncate" else None
                ok = self._send(status, ctype, body, cut=cut)
                rec.update(status=status, bytes=len(body) if cut is None else cut, complete=ok)
                return self._done(rec)

            def _done(self, rec: dict) -> None:
                rec["t1"] = time.monotonic()
                rec["t_send"] = getattr(self, "_t_send", None) or rec["t1"]
                self._t_send = None
                server._record(rec)

        return Handler


def parse_fault_spec(spec: str) -> dict[str, float]:
    """'429=0.1,503=0.05' -> {'429': 0.1, '503': 0.05}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, frac = part.partition("=")
        out[kind.strip()] = float(frac)
    return out


def main(argv: list[str] | None = None) -> int:
    """Serve the mock sky until killed; prints the origin URL on its first line."""
    p = argparse.ArgumentParser(prog="python -m builders.mock.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=600, help="galaxies in the mock sky")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--transient", default="", help="fault fractions, e.g. '429=0.1,503=0.1'")
    p.add_argument("--permanent", default="", help="fault fractions that never recover")
    p.add_argument("--retry-after", type=float, default=1.0)
    p.add_argument("--slow", type=float, default=2.0)
    p.add_argument("--log", type=Path, default=None, help="append request records as JSON lines here")
    p.add_argument("--no-planted-corrupt", action="store_true", help="serve the planted corrupt PS1 bands intact")
    args = p.parse_args(argv)
    plan = FaultPlan(
        transient=parse_fault_spec(args.transient),
        permanent=parse_fault_spec(args.permanent),
        seed=args.seed,
        retry_after_s=args.retry_after,
        slow_s=args.slow,
    )
    server = MockServer(
        MockSky(args.n, seed=args.seed), plan, port=args.port, log_path=args.log, planted_corrupt=not args.no_planted_corrupt
    )
    print(server.url, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
