"""The report renders in a real headless Chromium: a non-blank screenshot, every image decoded, no console
errors; at desktop (1280 px) and phone (390 px) width the page does not overflow sideways, the verdicts are
in the first screen, every in-page link has its anchor, and a clicked figure opens at full size.

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


# Inserted before </head> of a test-only copy of the report, which is then shown in an iframe of the width
# under test (headless Chromium's windows are at least 500 px wide; an iframe is any width, and the page's
# viewport meta makes its viewport the iframe's). After load it measures the layout and posts it to the
# frame's parent, which writes it into its own DOM for --dump-dom.
LAYOUT_PROBE = """<script>
window.addEventListener('load', function () {
  var de = document.documentElement, box = function (el) { var r = el.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; };
  var wide = [];
  Array.prototype.forEach.call(document.body.querySelectorAll('*'), function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 0.5 && !el.closest('.scroll') && wide.length < 8) {
      wide.push(el.tagName.toLowerCase() + '.' + el.className + ' right=' + Math.round(r.right));
    }
  });
  var v = document.getElementById('verdicts'), g = document.querySelector('.gallery');
  var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
  var out = {
    innerWidth: window.innerWidth, innerHeight: window.innerHeight, scrollWidth: de.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth, wide: wide,
    verdicts: v ? box(v) : null,
    verdictLines: Array.prototype.map.call(document.querySelectorAll('#verdicts summary'), function (s) {
      return {height: s.getBoundingClientRect().height, font: parseFloat(getComputedStyle(s).fontSize)}; }),
    missingAnchors: Array.prototype.map.call(document.querySelectorAll('a[href^="#"]'), function (a) {
      return a.getAttribute('href').slice(1); }).filter(function (id) { return !document.getElementById(id); }),
    anchors: document.querySelectorAll('a[href^="#"]').length,
    figures: Array.prototype.map.call(document.querySelectorAll('figure img'), function (im) { return box(im); }),
    gallery: g ? {client: g.closest('.scroll').clientWidth, scroll: g.closest('.scroll').scrollWidth} : null,
    target: target ? {position: getComputedStyle(target).position, img: target.querySelector('img').width,
                      natural: target.querySelector('img').naturalWidth} : null
  };
  window.parent.postMessage(JSON.stringify(out), '*');
});
</script>"""
FRAME = """<!DOCTYPE html><html><body style="margin:0"><script>
window.addEventListener('message', function (e) {
  var pre = document.createElement('pre'); pre.id = 'layout-probe'; pre.textContent = e.data;
  document.body.appendChild(pre);
});
</script><iframe src="{src}" style="width:{w}px;height:{h}px;border:0;display:block"></iframe></body></html>"""
PHONE, DESKTOP = (390, 844), (1280, 800)


def _framed(report: Path, tmp: Path, width: int, height: int, fragment: str = "", probe: bool = True) -> Path:
    """A page showing a test-only copy of the report (with the layout probe) in a width x height iframe."""
    copy = tmp / "report-probed.html"
    source = report.read_text()
    assert source.count("</head>") == 1
    copy.write_text(source.replace("</head>", LAYOUT_PROBE + "</head>") if probe else source)
    frame = tmp / f"frame-{width}.html"
    frame.write_text(FRAME.replace("{src}", copy.name + fragment).replace("{w}", str(width))
                     .replace("{h}", str(height)))
    return frame


def _layout(chromium: str, report: Path, tmp: Path, size: tuple[int, int], fragment: str = "") -> dict:
    frame = _framed(report, tmp, *size, fragment=fragment)
    r = _run(chromium, ["--window-size=1400,900", "--virtual-time-budget=15000", "--dump-dom", frame.as_uri()], tmp)
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the layout probe did not run: {r.stderr[-2000:]}"
    assert not _console_lines(r.stderr)
    return json.loads(html.unescape(m.group(1)))


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop-1280", "phone-390"])
def test_layout_fits_the_width_and_leads_with_the_verdicts(chromium, study_report, tmp_path, size):
    _, report = study_report
    width, height = size
    m = _layout(chromium, report, tmp_path, size)
    assert (m["innerWidth"], m["innerHeight"]) == size
    # Nothing pushes the page sideways: wide tables and the gallery scroll inside their own boxes.
    assert m["scrollWidth"] <= width and m["bodyScrollWidth"] <= width, m["wide"]
    assert m["wide"] == []
    # The three verdicts are on the first screen, one line each at desktop width (two at most on a phone).
    v = m["verdicts"]
    assert v is not None and 0 <= v["top"] and v["bottom"] <= height
    assert len(m["verdictLines"]) == 3
    lines = 1 if width >= 1000 else 2
    assert all(s["height"] <= (lines + 0.5) * 1.5 * s["font"] for s in m["verdictLines"]), m["verdictLines"]
    # A table of contents and folds: every in-page link lands on an element.
    assert m["anchors"] >= 10 and m["missingAnchors"] == []
    # Figures fit the width; the gallery is wider than a phone and scrolls in its own box.
    assert len(m["figures"]) == 5 and all(0 <= f["left"] and f["right"] <= width for f in m["figures"])
    assert m["gallery"]["client"] <= width
    if width < 600:
        assert m["gallery"]["scroll"] > m["gallery"]["client"]


def test_clicked_figure_opens_at_full_size(chromium, study_report, tmp_path):
    """A figure's link is its own anchor: when it is the target, the figure covers the screen and its
    image is drawn at its natural size (scrolling inside), without a script or a second copy of it."""
    _, report = study_report
    anchor = re.search(r"<figure id='(fig-[^']+)'", report.read_text()).group(1)
    m = _layout(chromium, report, tmp_path, PHONE, fragment=f"#{anchor}")
    t = m["target"]
    assert t is not None and t["position"] == "fixed"
    assert t["img"] == t["natural"] > PHONE[0]


def test_phone_screenshot_is_not_blank(chromium, study_report, tmp_path):
    _, report = study_report
    frame = _framed(report, tmp_path, *PHONE, probe=False)
    shot = tmp_path / "phone.png"
    r = _run(chromium, [f"--screenshot={shot}", f"--window-size={PHONE[0]},{PHONE[1]}", frame.as_uri()], tmp_path)
    assert shot.is_file(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (PHONE[1], PHONE[0])
    assert (np.abs(img - np.median(img)) > 30).mean() > 0.02 and img.std() > 15
    assert not _console_lines(r.stderr)
    shutil.copy(shot, report.parent / "screenshot-phone.png")
