"""Data layer: sources (folder, shards, built-in), nested subset manifests, transforms, loaders.

Typical pre-training setup::

    from mimscale import data
    from mimscale.masking import MaskGenerator

    plan = data.plan_data("shapes:size=32,pool=1000,seed=0", fraction=0.1, seed=0)
    masks = MaskGenerator(input_size=32, mask_patch_size=8, model_patch_size=8)
    train = data.SimMIMDataset(plan.source, plan.train_indices, data.TrainTransform(32), masks, seed=0)
    sampler = data.ResumableSampler(len(train), seed=0, batch_size=64, rank=rank, world_size=world)
    loader = data.build_pretrain_loader(train, sampler, num_workers=2)
    val_idx, excluded = data.screen_readable(plan.val_source, plan.val_indices)  # once; report ``excluded``
    val = data.SimMIMValDataset(plan.val_source, val_idx, data.EvalTransform(32), masks, mask_seed=0)
    val_loader = data.build_val_loader(val, batch_size=256, rank=rank, world_size=world)

See ``loader.py`` for saving / restoring the sampler position. ``cli.py`` is ``mimscale data``. Names are
imported on first use, so that ``mimscale data --help`` does not load torch.
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {
    "DataError": "mimscale.errors", "MaskGeneratorLike": "loader", "PretrainLoader": "loader",
    "ResumableSampler": "loader", "SimMIMDataset": "loader", "SimMIMValDataset": "loader",
    "build_pretrain_loader": "loader", "build_val_loader": "loader", "collate": "loader",
    "screen_readable": "loader", "DataPlan": "plan", "plan_data": "plan", "subset_command": "plan",
    "verify_command": "plan", "verify_manifests": "plan", "SegFolderSource": "segfolder",
    "CLASS_NAMES": "shapes", "SEG_NUM_CLASSES": "shapes", "SEG_OCCLUDER": "shapes", "shapes_array": "shapes",
    "split_seed": "shapes", "ShardSource": "shards", "write_shards": "shards", "ArraySource": "sources",
    "FolderSource": "sources", "ShapesSource": "sources", "Source": "sources", "build_source": "sources",
    "parse_spec": "sources", "Manifest": "subsets", "holdout_split": "subsets", "ids_sha256": "subsets",
    "load_manifest": "subsets", "make_subsets": "subsets", "manifest_indices": "subsets",
    "parse_fractions": "subsets", "probe_indices": "subsets", "subset_indices": "subsets",
    "write_manifest": "subsets", "write_manifests": "subsets", "EvalTransform": "transforms",
    "IMAGENET_MEAN": "transforms", "IMAGENET_STD": "transforms", "Normalize": "transforms",
    "TrainTransform": "transforms", "check_size": "transforms", "rrc_params": "transforms",
    "to_rgb": "transforms",
}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
