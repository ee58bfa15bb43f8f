"""The fine-tuning loop shared by classification and segmentation: one process or torchrun DDP, one code path.

- ``batch_size`` is the global batch: each step takes the next ``batch_size`` images of the epoch's
  permutation (seeded by seed and epoch, the same on every rank) and splits them into world x ``accum_steps``
  micro-batches; each rank runs its ``accum_steps`` of them (DDP synchronises on the last). With ``drop_last``
  (fine-tuning's default, as the official train loader) an epoch is its full global batches only. The loss is
  weighted so that the update is that of the whole global batch, whatever the split: 2 processes, or
  accumulation, equal one process at the same global batch up to float summation order.
- Per-sample augmentation is seeded by (seed, epoch, image); batch augmentation (mixup, erasing) by (seed,
  step, rank, micro-batch): nothing depends on worker scheduling, and a resumed run draws what it would have.
- The state (``CHECKPOINT``: weights, optimizer, grad scaler, every rank's RNG, the loop's ``Tuning``, and the
  settings it belongs to) is written after every evaluated epoch and when SIGTERM / SIGINT arrives (at the next
  step boundary), to ``eval/<name>.state.pt``; a rerun resumes from it. Evaluation is sharded over ranks and
  gathered.
- The step, its non-finite policy, the guard, the schedule's application, checkpoints, RNG and signals are the
  engine's (``mimscale.engine``), as in pre-training: a non-finite step is skipped and counted, and
  ``MAX_NONFINITE`` of them in a row stop the run with a TrainingError.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mimscale.engine import distributed as dist
from mimscale.engine.checkpoint import Fixed, Layout, atomic_torch_save, load_checkpoint
from mimscale.engine.guard import Guard
from mimscale.engine.runtime import RankRNG, SignalFlag, autocast
from mimscale.engine.step import optimizer_step
from mimscale.errors import CheckpointError, EvalError, Interrupted

# What a fine-tuning state holds, in the layout every mimscale version so far has written ("identity" and
# "world", the settings it belongs to, at the top level).
CHECKPOINT = Layout("fine-tuning", parts=("model", "optimizer", "scaler", "rng", "tuning", "settings"),
                    flat={"settings": ("identity", "world")}, optional=("scaler",), required_flat=("identity", "world"))
# Consecutive non-finite steps before a fine-tuning stops (pre-training's train.max_nonfinite default).
MAX_NONFINITE = 10


@dataclass
class Tuning:
    """The loop's own state, saved with every checkpoint (the ``tuning`` part)."""

    step: int = 0
    epoch: int = 0  # the epoch in flight: a signal at an epoch's last step leaves it unevaluated, not done
    history: list = field(default_factory=list)
    best: dict | None = None
    epoch_loss: float = 0.0  # sum of global-batch losses x images in the current epoch so far
    epoch_images: int = 0
    skipped_steps: int = 0  # non-finite steps whose update was skipped (fp16: the grad scaler's overflows)
    steps_per_epoch: int = field(default=1, repr=False)  # not state: what a state without "epoch" needs

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "steps_per_epoch"}

    def load_state_dict(self, state: dict) -> None:
        state = {"epoch": state["step"] // self.steps_per_epoch, **state}  # a state written before "epoch"
        for k, v in state.items():
            setattr(self, k, v)


def steps_per_epoch(n: int, global_batch: int, parts: int, drop_last: bool = False) -> int:
    """Every full global batch; with ``drop_last`` (the official fine-tuning's train loader) nothing else, so
    1,281,167 images at 2,048 are 625 steps. Without it also the epoch's tail when each of the ``parts``
    micro-batches gets an image (a tail smaller than world x accum_steps is dropped; one process without
    accumulation keeps every tail)."""
    full, tail = divmod(n, global_batch)
    return full + (1 if tail >= parts and not drop_last else 0)


def check_epoch(n: int, global_batch: int, drop_last: bool) -> None:
    """A dataset that cannot fill one global batch trains nothing when the partial batch is dropped."""
    if drop_last and n < global_batch:
        raise EvalError(f"the training data has {n} images, fewer than one global batch (batch_size "
                        f"{global_batch}): lower batch_size or set drop_last=false")


def rank_batches(n: int, global_batch: int, world: int, accum: int, rank: int, seed: int, epoch: int,
                 first: int, drop_last: bool = False) -> list[tuple[int, list[list[int]]]]:
    """(global batch size, this rank's ``accum`` micro-batches of indices) for each step of the epoch from ``first``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).numpy()
    parts = world * accum
    out = []
    for s in range(first, steps_per_epoch(n, global_batch, parts, drop_last)):
        chunk = perm[s * global_batch:(s + 1) * global_batch]
        pieces = np.array_split(chunk, parts)
        out.append((len(chunk), [pieces[a * world + rank].tolist() for a in range(accum)]))
    return out


def shard(n: int) -> list[int]:
    """This rank's contiguous share of ``range(n)`` (evaluation sets)."""
    return np.array_split(np.arange(n), dist.world_size())[dist.rank()].tolist()


def log(msg: str) -> None:
    if dist.is_main():
        print(msg, file=sys.stderr, flush=True)


class Tuner:
    """One fine-tuning run: ``Tuner(...).run(epochs)`` -> Tuning (history, best)."""

    def __init__(self, model: nn.Module, train_ds, optimizer, schedule, cfg, device, loss_fn: Callable,
                 evaluate: Callable[[nn.Module], dict], score: str, state_path: Path | None, identity: dict,
                 batch_fn: Callable | None = None, tag: str = "finetune", drop_last: bool = False):
        self.world, self.rank = dist.world_size(), dist.rank()
        self.accum = int(cfg.accum_steps)
        if cfg.batch_size % (self.world * self.accum):
            raise EvalError(f"batch_size {cfg.batch_size} is not divisible by world size {self.world} x "
                            f"accum_steps {self.accum}")
        check_epoch(len(train_ds), cfg.batch_size, drop_last)
        self.drop_last = drop_last
        self.model, self.train_ds, self.optimizer, self.schedule = model, train_ds, optimizer, schedule
        self.cfg, self.device, self.loss_fn, self.batch_fn = cfg, device, loss_fn, batch_fn
        self.evaluate, self.score, self.tag = evaluate, score, tag
        self.state_path, self.identity = state_path, identity
        # find_unused_parameters: a fine-tuned encoder never uses its mask token, and a frozen backbone
        # (segmentation) gets no gradient at all.
        self.ddp = dist.wrap(model, device, find_unused_parameters=True)
        # The count the schedule was built with (the caller's), the plan of every epoch and the resume point.
        self.steps = steps_per_epoch(len(train_ds), cfg.batch_size, self.world * self.accum, drop_last)
        # fp16 as the official fine-tune runs it: a dynamic loss scale; an overflowing step is skipped.
        self.scaler = torch.amp.GradScaler(device.type, init_scale=cfg.fp16_init_scale) \
            if cfg.precision == "fp16" else None
        self.guard = Guard("lower base_lr" + (" or use precision=fp32" if cfg.precision != "fp32" else ""),
                           MAX_NONFINITE)
        self.clip_params = list(model.parameters())
        if self.world > 1:  # each rank its own drop-path stream (one process keeps the seed set before)
            torch.manual_seed(cfg.seed + 1000 * self.rank)
        self.tuning = self._resume()

    # ---- state -----------------------------------------------------------------------------------
    def _parts(self, tuning: Tuning) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler, "rng": RankRNG(),
                "tuning": tuning, "settings": Fixed({"identity": self.identity, "world": self.world * self.accum})}

    def _resume(self) -> Tuning:
        tuning = Tuning(steps_per_epoch=self.steps)
        if self.state_path is None or not self.state_path.is_file():
            return tuning
        try:
            saved = load_checkpoint(self.state_path, map_location=self.device)
        except CheckpointError as e:  # damaged (a full disk, a flipped bit): the fine-tuning starts over
            log(f"[{self.tag}] passed over a damaged fine-tuning state ({e}); starting over")
            return tuning
        if saved.get("identity") != self.identity or saved.get("world") != self.world * self.accum:
            log(f"[{self.tag}] {self.state_path.name} is another fine-tuning (settings or split); starting over")
            return tuning
        CHECKPOINT.restore(CHECKPOINT.check(saved, self.state_path), self._parts(tuning))
        log(f"[{self.tag}] resuming at step {tuning.step} from {self.state_path.name}")
        return tuning

    def _save(self) -> None:
        saved = CHECKPOINT.state(self._parts(self.tuning))  # on every rank: the RNG part gathers every rank's
        if dist.is_main() and self.state_path is not None:
            atomic_torch_save(self.state_path, saved)
        dist.barrier()

    # ---- training --------------------------------------------------------------------------------
    def _loader(self, micro: list[list[int]]):
        batches = [idx for _, m in micro for idx in m]
        return iter(torch.utils.data.DataLoader(self.train_ds, batch_sampler=batches,
                                                num_workers=self.cfg.num_workers,
                                                pin_memory=torch.cuda.is_available()))

    def _step(self, batches, n_global: int, sizes: list[int]) -> float | None:
        """One optimizer step over this rank's micro-batches of ``sizes`` images (of ``n_global`` in all); the
        global batch's mean loss, or None when the loss was not finite."""
        cfg, t = self.cfg, self.tuning
        self.schedule.apply(self.optimizer, t.step)

        def micro(a: int, size: int):
            def forward():
                x, y = next(batches)
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if self.batch_fn is not None:
                    x, y = self.batch_fn(x, y, np.random.default_rng([cfg.seed, 0xB17C, t.step, self.rank, a]))
                with autocast(self.device, cfg.precision):
                    out = self.ddp(x)
                loss = self.loss_fn(out.float(), y)
                # DDP averages gradients over ranks: this weight makes the update the global batch's mean.
                return loss * (size / n_global * self.world), loss.detach().double().cpu() * size
            return forward

        result = optimizer_step(self.ddp, self.optimizer, [micro(a, size) for a, size in enumerate(sizes)],
                                torch.zeros((), dtype=torch.float64), n_global, self.clip_params, cfg.clip_grad,
                                self.scaler)
        t.skipped_steps += 0 if result.finite else 1
        self.guard.after_step(t.step + 1, result, self.scaler)
        return result.loss if result.loss_finite else None

    def _epoch(self, epoch: int, stop: SignalFlag) -> float:
        t = self.tuning
        self.train_ds.set_epoch(epoch)
        plan = rank_batches(len(self.train_ds), self.cfg.batch_size, self.world, self.accum, self.rank,
                            self.cfg.seed, epoch, t.step - epoch * self.steps, self.drop_last)
        batches = self._loader(plan)
        self.model.train()
        for n_global, micro in plan:
            loss = self._step(batches, n_global, [len(m) for m in micro])
            t.step += 1
            if loss is not None:  # a skipped non-finite loss does not make the epoch's mean nan
                t.epoch_loss += loss * n_global
                t.epoch_images += n_global
            signum = dist.agreed_signal(stop.signum, self.device)  # every rank stops at the same step
            if signum:
                self._save()
                raise Interrupted(signum, t.step)
        mean = t.epoch_loss / max(t.epoch_images, 1)
        t.epoch_loss, t.epoch_images = 0.0, 0
        return mean

    def run(self, epochs: int) -> Tuning:
        t = self.tuning
        with SignalFlag() as stop:
            for epoch in range(t.epoch, epochs):
                t0 = time.time()
                train_loss = self._epoch(epoch, stop)
                if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == epochs:
                    res = {"epoch": epoch + 1, "step": t.step, "train_loss": train_loss, **self.evaluate(self.model)}
                    if self.scaler is not None or t.skipped_steps:
                        res["skipped_steps"] = t.skipped_steps
                    t.history.append(res)
                    if t.best is None or res[self.score] > t.best[self.score]:
                        t.best = res
                    log(f"[{self.tag}] epoch {epoch + 1}/{epochs} train_loss {train_loss:.4f} {self.score} "
                        f"{res[self.score]:.4f} best {t.best[self.score]:.4f} ({time.time() - t0:.1f}s)")
                t.epoch = epoch + 1
                if epoch + 1 < epochs:
                    self._save()  # a killed job loses at most the epoch in flight
        return t
