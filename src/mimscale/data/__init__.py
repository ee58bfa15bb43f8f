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

See ``loader.py`` for saving / restoring the sampler position.
"""

from mimscale.errors import DataError

from .loader import (
    PretrainLoader,
    ResumableSampler,
    SimMIMDataset,
    SimMIMValDataset,
    build_pretrain_loader,
    build_val_loader,
    collate,
    screen_readable,
)
from .plan import DataPlan, plan_data, subset_command, verify_command, verify_manifests
from .shapes import CLASS_NAMES, SEG_NUM_CLASSES, SEG_OCCLUDER, shapes_array, split_seed
from .shards import ShardSource, ShardStream, StreamLoader, build_stream_loader, write_shards
from .sources import ArraySource, FolderSource, ShapesSource, Source, build_source, parse_spec
from .subsets import (
    Manifest,
    holdout_split,
    ids_sha256,
    load_manifest,
    make_subsets,
    manifest_indices,
    parse_fractions,
    probe_indices,
    subset_indices,
    write_manifest,
    write_manifests,
)
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    Normalize,
    TrainTransform,
    check_size,
    rrc_params,
    to_rgb,
)

__all__ = [
    "ArraySource", "CLASS_NAMES", "DataError", "DataPlan", "EvalTransform", "FolderSource", "IMAGENET_MEAN",
    "IMAGENET_STD", "Manifest", "Normalize", "PretrainLoader", "ResumableSampler", "SEG_NUM_CLASSES",
    "SEG_OCCLUDER", "ShapesSource", "ShardSource", "ShardStream", "SimMIMDataset", "SimMIMValDataset",
    "Source", "StreamLoader", "TrainTransform", "build_pretrain_loader", "build_source", "build_stream_loader",
    "build_val_loader", "check_size", "collate", "holdout_split", "ids_sha256", "load_manifest", "make_subsets",
    "manifest_indices", "parse_fractions", "parse_spec", "plan_data", "probe_indices", "rrc_params",
    "screen_readable", "shapes_array", "split_seed", "subset_command", "subset_indices", "to_rgb",
    "verify_command", "verify_manifests", "write_manifest", "write_manifests", "write_shards",
]  # fmt: skip
