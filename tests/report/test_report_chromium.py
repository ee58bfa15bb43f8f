"""The report renders in a real headless Chromium: a non-blank screenshot, every image decoded, no console
errors.

The test uses Debian's chromium (/usr/bin/chromium, or `chromium` on PATH); `sudo .ci/setup` installs it.
When it is missing the test skips with that reason, except under MIMSCALE_CI=1 (set by .ci/run), where a
missing Chromium is a failure: CI must not pass by skipping the browser checks.
"""

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

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches for the network (this machine's is closed) or the GPU.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
# Inserted before </head> of a test-only copy of the report. It records console.error calls, uncaught
# errors, unhandled rejections, CSP violations and failed resource loads from the start of the page; after
# load it draws every image onto a canvas (a synchronous decode) and reads its pixels back, then writes each
# image's state and the problems seen into the DOM, so that --dump-dom shows them.
PROBE = """<script>
(function () {
  var problems = [];
  var consoleError = console.error;
  console.error = function () {
    problems.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      problems.push('failed to load <' + t.tagName.toLowerCase() + '> ' + (t.alt || String(t.src).slice(0, 60)));
    } else {
      problems.push('uncaught error: ' + e.message);
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) { problems.push('unhandled rejection: ' + e.reason); });
  document.addEventListener('securitypolicyviolation', function (e) {
    problems.push('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
  });
  window.addEventListener('load', function () {
    var out = Array.prototype.map.call(document.images, function (im) {
      var r = {alt: im.alt, complete: im.complete, w: im.naturalWidth, h: im.naturalHeight, decoded: false};
      try {  // drawing forces a synchronous decode; a broken image throws, an undecoded one draws nothing
        var c = document.createElement('canvas');
        c.width = im.naturalWidth;
        c.height = im.naturalHeight;
        var ctx = c.getContext('2d');
        ctx.drawImage(im, 0, 0);
        var px = ctx.getImageData(0, 0, c.width, c.height).data, lo = Infinity, hi = -Infinity, opaque = 0;
        for (var i = 0; i < px.length; i += 4) {
          var v = px[i] + px[i + 1] + px[i + 2];
          if (px[i + 3] > 0) { opaque++; lo = Math.min(lo, v); hi = Math.max(hi, v); }
        }
        r.decoded = opaque > 0 && hi > lo;  // real pixels, and not one flat colour
      } catch (err) {
        r.error = String(err);
      }
      return r;
    });
    var pre = document.createElement('pre');
    pre.id = 'img-probe';
    pre.textContent = JSON.stringify({images: out, problems: problems});
    document.body.appendChild(pre);
  });
})();
</script>"""


def _find() -> str | None:
    if DEBIAN_CHROMIUM.is_file() and os.access(DEBIAN_CHROMIUM, os.X_OK):
        return str(DEBIAN_CHROMIUM)
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _find()
    if found:
        return found
    why = f"Chromium not found at {DEBIAN_CHROMIUM} nor as 'chromium' on PATH (install it: sudo .ci/setup)"
    if os.environ.get("MIMSCALE_CI") == "1":
        pytest.fail(f"MIMSCALE_CI=1: {why}", pytrace=False)
    pytest.skip(why)


def _run(chromium: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(dir=tmp, prefix="profile-")  # a fresh profile for every start
    env = {**os.environ, "HOME": str(tmp)}  # keep Chromium's caches out of the real home
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def _console_lines(stderr: str) -> list[str]:
    """Console messages Chromium logged (--enable-logging=stderr): the report has no script of its own,
    so any line here is the browser complaining about the page (or a console.error the probe saw)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


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
    assert not _console_lines(r.stderr)
    shutil.copy(shot, report.parent / "screenshot.png")  # kept beside the report for a person to look at


def test_every_image_decoded_and_no_console_errors(chromium, study_report, tmp_path):
    _, report = study_report
    source = report.read_text()
    assert source.count("</head>") == 1
    probe = tmp_path / "probe.html"
    probe.write_text(source.replace("</head>", PROBE + "</head>"))
    r = _run(chromium, ["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'<pre id="img-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the probe did not run: {r.stderr[-2000:]}"
    seen = json.loads(html.unescape(m.group(1)))
    images = seen["images"]
    expected = len(re.findall(r"<img ", source))
    assert len(images) == expected == 5 + 24
    bad = [(i["alt"], i.get("error")) for i in images
           if not (i["complete"] and i["decoded"] and i["w"] > 0 and i["h"] > 0)]
    assert not bad, f"images not decoded: {bad}"
    figures = [i for i in images if not i["alt"].startswith("run")]
    assert all(i["w"] >= 300 for i in figures)  # the figures, not icons
    assert seen["problems"] == []
    assert not _console_lines(r.stderr)
