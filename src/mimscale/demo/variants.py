"""The built-in demo study and its variants (``--seed``, ``--data``, ``--backbone``) as study documents.

Variants of the one built-in study: ``--seed N`` (the data are generated anew from seed N and training is
seeded with N), ``--data photos`` (crops of real photographs instead of procedural shapes), ``--data digits``
(real handwritten digits: a fixed set of 1,797 images, so its held-out and labelled pools are smaller than
the demo's 1,000) and ``--backbone swinv2`` (the paper's backbone, its CPU presets). The variant's study
definition is written into the study directory (``demo-study.yaml``) and runs like any study file.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DATASETS = ("shapes", "photos", "digits")
# The built-in study file of each backbone (src/mimscale/configs/studies/): the same grid and evaluations.
BACKBONES = {"vit": "demo.yaml", "swinv2": "demo-swinv2.yaml"}


def builtin_study(quick: bool, backbone: str = "vit") -> Path:
    name = "demo-quick.yaml" if quick else BACKBONES[backbone]
    return Path(str(resources.files("mimscale") / "configs" / "studies" / name))


def variant_source(spec: str, data: str, seed: int) -> str:
    """A built-in source spec (``shapes:size=32,pool=1000,seed=0,...``) for another dataset and seed."""
    kind, _, rest = spec.partition(":")
    if kind not in DATASETS:
        return spec
    opts = [f"seed={seed}" if p.startswith("seed=") else p for p in rest.split(",") if p]
    if f"seed={seed}" not in opts:
        opts.append(f"seed={seed}")
    if data == "digits":  # splits of a fixed size (shapes and photos generate any number of images)
        from mimscale.data.digits import SPLIT_SIZES  # numpy and PIL: not loaded by `mimscale demo --help`

        opts = _fit_pools(opts, SPLIT_SIZES)
    return f"{data}:" + ",".join(opts)  # the order kept: the spec string is part of a run's identity


def _fit_pools(opts: list[str], sizes: dict[str, int]) -> list[str]:
    """Source options with ``pool`` and ``val_pool`` cut to what their splits hold (``split=train`` added
    where the spec has none: the demo's pre-training source)."""
    if not any(p.startswith("split=") for p in opts):
        opts = [*opts, "split=train"]
    split = next(p.partition("=")[2] for p in opts if p.startswith("split="))
    cap = {"pool": sizes[split], "val_pool": sizes["val"]}
    out = []
    for p in opts:
        key, _, value = p.partition("=")
        out.append(f"{key}={min(int(value), cap[key])}" if key in cap else p)
    return out


def variant_study(doc: dict, data: str, seed: int) -> dict:
    """The built-in study ``doc`` on another dataset / seed: every data source (pre-training, held-out,
    fine-tuning and probe pools) and the training seed follow."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain YAML data
    base = doc.setdefault("base", {})
    base["data.source"] = variant_source(base["data.source"], data, seed)
    if seed:
        base["seed"] = seed  # seed 0 is the default: left out, so the default demo keeps its run ids
    for e in doc.get("evals") or []:
        for key in ("train_source", "test_source"):
            if key in e:
                e[key] = variant_source(e[key], data, seed)
    if data != "shapes" or seed:
        doc["description"] = f"{doc.get('description', '')} (data: {data}, seed {seed})".strip()
    return doc


def default_out(quick: bool, data: str, seed: int, backbone: str) -> Path:
    name = "demo" + (f"-{backbone}" if backbone != "vit" else "") + (f"-{data}" if data != "shapes" else "")
    name += (f"-seed{seed}" if seed else "") + ("-quick" if quick else "")
    return Path("runs") / name
