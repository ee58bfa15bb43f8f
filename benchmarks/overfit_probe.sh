#!/usr/bin/env bash
# One demo-like pre-training run (benchmarks/overfit_base.yaml + overrides), timed, then its held-out curve.
# usage: benchmarks/overfit_probe.sh OUT_DIR NAME [key=value ...]
# Prints: wall and CPU seconds (/usr/bin/time), the load average, and val/loss and the train-probe loss at
# each evaluation step. Finding 1 of the demo needs the held-out loss to turn up on small data.
set -euo pipefail
out=$1; name=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
uptime > "$out/$name.load"
/usr/bin/time -f "wall_s=%e user_s=%U sys_s=%S maxrss_kb=%M" -o "$out/$name.time" \
  nice -n 5 mimscale pretrain -c "$here/overfit_base.yaml" out="$out" name="$name" track=[] "$@" \
  > "$out/$name.log" 2>&1
uptime >> "$out/$name.load"
python - "$out/$name" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
names = sorted({r.get("name", "") for r in rows if "loss" in str(r.get("name", ""))})
print("metric names:", names)
for r in rows:
    if "loss" in str(r.get("name", "")) and r.get("split") != "train":
        print(r.get("step"), r.get("split"), r.get("name"), round(r["value"], 4))
PY
cat "$out/$name.time" "$out/$name.load"
