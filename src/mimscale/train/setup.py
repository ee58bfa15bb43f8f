"""Everything a pre-training run holds while it trains, built (or resumed from its latest checkpoint) in one
place: ``open_run(cfg, run_dir) -> PretrainRun``. The loop in ``train/loop.py`` only reads and advances it.

The order of construction is part of the run's identity: the model is initialised right after seeding, and
nothing between seeding and the first step draws from the global RNGs except what a resumed checkpoint
restores, so a run started fresh and a run resumed at step s are the same run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mimscale import config as C
from mimscale import rundir as R
from mimscale.engine import distributed as dist
from mimscale.engine.checkpoint import Fixed, Layout, newest_intact
from mimscale.engine.guard import Guard
from mimscale.engine.runtime import RankRNG, seed_everything
from mimscale.engine.schedule import LRSchedule
from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM
from mimscale.rundir import RunDir
from mimscale.train.branch import fork
from mimscale.train.flops import flops_per_image
from mimscale.train.inputs import RunInputs
from mimscale.train.metrics import MetricsWriter
from mimscale.train.optim import pretrain_optimizer
from mimscale.train.prefix import departure, length_free_identity
from mimscale.train.progress import Progress
from mimscale.train.schedule import budgeted_eval_points, eval_steps, total_steps
from mimscale.train.state import COUNTERS, TrainState, provenance
from mimscale.train.tracking import require_installed, run_hparams

# What a pre-training checkpoint holds, in the layout every mimscale version so far has written (the counters
# and the guard's initial weight norm at the top level, where evaluate/loading.py reads "step").
CHECKPOINT = Layout("pre-training", parts=("model", "optimizer", "scaler", "inputs", "rng", "config", "counters", "guard"),
                    flat={"counters": COUNTERS, "guard": ("initial_weight_norm",)}, optional=("scaler", "config"),
                    required_flat=("step", "skipped_steps", "train_time_s", "images_done"))


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


@dataclass
class PretrainRun:
    cfg: DictConfig
    run_dir: RunDir
    device: torch.device
    model: SimMIM  # the module whose state is saved
    train_model: torch.nn.Module  # what the step calls: the model, or its DDP / compiled wrapper
    inputs: RunInputs
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    lr: LRSchedule
    steps: int
    eval_at: set[int]
    shared_eval_at: set[int]  # a trunk's evaluations for its branches only (logged apart: rundir.SHARED_VAL)
    ckpt_at: set[int]
    keep_ckpts: set[int]  # never pruned: the departure steps of the runs branching from this one
    flops: float  # per training image, forward + backward
    writer: MetricsWriter
    state: TrainState
    guard: Guard
    resumed: bool
    progress: Progress | None = field(default=None)
    last_val: tuple[int, float] | None = None  # (step, held-out loss) of this process's latest validation

    def parts(self) -> dict:
        """The objects behind ``CHECKPOINT``'s parts."""
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler, "inputs": self.inputs,
                "rng": RankRNG(), "config": Fixed(C.to_container(self.cfg)), "counters": self.state,
                "guard": self.guard}

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.writer.close()


def _check_world(cfg: DictConfig, world: int, device: torch.device) -> int:
    """The per-rank micro-batch; the parts of the config that only make sense once the world is known."""
    t = cfg.train
    if t.batch_size % (world * t.accum_steps) != 0:
        raise C.ConfigError(f"train.batch_size {t.batch_size} is not divisible by world size {world} x "
                            f"accum_steps {t.accum_steps}")
    return t.batch_size // (world * t.accum_steps)


def _eval_points(t, steps: int, eval_images: int) -> int:
    if t.eval_every > 0:
        return t.eval_points
    return budgeted_eval_points(t.eval_points, steps, t.batch_size, eval_images, t.eval_budget)


def _schedules(cfg: DictConfig, steps: int, eval_images: int, announce: bool):
    """(evaluation steps, extra evaluation steps for branches, checkpoint steps, checkpoints never pruned).
    Checkpoints keep the unthinned schedule: the eval budget saves compute, not resume points. A trunk
    (``train.share_with``) also evaluates at its branches' evaluation steps before their departure, and keeps
    its checkpoint at each departure."""
    t = cfg.train
    points = _eval_points(t, steps, eval_images)
    if points < t.eval_points and announce:
        print(f"[pretrain] validation at {points} evenly spaced points instead of {t.eval_points}: "
              f"{eval_images} held-out+probe images per evaluation would exceed "
              f"train.eval_budget={t.eval_budget:g} of this {steps}-step run's compute", file=sys.stderr)
    evals = eval_steps(steps, t.eval_every, points)
    ckpts = (eval_steps(steps, t.eval_every, t.eval_points) if t.ckpt_every <= 0
             else set(range(t.ckpt_every, steps + 1, t.ckpt_every)) | {steps})
    keep, extra = set(), set()
    for length in t.share_with:
        step, why = departure(t, int(length))
        if step is None or step >= steps:
            raise C.ConfigError(f"train.share_with: a {length}-step run cannot branch from this one ({why})")
        extra |= {e for e in eval_steps(length, t.eval_every, _eval_points(t, length, eval_images)) if e <= step}
        ckpts.add(step)
        keep.add(step)
    return evals, extra - evals, ckpts, keep


def _newest_intact_checkpoint(run_dir: RunDir, device: torch.device) -> tuple[Path | None, dict | None]:
    """(path, contents) of the newest checkpoint that loads; a damaged newer one is reported and passed over.
    (None, None) if the run has none."""
    return newest_intact([p for _, p in run_dir.list_checkpoints()], "pretrain", CHECKPOINT, device,
                         using="resuming from")


def check_same_run(saved: dict, path: Path, cfg: DictConfig, run_dir: RunDir) -> None:
    """Refuse (one line) a checkpoint that says it belongs to another run than ``cfg``: the run directory's
    files (config.yaml) are not trusted alone. A branch's first checkpoint is its trunk's, the same run but for
    its length. A checkpoint without a config (mimscale 0.1) says nothing."""
    theirs = saved.get("config")
    if not isinstance(theirs, dict):
        return
    theirs = OmegaConf.create(theirs)
    forked = R.read_json(run_dir.branch) or {}
    if forked.get("step") is not None and forked.get("step") == saved.get("step"):
        if length_free_identity(theirs) == length_free_identity(cfg):
            return
    elif C.run_id(theirs) == C.run_id(cfg):
        return
    raise C.ConfigError(f"{run_dir.path} holds checkpoints of another run ({path.name} is run {C.run_id(theirs)}, "
                        f"this config is run {C.run_id(cfg)}); choose another run_dir")


def _keep_thread_count(run_dir: RunDir, device: torch.device) -> None:
    """A resumed CPU run uses the thread count it started with: the intra-op split changes float summation
    order, so another count (e.g. a study resumed with another --workers) would change results by ~1e-7."""
    started = (R.read_json(run_dir.provenance) or {}).get("threads")
    now = torch.get_num_threads()
    if device.type == "cpu" and run_dir.list_checkpoints() and isinstance(started, int) and 0 < started != now:
        if dist.is_main():
            print(f"[pretrain] resuming with {started} threads, as the run started (this process was given {now}), "
                  f"so that it continues bit-identically", file=sys.stderr)
        torch.set_num_threads(started)


def open_run(cfg: DictConfig, run_dir: RunDir) -> PretrainRun:
    """Build the run in ``run_dir`` (config.yaml already there), resuming from its latest checkpoint."""
    require_installed(cfg.track)  # before the model and the data plan (minutes at 14.2M images), on every rank
    device = dist.resolve_device(cfg.device)
    dist.init_from_env(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _keep_thread_count(run_dir, device)
    world, rank = dist.world_size(), dist.rank()
    micro_batch = _check_world(cfg, world, device)
    t = cfg.train

    seed_everything(cfg.seed + rank)  # the seed differs per rank
    model = build_simmim(cfg).to(device)
    inputs = RunInputs(cfg, micro_batch, rank, world, run_dir, model.encoder.patch_size)
    steps = total_steps(t.iters, t.epochs, t.samples, t.batch_size, inputs.data_size)
    lr = LRSchedule.from_config(t, steps)
    optimizer = pretrain_optimizer(model, lr.peak, t.weight_decay, t.betas, t.eps, t.decay_position_bias)
    scaler = torch.amp.GradScaler(device.type, init_scale=t.fp16_init_scale) if t.precision == "fp16" else None

    fresh = not run_dir.list_checkpoints()
    eval_at, shared_eval_at, ckpt_at, keep = _schedules(cfg, steps, inputs.eval_images,
                                                         announce=dist.is_main() and fresh)
    if t.branch_from and fresh and dist.is_main():
        fork(t.branch_from, run_dir, cfg, eval_at)  # then resumed like any interrupted run (or trained alone)
    dist.barrier()
    state, (ckpt, saved) = TrainState(), _newest_intact_checkpoint(run_dir, device)
    hint = "lower train.base_lr" + (" or use fp32" if t.precision != "fp32" else "")
    guard = Guard(hint, t.max_nonfinite, t.divergence_factor)
    if ckpt is not None:
        check_same_run(saved, ckpt, cfg, run_dir)
        CHECKPOINT.restore(saved, {"model": model, "optimizer": optimizer, "scaler": scaler, "inputs": inputs,
                                   "rng": RankRNG(), "config": None, "counters": state, "guard": guard})
        if dist.is_main():  # one line in the console log: where this process took the run up
            print(f"[pretrain] resumed at step {state.step} of {steps} from {ckpt.name}", file=sys.stderr, flush=True)
    guard.start_weights(model)  # fresh, or a 0.1 checkpoint
    train_model = dist.wrap(model, device)
    if t.compile:
        train_model = torch.compile(train_model)

    writer = MetricsWriter(run_dir.metrics, resume_step=state.step if ckpt else None, enabled=dist.is_main(),
                           sinks=cfg.track, run_dir=run_dir, hparams=run_hparams(cfg, C.run_id(cfg)))
    if dist.is_main() and ckpt is None:
        R.atomic_write_json(run_dir.provenance, provenance(device, world))
    flops = flops_per_image(model, inputs.example_batch(), device)
    return PretrainRun(cfg, run_dir, device, model, train_model, inputs, optimizer, scaler, lr, steps, eval_at,
                       shared_eval_at, ckpt_at, keep, flops, writer, state, guard, resumed=ckpt is not None)
