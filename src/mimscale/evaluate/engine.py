"""The fine-tuning loop shared by classification and segmentation: one process or torchrun DDP, one code path.

- ``batch_size`` is the global batch: each step takes the next ``batch_size`` images of the epoch's
  permutation (seeded by seed and epoch, the same on every rank) and splits them into world x ``accum_steps``
  micro-batches; each rank runs its ``accum_steps`` of them (DDP synchronises on the last). The loss is
  weighted so that the update is that of the whole global batch, whatever the split: 2 processes, or
  accumulation, equal one process at the same global batch up to float summation order.
- Per-sample augmentation is seeded by (seed, epoch, image); batch augmentation (mixup, erasing) by (seed,
  step, rank, micro-batch): nothing depends on worker scheduling, and a resumed run draws what it would have.
- The state (weights, optimizer, step, history, every rank's RNG) is written after every evaluated epoch and
  when SIGTERM / SIGINT arrives (at the next step boundary), to ``eval/<name>.state.pt``; a rerun resumes
  from it. Evaluation is sharded over ranks and gathered.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mimscale.errors import EvalError, Interrupted, TrainingError
from mimscale.train import distributed as dist
from mimscale.train.checkpoint import atomic_torch_save, load_checkpoint
from mimscale.train.state import SignalFlag, rng_state, set_rng_state
from mimscale.train.step import autocast


@dataclass
class Tuning:
    """The loop's own state, saved with every checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch in flight: a signal at an epoch's last step leaves it unevaluated, not done
    history: list = field(default_factory=list)
    best: dict | None = None
    epoch_loss: float = 0.0  # sum of global-batch losses x images in the current epoch so far
    epoch_images: int = 0
    skipped_steps: int = 0  # fp16: steps whose update the grad scaler skipped (inf/nan gradients)


def steps_per_epoch(n: int, global_batch: int, parts: int) -> int:
    """Every full global batch, and the epoch's tail when each of the ``parts`` micro-batches gets an image
    (a tail smaller than world x accum_steps is dropped; one process without accumulation keeps every tail)."""
    full, tail = divmod(n, global_batch)
    return full + (1 if tail >= parts else 0)


def rank_batches(n: int, global_batch: int, world: int, accum: int, rank: int, seed: int, epoch: int,
                 first: int) -> list[tuple[int, list[list[int]]]]:
    """(global batch size, this rank's ``accum`` micro-batches of indices) for each step of the epoch from ``first``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).numpy()
    parts = world * accum
    out = []
    for s in range(first, steps_per_epoch(n, global_batch, parts)):
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
                 batch_fn: Callable | None = None, tag: str = "finetune"):
        self.world, self.rank = dist.world_size(), dist.rank()
        self.accum = int(cfg.accum_steps)
        if cfg.batch_size % (self.world * self.accum):
            raise EvalError(f"batch_size {cfg.batch_size} is not divisible by world size {self.world} x "
                            f"accum_steps {self.accum}")
        self.model, self.train_ds, self.optimizer, self.schedule = model, train_ds, optimizer, schedule
        self.cfg, self.device, self.loss_fn, self.batch_fn = cfg, device, loss_fn, batch_fn
        self.evaluate, self.score, self.tag = evaluate, score, tag
        self.state_path, self.identity = state_path, identity
        # find_unused_parameters: a fine-tuned encoder never uses its mask token, and a frozen backbone
        # (segmentation) gets no gradient at all.
        self.ddp = model if self.world == 1 else nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        self.steps = steps_per_epoch(len(train_ds), cfg.batch_size, self.world * self.accum)
        # fp16 as the official fine-tune runs it: a dynamic loss scale; an overflowing step is skipped.
        self.scaler = torch.amp.GradScaler(device.type, init_scale=cfg.fp16_init_scale) \
            if cfg.precision == "fp16" else None
        if self.world > 1:  # each rank its own drop-path stream (one process keeps the seed set before)
            torch.manual_seed(cfg.seed + 1000 * self.rank)
        self.tuning = self._resume()

    # ---- state -----------------------------------------------------------------------------------
    def _resume(self) -> Tuning:
        if self.state_path is None or not self.state_path.is_file():
            return Tuning()
        saved = load_checkpoint(self.state_path, map_location=self.device)
        if saved.get("identity") != self.identity or saved.get("world") != self.world * self.accum:
            log(f"[{self.tag}] {self.state_path.name} is another fine-tuning (settings or split); starting over")
            return Tuning()
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"][self.rank])
        tuning = Tuning(**{"epoch": saved["tuning"]["step"] // self.steps, **saved["tuning"]})  # states before "epoch"
        log(f"[{self.tag}] resuming at step {tuning.step} from {self.state_path.name}")
        return tuning

    def _save(self) -> None:
        states = dist.all_gather_object(rng_state())
        if dist.is_main() and self.state_path is not None:
            atomic_torch_save(self.state_path, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "tuning": asdict(self.tuning), "rng": states, "identity": self.identity,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "world": self.world * self.accum})
        dist.barrier()

    # ---- training --------------------------------------------------------------------------------
    def _loader(self, micro: list[list[int]]):
        batches = [idx for _, m in micro for idx in m]
        return iter(torch.utils.data.DataLoader(self.train_ds, batch_sampler=batches,
                                                num_workers=self.cfg.num_workers,
                                                pin_memory=torch.cuda.is_available()))

    def _step(self, batches, n_global: int, sizes: list[int]) -> float:
        cfg, t = self.cfg, self.tuning
        self.schedule.apply(self.optimizer, t.step)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for a, size in enumerate(sizes):
            x, y = next(batches)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.batch_fn is not None:
                x, y = self.batch_fn(x, y, np.random.default_rng([cfg.seed, 0xB17C, t.step, self.rank, a]))
            last = a == len(sizes) - 1
            with contextlib.nullcontext() if last or self.world == 1 else self.ddp.no_sync():
                with autocast(self.device, cfg.precision):
                    out = self.ddp(x)
                loss = self.loss_fn(out.float(), y)
                # DDP averages gradients over ranks: this weight makes the update the global batch's mean.
                weighted = loss * (size / n_global * self.world)
                (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
            total += loss.detach().double().cpu() * size
        total = float(dist.all_reduce_sum(total)) / n_global
        if not math.isfinite(total):
            raise TrainingError(f"non-finite fine-tuning loss at step {t.step}; lower base_lr or use precision=fp32")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, as the official fine-tune does
        if cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        if self.scaler is None:
            self.optimizer.step()
            return total
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)  # skipped when a gradient is inf/nan (the same on every rank)
        self.scaler.update()
        t.skipped_steps += int(self.scaler.get_scale() < scale)  # the scale backs off only after a skip
        return total

    def _epoch(self, epoch: int, stop: SignalFlag) -> float:
        t = self.tuning
        self.train_ds.set_epoch(epoch)
        plan = rank_batches(len(self.train_ds), self.cfg.batch_size, self.world, self.accum, self.rank,
                            self.cfg.seed, epoch, t.step - epoch * self.steps)
        batches = self._loader(plan)
        self.model.train()
        for n_global, micro in plan:
            loss = self._step(batches, n_global, [len(m) for m in micro])
            t.step += 1
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
                    if self.scaler is not None:
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
