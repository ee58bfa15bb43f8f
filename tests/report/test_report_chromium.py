"""The report renders in a real headless Chromium: a non-blank screenshot and every image loaded.

Chromium is installed from Debian's packages (apt-get, as root or with passwordless sudo) when it is
missing; the test skips with the reason only if that is impossible.
"""

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
# Appended to a test-only copy of the report: after load, write each image's state into the DOM so
# that --dump-dom shows whether the browser actually decoded it (naturalWidth > 0).
PROBE = """<script>
window.addEventListener('load', function () {
  var out = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, complete: im.complete, w: im.naturalWidth, h: im.naturalHeight};
  });
  var pre = document.createElement('pre');
  pre.id = 'img-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _find() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def _apt_install() -> str | None:
    """Install Debian's chromium; returns None on success or the reason it failed."""
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and not shutil.which("sudo"):
        return "not root and no sudo"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, timeout in ((["apt-get", "update", "-qq"], 300), (["apt-get", "install", "-y", "-qq", "chromium"], 900)):
        try:
            r = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)}: {exc}"
        if r.returncode != 0:
            return f"{' '.join(cmd)} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def chromium():
    found = _find()
    if found:
        return found
    # One installer at a time across pytest-xdist workers (apt holds a dpkg lock anyway).
    lock = Path(tempfile.gettempdir()) / "mimscale-chromium-install.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        found = _find()
        why = None if found else _apt_install()
    found = found or _find()
    if not found:
        pytest.skip(f"Chromium is not installed and could not be installed from Debian's packages: {why}")
    return found


def _run(chromium: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(dir=tmp, prefix="profile-")
    env = {**os.environ, "HOME": str(tmp)}  # keep Chromium's caches out of the real home
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_screenshot_is_not_blank(chromium, study_report, tmp_path):
    _, report = study_report
    shot = tmp_path / "shot.png"
    r = _run(chromium, [f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()], tmp_path)
    assert shot.is_file(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2400, 1280)
    background = np.median(img)
    # Text, plots and tables: a real page has many pixels off the background and a wide tonal range.
    assert (np.abs(img - background) > 30).mean() > 0.05
    assert img.std() > 20
    shutil.copy(shot, report.parent / "screenshot.png")  # kept beside the report for a person to look at


def test_every_image_loaded(chromium, study_report, tmp_path):
    _, report = study_report
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    r = _run(chromium, ["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'<pre id="img-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the probe did not run: {r.stderr[-2000:]}"
    images = json.loads(html.unescape(m.group(1)))
    expected = len(re.findall(r"<img ", report.read_text()))
    assert len(images) == expected == 5 + 24
    bad = [i["alt"] for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not bad, f"images not loaded: {bad}"
    figures = [i for i in images if not i["alt"].startswith("run")]
    assert all(i["w"] >= 300 for i in figures)  # the figures, not icons
