"""``mimscale init``: a starting study file, commented and valid, for the built-in shapes or a folder of the
user's images (ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg, checked here, before anything is written).

The file is parsed as a study before it is written, so what ``init`` writes is a study ``study plan`` accepts;
with a folder, the batch is chosen so that the smallest data fraction holds one, and ``knn_k`` so that the
training split holds that many images.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mimscale.errors import StudyError, UserError
from mimscale.rundir import create_exclusive
from mimscale.study.spec import parse_study

FRACTIONS = (0.5, 1.0)
MAX_BATCH = 64
KNN_K = 20
BUILT_IN = "shapes:size=32,pool=1000,seed=0"
LAYOUT = "ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg"


def check_layout(root: Path) -> dict:
    """The folder's train and val splits, checked: {"train": images, "val": images, "classes": n}. One-line
    StudyError naming what is missing otherwise."""
    from mimscale.data.sources import FolderSource

    root = root.expanduser()
    if not root.is_dir():
        raise StudyError(f"--data {root}: not a folder (expected {LAYOUT})")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            hint = (f"; {root} looks like ROOT/{split.replace('val', 'train')} itself, give its parent"
                    if root.name in ("train", "val") else "")
            raise StudyError(f"--data {root}: no {split}/ folder (expected {LAYOUT}){hint}")
    try:
        train = FolderSource(root)
    except UserError as e:
        raise StudyError(f"--data {root}: {e}") from None
    val = train.validation()
    if train.split != "train" or val is None:
        raise StudyError(f"--data {root}: holds more than train/, val/ and test/ (expected {LAYOUT})")
    for split, source in (("train", train), ("val", val)):
        if source.num_classes < 2:
            raise StudyError(f"--data {root}: {split}/ has {source.num_classes} class folder(s); the evaluations "
                             f"need at least 2 ({LAYOUT})")
    missing = sorted(set(val.classes) - set(train.classes))
    if missing:
        raise StudyError(f"--data {root}: val/ has classes that train/ has not: {', '.join(missing[:5])}")
    return {"train": len(train.ids), "val": len(val.ids), "classes": train.num_classes, "source": train}


def _batch_for(smallest: int) -> int:
    """The largest power of two up to MAX_BATCH that the smallest training subset holds."""
    batch = 1
    while batch * 2 <= min(MAX_BATCH, smallest):
        batch *= 2
    return batch


def study_text(name: str, root: Path | None, iters: list[int], file: str) -> str:
    """The study file's text (see the module docstring)."""
    if root is not None:
        from mimscale.data.subsets import make_subsets

        info = check_layout(root)
        subsets = [m for m in make_subsets(info["source"], FRACTIONS, 0) if m.split == "train"]
        smallest = min(len(m.ids) for m in subsets)
        batch, knn_k = _batch_for(smallest), min(KNN_K, info["train"])
        source = f"folder:{root.expanduser().resolve()}"
        data = (f"  # {info['train']} training images in {info['classes']} classes (ROOT/train, the pre-training "
                f"pool)\n"
                f"  # and {info['val']} in ROOT/val: never trained on; the held-out set of the pre-training loss\n"
                f"  # and the test set of the evaluations.\n"
                f"  data.source: {json.dumps(source)}\n"  # quoted: a path may hold ': ' or ' #'
                f"  train.batch_size: {batch}  # the smallest fraction selects {smallest} images: one batch at least\n")
    else:
        batch, knn_k = MAX_BATCH, KNN_K
        data = ("  # The built-in procedural shapes. For your images: folder:/path/to/ROOT, with\n"
                f"  # {LAYOUT} (or run `mimscale init --data ROOT`).\n"
                f"  data.source: {BUILT_IN}\n"
                f"  train.batch_size: {batch}\n")
    text = f"""\
# A mimscale study, written by `mimscale init`; every key is explained in docs/STUDIES.md.
#   mimscale study plan {file}    # the runs, images per fraction, cost, time; checks everything, trains nothing
#   mimscale study run {file}     # trains and evaluates every run; rerun it to resume
#   mimscale study results runs/{name} && mimscale report runs/{name}
name: {name}
# The pre-training recipe to start from: a packaged config (short name) or a path relative to this file.
base_config: pretrain/swinv2-cpu.yaml
base:  # config values for every run (docs/CONFIG.md); they win over base_config
{data}  data.img_size: 32  # images are cropped and resized to this side
  train.eval_points: 10  # held-out loss measured 10 times per run
axes:  # every combination is one run
  model.name: [swinv2-cpu-t, swinv2-cpu-s]
  data.fraction: [{', '.join(f'{f:g}' for f in FRACTIONS)}]
  train.iters: [{', '.join(str(i) for i in iters)}]
evals:  # after each pre-training, on frozen features (evaluation keys: docs/CONFIG.md)
  - {{name: knn, task: knn, knn_k: {knn_k}}}
  - {{name: linear, task: linear}}
"""
    parse_study(yaml.safe_load(text), file)  # what init writes is a study `study plan` accepts
    return text


def write_study_file(out: Path, root: Path | None, iters: list[int]) -> str:
    """Write the starting study file to ``out``, never over an existing file; returns its text."""
    if out.exists():
        raise StudyError(f"{out} exists; choose another --out or remove it")
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in out.stem) or "my-study"
    text = study_text(name, root, iters, str(out))
    # written whole or not at all, and never over a file that appeared meanwhile
    if not create_exclusive(out, lambda f: f.write(text.encode())):
        raise StudyError(f"{out} exists; choose another --out or remove it")
    return text
