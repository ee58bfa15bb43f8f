"""Image transforms without torchvision (docs/METHOD.md: Augmentation; Validation loss).

Inputs: a PIL image (possibly a lazily opened file), or a uint8 array / tensor (H, W, 3).
Outputs: float32 tensors (3, size, size), normalised with ImageNet mean/std.

Speed (see benchmarks/loader.py): the decoded image is read in place (PIL keeps RGB as RGBX; its
Arrow export gives a zero-copy view, no ``np.asarray`` packing copy); the crop is a view; resizing
runs on uint8 with ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` (PIL's
BILINEAR filter within 1-3 grey levels, about 3x faster); the flip is on the small uint8 result;
normalisation is one fused ``addcmul`` (the datasets run it once per batch). JPEG files are decoded
at 1/2, 1/4 or 1/8 scale (PIL ``draft``, DCT-domain scaling) whenever the crop keeps at least
``size`` pixels per side at that scale, so it never upsamples more than a full decode would (for
500x375 photos and 192 px crops with scale >= 0.67 that is never: the gain there is the rest).
"""

from __future__ import annotations

import ctypes
import math
import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mimscale.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rrc_params(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """RandomResizedCrop box ``(top, left, h, w)`` (torchvision's algorithm, numpy RNG).

    Up to 10 tries of area ~ U(scale) * H * W and log-aspect ~ U(log ratio), then a uniform
    position; if no try fits, the largest centred box whose aspect is clamped to ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    tries = rng.random((10, 2))  # one call: scalar draws dominate the cost at small image sizes
    for u_area, u_ratio in tries.tolist():
        target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            u_top, u_left = rng.random(2).tolist()
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _draft_factor(h: int, w: int, size_h: int, size_w: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4, 8) that keeps the box >= the output size."""
    for s in (8, 4, 2):
        if h // s >= size_h and w // s >= size_w:
            return s
    return 1


class _ArrowSchema(ctypes.Structure):
    pass


class _ArrowArray(ctypes.Structure):
    pass


# The Arrow C data interface (a stable C ABI), enough to find the pixel buffer of a PIL image.
_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))), ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]  # fmt: skip
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]  # fmt: skip
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _rgbx_view(img):
    """Zero-copy (H, W, 4) uint8 view of a loaded RGB PIL image (PIL stores RGB as RGBX), through
    Pillow's Arrow export; None when unavailable. Saves the pixel-packing copy of ``np.asarray``.
    The second value keeps the exported buffer alive: hold it while the view is in use."""
    export = getattr(img, "__arrow_c_array__", None)
    if export is None or img.mode != "RGB":
        return None, None
    try:
        caps = export()
        schema = _ArrowSchema.from_address(_capsule_pointer(caps[0], b"arrow_schema"))
        array = _ArrowArray.from_address(_capsule_pointer(caps[1], b"arrow_array"))
        n = img.width * img.height * 4
        if schema.format != b"+w:4" or schema.n_children != 1 or schema.children[0].contents.format != b"C":
            return None, None
        child = array.children[0].contents
        if array.offset or child.offset or child.n_buffers != 2 or child.length != n:
            return None, None
        buf = (ctypes.c_uint8 * n).from_address(child.buffers[1])
        return np.frombuffer(buf, dtype=np.uint8).reshape(img.height, img.width, 4), (caps, img)
    except Exception:  # noqa: BLE001  any surprise: use the copying path
        return None, None


def to_rgb(img: Image.Image) -> Image.Image:
    """A PIL image as 8-bit RGB, for every mode a file decodes to (the image itself when already RGB).

    - 16-bit grey (modes ``I;16``, ``I;16B``, ``I;16L``, ...; e.g. a 16-bit PNG) and 32-bit integer
      ``I`` (older Pillow opens 16-bit PNGs so): the 16-bit value scaled to 8 bits (``v >> 8``, values
      outside 0..65535 clipped), replicated to RGB. PIL's own ``convert`` clips at 255 instead, which
      turns a 16-bit image near white.
    - 16-bit colour: Pillow already decodes it to 8-bit ``RGB`` / ``RGBA`` (the high byte).
    - ``RGBA``, ``LA``, ``PA`` and paletted images with transparency: alpha is dropped (colours kept,
      not composited on a background); ``L``, ``P``, ``1``, ``CMYK``, ``YCbCr``, ...: PIL's conversion.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "I" or mode.startswith("I;16"):
        a = np.asarray(img)
        if a.ndim != 2:
            raise OSError(f"decoded {mode} image has shape {a.shape}, expected (H, W)")
        grey = (np.clip(a.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "PA" or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img.convert("RGB")


def _decode(img, box: tuple[int, int, int, int] | None, out_hw: tuple[int, int], draft: bool):
    """Decode to a uint8 (H, W, 3 or 4) tensor, the box scaled to the decoded resolution, and a
    keep-alive (not None when the tensor borrows PIL's memory: copy before keeping it)."""
    if isinstance(img, torch.Tensor):
        return img, box, None
    if isinstance(img, np.ndarray):
        return torch.from_numpy(img if img.flags.writeable else img.copy()), box, None
    full_w, full_h = img.size
    if draft and img.format == "JPEG" and getattr(img, "tile", None):
        bh, bw = (box[2], box[3]) if box is not None else (full_h, full_w)
        s = _draft_factor(bh, bw, out_hw[0], out_hw[1])
        if s > 1:
            img.draft("RGB", (max(1, full_w // s), max(1, full_h // s)))
    img.load()
    if img.mode != "RGB":
        img = to_rgb(img)
    arr, keep = _rgbx_view(img)
    if arr is None:
        arr = np.asarray(img)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise OSError(f"decoded image has shape {arr.shape}, expected (H, W, 3)")
        with warnings.catch_warnings():  # np.asarray(PIL image) is read-only; the tensor is only read
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(arr)
    else:
        x = torch.from_numpy(arr)
    dh, dw = arr.shape[0], arr.shape[1]
    if box is not None and (dh, dw) != (full_h, full_w):
        sy, sx = dh / full_h, dw / full_w
        top, left = int(box[0] * sy), int(box[1] * sx)
        h = min(dh - top, max(1, round(box[2] * sy)))
        w = min(dw - left, max(1, round(box[3] * sx)))
        box = (top, left, h, w)
    return x, box, keep


INTERPOLATIONS = ("bilinear", "bicubic")


def _resize_hwc(x: torch.Tensor, hw: tuple[int, int], borrowed: bool = False, mode: str = "bilinear") -> torch.Tensor:
    """uint8 (H, W, 3 or 4) -> uint8 (3, h, w), bilinear or bicubic with antialiasing (PIL semantics).
    4 channels (RGBX) are resized as they are (torch's fast uint8 path handles them), X dropped."""
    chw = x.permute(2, 0, 1)
    if tuple(chw.shape[1:]) == tuple(hw):
        return chw[:3].clone() if borrowed else chw[:3]
    return F.interpolate(chw.unsqueeze(0), size=hw, mode=mode, antialias=True, align_corners=False)[0, :3]


class Normalize:
    """uint8 (..., 3, H, W) -> float32, ``(x / 255 - mean) / std`` in one fused pass."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        std = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(3, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / std).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.to(torch.float32), self.scale)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """float normalised -> float in [0, 1] (for figures)."""
        s, b = self.scale.to(x.device), self.shift.to(x.device)
        return ((x - b) / s / 255.0).clamp(0, 1)


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{interpolation}'")
    return interpolation


def check_size(size, what: str = "img_size") -> int:
    """``size`` as an int >= 1 (an int, or a float with an integral value); one-line DataError else."""
    ok = isinstance(size, numbers.Integral) and not isinstance(size, bool)
    if isinstance(size, float) and size.is_integer():
        ok = True
    if not ok or int(size) < 1:
        raise DataError(f"{what} must be a positive integer, got {size!r}")
    return int(size)


def _bounds(value, what: str) -> tuple[float, float]:
    """Two finite numbers ``(lo, hi)`` with ``lo <= hi``; one-line DataError else."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be two numbers (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError(f"{what} must be finite, got ({lo:g}, {hi:g})")
    if lo > hi:
        raise DataError(f"{what} lower bound exceeds upper bound: ({lo:g}, {hi:g})")
    return lo, hi


class TrainTransform:
    """RandomResizedCrop(size, scale, ratio, bilinear or bicubic) -> horizontal flip (p=0.5) -> normalise.

    ``transform(img, rng)``: every random choice comes from ``rng`` (a numpy Generator), in the order
    crop box, then flip, so a sample is reproducible from the generator's seed. A size < 1, a
    ``scale`` outside (0, 1] or with lo > hi, a ``ratio`` with lo > hi or lo <= 0 raise DataError here.
    """

    def __init__(self, size: int, scale=(0.67, 1.0), ratio=(3 / 4, 4 / 3), hflip: bool = True,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, draft: bool = True,
                 interpolation: str = "bilinear"):  # fmt: skip
        self.size = check_size(size)
        self.interpolation = check_interpolation(interpolation)
        self.scale = _bounds(scale, "crop_scale")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise DataError(f"crop_scale must lie in (0, 1], got ({self.scale[0]:g}, {self.scale[1]:g})")
        self.ratio = _bounds(ratio, "crop_ratio")
        if self.ratio[0] <= 0.0:
            raise DataError(f"crop_ratio must be > 0, got ({self.ratio[0]:g}, {self.ratio[1]:g})")
        self.hflip = hflip
        self.draft = draft
        self.normalize = Normalize(mean, std)

    def crop_resize(self, img, rng: np.random.Generator) -> torch.Tensor:
        """The augmented image as uint8 (3, size, size), before normalisation."""
        if isinstance(img, (np.ndarray, torch.Tensor)):
            height, width = img.shape[0], img.shape[1]
        else:
            width, height = img.size
        box = rrc_params(height, width, self.scale, self.ratio, rng)
        flip = self.hflip and rng.random() < 0.5
        x, (top, left, h, w), keep = _decode(img, box, (self.size, self.size), self.draft)
        out = _resize_hwc(x[top : top + h, left : left + w], (self.size, self.size), keep is not None,
                          self.interpolation)
        del keep
        return out.flip(-1) if flip else out

    def __call__(self, img, rng: np.random.Generator) -> torch.Tensor:
        return self.normalize(self.crop_resize(img, rng))


def center_offset(length: int, crop: int) -> int:
    """Where a centred crop of ``crop`` starts in ``length`` pixels: rounded, as torchvision's CenterCrop
    (``int(round((length - crop) / 2.0))``, Python's round: halves to even), which the official evaluation uses."""
    return int(round((length - crop) / 2.0))


class EvalTransform:
    """Resize the shorter side to ``resize`` (default ``size``; bilinear or bicubic, antialiased), center-crop
    ``size``, normalise. Deterministic. For built-in images already at ``size`` it is the identity
    (plus normalisation); the ImageNet convention is ``resize = size / 0.875``. A size < 1 or
    ``resize < size`` raise DataError here. ``round_center``: the crop offset rounded as torchvision's
    ``CenterCrop`` (the evaluations, as the official fine-tune's test transform); off, floored, as pre-training's
    validation has always cropped, so a run's validation losses stay comparable across versions.
    """

    def __init__(self, size: int, resize: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 draft: bool = True, interpolation: str = "bilinear", round_center: bool = False):  # fmt: skip
        self.size = check_size(size)
        self.round_center = round_center
        self.resize = check_size(resize, "eval resize") if resize else self.size
        if self.resize < self.size:
            raise DataError(f"eval resize ({self.resize}) must be >= img_size ({self.size})")
        self.draft, self.interpolation = draft, check_interpolation(interpolation)
        self.normalize = Normalize(mean, std)

    def _target(self, height: int, width: int) -> tuple[int, int]:
        if height <= width:
            return self.resize, max(self.resize, int(self.resize * width / height))
        return max(self.resize, int(self.resize * height / width)), self.resize

    def crop_resize(self, img, rng: np.random.Generator | None = None) -> torch.Tensor:
        if isinstance(img, (np.ndarray, torch.Tensor)):
            height, width = img.shape[0], img.shape[1]
        else:
            width, height = img.size
        th, tw = self._target(height, width)
        x, _, keep = _decode(img, None, (th, tw), self.draft)
        out = _resize_hwc(x, (th, tw), keep is not None, self.interpolation)
        del keep
        if self.round_center:
            top, left = center_offset(th, self.size), center_offset(tw, self.size)
        else:
            top, left = (th - self.size) // 2, (tw - self.size) // 2
        return out[:, top : top + self.size, left : left + self.size]

    def __call__(self, img, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.normalize(self.crop_resize(img))
