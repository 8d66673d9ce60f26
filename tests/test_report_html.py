"""`snakemake --report results/report.html` on the smoke run, rendered in headless
Chromium: the page shows the results table (same cells as results/table1.csv), both
figures (decoded PNGs of the right size), the provenance file and every rule's
parameters, and loads nothing from outside the file.

The browser is driven through chromedriver's W3C WebDriver HTTP API with the standard
library only (no selenium). Skipped when the Debian packages chromium and
chromium-driver are not installed.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_dvc_roundtrip import CONFIG, dvc_workflow, run
from test_workflow import SNAKEMAKE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FIGURES = ["results/figures/accuracy_vs_sparsity.png", "results/figures/atv_layers.png"]
ELEMENT = "element-6066-11e4-a021-000D4A0E9CC"  # W3C WebDriver element reference key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs headless Chromium: apt-get install chromium chromium-driver",
    ),
]


class WebDriver:
    """The few W3C WebDriver commands this test needs, over plain HTTP."""

    def __init__(self, binary: str, driver: str):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [driver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self._call("GET", "/status")["ready"], "chromedriver")
        options = {
            "binary": binary,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
            ],
        }
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options}
        session = self._call(
            "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}
        )
        self.session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"WebDriver {path}: {error.read()[:500]!r}") from None

    @staticmethod
    def _wait(condition, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
                if value:
                    return value
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def js(self, script: str, *args):
        body = {"script": script, "args": list(args)}
        return self._call("POST", f"{self.session}/execute/sync", body)

    def wait_js(self, script: str, what: str):
        return self._wait(lambda: self.js(script), what)

    def close(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def report(tmp_path_factory, smoke_run) -> Path:
    origin = dvc_workflow(tmp_path_factory, seed_from=smoke_run)
    run(origin, *SNAKEMAKE, "--report", "results/report.html", "--configfile", CONFIG)
    return origin / "results/report.html"


@pytest.fixture(scope="module")
def browser(report):
    driver = WebDriver(CHROMIUM, CHROMEDRIVER)
    try:
        driver.open(report.as_uri())
        driver.wait_js(
            "return typeof app !== 'undefined' && "
            "document.querySelector('#app').innerText.length > 0",
            "the report app to render",
        )
        yield driver
    finally:
        driver.close()


def test_report_is_self_contained(report):
    html = report.read_text()
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=", html)
    assert not re.search(r"<img[^>]+src=[\"']https?:", html)


def test_rendered_page_shows_the_table(browser, report):
    with open(report.parent / "table1.csv", newline="") as handle:
        expected = [list(row) for row in csv.reader(handle)]
    browser.js("app.showReportInfo();")
    rows = browser.wait_js(
        "const t = document.querySelector('table.results-table');"
        "return t && Array.from(t.rows).map("
        "  r => Array.from(r.cells).map(c => c.innerText.trim()));",
        "the results table",
    )
    assert rows == expected
    text = browser.js("return document.body.innerText;")
    assert "Rule parameters" in text
    for rule in ("prune", "evaluate", "calibration_pool", "train_model", "table"):
        assert rule in text, rule
    assert '"method": "atv"' in text and '"scoring_mode": "lmms-eval-0.4"' in text


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.parametrize("figure", FIGURES)
def test_rendered_page_shows_each_figure(browser, report, figure):
    browser.js("app.showCategory('Figures');")
    name = Path(figure).name
    browser.wait_js(
        f"return document.body.innerText.includes('{name}');",
        f"{name} in the Figures list",
    )
    # What the list's view button does: show the embedded PNG in the content pane.
    browser.js(
        "app.setView({content: 'img', contentPath: results[arguments[0]].data_uri,"
        " resultPath: arguments[0]});",
        figure,
    )
    size = browser.wait_js(
        f"const uri = results['{figure}'].data_uri;"
        "const img = Array.from(document.images).find("
        "  i => i.src === uri && i.complete && i.naturalWidth);"
        "return img && [img.naturalWidth, img.naturalHeight];",
        f"{name} to be decoded",
    )
    assert tuple(size) == _png_size(report.parent.parent / figure)


def test_report_lists_provenance_and_table_files(browser):
    paths = browser.js("return Object.keys(results);")
    for path in ("results/table1.csv", "results/table1.provenance.json", *FIGURES):
        assert path in paths, path
    params = browser.js("return results['results/table1.csv'].job_properties.params;")
    assert "method_specs=" in params and "model_specs=" in params
