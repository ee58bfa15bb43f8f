"""Downstream evaluation of pre-training runs: fine-tuning, linear probe, kNN, segmentation.

Python: ``mimscale.evaluate.run(run_dir, cfg) -> result dict`` (also written to
``RUN_DIR/eval/<name>.json``). Command line: ``mimscale finetune RUN_DIR [-c cfg.yaml] [key=value ...]``.

Names are imported on first use: ``mimscale.evaluate.config`` (what a result's identity is) is read by
torch-free processes (``study status``), which must not pay for importing the evaluation code.
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {
    "run": "runner", "result_path": "runner", "finetune_main": "cli", "val_loss_main": "cli", "EvalConfig": "config",
    "load_eval_config": "config", "TASKS": "config", "load_encoder": "loading",
    "param_groups_layer_decay": "layer_decay",
}
__all__ = [*_NAMES, "EvalError"]

from mimscale.errors import EvalError  # noqa: E402  (torch-free)

__getattr__ = lazy_exports(__name__, _NAMES)
