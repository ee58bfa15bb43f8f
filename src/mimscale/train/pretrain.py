"""``pretrain(cfg) -> summary``: one SimMIM pre-training run in its run directory, resumed by default.

The loop below is the whole training procedure; setup and bookkeeping live in helpers beside it.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from mimscale import config as C
from mimscale.atomic import atomic_write_json, atomic_write_text
from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM
from mimscale.train import distributed as dist
from mimscale.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from mimscale.train.flops import flops_per_image
from mimscale.train.inputs import build_inputs
from mimscale.train.metrics import MetricsWriter
from mimscale.train.optim import build_optimizer
from mimscale.train.pictures import save_reconstruction
from mimscale.train.progress import Progress
from mimscale.train.schedule import budgeted_eval_points, eval_steps, every, lr_at, scaled_lr, total_steps
from mimscale.train.state import provenance, rng_state, seed_everything, set_rng_state
from mimscale.train.step import reconstruction_loss, train_step


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. too many consecutive non-finite losses); one-line message."""


class Interrupted(RuntimeError):
    """SIGTERM / SIGINT arrived; the run stopped at a step boundary and can be resumed."""

    def __init__(self, signum: int, step: int, saved: bool = True):
        where = "checkpoint written" if saved else "no checkpoint (the last steps were non-finite); the last good one is kept"
        super().__init__(f"stopped by signal {signal.Signals(signum).name} at step {step}; {where}, "
                         f"rerun the same command to resume")
        self.signum = signum


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path(cfg.out) / (cfg.name or C.run_id(cfg))


def build_simmim(cfg: DictConfig) -> SimMIM:
    encoder = build_model(cfg.model.name, img_size=cfg.data.img_size, drop_path_rate=cfg.model.drop_path_rate,
                          **cfg.model.kwargs)
    if cfg.data.img_size % encoder.stride != 0:
        raise C.ConfigError(f"data.img_size {cfg.data.img_size} is not a multiple of the model's stride "
                            f"{encoder.stride}")
    if cfg.data.mask_patch_size % encoder.patch_size != 0:
        raise C.ConfigError(f"data.mask_patch_size {cfg.data.mask_patch_size} is not a multiple of the model's "
                            f"patch size {encoder.patch_size}")
    return SimMIM(encoder, norm_target=cfg.objective.norm_target,
                  norm_target_window=cfg.objective.norm_target_window)


def _prepare_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Write config.yaml, or check that an existing run directory holds the same run."""
    path = run_dir / "config.yaml"
    if path.exists():
        existing = C.load_config(path, base=None)
        if C.run_id(existing) != C.run_id(cfg):
            raise C.ConfigError(f"{run_dir} holds a different run (id {C.run_id(existing)}, this config is "
                                f"{C.run_id(cfg)}); choose another run_dir")
    elif dist.is_main():
        atomic_write_text(path, C.dump_yaml(cfg))


class _SignalFlag:
    """Records SIGTERM / SIGINT so the loop can checkpoint at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. inside a worker thread): no handler
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)


def pretrain(cfg: DictConfig) -> dict:
    """Run (or resume, or return the summary of) the pre-training described by ``cfg``.

    SIGTERM / SIGINT are caught for the whole run: the loop checkpoints at the next step boundary and
    raises :class:`Interrupted`.
    """
    run_dir = resolve_run_dir(cfg)
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    with _SignalFlag() as stop:
        return _pretrain(cfg, run_dir, stop)


def _pretrain(cfg: DictConfig, run_dir: Path, stop: _SignalFlag) -> dict:
    device = dist.resolve_device(cfg.device)
    dist.init_from_env(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    world, rank = dist.world_size(), dist.rank()
    t = cfg.train
    if t.batch_size % (world * t.accum_steps) != 0:
        raise C.ConfigError(f"train.batch_size {t.batch_size} is not divisible by world size {world} x "
                            f"accum_steps {t.accum_steps}")
    if t.precision == "fp16" and device.type != "cuda":
        raise C.ConfigError("train.precision=fp16 needs CUDA; use bf16 on CPU")
    micro_batch = t.batch_size // (world * t.accum_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    _prepare_run_dir(run_dir, cfg)

    seed_everything(cfg.seed + rank)  # SPEC: seed differs per rank
    model = build_simmim(cfg).to(device)
    inputs = build_inputs(cfg, micro_batch, rank, world, run_dir, model.encoder.patch_size)
    steps = total_steps(t.iters, t.epochs, t.samples, t.batch_size, inputs.data_size)
    peak = scaled_lr(t.base_lr, t.batch_size)
    warmup = t.warmup_iters if t.warmup_iters >= 0 else round(t.warmup_fraction * steps)
    lr = lambda s: lr_at(s, steps, peak, warmup, scaled_lr(t.warmup_lr, t.batch_size),  # noqa: E731
                         scaled_lr(t.min_lr, t.batch_size), t.schedule, t.step_at, t.step_gamma)
    optimizer = build_optimizer(model, peak, t.weight_decay, t.betas, t.eps)
    scaler = torch.amp.GradScaler(device.type) if t.precision == "fp16" else None

    step, skipped_total, start_state, train_time, images_done = 0, 0, None, 0.0, 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        start_state = load_checkpoint(ckpt, map_location=device)
        model.load_state_dict(start_state["model"])
        optimizer.load_state_dict(start_state["optimizer"])
        if scaler is not None and start_state.get("scaler"):
            scaler.load_state_dict(start_state["scaler"])
        inputs.load_state_dict(start_state["inputs"])
        set_rng_state(start_state["rng"][rank] if rank < len(start_state["rng"]) else start_state["rng"][0])
        step, skipped_total = start_state["step"], start_state["skipped_steps"]
        train_time, images_done = start_state["train_time_s"], start_state["images_done"]
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_model = torch.compile(train_model)

    writer = MetricsWriter(run_dir / "metrics.jsonl", resume_step=step if ckpt else None,
                           tensorboard_dir=run_dir / "tb" if t.tensorboard else None, enabled=dist.is_main())
    if dist.is_main() and ckpt is None:
        atomic_write_json(run_dir / "provenance.json", provenance(device, world))
    flops = flops_per_image(model, inputs.example_batch(), device)
    points = t.eval_points
    if t.eval_every <= 0:
        points = budgeted_eval_points(t.eval_points, steps, t.batch_size, inputs.eval_images, t.eval_budget)
        if points < t.eval_points and dist.is_main() and ckpt is None:
            print(f"[pretrain] validation at {points} evenly spaced points instead of {t.eval_points}: "
                  f"{inputs.eval_images} held-out+probe images per evaluation would exceed "
                  f"train.eval_budget={t.eval_budget:g} of this {steps}-step run's compute", file=sys.stderr)
    evals = eval_steps(steps, t.eval_every, points)
    # Checkpoints keep the unthinned schedule: the eval budget saves compute, not resume points.
    ckpts = (eval_steps(steps, t.eval_every, t.eval_points) if t.ckpt_every <= 0
             else set(range(t.ckpt_every, steps + 1, t.ckpt_every)) | {steps})
    history = _val_history(run_dir, step) if ckpt else {}
    if step == 0:
        history[0] = _evaluate(model, inputs, writer, 0, device, t.precision, run_dir, cfg)
    consecutive_bad, last_loss = 0, float("nan")
    progress = Progress(steps, start=step, enabled=dist.is_main())
    debug_nan = set(t.debug_nan_steps)
    while step < steps:
        t0 = time.perf_counter()
        batches = [inputs.next_train() for _ in range(t.accum_steps)]
        result = train_step(train_model, optimizer, batches, lr(step), t.clip_grad, device, t.precision,
                            scaler, poison=step in debug_nan)
        step += 1
        train_time += time.perf_counter() - t0
        images_done += t.batch_size
        if result.finite:
            consecutive_bad, last_loss = 0, result.loss
        else:
            consecutive_bad += 1
            skipped_total += 1
            writer.log(step, "train", "skipped_step", 1)
            if consecutive_bad >= t.max_nonfinite:
                raise TrainingError(f"{consecutive_bad} consecutive non-finite losses at step {step}; "
                                    f"lower train.base_lr or use fp32 (last good checkpoint is kept)")
        if every(step, t.log_every) or step == steps:
            writer.log_many(step, "train", {"loss": result.loss, "lr": lr(step - 1), "grad_norm": result.grad_norm,
                                            "images_per_s": images_done / max(train_time, 1e-9),
                                            "flops_per_s": flops * images_done / max(train_time, 1e-9)})
        progress.update(step, result.loss, images_done / max(train_time, 1e-9))
        if step in evals:
            history[step] = _evaluate(model, inputs, writer, step, device, t.precision, run_dir, cfg)
        if (step in ckpts or stop.signum) and consecutive_bad == 0:
            _checkpoint(run_dir, step, model, optimizer, scaler, inputs, history, cfg,
                        {"skipped_steps": skipped_total, "train_time_s": train_time, "images_done": images_done})
        if stop.signum:
            progress.close()
            writer.close()
            raise Interrupted(stop.signum, step, saved=consecutive_bad == 0)
    progress.close()
    writer.close()
    summary = _summary(cfg, model, inputs, history, steps, last_loss, skipped_total, flops, run_dir,
                       images_done, train_time)
    if dist.is_main():
        atomic_write_json(run_dir / "summary.json", summary)
    dist.barrier()
    return summary


def _evaluate(model, inputs, writer, step, device, precision, run_dir, cfg) -> dict:
    val = reconstruction_loss(model, inputs.val_batches(), device, precision)
    probe = reconstruction_loss(model, inputs.probe_batches(), device, precision)
    writer.log(step, "val", "loss", val)
    writer.log(step, "train_probe", "loss", probe)
    if dist.is_main() and cfg.train.recon_images > 0:
        img, mask = inputs.recon_batch(cfg.train.recon_images)
        path = save_reconstruction(model, img.to(device), mask.to(device), run_dir / "recon" / f"step_{step:07d}.png")
        if writer.tb is not None:
            import numpy as np
            from PIL import Image

            writer.tb.add_image("recon", np.asarray(Image.open(path)), step, dataformats="HWC")
    return {"val": val, "train_probe": probe}


def _checkpoint(run_dir, step, model, optimizer, scaler, inputs, history, cfg, counters: dict) -> None:
    # Every rank's RNG is gathered so a resumed DDP run continues each rank's stream exactly.
    states = dist.all_gather_object(rng_state())
    if not dist.is_main():
        return
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "scaler": scaler.state_dict() if scaler is not None else None, "inputs": inputs.state_dict(),
             "rng": states, "config": C.to_container(cfg), **counters}
    last = history.get(step, {})
    save_checkpoint(run_dir, step, state, {"val_loss": last.get("val"), "time": time.time()},
                    keep_last=cfg.train.keep_last)


def _val_history(run_dir: Path, upto: int) -> dict:
    from mimscale.train.metrics import read_metrics

    history: dict = {}
    for rec in read_metrics(run_dir / "metrics.jsonl"):
        if rec["name"] == "loss" and rec["split"] in ("val", "train_probe") and rec["step"] <= upto:
            history.setdefault(rec["step"], {})[rec["split"]] = rec["value"]
    return history


def _summary(cfg, model, inputs, history, steps, last_loss, skipped, flops, run_dir, images, seconds) -> dict:
    vals = {s: h["val"] for s, h in history.items() if "val" in h}
    final_step = max(vals)
    best_step = min(vals, key=lambda s: (vals[s], s))
    ips = images / seconds if seconds > 0 else float("nan")
    return {
        "status": "done",
        "run_id": C.run_id(cfg),
        "model": cfg.model.name,
        "params": sum(p.numel() for p in model.encoder.parameters()),
        "data_size": inputs.data_size,
        "data_fraction": cfg.data.fraction,
        "iters": steps,
        "global_batch": cfg.train.batch_size,
        "epochs_equivalent": steps * cfg.train.batch_size / inputs.data_size,
        "final_val_loss": vals[final_step],
        "final_val_step": final_step,
        "best_val_loss": vals[best_step],
        "best_val_step": best_step,
        "initial_val_loss": vals.get(0),
        "final_train_probe_loss": history[final_step].get("train_probe"),
        "final_train_loss": last_loss if math.isfinite(last_loss) else None,
        "images_per_s": ips,
        "flops_per_image": flops,
        "achieved_flops_per_s": flops * ips if flops else None,
        "train_time_s": seconds,
        "skipped_steps": skipped,
        "skipped_files": inputs.skipped_files(),
        "run_dir": str(run_dir),
    }
