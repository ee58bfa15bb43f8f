"""The checkpoint format of the official SimMIM code (microsoft/Swin-Transformer ``main_simmim_pt.py`` and
``main_simmim_ft.py``), in which the authors released their pre-trained Swin V2 models.

A file is a ``torch.save`` dict. Its ``model`` entry is the state dict of the official ``SimMIM`` wrapper
(pre-training: ``encoder.*``, the backbone plus ``mask_token``, and ``decoder.0.*``, the 1x1 convolution
before the pixel shuffle) or of ``SwinTransformerV2`` (fine-tuning: backbone keys without a prefix, plus
``head.*``). What ``save_checkpoint`` writes also holds ``optimizer``, ``lr_scheduler``, ``scaler``,
``epoch``, ``max_accuracy`` and ``config``, a yacs ``CfgNode``: a Python object that torch's weights-only
loader refuses. ``read_checkpoint_file`` reads such files without running anything from them (a
restricted unpickler that rebuilds tensors and turns the ``CfgNode`` into plain dicts); yacs is not needed.

mimscale's Swin V2 uses the official parameter names, so converting a state dict (``canonical_state``, the
one renaming path every loader uses) strips a DDP ``module.`` prefix and renames ``rpe_mlp`` (the name of
the continuous position bias MLP in early checkpoints, which the official loader renames too) to
``cpb_mlp``. The buffers the official model stores and mimscale derives from the geometry
(``relative_coords_table``, ``relative_position_index``, ``attn_mask``) are not loaded, but they are
evidence of the window and image size the file was saved for: ``check_derived_buffers`` compares them
with a built model, so a model built at the wrong geometry is refused instead of loading silently.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
import re
import struct
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mimscale.errors import CheckpointError, EvalError

# Buffers the official Swin V2 stores (persistent) and mimscale derives from the window geometry.
DERIVED_BUFFERS = re.compile(r"(^|\.)(relative_coords_table|relative_position_index|attn_mask)$")

# mimscale 0.1 stored numpy's RNG state as an array; these are what unpickling such an array needs (no
# code runs: torch's weights-only unpickler calls nothing outside this list).
LEGACY_NUMPY = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]

_REFUSED = "it holds Python objects other than tensors and plain values (refused: loading would run code)"


class OfficialConfig(dict):
    """What a yacs ``CfgNode`` in an official file is rebuilt as: plain data, none of yacs' behaviour.

    A CfgNode pickles as ``CfgNode.__new__`` + dict items + an instance ``__dict__`` of yacs flags; this
    dict subclass accepts exactly that and runs nothing."""


# Everything the restricted reader may construct. Storages are resolved by torch's own wrapper (by name,
# without importing anything) before ``find_class`` is asked.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,  # CfgNode's __deprecated_keys__
    ("__builtin__", "set"): set,  # the same, in protocol-2 pickles written with fix_imports
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("yacs.config", "CfgNode"): OfficialConfig,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED``; any other one is refused unloaded."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) uses the module's ``Unpickler`` (and ``load`` for the legacy format).
restricted_pickle = types.ModuleType("mimscale_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


def _plain(obj):
    """CfgNode (as ``OfficialConfig``) -> plain dicts, sets -> sorted lists, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return obj


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def _verify_checksum(path: Path) -> None:
    """Refuse (one line) a file whose bytes differ from the sha256 its writer put in the ``.json`` meta beside
    it. No meta, or a meta without a checksum (mimscale before 0.3, the official code): nothing to verify."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return
    expected = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(expected, str):
        return
    try:
        actual = file_sha256(path)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if actual != expected:
        raise CheckpointError(f"{path} is damaged: its sha256 differs from the one written beside it "
                              f"({path.with_suffix('.json').name})")


def read_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint file's contents without running code from it: mimscale's (weights-only) and the official
    code's (its yacs ``config`` rebuilt as plain dicts). The file's checksum is verified when its meta has one.
    A file that is neither, or damaged -> CheckpointError, one line."""
    path = Path(path)
    _verify_checksum(path)
    try:
        try:
            with torch.serialization.safe_globals(LEGACY_NUMPY):
                obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:  # a global outside the weights-only list: try the official reader
            obj = torch.load(path, map_location=map_location, weights_only=False, pickle_module=restricted_pickle)
            if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
                obj = {**obj, "config": _plain(obj["config"])}
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {_REFUSED} ({_first_line(e)})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    # garbage bytes reach the unpickler's internals: every way they fail is "not a checkpoint", one line
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError, TypeError, KeyError,
            IndexError, struct.error, OverflowError, MemoryError, NotImplementedError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {_first_line(e)}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a checkpoint (a {type(obj).__name__}, not a dict)")
    return obj


# ---------------------------------------------------------------- the one renaming path ---------------------

def canonical_state(state: dict) -> dict:
    """Any SimMIM / Swin V2 state dict in mimscale's names: the DDP ``module.`` prefix stripped first (so
    ``encoder.`` tests see it), then the early ``rpe_mlp`` renamed ``cpb_mlp``. Derived buffers are kept:
    ``check_derived_buffers`` reads them, ``without_derived`` drops them before loading."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.").replace(".rpe_mlp.", ".cpb_mlp.")
        out[key] = value
    return out


def without_derived(state: dict) -> dict:
    return {k: v for k, v in state.items() if not DERIVED_BUFFERS.search(k)}


def is_official_simmim(state: dict) -> bool:
    """A SimMIM state dict in the official naming: encoder weights and the 1x1-conv decoder."""
    return any(k.startswith("encoder.") for k in state) and "decoder.0.weight" in state


def is_official_finetuned(state: dict) -> bool:
    """An official fine-tuned Swin V2 state dict: backbone keys without a prefix and a classification head."""
    return "patch_embed.proj.weight" in state and "head.weight" in state


def check_derived_buffers(state: dict, model: nn.Module, path, prefix: str = "") -> None:
    """Refuse (one line) a model whose geometry differs from the one ``state``'s stored derived buffers were
    saved for. ``prefix`` is prepended to the model's buffer names (a bare encoder checked against
    ``encoder.*`` keys). The model may live on the meta device (shapes only are compared then)."""
    own = {prefix + name: buf for name, buf in model.named_buffers()}
    blocks = {f"{prefix}{name}." for name, m in model.named_modules() if hasattr(m, "attn_mask")}
    for key, stored in state.items():
        if not DERIVED_BUFFERS.search(key) or not isinstance(stored, torch.Tensor):
            continue
        mine = own.get(key)
        if mine is not None and key.endswith("relative_coords_table"):  # official (1, 2W-1, 2W-1, 2), flat here
            stored, mine = stored.reshape(-1, stored.shape[-1]), mine.reshape(-1, mine.shape[-1])
        if mine is None:
            if key.endswith(".attn_mask") and key.removesuffix("attn_mask") in blocks:  # built without a shift
                raise EvalError(f"checkpoint {path} was saved for another image size or window: {key} is stored "
                                f"{tuple(stored.shape)} but the model's block has no shifted windows")
            continue  # a block this model lacks altogether: its weights fail the strict load
        if tuple(stored.shape) != tuple(mine.shape):
            raise EvalError(f"checkpoint {path} was saved for another image size or window: {key} is "
                            f"{tuple(stored.shape)} in the file, {tuple(mine.shape)} in the model")
        # Same shape, other values: the position coordinates were normalised by other pretrained windows.
        if key.endswith("relative_coords_table") and not mine.is_meta and not torch.allclose(
                stored.to(mine.dtype), mine.cpu(), atol=1e-4):
            raise EvalError(f"checkpoint {path} was saved with other pretrained windows: {key} differs from the "
                            f"model's (check pretrained_window_sizes)")


# ---------------------------------------------------------------- the stored config ---------------------------

def run_config(cfg: dict, pretraining: bool = True) -> dict:
    """An official yacs config (as plain dicts) -> the parts of a mimscale run config it determines: the model
    (family ``swinv2`` with the file's full geometry), image size, mask units and ratio, target normalisation.
    ``pretraining`` False (the file holds a fine-tuned ``SwinTransformerV2``): the model has no mask token."""
    try:
        model, data = cfg["MODEL"], cfg["DATA"]
        kind = str(model.get("TYPE", "")).lower()
        if kind != "swinv2":
            raise CheckpointError(f"the official checkpoint's model type is '{model.get('TYPE')}'; only Swin V2 "
                                  f"(MODEL.TYPE swinv2) is supported")
        s = model["SWINV2"]
        if s.get("APE", False) or not s.get("PATCH_NORM", True):
            raise CheckpointError("the official checkpoint uses an absolute position embedding or no patch norm "
                                  "(MODEL.SWINV2.APE / PATCH_NORM), which mimscale's Swin V2 does not build")
        kwargs = {"patch_size": int(s["PATCH_SIZE"]), "in_chans": int(s["IN_CHANS"]),
                  "embed_dim": int(s["EMBED_DIM"]), "depths": [int(d) for d in s["DEPTHS"]],
                  "num_heads": [int(h) for h in s["NUM_HEADS"]], "window_size": int(s["WINDOW_SIZE"]),
                  "mlp_ratio": float(s["MLP_RATIO"]), "qkv_bias": bool(s["QKV_BIAS"]),
                  "pretrained_window_sizes": [int(w) for w in s.get("PRETRAINED_WINDOW_SIZES", [0] * len(s["DEPTHS"]))]}
        norm = model.get("SIMMIM", {}).get("NORM_TARGET", {})
        out = {"model": {"name": "swinv2", "kwargs": kwargs},
               "data": {"img_size": int(data["IMG_SIZE"]), "mask_patch_size": int(data["MASK_PATCH_SIZE"]),
                        "mask_ratio": float(data["MASK_RATIO"])},
               "objective": {"norm_target": bool(norm.get("ENABLE", False)),
                             "norm_target_window": int(norm.get("PATCH_SIZE", 47))}}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"the official checkpoint's config lacks what mimscale needs ({type(e).__name__}: "
                              f"{_first_line(e)})") from None
    if not pretraining:
        kwargs["use_mask_token"] = False
    return out


def check_geometry(stored: dict, encoder: nn.Module, path) -> None:
    """Refuse (one line) an encoder built with another geometry than ``stored`` (a ``run_config`` result)."""
    want = {"img_size": stored["data"]["img_size"], **stored["model"]["kwargs"]}
    conflicts = []
    for key in ("img_size", "patch_size", "window_size", "embed_dim", "depths", "num_heads",
                "pretrained_window_sizes"):
        a, b = want.get(key), getattr(encoder, key, None)
        if a is not None and b is not None and _norm(a) != _norm(b):
            conflicts.append(f"{key} {_norm(a)} in the file's config, {_norm(b)} in the model")
    if conflicts:
        raise EvalError(f"checkpoint {path} does not fit the model asked for: {'; '.join(conflicts)}")


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v
