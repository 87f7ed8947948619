"""The web app in a real browser: headless Chromium (Debian's chromium + chromium-driver) through selenium.

``mantis-data serve`` runs as a user starts it (a subprocess, a tiny model, the loopback mock cutout
services); the browser fills the form and submits it; the numbers on the page equal the JSON API's and
the ones ``mantis-data photoz`` prints for the same coordinate; a bad coordinate shows its message. With
``--calibrator``, ticking the calibrated-PMF box shows the calibrated numbers beside the raw ones (those of
``/api/photoz?calibrated=1``), and the band-importance button the Shapley table (``explain=1``).
Set MANTIS_APP_SCREENSHOT=docs/img/photoz_app.png to keep the page's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("flask")
selenium = pytest.importorskip("selenium")

from test_app import tiny_checkpoint  # noqa: E402
from test_photoz_calibrated import tiny_calibrator  # noqa: E402

from builders.mock.server import MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1360,1180")


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get update && apt-get install -y chromium chromium-driver (.ci/run does it)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def submit(driver, url: str, ra: str, dec: str, wait_for: str, calibrated: bool = False, button: str = "go"):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    for name, value in (("ra", ra), ("dec", dec)):
        box = driver.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    if calibrated:
        box = driver.find_element(By.ID, "calibrated")
        assert box.is_enabled()
        if not box.is_selected():
            box.click()
    driver.find_element(By.ID, button).click()
    return WebDriverWait(driver, 90).until(ec.presence_of_element_located((By.ID, wait_for)))


def test_the_form_in_chromium(tmp_path, capsys):
    from selenium.webdriver.common.by import By

    sky = MockSky(n_galaxies=40, seed=2)
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    cal = tiny_calibrator(tmp_path / "calpit")
    ra, dec = repr(float(sky.ra[1])), repr(float(sky.dec[1]))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with MockServer(sky) as srv:
        common = ["--checkpoint", str(ckpt), "--ps1-url", srv.ps1_url, "--legacy-url", srv.legacy_url, "--rate", "0",
                  "--dust", "bh", "--attempts", "2", "--backoff", "0.01"]
        serve = subprocess.Popen([sys.executable, "-m", "mantis_data.cli", "serve", *common, "--cache", str(tmp_path / "c1"),
                                  "--calibrator", str(cal),
                                  "--port", str(port)], cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        driver = None
        try:
            from mantis_data.cli import main  # the CLI in this process while the server starts

            rc = main(["photoz", "--ra", ra, "--dec", dec, *common, "--cache", str(tmp_path / "c2"),
                       "--png", str(tmp_path / "cli.png"), "--json", str(tmp_path / "cli.json")])
            cli_stdout = capsys.readouterr().out
            assert rc == 0, cli_stdout
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    assert serve.poll() is None, serve.stderr.read().decode()[-2000:]
                    assert time.monotonic() < deadline, "mantis-data serve did not start"
                    time.sleep(0.2)

            driver = browser(tmp_path / "profile")
            shown_z = submit(driver, url, ra, dec, "z-mean").text
            shown = {k: driver.find_element(By.ID, k).text for k in ("z-mode", "z-lo68", "z-hi68", "z-lo95", "z-hi95")}
            assert driver.find_element(By.ID, "figure").get_attribute("src").startswith("data:image/png;base64,")
            assert not driver.find_elements(By.ID, "cal-z-mean") and not driver.find_elements(By.ID, "importance")

            with urllib.request.urlopen(f"{url}api/photoz?ra={ra}&dec={dec}&pmf=0&calibrated=1&explain=1", timeout=60) as r:
                api = json.loads(r.read())
            # the calibrated-PMF box: both PMFs' numbers on the page; then the band-importance button
            assert submit(driver, url, ra, dec, "cal-z-mean", calibrated=True).text == f"{api['calibrated']['z_mean']:.6f}"
            assert driver.find_element(By.ID, "z-mean").text == shown_z
            assert driver.find_element(By.ID, "calibrated").is_selected()
            submit(driver, url, ra, dec, "importance", calibrated=True, button="explain")
            assert driver.find_element(By.ID, "cal-z-mean").text == f"{api['calibrated']['z_mean']:.6f}"
            for band in ("FUV", "g", "W2"):
                assert driver.find_element(By.ID, f"shap-{band}").text == f"{api['explanation']['shapley'][band]:+.5f}"
            shot = tmp_path / "page.png"
            driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
            if os.environ.get("MANTIS_APP_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["MANTIS_APP_SCREENSHOT"])
            printed = cli_stdout.split("z = ")[1].split()[0]
            assert shown_z == f"{api['z_mean']:.6f}" == printed, (shown_z, api["z_mean"], printed)
            cli_json = json.loads((tmp_path / "cli.json").read_text())
            for src in (api, cli_json):
                (lo68, hi68), (lo95, hi95) = src["intervals"]["0.68"], src["intervals"]["0.95"]
                assert shown == {"z-mode": f"{src['z_mode']:.3f}", "z-lo68": f"{lo68:.4f}", "z-hi68": f"{hi68:.4f}",
                                 "z-lo95": f"{lo95:.4f}", "z-hi95": f"{hi95:.4f}"}

            # a bad coordinate: the message on the page, no result, no traceback
            for bad_ra, bad_dec, text in (("abc", "2.0", "cannot read RA 'abc'"), ("400", "2.0", "outside [0, 360)"),
                                          ("150.1", "-45", "no ps1 coverage")):
                message = submit(driver, url, bad_ra, bad_dec, "error-message").text
                assert text in message, message
                assert not driver.find_elements(By.ID, "z-mean") and "Traceback" not in driver.page_source
        finally:
            if driver is not None:
                driver.quit()
            serve.terminate()
            serve.wait(timeout=30)
