"""The data side of a pre-training run: training stream, held-out and training-probe sets, pictures.

Wraps the data layer into the few calls the loop needs, and writes the run's subset manifests (references to
id lists stored once per study).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from mimscale import data as D
from mimscale import rundir as R
from mimscale.errors import ConfigError
from mimscale.masking import MaskGenerator
from mimscale.rundir import RunDir

# Evaluation batches are larger than training ones: no activations are kept for backward.
EVAL_BATCH = 256
# The held-out and probe sets use a deterministic transform and fixed masks, so their batches are the same at
# every evaluation: up to this many bytes they are decoded once and kept (at 32 px, 1,500 images are 18 MB and
# loading was ~45% of a vit-cpu-s evaluation); larger sets (e.g. 192 px ImageNet) are streamed each time.
EVAL_CACHE_BYTES = 256 * 2**20


def mask_generator(d: DictConfig, patch_size: int) -> MaskGenerator:
    try:
        return MaskGenerator(d.img_size, d.mask_patch_size, patch_size, d.mask_ratio)
    except ValueError as e:  # a user's size choice: report it as a config problem, one line
        raise ConfigError(f"data: {e}") from None


def fixed_mask_set(d: DictConfig, source, indices, masks: MaskGenerator, what: str = "held-out set"):
    """(dataset, excluded): the validation protocol over ``indices`` of ``source``: deterministic transform,
    a fixed mask per image (a function of data.val_mask_seed and the image's position only). Unreadable images
    are found once, here, and left out of every evaluation, never replaced (``excluded`` lists them)."""
    kept, excluded = D.screen_readable(source, indices, what=what)
    ds = D.SimMIMValDataset(source, kept, D.EvalTransform(d.img_size, draft=d.jpeg_draft), masks,
                            mask_seed=d.val_mask_seed)
    return ds, excluded


class RunInputs:
    def __init__(self, cfg: DictConfig, micro_batch: int, rank: int, world: int, run_dir: RunDir | Path,
                 patch_size: int):
        d, run_dir = cfg.data, RunDir(run_dir)
        masks = mask_generator(d, patch_size)
        # With data.val_source nothing is held out of the training source: "100%" is all of it.
        plan = D.plan_data(d.source, fraction=d.fraction, seed=d.subset_seed, val_spec=d.val_source or None)
        val_source, val_idx = plan.val_source, plan.val_indices
        if d.val_size > 0:
            val_idx = val_idx[: d.val_size]  # held-out order is stable, so a prefix is a fixed set
        if len(plan.train_indices) == 0:
            raise D.DataError(f"training subset of {d.source} at fraction {d.fraction} is empty")
        if len(val_idx) == 0:
            raise D.DataError("the held-out set is empty")
        # The same deterministic transform and fixed masks for the held-out set and the training probe,
        # so the two losses differ only in which images they see (the train/val gap).
        self.val_ds, bad_val = fixed_mask_set(d, val_source, val_idx, masks)
        probe_idx = D.probe_indices(plan.train_indices, d.probe_size, seed=d.subset_seed)
        self.probe_ds, bad_probe = fixed_mask_set(d, plan.source, probe_idx, masks, what="training probe")
        self.plan = plan
        self.data_size = len(plan.train_indices)
        if rank == 0:
            # The ids go once to the study's store (rundir.manifest_store), shared by its runs; the run keeps
            # small references, so it still says which images it saw (docs/RESULTS.md).
            store = R.manifest_store(run_dir)
            D.write_manifest(run_dir.subset, plan.manifest, store=store)
            D.write_manifest(run_dir.heldout, plan.val_manifest, store=store)
            _list_excluded(run_dir, {"heldout": bad_val, "training_probe": bad_probe,
                                     "scan": sorted({*plan.source.skipped_at_scan, *val_source.skipped_at_scan})})
        train_tf = D.TrainTransform(d.img_size, tuple(d.crop_scale), tuple(d.crop_ratio), d.hflip, draft=d.jpeg_draft)
        train_ds = D.SimMIMDataset(plan.source, plan.train_indices, train_tf, masks, seed=cfg.seed)
        sampler = D.ResumableSampler(len(train_ds), seed=cfg.seed, batch_size=micro_batch, rank=rank,
                                     world_size=world)
        self.loader = D.build_pretrain_loader(train_ds, sampler, num_workers=d.num_workers)
        self.val_loader = D.build_val_loader(self.val_ds, EVAL_BATCH, 0, rank, world)
        self.probe_loader = D.build_val_loader(self.probe_ds, EVAL_BATCH, 0, rank, world)
        self.eval_images = len(self.val_ds) + len(self.probe_ds)  # over all ranks
        self._cacheable = self.eval_images * 4 * 3 * d.img_size**2 / world <= EVAL_CACHE_BYTES  # fp32 CHW
        self._cache: dict[str, list] = {}

    def next_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(self.loader)
        return batch["img"], batch["mask"]

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)

    def _batches(self, name: str, loader):
        if name in self._cache:
            return iter(self._cache[name])
        batches = ((batch["img"], batch["mask"]) for batch in loader)
        if not self._cacheable:
            return batches
        self._cache[name] = list(batches)
        return iter(self._cache[name])

    def val_batches(self):
        return self._batches("val", self.val_loader)

    def probe_batches(self):
        return self._batches("probe", self.probe_loader)

    def recon_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` held-out images with their fixed masks: the same pictures in every run."""
        samples = [self.val_ds[k] for k in range(min(n, len(self.val_ds)))]
        return torch.stack([s["img"] for s in samples]), torch.stack([s["mask"] for s in samples])

    def example_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.recon_batch(1)

    def skipped_files(self) -> int:
        return int(self.loader.skipped)


def _list_excluded(run_dir: RunDir, excluded: dict[str, list]) -> None:
    """RUN_DIR/excluded.json and one console line when any image was left out; nothing otherwise."""
    if not any(excluded.values()):
        return
    R.atomic_write_json(run_dir.excluded, {k: [list(e) if isinstance(e, tuple) else e for e in v]
                                           for k, v in excluded.items()})
    counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in excluded.items() if v)
    print(f"[pretrain] left out unreadable images ({counts}); listed in {run_dir.excluded}", file=sys.stderr)
