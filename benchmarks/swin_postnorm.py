"""How far a Swin V2 encoder's blocks have moved from the identity: the res-post-norm gains after pre-training.

Swin V2 blocks are x + norm1(attn(x)), then x + norm2(mlp(x)), with norm1/norm2 initialised to zero (every
block starts as the identity, as the official code does). Features pooled from such a block are the block's
input until the gains grow. For each run directory given, prints per block the mean |weight| of norm1 and
norm2 from the latest checkpoint, beside the run's held-out loss and its evaluations (fine-tuned top-1,
kNN on multi-block features and on the last stage).

    python benchmarks/swin_postnorm.py STUDY_DIR/runs/*
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mimscale.engine.checkpoint import load_checkpoint
from mimscale.rundir import RunDir, read_json


def gains(run: RunDir) -> dict[str, float]:
    state = load_checkpoint(run.latest_checkpoint())["model"]
    out = {}
    for key, value in state.items():
        m = re.match(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(norm[12])\.weight$", key)
        if m:
            out[f"s{m[1]}b{m[2]}.{m[3]}"] = float(value.abs().mean())
    return out


def main(paths: list[str]) -> int:
    for path in paths:
        run = RunDir(Path(path))
        summary = read_json(run.summary) or {}
        if summary.get("status") != "done" or not str(summary.get("model", "")).startswith("swinv2"):
            continue
        evals = {name: (read_json(run.eval_result(name)) or {}).get("metrics", {}).get("top1")
                 for name in ("finetune", "knn", "knn-last")}
        g = gains(run)
        print(f"{summary['model']} {summary['data_size']:>5} img {summary['iters']:>5} it  val {summary['final_val_loss']:.4f}  "
              + "  ".join(f"{k} {v:.3f}" for k, v in evals.items() if v is not None) + "  |norm| "
              + " ".join(f"{k}={v:.3f}" for k, v in g.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
