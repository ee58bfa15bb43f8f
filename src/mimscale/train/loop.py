"""``pretrain(cfg) -> summary``: one SimMIM pre-training run in its run directory, resumed by default.

``_train`` below is the whole training procedure; building and resuming the run is ``train/setup.py``, the
step itself ``train/step.py``. Periodic work is three named steps: validate, checkpoint, log.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from mimscale import config as C
from mimscale import rundir as R
from mimscale.errors import Interrupted, TrainingError
from mimscale.rundir import RunDir
from mimscale.train import distributed as dist
from mimscale.train.checkpoint import save_checkpoint
from mimscale.train.pictures import save_reconstruction
from mimscale.train.progress import Progress
from mimscale.train.schedule import every
from mimscale.train.setup import PretrainRun, build_simmim, open_run
from mimscale.train.state import SignalFlag, rng_state
from mimscale.train.step import reconstruction_loss, train_step, weight_norm

__all__ = ["pretrain", "build_simmim", "resolve_run_dir", "Interrupted", "TrainingError"]

# A healthy run's parameter norm moved by 1.04-1.29x over the demo's runs (2,000 iterations, weight decay
# 0.05); 100x is far outside anything that still trains.
WEIGHT_BLOWUP = 100.0


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path(cfg.out) / (cfg.name or C.run_id(cfg))


def _claim_run_dir(run_dir: RunDir, cfg: DictConfig) -> None:
    """Write config.yaml, or check that the directory holds this very run (finished or not)."""
    if run_dir.path.exists() and not run_dir.path.is_dir():
        raise C.ConfigError(f"run_dir {run_dir.path} exists and is not a directory")
    if run_dir.config.exists():
        existing = C.load_config(run_dir.config)
        if C.run_id(existing) != C.run_id(cfg):
            raise C.ConfigError(f"{run_dir.path} holds a different run (id {C.run_id(existing)}, this config is "
                                f"{C.run_id(cfg)}); choose another run_dir")
    elif dist.is_main():
        R.atomic_write_text(run_dir.config, C.dump_yaml(cfg))


def pretrain(cfg: DictConfig) -> dict:
    """Run (or resume, or return the summary of) the pre-training described by ``cfg``.

    SIGTERM / SIGINT are caught for the whole run: the loop checkpoints at the next step boundary and
    raises :class:`Interrupted`.
    """
    run_dir = RunDir(resolve_run_dir(cfg))
    _claim_run_dir(run_dir, cfg)  # before anything else: a finished run of another config is not this run
    if run_dir.is_finished():
        return R.read_json(run_dir.summary) or {}
    with SignalFlag() as stop:
        run = open_run(cfg, run_dir)
        try:
            return _train(run, stop)
        finally:
            run.close()


def _train(run: PretrainRun, stop: SignalFlag) -> dict:
    s = run.state
    if s.step == 0:
        _validate(run, 0)
    run.progress = Progress(run.steps, start=s.step, enabled=dist.is_main())
    while s.step < run.steps:
        _step(run)
        if s.step in run.eval_at or s.step in run.shared_eval_at:
            _validate(run, s.step, shared=s.step not in run.eval_at)
        signum = dist.agreed_signal(stop.signum, run.device)
        if (s.step in run.ckpt_at or signum) and s.consecutive_bad == 0:
            _checkpoint(run)
        if signum:
            raise Interrupted(signum, s.step, saved=s.consecutive_bad == 0)
    return _finish(run)


def _step(run: PretrainRun) -> None:
    """One optimizer step, its counters, the non-finite guard, and its log lines."""
    s, t = run.state, run.cfg.train
    t0 = time.perf_counter()
    batches = [run.inputs.next_train() for _ in range(t.accum_steps)]
    result = train_step(run.train_model, run.optimizer, batches, run.lr(s.step), t.clip_grad, run.device,
                        t.precision, run.scaler, poison=s.step in t.debug_nan_steps)
    s.step += 1
    s.train_time_s += time.perf_counter() - t0
    s.images_done += t.batch_size
    if result.finite:
        s.consecutive_bad, s.last_loss = 0, result.loss
        s.track_loss(result.loss)
        if s.diverged(t.divergence_factor):
            raise TrainingError(f"the training loss diverged at step {s.step}: smoothed {s.loss_ema:.4g} is more than "
                                f"{t.divergence_factor:g}x its minimum {s.min_loss_ema:.4g} (step {s.min_loss_ema_step});"
                                f" lower train.base_lr (no checkpoint was written after it diverged)")
    else:
        s.skipped_steps += 1
        run.writer.log(s.step, R.TRAIN, R.SKIPPED_STEP, 1)
        # fp16: gradients that overflow the loss scale are the scaler's normal back-off (the scale halves and
        # the step is skipped), not a diverging run, until the scale falls below 1.
        overflow = result.loss_finite and run.scaler is not None and run.scaler.get_scale() >= 1.0
        s.consecutive_bad += 0 if overflow else 1
        if s.consecutive_bad >= t.max_nonfinite:
            hint = "lower train.base_lr" + (" or use fp32" if t.precision != "fp32" else "")
            raise TrainingError(f"{s.consecutive_bad} consecutive non-finite losses at step {s.step}; {hint} "
                                f"(the last good checkpoint is kept)")
    if s.count_loader_skips(run.inputs.skipped_files()):
        run.writer.log(s.step, R.TRAIN, R.SKIPPED_FILES, s.skipped_files)
        if dist.is_main():
            print(f"[pretrain] step {s.step}: {s.skipped_files} unreadable training image(s) replaced so far "
                  f"(see the warnings above)", file=sys.stderr)
    if every(s.step, t.log_every) or s.step == run.steps:
        run.writer.log_many(s.step, R.TRAIN, {R.LOSS: result.loss, R.LR: run.lr(s.step - 1),
                                              R.GRAD_NORM: result.grad_norm, R.IMAGES_PER_S: s.images_per_s,
                                              R.FLOPS_PER_S: run.flops * s.images_per_s})
    run.progress.update(s.step, result.loss, s.images_per_s)


def _validate(run: PretrainRun, step: int, shared: bool = False) -> None:
    """Held-out and training-probe losses (and, on the main rank, the reconstruction picture). ``shared``: an
    evaluation only a branch of this run needs, logged apart so that this run's own curve is unchanged."""
    val = reconstruction_loss(run.model, run.inputs.val_batches(), run.device, run.cfg.train.precision)
    probe = reconstruction_loss(run.model, run.inputs.probe_batches(), run.device, run.cfg.train.precision)
    if shared:
        run.writer.log(step, R.SHARED_VAL, R.LOSS, val)
        run.writer.log(step, R.SHARED_TRAIN_PROBE, R.LOSS, probe)
        return
    run.writer.log(step, R.VAL, R.LOSS, val)
    run.writer.log(step, R.TRAIN_PROBE, R.LOSS, probe)
    run.state.history[step] = {R.VAL: val, R.TRAIN_PROBE: probe}
    n = run.cfg.train.recon_images
    if dist.is_main() and n > 0:
        img, mask = run.inputs.recon_batch(n)
        path = save_reconstruction(run.model, img.to(run.device), mask.to(run.device), run.run_dir.recon(step))
        if run.writer.tb is not None:
            import numpy as np
            from PIL import Image

            run.writer.tb.add_image("recon", np.asarray(Image.open(path)), step, dataformats="HWC")


def _checkpoint(run: PretrainRun) -> None:
    s = run.state
    norm = weight_norm(run.model)  # the same on every rank (DDP keeps them in sync), so all raise together
    if norm > WEIGHT_BLOWUP * s.initial_weight_norm:
        raise TrainingError(f"the weights exploded by step {s.step}: norm {norm:.3g} vs {s.initial_weight_norm:.3g} "
                            f"at initialisation; lower train.base_lr (this state is not checkpointed)")
    # Every rank's RNG is gathered so a resumed DDP run continues each rank's stream exactly.
    states = dist.all_gather_object(rng_state())
    if not dist.is_main():
        return
    saved = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scaler": run.scaler.state_dict() if run.scaler is not None else None,
             "inputs": run.inputs.state_dict(), "rng": states, "config": C.to_container(run.cfg), **s.counters()}
    save_checkpoint(run.run_dir, s.step, saved, {"val_loss": s.history.get(s.step, {}).get(R.VAL)},
                    keep_last=run.cfg.train.keep_last, keep=run.keep_ckpts)


def _finish(run: PretrainRun) -> dict:
    summary = _summary(run)
    if dist.is_main():
        R.atomic_write_json(run.run_dir.summary, summary)
    dist.barrier()
    return summary


def _summary(run: PretrainRun) -> dict:
    """summary.json: its keys are rundir.SUMMARY_KEYS (docs/RESULTS.md)."""
    s, cfg = run.state, run.cfg
    vals = {step: h[R.VAL] for step, h in s.history.items() if R.VAL in h}
    final_step = max(vals)
    best_step = min(vals, key=lambda k: (vals[k], k))
    ips = s.images_done / s.train_time_s if s.train_time_s > 0 else float("nan")
    return {
        "status": R.RunState.DONE,
        "run_id": C.run_id(cfg),
        "model": cfg.model.name,
        "params": sum(p.numel() for p in run.model.encoder.parameters()),
        "data_size": run.inputs.data_size,
        "data_fraction": cfg.data.fraction,
        "iters": run.steps,
        "global_batch": cfg.train.batch_size,
        "epochs_equivalent": run.steps * cfg.train.batch_size / run.inputs.data_size,
        "final_val_loss": vals[final_step],
        "final_val_step": final_step,
        "best_val_loss": vals[best_step],
        "best_val_step": best_step,
        "initial_val_loss": vals.get(0),
        "final_train_probe_loss": s.history[final_step].get(R.TRAIN_PROBE),
        "final_train_loss": s.last_loss if math.isfinite(s.last_loss) else None,
        "images_per_s": ips,
        "flops_per_image": run.flops,
        "achieved_flops_per_s": run.flops * ips if run.flops else None,
        "train_time_s": s.train_time_s,
        "skipped_steps": s.skipped_steps,
        "skipped_files": s.skipped_files,
        "run_dir": str(run.run_dir.path),
        "branched_from": R.read_json(run.run_dir.branch),  # {"trunk", "step"}: trained from that run's step
    }
