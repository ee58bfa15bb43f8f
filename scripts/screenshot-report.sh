#!/usr/bin/env bash
# The picture of a demo report in docs/DEMO.md, taken by headless Chromium from a report that exists now.
#
#   scripts/screenshot-report.sh [REPORT_HTML] [OUT_PNG] [WIDTH,HEIGHT]
#
# With no REPORT_HTML it makes one: `mimscale demo --quick` into a temporary directory (the whole pipeline
# on the tiny grid, 1-2 minutes on 2 cores), so the picture always shows what the current code reports.
# OUT_PNG defaults to docs/demo-report.png, the window to 1280,2400 (the report's findings, the paper's
# three findings and the first curves). Chromium: /usr/bin/chromium (Debian's; `sudo .ci/setup` installs
# it) or `chromium` on PATH; MIMSCALE=... chooses the mimscale command (default .venv/bin/mimscale, else
# mimscale on PATH).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
report=${1:-}
out=${2:-$root/docs/demo-report.png}
size=${3:-1280,2400}

if [[ ! $size =~ ^[0-9]+,[0-9]+$ ]]; then
    echo "screenshot-report.sh: error: window size must be WIDTH,HEIGHT in pixels, got '$size'" >&2
    exit 2
fi
chromium=/usr/bin/chromium
[[ -x $chromium ]] || chromium=$(command -v chromium || true)
if [[ -z $chromium ]]; then
    echo "screenshot-report.sh: error: Chromium not found at /usr/bin/chromium nor on PATH (sudo .ci/setup)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $report ]]; then
    mimscale=${MIMSCALE:-$root/.venv/bin/mimscale}
    [[ -x $mimscale ]] || mimscale=$(command -v mimscale || true)
    if [[ -z $mimscale ]]; then
        echo "screenshot-report.sh: error: no mimscale command (make .venv, or set MIMSCALE=...)" >&2
        exit 2
    fi
    echo "screenshot-report.sh: making a current report with '$mimscale demo --quick' in $work/demo" >&2
    "$mimscale" demo --quick --out "$work/demo" >&2
    report=$work/demo/report/report.html
fi
if [[ ! -f $report ]]; then
    echo "screenshot-report.sh: error: no report at '$report'" >&2
    exit 2
fi

# Headless, and nothing that reaches for the network or the GPU; a fresh profile and home for this start.
HOME=$work "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
    --hide-scrollbars --user-data-dir="$work/profile" --window-size="$size" \
    --screenshot="$work/shot.png" "file://$(cd "$(dirname "$report")" && pwd)/$(basename "$report")" \
    >"$work/chromium.log" 2>&1 || true
if [[ ! -s $work/shot.png ]]; then
    echo "screenshot-report.sh: error: Chromium wrote no screenshot; its log:" >&2
    tail -20 "$work/chromium.log" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$work/shot.png" "$out"
echo "screenshot-report.sh: $out ($size) from $report" >&2
