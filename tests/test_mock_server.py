"""The mock services on loopback: same paths and parameters as the real ones, exact bytes, injectable faults."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from urllib.parse import urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pytest

from builders.mock.cutouts import render_legacy, render_ps1, write_cutouts
from builders.mock.server import FAULT_KINDS, FaultPlan, MockServer, ps1_filename, request_key
from builders.mock.sky import MockSky
from mantis_data.bands import SURVEYS
from mantis_data.cutouts.layout import cutout_path
from mantis_data.cutouts.ps1 import parse_filenames


@pytest.fixture(scope="module")
def sky() -> MockSky:
    return MockSky(300, seed=4)


@pytest.fixture(scope="module")
def server(sky):
    with MockServer(sky) as srv:
        yield srv


def _get(srv_url: str, path: str, params: dict, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    parts = urlsplit(srv_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", f"{path}?{urlencode(params)}")
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def _covered(sky: MockSky) -> int:
    return int(np.flatnonzero(sky.ps1_covered(sky.ra, sky.dec) & (sky.ps1_corrupt_band < 0))[0])


def _pos(sky: MockSky, i: int) -> dict:
    return {"ra": repr(float(sky.ra[i])), "dec": repr(float(sky.dec[i]))}


def test_ps1_endpoints_serve_the_rendered_bytes(sky, server):
    i = _covered(sky)
    status, headers, body = _get(server.url, "/cgi-bin/ps1filenames.py", {**_pos(sky, i), "filters": "grizy", "type": "stack"})
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = body.decode().splitlines()
    assert lines[0].split() == "projcell subcell ra dec filter mjd type filename shortname badflag".split()
    assert [ln.split()[4] for ln in lines[1:]] == sorted("grizy")  # the service's order, not g r i z y
    names = parse_filenames(body)
    assert set(names) == set("grizy")
    for b in "gz":
        assert names[b] == ps1_filename(sky.ra[i], sky.dec[i], b) and names[b].startswith("/rings.v3.skycell/")
        params = {"red": names[b], **_pos(sky, i), "size": "170", "format": "fits"}
        status, headers, body = _get(server.url, "/cgi-bin/fitscut.cgi", params)
        assert status == 200 and body == render_ps1(sky, sky.ra[i], sky.dec[i], b)
    # a band's file name must match the band and the position
    params = {"red": names["g"].replace(".stk.g.", ".stk.r."), **_pos(sky, i), "size": "170", "format": "fits"}
    status, _, body = _get(server.url, "/cgi-bin/fitscut.cgi", params)
    assert status == 200 and body == render_ps1(sky, sky.ra[i], sky.dec[i], "r")
    far = {"ra": repr(float(sky.ra[i]) + 5.0), "dec": params["dec"]}
    status, _, _ = _get(server.url, "/cgi-bin/fitscut.cgi", {**params, **far})
    assert status == 400


def test_legacy_endpoint_serves_the_rendered_cubes(sky, server):
    i = 3
    for layer, survey in (("galex", "galex"), ("unwise-neo7", "unwise")):
        s = SURVEYS[survey]
        params = {**_pos(sky, i), "layer": layer, "pixscale": f"{s.pixel_scale_arcsec:g}", "size": str(s.cutout_size)}
        status, headers, body = _get(server.url, "/viewer/fits-cutout", params)
        assert status == 200 and headers["Content-Type"] == "application/fits"
        assert body == render_legacy(sky, sky.ra[i], sky.dec[i], layer)


def test_no_coverage_and_planted_corrupt_files(sky, server, tmp_path):
    south = int(np.flatnonzero(sky.dec < -30)[0])
    status, _, body = _get(server.url, "/cgi-bin/ps1filenames.py", {**_pos(sky, south), "filters": "grizy", "type": "stack"})
    assert status == 200 and parse_filenames(body) == {}
    name = ps1_filename(sky.ra[south], sky.dec[south], "g")
    status, _, _ = _get(server.url, "/cgi-bin/fitscut.cgi", {"red": name, **_pos(sky, south), "size": "170", "format": "fits"})
    assert status == 404
    # a planted corrupt band is served exactly as write_cutouts writes it (truncated), on every request
    g = int(np.flatnonzero((sky.ps1_corrupt_band >= 0) & sky.ps1_covered(sky.ra, sky.dec))[0])
    band = SURVEYS["ps1"].bands[sky.ps1_corrupt_band[g]]
    table = pa.table({"target_id": ["x-1"], "ra": [sky.ra[g]], "dec": [sky.dec[g]]})
    write_cutouts(sky, table, tmp_path, progress=False)
    params = {"red": ps1_filename(sky.ra[g], sky.dec[g], band), **_pos(sky, g), "size": "170", "format": "fits"}
    for _ in range(2):
        status, _, body = _get(server.url, "/cgi-bin/fitscut.cgi", params)
        assert status == 200 and body == cutout_path(tmp_path, "ps1", "x-1", band).read_bytes()
        assert len(body) < len(render_ps1(sky, sky.ra[g], sky.dec[g], band))


def test_malformed_requests_get_4xx(sky, server):
    pos = _pos(sky, 0)
    assert _get(server.url, "/cgi-bin/ps1filenames.py", {"ra": pos["ra"]})[0] == 400
    assert _get(server.url, "/cgi-bin/ps1filenames.py", {"ra": "abc", "dec": "1"})[0] == 400
    assert _get(server.url, "/cgi-bin/ps1filenames.py", {**pos, "filters": "gq"})[0] == 400
    red = ps1_filename(sky.ra[0], sky.dec[0], "g")
    assert _get(server.url, "/cgi-bin/fitscut.cgi", {"red": red, **pos, "size": "170", "format": "jpg"})[0] == 400
    assert _get(server.url, "/cgi-bin/fitscut.cgi", {"red": "nonsense.fits", **pos, "size": "170", "format": "fits"})[0] == 400
    assert _get(server.url, "/viewer/fits-cutout", {**pos, "layer": "ls-dr10", "size": "32"})[0] == 400
    assert _get(server.url, "/viewer/nothing", pos)[0] == 404


def test_each_fault_kind(sky):
    i = _covered(sky)
    s = SURVEYS["galex"]
    params = {**_pos(sky, i), "layer": "galex", "pixscale": f"{s.pixel_scale_arcsec:g}", "size": str(s.cutout_size)}
    good = render_legacy(sky, sky.ra[i], sky.dec[i], "galex")
    with MockServer(sky) as srv:
        host = urlsplit(srv.url).netloc
        for kind in FAULT_KINDS:
            srv.faults = FaultPlan(permanent={kind: 1.0}, retry_after_s=7, slow_s=0.3)
            conn = http.client.HTTPConnection(host, timeout=5)
            conn.request("GET", f"/viewer/fits-cutout?{urlencode(params)}")
            t0 = time.monotonic()
            if kind == "drop":
                with pytest.raises(http.client.RemoteDisconnected):
                    conn.getresponse()
                continue
            resp = conn.getresponse()
            if kind == "truncate":
                assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(good)
                with pytest.raises(http.client.IncompleteRead):
                    resp.read()
                continue
            body = resp.read()
            conn.close()
            if kind == "slow":
                assert resp.status == 200 and body == good and time.monotonic() - t0 >= 0.25
            elif kind == "429":
                assert resp.status == 429 and resp.headers["Retry-After"] == "7"
            elif kind == "503":
                assert resp.status == 503
            elif kind == "404":
                assert resp.status == 404
            elif kind == "html":
                assert resp.status == 200 and resp.headers["Content-Type"] == "text/html"
                assert body.lstrip().lower().startswith(b"<!doctype html")
        time.sleep(0.05)
        assert [r["fault"] for r in srv.log] == list(FAULT_KINDS)
        assert [r["attempt"] for r in srv.log] == list(range(len(FAULT_KINDS)))
        assert all(r["key"] == request_key("fits-cutout", params["ra"], params["dec"], "galex") for r in srv.log)


def test_fault_plan_is_deterministic_with_the_planned_rates():
    kinds = ("slow", "429", "503", "drop", "truncate", "html")
    plan = FaultPlan(transient={k: 0.1 for k in kinds}, permanent={"404": 0.02}, max_repeats=3, seed=1)
    keys = [f"k{i}" for i in range(20000)]
    first = [plan.fault(k, 0) for k in keys]
    assert first == [FaultPlan(**{**plan.__dict__}).fault(k, 0) for k in keys]
    assert first != [FaultPlan(transient=plan.transient, permanent=plan.permanent, max_repeats=3, seed=2).fault(k, 0) for k in keys]
    for kind in kinds:
        assert abs(first.count(kind) / len(keys) - 0.1) < 0.01, kind
    assert abs(first.count("404") / len(keys) - 0.02) < 0.005
    for k in keys[:2000]:
        kind, repeats = plan.assignment(k)
        seq = [plan.fault(k, a) for a in range(6)]
        if kind is None:
            assert seq == [None] * 6 and plan.served_within(k, 1)
        elif repeats is None:
            assert seq == [kind] * 6 and not plan.served_within(k, 100)
        else:
            assert 1 <= repeats <= 3 and seq == [kind] * repeats + [None] * (6 - repeats)
            assert plan.served_within(k, repeats + 1) and not plan.served_within(k, repeats)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(transient={"teapot": 0.1})
    with pytest.raises(ValueError, match="sum"):
        FaultPlan(transient={"429": 0.7, "503": 0.6})


def test_request_log_counts_attempts_per_key(sky):
    i = _covered(sky)
    with MockServer(sky, FaultPlan(permanent={"503": 1.0})) as srv:
        for _ in range(3):
            assert _get(srv.url, "/cgi-bin/ps1filenames.py", {**_pos(sky, i), "filters": "grizy", "type": "stack"})[0] == 503
        time.sleep(0.05)
        assert [r["attempt"] for r in srv.log] == [0, 1, 2]
        rec = srv.log[-1]
        assert rec["endpoint"] == "filenames" and not rec["stamp"] and rec["status"] == 503 and rec["t1"] >= rec["t0"]
        srv.reset_log()
        assert srv.log == []


def test_standalone_server_process(tmp_path):
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "builders.mock.server", "--n", "50", "--seed", "2", "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        sky = MockSky(50, seed=2)
        status, _, body = _get(url, "/viewer/fits-cutout", {**_pos(sky, 1), "layer": "unwise-neo7", "size": "32", "pixscale": "2.75"})
        assert status == 200 and body == render_legacy(sky, sky.ra[1], sky.dec[1], "unwise-neo7")
        deadline = time.monotonic() + 10
        while '"endpoint": "fits-cutout"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)  # the server logs a request just after answering it
        assert '"endpoint": "fits-cutout"' in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ps1_filenames_is_asked_for_stacks(sky):
    """The client asks ps1filenames.py for type=stack (as the released code); the mock refuses a request without."""
    from mantis_data.cutouts.client import HttpClient
    from mantis_data.cutouts.ps1 import PS1Client

    i = _covered(sky)
    with MockServer(sky) as srv:
        pos = _pos(sky, i)
        assert _get(srv.url, "/cgi-bin/ps1filenames.py", {**pos, "filters": "grizy"})[0] == 400
        assert _get(srv.url, "/cgi-bin/ps1filenames.py", {**pos, "filters": "grizy", "type": "warp"})[0] == 400
        names, _ = PS1Client(HttpClient(), base_url=f"{srv.url}/cgi-bin").filenames(float(sky.ra[i]), float(sky.dec[i]))
        assert sorted(names) == sorted("grizy")
        deadline = time.monotonic() + 10
        while len(srv.log) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # the server logs a request just after answering it
        asked = [r for r in srv.log if r["endpoint"] == "filenames" and r["status"] == 200]
        assert len(asked) == 1 and asked[0]["params"]["type"] == "stack"
    # a table that also lists other image types: only the stack rows are used
    header = "projcell subcell ra dec filter mjd type filename shortname badflag"
    body = f"{header}\n1 2 10 20 g 5 warp /w/g.fits g.fits 0\n1 2 10 20 g 0 stack /s/g.fits g.fits 0\n".encode()
    assert parse_filenames(body) == {"g": "/s/g.fits"}
