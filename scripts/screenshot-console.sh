#!/usr/bin/env bash
# The picture of the console during `mimscale demo --quick` in docs/DEMO.md: the demo runs in a 160x40 tmux
# window, the window is captured while runs train, and headless Chromium renders the captured text.
#
#   scripts/screenshot-console.sh [OUT_PNG] [SECONDS] [CAPTURE_TXT]
#
# SECONDS: when to capture, after the demo started (default 150: on 2 shared cores the quick demo is then
# half done, with runs training and evaluating). OUT_PNG defaults to docs/console-demo.png; CAPTURE_TXT (if
# given) keeps the captured text. Needs tmux and Chromium (/usr/bin/chromium or `chromium` on PATH);
# MIMSCALE=... chooses the mimscale command (default .venv/bin/mimscale, else mimscale on PATH).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/console-demo.png}
after=${2:-150}
keep=${3:-}

for tool in tmux; do
    command -v $tool >/dev/null || { echo "screenshot-console.sh: error: $tool not found" >&2; exit 2; }
done
chromium=/usr/bin/chromium
[[ -x $chromium ]] || chromium=$(command -v chromium || true)
[[ -n $chromium ]] || { echo "screenshot-console.sh: error: Chromium not found" >&2; exit 2; }
mimscale=${MIMSCALE:-$root/.venv/bin/mimscale}
[[ -x $mimscale ]] || mimscale=$(command -v mimscale || true)
[[ -n $mimscale ]] || { echo "screenshot-console.sh: error: no mimscale command (set MIMSCALE=...)" >&2; exit 2; }

work=$(mktemp -d)
session=mimscale-shot-$$
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work"' EXIT
tmux new-session -d -s "$session" -x 160 -y 40 "$mimscale demo --quick --out $work/demo; sleep 3600"
sleep "$after"
tmux capture-pane -p -t "$session" > "$work/console.txt"
[[ -z $keep ]] || cp "$work/console.txt" "$keep"

# The text in a <pre>, white on black as a terminal shows it, one character cell per column.
python3 - "$work/console.txt" "$work/console.html" <<'PY'
import html, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read().rstrip("\n")
open(sys.argv[2], "w").write(
    "<!doctype html><meta charset=utf-8><style>body{margin:0;background:#111}pre{margin:0;padding:12px;"
    "color:#ddd;font:14px/18px 'DejaVu Sans Mono',monospace;white-space:pre}</style><pre>"
    + html.escape(text) + "</pre>")
PY
HOME=$work "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
    --hide-scrollbars --user-data-dir="$work/profile" --window-size=1380,744 \
    --screenshot="$work/shot.png" "file://$work/console.html" >"$work/chromium.log" 2>&1 || true
if [[ ! -s $work/shot.png ]]; then
    echo "screenshot-console.sh: error: Chromium wrote no screenshot; its log:" >&2
    tail -20 "$work/chromium.log" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$work/shot.png" "$out"
echo "screenshot-console.sh: $out (console $after s into mimscale demo --quick)" >&2
