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
from mimscale.engine import distributed as dist
from mimscale.engine.checkpoint import newest_intact
from mimscale.engine.runtime import SignalFlag
from mimscale.errors import Interrupted, TrainingError
from mimscale.rundir import RunDir
from mimscale.train.checkpoint import save_checkpoint
from mimscale.train.pictures import save_reconstruction
from mimscale.train.progress import Progress
from mimscale.train.schedule import every
from mimscale.train.setup import CHECKPOINT, PretrainRun, build_simmim, check_same_run, open_run
from mimscale.train.step import reconstruction_loss, train_step

__all__ = ["pretrain", "build_simmim", "resolve_run_dir", "Interrupted", "TrainingError"]

def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path(cfg.out) / (cfg.name or C.run_id(cfg))


def _claim_run_dir(run_dir: RunDir, cfg: DictConfig) -> None:
    """Write config.yaml, or check that the directory holds this very run (finished or not). What the run's
    own files say counts, not config.yaml alone: its summary's run id, and (config.yaml lost) the config its
    newest checkpoint carries (``open_run`` checks the checkpoint it resumes from the same way)."""
    if run_dir.path.exists() and not run_dir.path.is_dir():
        raise C.ConfigError(f"run_dir {run_dir.path} exists and is not a directory")
    mine = C.run_id(cfg)
    done = run_dir.read_summary() or {}
    if done.get("run_id") not in (None, mine):
        raise C.ConfigError(f"{run_dir.path} holds a different run (its summary.json says id {done['run_id']}, "
                            f"this config is {mine}); choose another run_dir")
    if run_dir.config.exists():
        existing = C.load_config(run_dir.config)
        if C.run_id(existing) != mine:
            raise C.ConfigError(f"{run_dir.path} holds a different run (id {C.run_id(existing)}, this config is "
                                f"{mine}); choose another run_dir")
        return
    if run_dir.list_checkpoints() and not done:  # config.yaml lost: the newest checkpoint says what the run is
        ckpt, saved = newest_intact([p for _, p in run_dir.list_checkpoints()], "pretrain", CHECKPOINT)
        check_same_run(saved, ckpt, cfg, run_dir)
    if dist.is_main():
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
        if (s.step in run.ckpt_at or signum) and run.guard.clean:
            _checkpoint(run)
        if signum:
            raise Interrupted(signum, s.step, saved=run.guard.clean)
    return _finish(run)


def _step(run: PretrainRun) -> None:
    """One optimizer step, its counters, the guard, and its log lines."""
    s, t = run.state, run.cfg.train
    t0 = time.perf_counter()
    batches = [run.inputs.next_train() for _ in range(t.accum_steps)]
    result = train_step(run.train_model, run.optimizer, batches, run.lr(s.step), t.clip_grad, run.device,
                        t.precision, run.scaler, poison=s.step in t.debug_nan_steps)
    s.step += 1
    s.train_time_s += time.perf_counter() - t0
    s.images_done += t.batch_size
    if result.finite:
        s.last_loss = result.loss
    else:
        s.skipped_steps += 1
        run.writer.log(s.step, R.TRAIN, R.SKIPPED_STEP, 1)
    run.guard.after_step(s.step, result, run.scaler)
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
    run.last_val = (step, val)
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
    run.guard.check_weights(s.step, run.model)
    saved = CHECKPOINT.state(run.parts())  # on every rank: the RNG part gathers every rank's
    if not dist.is_main():
        return
    val = run.last_val[1] if run.last_val and run.last_val[0] == s.step else None
    save_checkpoint(run.run_dir, s.step, saved, {"val_loss": val}, keep_last=run.cfg.train.keep_last,
                    keep=run.keep_ckpts)


def _finish(run: PretrainRun) -> dict:
    summary = _summary(run) if dist.is_main() else None  # metrics.jsonl is the main rank's
    if dist.is_main():
        R.atomic_write_json(run.run_dir.summary, summary)
        run.writer.finish(summary)  # the trackers' final numbers and HParams session end
    return dist.all_gather_object(summary)[0]


def _summary(run: PretrainRun) -> dict:
    """summary.json: its keys are rundir.SUMMARY_KEYS (docs/RESULTS.md)."""
    s, cfg = run.state, run.cfg
    curves = {split: {} for split in (R.VAL, R.TRAIN_PROBE, R.TRAIN)}
    for rec in run.run_dir.read_metrics():  # the run's own curve, from step 0 on, whichever process logged it
        if rec.get("name") == R.LOSS and rec.get("split") in curves:
            curves[rec["split"]][rec["step"]] = rec["value"]
    vals = curves[R.VAL]
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
        "final_train_probe_loss": curves[R.TRAIN_PROBE].get(final_step),
        # this process's last step, else (resumed at the end: no step taken here) the last one logged
        "final_train_loss": s.last_loss if math.isfinite(s.last_loss) else curves[R.TRAIN].get(max(curves[R.TRAIN], default=-1)),
        "images_per_s": ips,
        "flops_per_image": run.flops,
        "achieved_flops_per_s": run.flops * ips if run.flops else None,
        "train_time_s": s.train_time_s,
        "skipped_steps": s.skipped_steps,
        "skipped_files": s.skipped_files,
        "run_dir": str(run.run_dir.path),
        "branched_from": R.read_json(run.run_dir.branch),  # {"trunk", "step"}: trained from that run's step
    }
