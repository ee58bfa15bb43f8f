"""``run(run_dir, cfg) -> result``: one downstream evaluation of a pre-training run, written to
``RUN_DIR/eval/<name>.json`` atomically, and not redone once finished unless ``force``.

Result schema::

    {"task": "finetune" | "linear" | "knn" | "segment", "name": str,
     "metrics": {...}, "headline": "top1" | "miou",   # the metric a study table shows
     "notes": str,                                      # what each metric is (best vs final, LR choice)
     "config": {...},                                    # the full EvalConfig
     "model": str, "model_kwargs": {...}, "img_size": int, "init": "pretrained" | "random",
     "checkpoint": str | null, "step": int | null, "run_dir": str,
     "data": {"train": {...}, "test": {...}, "name": str,  # name: both in words (config.data_name)
              "num_train": int, "num_test": int, "num_classes": int},
     "history": [...],                                   # per-epoch evaluations (finetune, segment)
     "wall_time_s": float}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from mimscale.engine import distributed as dist
from mimscale.engine.distributed import resolve_device
from mimscale.errors import EvalError
from mimscale.evaluate import data as D
from mimscale.evaluate.config import (
    as_eval_config,
    data_name,
    identity,
    resolve_spec,
    result_name,
    same_identity,
)
from mimscale.evaluate.engine import log
from mimscale.evaluate.finetune import finetune
from mimscale.evaluate.loading import eval_home, load_encoder
from mimscale.evaluate.overlap import same_images_warning
from mimscale.evaluate.probes import extract_features, knn_eval, linear_probe, logistic_probe
from mimscale.evaluate.segment import segment
from mimscale.rundir import RunDir, atomic_write_json
from mimscale.train.tracking import log_evaluation

FINE_TUNED = ("finetune", "segment")


def result_path(run_dir: str | Path, cfg) -> Path:
    return eval_home(run_dir).eval_result(result_name(as_eval_config(cfg)))


def _finished(path: Path, cfg, run_dir: RunDir) -> dict | None:
    """The stored result if it answers this request; None when there is none or it evaluated an older
    checkpoint than the run's latest (the run went on); an error when it holds another evaluation."""
    if not path.is_file():
        return None
    try:
        prev = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged file (writes are atomic, so only by hand): redo it
    if not same_identity(prev.get("identity"), cfg):
        raise EvalError(f"{path} holds a different {prev.get('task')} evaluation; pass --force to replace it "
                        f"or name=<other> to keep both")
    if cfg.init == "pretrained" and not cfg.checkpoint:
        latest = run_dir.latest_checkpoint()
        if latest is not None and str(latest) != prev.get("checkpoint"):
            log(f"[evaluate] {path.name} evaluated {prev.get('checkpoint')}; the run's latest is {latest}: redoing")
            return None
    return prev


def _probe(encoder, train, test, num_classes: int, cfg, device, img_size: int) -> dict:
    def feats(src):
        data = D.ClassificationData(src, img_size, test_crop=cfg.test_crop, interpolation=cfg.interpolation,
                                    jpeg_draft=cfg.jpeg_draft)
        dl = D.loader(data, cfg.batch_size, False, cfg.num_workers, cfg.seed)
        return extract_features(encoder, dl, cfg.features, device, cfg.feature_blocks)

    (xa, ya), (xb, yb) = feats(train), feats(test)
    info = {"feature_dim": xa.shape[1], "features": cfg.features, "feature_blocks": cfg.feature_blocks}
    if cfg.task == "knn":
        metrics = knn_eval(xa, ya, xb, yb, num_classes, cfg.knn_k, cfg.knn_t, device)
        notes = (f"weighted kNN on frozen {cfg.features} features: cosine similarity, k={cfg.knn_k}, "
                 f"votes exp(sim/{cfg.knn_t})")
    elif cfg.probe == "logistic":
        metrics = logistic_probe(xa, ya, xb, yb, num_classes, cfg.logistic_c, seed=cfg.seed)
        notes = f"logistic regression (L-BFGS, C={cfg.logistic_c}) on standardised frozen {cfg.features} features"
    else:
        metrics = linear_probe(xa, ya, xb, yb, num_classes, list(cfg.linear_lrs), cfg.linear_epochs,
                               cfg.linear_batch_size, cfg.linear_weight_decay, cfg.linear_holdout, cfg.seed, device)
        notes = (f"BatchNorm(affine=False) + linear on frozen {cfg.features} features, SGD momentum 0.9, "
                 f"{cfg.linear_epochs} epochs, cosine; one head per LR (per 256) trained in one pass; top1/top5 "
                 f"are those of best_lr, chosen on a {cfg.linear_holdout:.0%} hold-out of the training "
                 f"features (top1_per_lr lists every LR's test top-1)")
    return {"metrics": {**metrics, **info}, "notes": notes}


# What the model achieves (higher is better): these are the result's "metrics", the columns an analysis
# correlates with validation loss. Everything else a task reports (chosen LR, feature size, per-LR curves,
# the majority-class baseline, the best epoch) goes to "details".
QUALITY = ("top1", "top5", "final_top1", "final_top5", "miou", "final_miou", "pixel_acc", "final_pixel_acc")


def split_metrics(values: dict) -> tuple[dict, dict]:
    metrics = {k: values[k] for k in QUALITY if k in values}
    return metrics, {k: v for k, v in values.items() if k not in metrics}


def with_run_data(source: Path, cfg):
    """``cfg`` for the run directory ``source``: without ``train_source``, a run pre-trained on the user's
    images is evaluated on their labelled splits, never silently on the built-in shapes
    (``config.resolve_spec``, what a study does for each run)."""
    if cfg.train_source or not source.is_dir():
        return cfg
    try:
        run_cfg = yaml.safe_load(RunDir(source).config.read_text())
    except (OSError, yaml.YAMLError):
        return cfg  # no readable config.yaml: nothing says which images it saw
    pretrain_source = (run_cfg.get("data") or {}).get("source") if isinstance(run_cfg, dict) else None
    if not pretrain_source:
        return cfg
    spec = OmegaConf.to_container(cfg, resolve=True)
    resolved = resolve_spec(spec, str(pretrain_source))
    return cfg if resolved is spec else as_eval_config(resolved)


def run(run_dir: str | Path, cfg=None, force: bool = False) -> dict:
    """Evaluate the run in ``run_dir`` as ``cfg`` (an EvalConfig, dict or DictConfig) says."""
    source, run_dir = Path(run_dir), eval_home(run_dir)  # a checkpoint file's results go beside it
    cfg = with_run_data(source, as_eval_config(cfg))
    out = run_dir.eval_result(result_name(cfg))
    if not force and (prev := _finished(out, cfg, run_dir)) is not None:
        return prev
    t0 = time.time()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dist.init_from_env(device)  # under torchrun: fine-tuning runs DDP, evaluation is sharded
    tuned = cfg.task in FINE_TUNED
    overrides = OmegaConf.to_container(cfg.model_kwargs, resolve=True)  # plain lists, not ListConfig
    loaded = load_encoder(source, model=cfg.model, overrides=overrides, img_size=cfg.img_size,
                          drop_path_rate=cfg.drop_path if tuned else 0.0, checkpoint=cfg.checkpoint,
                          init=cfg.init, seed=cfg.seed)
    encoder = loaded.encoder.to(device)
    img_size = int(loaded.kwargs["img_size"])
    if img_size % encoder.patch_size:
        raise EvalError(f"img_size {img_size} is not a multiple of the model's patch size {encoder.patch_size}")
    train, test = D.build_sources(cfg.train_source, cfg.test_source, img_size)
    D.check_data(train, test, cfg)  # labels or masks: a bad source fails before the line naming the data
    if cfg.task == "knn" and cfg.knn_k > len(train):  # before any feature is computed, not clamped in silence
        raise EvalError(f"knn_k {cfg.knn_k} is more than the {len(train)} training images")
    data = {"train": train.describe(), "test": test.describe()}
    data["name"] = data_name(data["train"], data["test"])
    log(f"[evaluate] {result_name(cfg)}: {cfg.task} on {data['name']}")
    if (warning := same_images_warning(data["train"], data["test"])) is not None:
        log(f"[evaluate] warning: {result_name(cfg)}: {warning}")
    state = run_dir.eval_state(result_name(cfg))  # a fine-tuning resumes from it; --force starts over
    if force and dist.is_main():
        state.unlink(missing_ok=True)
    dist.barrier()
    resume = (state, {**identity(cfg), "checkpoint": loaded.checkpoint})
    torch.manual_seed(cfg.seed)  # head init and everything after it
    if cfg.task == "segment":
        num_classes = D.segmentation_classes(train, cfg.ignore_index, dict(cfg.seg_label_map))
        if cfg.num_classes and cfg.num_classes != num_classes:
            raise EvalError(f"num_classes={cfg.num_classes} but the masks have {num_classes} classes")
        res = segment(encoder, train, test, num_classes, cfg, device, img_size, *resume)
        headline = "miou"
    else:
        num_classes = D.check_labels(train, test, cfg.num_classes, cfg.task)
        if cfg.task == "finetune":
            res = finetune(encoder, train, test, num_classes, cfg, device, img_size, *resume)
        else:
            res = _probe(encoder, train, test, num_classes, cfg, device, img_size)
        headline = "top1"
    metrics, details = split_metrics(res["metrics"])
    result = {
        "task": cfg.task, "name": result_name(cfg), "metrics": metrics, "details": details, "headline": headline,
        "notes": res["notes"], "config": OmegaConf.to_container(cfg, resolve=True), "identity": identity(cfg),
        "model": loaded.model_name, "model_kwargs": loaded.kwargs, "img_size": img_size, "init": cfg.init,
        "checkpoint": loaded.checkpoint, "step": loaded.step, "run_dir": str(run_dir.path),
        "data": {**data, "num_train": len(train),
                 "num_test": len(test), "num_classes": num_classes},
        "history": res.get("history", []), "wall_time_s": time.time() - t0,
    }
    if dist.is_main():
        atomic_write_json(out, result)
        state.unlink(missing_ok=True)
        log_evaluation(run_dir, result)  # beside the run's curves, in the trackers its config.yaml names
    dist.barrier()
    return result
