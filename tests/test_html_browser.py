"""The HTML report in a real headless browser: the table and the plots render."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.verdict import analyze
from harness.records import load_run
from harness.report.export import write_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser: install Chromium (Debian: apt-get install "
                            "chromium) to render the HTML report in a real browser")

# matplotlib's default colour cycle: lines and markers of the plots, never in the page's CSS.
PLOT_COLOURS = {"tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14),
                "tab:green": (44, 160, 44)}


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(FIXTURE, run_dir)
    return write_report(analyze(load_run(run_dir)), "html")


def test_dom_has_the_table_verdict_and_plots(report, tmp_path):
    done = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert '<table id="comparison">' in dom and "<th>run s [CI]</th>" in dom
    assert 'id="verdict"' in dom and "threads" in dom
    assert dom.count('<img class="plot"') >= 5
    assert dom.count('src="data:image/png;base64,') >= 5


def test_screenshot_shows_the_plots(report, tmp_path):
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,6000",
                    "--hide-scrollbars", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (6000, 1400)
    for name, rgb in PLOT_COLOURS.items():  # drawn by the embedded PNGs, so they decoded
        assert (np.abs(pixels - rgb).sum(axis=-1) <= 6).sum() > 50, f"no {name} pixels"
