#!/usr/bin/env bash
# The TensorBoard pictures in README.md ("Tracking"): a tiny study of four runs (vit-cpu-s, fractions 0.25
# and 1, 30 and 60 steps, fine-tuning and kNN), TensorBoard on its runs/, and headless Chromium on the
# scalars and HParams pages.
#
#   scripts/screenshot-tensorboard.sh [OUT_DIR]     # default docs/: tensorboard-scalars.png, tensorboard-hparams.png
#
# Needs Chromium (/usr/bin/chromium or `chromium` on PATH) and the tensorboard package (in .venv with `make install`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs}
bin=$root/.venv/bin
chromium=/usr/bin/chromium
[[ -x $chromium ]] || chromium=$(command -v chromium || true)
[[ -n $chromium ]] || { echo "screenshot-tensorboard.sh: error: Chromium not found" >&2; exit 2; }
[[ -x $bin/tensorboard ]] || { echo "screenshot-tensorboard.sh: error: no $bin/tensorboard (make install)" >&2; exit 2; }

mkdir -p "$out"
work=$(mktemp -d)
port=$((6100 + RANDOM % 800))
trap '[[ -n ${tb:-} ]] && kill "$tb" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/tiny.yaml" <<YAML
name: tiny
base:
  data.source: shapes:size=32,pool=400,seed=0,val_pool=400
  data.img_size: 32
  data.mask_patch_size: 8
  data.val_size: 64
  data.probe_size: 32
  objective.norm_target: false
  train.batch_size: 32
  train.warmup_iters: 5
  train.eval_points: 5
  train.recon_images: 4
axes:
  model.name: [vit-cpu-s]
  data.fraction: [0.25, 1.0]
  train.iters: [30, 60]
evals:
  - {name: finetune, task: finetune, batch_size: 50, epochs: 2, warmup_epochs: 1, eval_every: 1,
     train_source: "shapes:size=32,pool=200,seed=0,split=probe", test_source: "shapes:size=32,pool=200,seed=0,split=test"}
  - {name: knn, task: knn, knn_k: 10,
     train_source: "shapes:size=32,pool=200,seed=0,split=probe", test_source: "shapes:size=32,pool=200,seed=0,split=test"}
out: $work/study
YAML
"$bin/mimscale" study run "$work/tiny.yaml" --workers 2 >"$work/study.log" 2>&1 || { cat "$work/study.log" >&2; exit 1; }
"$bin/tensorboard" --logdir "$work/study/runs" --port "$port" --bind_all >"$work/tb.log" 2>&1 &
tb=$!
for _ in $(seq 60); do curl -fs "http://localhost:$port/" >/dev/null 2>&1 && break; sleep 1; done
# the scalars page opens on the pre-training curves (held-out, training and training-probe loss, LR)
declare -A filter=([scalars]="&tagFilter=^(val|train|train_probe)/(loss|lr)$" [hparams]="")
for page in scalars hparams; do
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2200,1100 \
        --virtual-time-budget=20000 --screenshot="$out/tensorboard-$page.png" "http://localhost:$port/#$page${filter[$page]}" \
        >/dev/null 2>&1
done
echo "wrote $out/tensorboard-scalars.png and $out/tensorboard-hparams.png"
