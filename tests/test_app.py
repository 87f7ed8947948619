"""The web app over real HTTP (a threaded server on loopback) against the mock cutout services.

Statuses and reasons for every kind of bad input, no traceback ever; concurrent requests on one shared
predictor give the sequential answers and share the cutout cache; a service that is down is a 503 with
the reason; CSV batches.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("flask")

from builders.mock.server import MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.app import create_app  # noqa: E402
from mantis_data.cutouts.fetch import FetchConfig  # noqa: E402
from mantis_data.models import ModelConfig, build_model  # noqa: E402
from mantis_data.photoz import ForcedPhotoZ  # noqa: E402


def tiny_checkpoint(path: Path) -> Path:
    cfg = ModelConfig(backbone="convnext_atto", backbone_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]},
                      hidden_width=16)
    torch.manual_seed(1)
    torch.save({"model": build_model(cfg).state_dict(), "model_config": cfg.to_dict(),
                "data_config": {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": 32}}, path)
    return path


class Served:
    """A Flask app on a loopback port in a background thread (werkzeug's threaded server)."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, str]:
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    def close(self) -> None:
        self.httpd.shutdown()
        self.thread.join()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    sky = MockSky(n_galaxies=40, seed=2)
    ckpt = tiny_checkpoint(root / "tiny.pt")
    with MockServer(sky) as srv:
        cfg = FetchConfig(ps1_url=srv.ps1_url, legacy_url=srv.legacy_url, rate=None, backoff_s=0.01, attempts=2, timeout_s=5)
        pz = ForcedPhotoZ(ckpt, root / "cache", cfg, dust="bh")
        served = Served(create_app(pz, max_batch=10))
        try:
            yield {"sky": sky, "srv": srv, "pz": pz, "app": served, "ckpt": ckpt, "root": root}
        finally:
            served.close()
            pz.close()


def no_traceback(body: bytes) -> None:
    assert b"Traceback" not in body and b'File "' not in body


def test_page_and_api_errors(world):
    app, sky = world["app"], world["sky"]
    ra, dec = float(sky.ra[0]), float(sky.dec[0])
    status, body, ctype = app.get(f"/api/photoz?ra={ra!r}&dec={dec!r}")
    assert status == 200 and ctype.startswith("application/json")
    out = json.loads(body)
    assert out["ok"] and len(out["pmf"]) == 400 and set(out["intervals"]) == {"0.68", "0.95"}
    status, page, _ = app.get(f"/?ra={ra!r}&dec={dec!r}")
    assert status == 200 and f'id="z-mean">{out["z_mean"]:.6f}<'.encode() in page and b"data:image/png;base64," in page
    status, png, ctype = app.get(f"/api/photoz.png?ra={ra!r}&dec={dec!r}")
    assert status == 200 and ctype == "image/png" and png[:4] == b"\x89PNG"

    cases = [("ra=360&dec=0", 400, "outside [0, 360)"), ("ra=10&dec=-91", 400, "outside [-90, 90]"),
             ("ra=abc&dec=1", 400, "cannot read RA"), ("ra=10", 400, "give both ra and dec"),
             ("ra=10:00:24&dec=-45:00:00", 422, "no ps1 coverage"), ("ra=25:00:00&dec=0", 400, "must be in the range [0,24)")]
    for query, code, text in cases:
        status, body, ctype = app.get(f"/api/photoz?{query}")
        assert (status, json.loads(body)["error"].count(text) > 0) == (code, True), (query, status, body)
        no_traceback(body)
        status, page, ctype = app.get(f"/?{query}")
        assert status == code and ctype.startswith("text/html") and b'id="error-message"' in page, query
        assert text.replace(">", "&gt;").encode() in page.replace(b"&#39;", b"'"), (query, page[-600:])
        no_traceback(page)
    status, body, _ = app.get("/api/nothing")
    assert status == 404 and json.loads(body)["kind"] == "not_found"


def test_concurrent_requests_share_the_model_and_the_cache(world):
    app, sky, srv, pz = world["app"], world["sky"], world["srv"], world["pz"]
    coords = [(float(sky.ra[i]), float(sky.dec[i])) for i in range(4, 10)]
    model = pz.model

    def ask(c):
        status, body, _ = app.get(f"/api/photoz?ra={c[0]!r}&dec={c[1]!r}&pmf=0")
        return status, json.loads(body)

    with ThreadPoolExecutor(8) as ex:
        first = list(ex.map(ask, coords * 2))  # each coordinate twice, all at once
    assert [s for s, _ in first] and all(s in (200, 422) for s, _ in first)
    for (s1, a), (s2, b) in zip(first[: len(coords)], first[len(coords):], strict=True):
        assert (s1, a) == (s2, b)
    n = len(srv.log)
    again = [ask(c) for c in coords]  # sequential, after: the same numbers, nothing fetched again
    assert again == first[: len(coords)] and len(srv.log) == n
    assert pz.model is model and sum(1 for s, _ in again if s == 200) >= 4


def test_a_service_that_is_down_is_a_503(world):
    cfg = FetchConfig(ps1_url="http://127.0.0.1:9/cgi-bin", legacy_url="http://127.0.0.1:9/viewer", rate=None,
                      backoff_s=0.01, attempts=2, timeout_s=2)
    pz = ForcedPhotoZ(world["ckpt"], world["root"] / "cache-down", cfg, dust="bh")
    served = Served(create_app(pz))
    try:
        status, body, _ = served.get("/api/photoz?ra=150.1&dec=2.2")
        err = json.loads(body)
        assert status == 503 and err["kind"] == "service" and "connection refused after 2 attempts" in err["error"]
        status, page, _ = served.get("/?ra=150.1&dec=2.2")
        assert status == 503 and b"A cutout service is not answering" in page
        no_traceback(page)
    finally:
        served.close()
        pz.close()


def test_csv_batches(world):
    app, sky = world["app"], world["sky"]
    csv = "name,ra,dec\n" + "".join(f"g{i},{float(sky.ra[i])!r},{float(sky.dec[i])!r}\n" for i in range(3))
    csv += "bad,abc,1\nsouth,150.1,-45\n"
    status, body, _ = app.get("/api/batch", data=csv.encode(), headers={"Content-Type": "text/csv"})
    rows = json.loads(body)["results"]
    assert status == 200 and [r["id"] for r in rows] == ["g0", "g1", "g2", "bad", "south"]
    assert rows[3]["kind"] == "bad_input" and rows[3]["reason"].startswith("bad_coordinate")
    assert rows[4]["reason"] == "ps1_no_coverage"
    single = json.loads(app.get(f"/api/photoz?ra={float(sky.ra[1])!r}&dec={float(sky.dec[1])!r}&pmf=0")[1])
    if single["ok"]:
        assert rows[1]["z_mean"] == pytest.approx(single["z_mean"], abs=1e-6)
    # the page form posts multipart
    boundary = "xYzZy"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n").encode()
    status, page, _ = app.get("/batch", data=form, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200 and page.count(b'class="batch-row"') == 5 and b"ps1_no_coverage" in page
    too_many = "ra,dec\n" + "150.1,2.2\n" * 11
    status, body, _ = app.get("/api/batch", data=too_many.encode())
    assert status == 400 and "give 1 to 10" in json.loads(body)["error"]
    status, body, _ = app.get("/api/batch", data=b"ra,dec\n" + b"150.1,2.2\n" * 120_000)
    assert status == 413 and json.loads(body)["kind"] == "too_large"
    status, body, _ = app.get("/api/batch", data=b"x,y\n1,2\n")
    assert status == 400 and "no ra or dec column" in json.loads(body)["error"]
