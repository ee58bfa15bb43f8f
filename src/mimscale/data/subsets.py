"""Seeded, class-stratified, nested training subsets and their manifests (docs/METHOD.md, Subsets).

Algorithm (``make_subsets``). The training pool is the source minus its held-out split (if any).
Each class ``c`` of the pool (one pseudo-class when unlabelled) is permuted by a generator seeded
with ``(seed, c)``; a fraction ``f`` takes the first ``round(f * n_c)`` (half up) of every class's permutation.
So every class is within half an image of ``f * n_c`` (stratified), and a larger fraction's prefix
contains a smaller one's (nested: 10% inside 20% inside 50% inside 100%). Only integer labels and
string ids enter, never Python ``hash``, so the result is identical in every process.

Held-out split (``holdout_split``) for sources without their own validation split: per class, the
first ``round(h * n_c)`` of a permutation seeded with ``(holdout_seed, c)`` in a separate stream
(``h`` a fraction, or ``count / n``). It depends on neither the subset seed nor the fractions, so
every run of a study is validated on the same images, and subsets are drawn from the rest.

A manifest is JSON: format, split ("train" or "heldout"), source (``describe()``, rebuilds the
source), seed, fraction, holdout (how the pool was formed), per-class counts, ids (in source order),
and ``sha256`` = hex SHA-256 of the ids joined by "\\n" (UTF-8). Written whole (``FORMAT``), or, for a
run, as a small reference (``REF_FORMAT``) to its ids and per-class counts stored once per study
(manifest_store.py); ``load_manifest`` reads both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from mimscale.errors import DataError
from mimscale.rundir import atomic_write_text

from .manifest_store import read_body, relative_body, write_body
from .scan import is_utf8

FORMAT = "mimscale-manifest/1"  # the whole manifest inline, ids included
REF_FORMAT = "mimscale-manifest-ref/1"  # the same without ids and per_class, which are in a shared body
_SUBSET_STREAM = 0x50B5_E701
_HOLDOUT_STREAM = 0x50B5_E702
_PROBE_STREAM = 0x50B5_E703
_HASH_CHUNK = 100_000


def ids_sha256(ids) -> str:
    """Hex SHA-256 of the ids joined by "\\n", UTF-8 (DataError, naming the id, if one is not UTF-8
    text, e.g. a file name of undecodable bytes from a source that does not skip such names). Hashed in
    pieces, so 14.2M ids never become one 430 MB string."""
    h = hashlib.sha256()
    for start in range(0, len(ids), _HASH_CHUNK):
        chunk = ids[start:start + _HASH_CHUNK]
        try:
            data = "\n".join(chunk).encode("utf-8")
        except UnicodeEncodeError:
            bad = next(i for i in chunk if not is_utf8(i))
            raise DataError(f"image id {bad!r} is not valid UTF-8 text; rename the file") from None
        h.update(b"\n" + data if start else data)
    return h.hexdigest()


@dataclass
class Manifest:
    split: str  # "train" or "heldout"
    source: dict
    seed: int
    fraction: float | None
    ids: list[str]
    holdout: dict | None = None  # {"size": h, "seed": s, "num_ids": k} or {"builtin": True} or None
    per_class: dict = field(default_factory=dict)
    num_source: int = 0
    sha256: str = ""
    format: str = FORMAT

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = ids_sha256(self.ids)

    def to_json(self) -> dict:
        # Not dataclasses.asdict: it visits each of up to 14.2M ids. The JSON is the same.
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["num_ids"] = len(self.ids)
        return d

    @classmethod
    def from_json(cls, d: dict, where: str = "manifest") -> Manifest:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DataError(f"{where}: not a mimscale manifest (format {FORMAT!r} expected)")
        ids = d.get("ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{where}: manifest ids must be a list of strings")
        try:
            m = cls(**{k: d[k] for k in ("split", "source", "seed", "fraction", "ids", "holdout", "per_class",
                                          "num_source", "sha256")})  # fmt: skip
        except KeyError as e:
            raise DataError(f"{where}: manifest lacks field {e}") from None
        actual = ids_sha256(m.ids)
        if actual != m.sha256:
            raise DataError(
                f"{where}: sha256 mismatch (manifest says {m.sha256[:12]}..., ids hash to {actual[:12]}...)"
            )
        return m

    @property
    def filename(self) -> str:
        return "heldout.json" if self.split == "heldout" else f"subset_{self.fraction:g}.json"


def _check_fraction(f) -> float:
    try:
        f = float(f)
    except (TypeError, ValueError):
        raise DataError(f"fraction must be a number in (0, 1], got {f!r}") from None
    if not 0.0 < f <= 1.0:
        raise DataError(f"fraction must be in (0, 1], got {f:g}")
    return f


def parse_fractions(text) -> list[float]:
    """``"0.1,0.2,0.5,1"`` (or a sequence) -> sorted unique fractions, each checked to lie in (0, 1]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    fractions = sorted({_check_fraction(x) for x in items if str(x).strip()})
    if not fractions:
        raise DataError("no fractions given")
    return fractions


def _classes(labels: np.ndarray | None, pool: np.ndarray) -> dict[int, np.ndarray]:
    """class -> pool members (in ``pool``'s order, ascending for an ascending pool); -1 is the one class of
    unlabelled data. One stable sort, not one scan of the pool per class: ImageNet-22K's 21,841 classes x
    14.2M images would be 3e11 comparisons. A stable sort keeps each class's members in pool order, so every
    class gets exactly the members (and order) that ``pool[lab == c]`` gives."""
    if labels is None:
        return {-1: pool}
    lab = np.asarray(labels)[pool]
    order = np.argsort(lab, kind="stable")
    ordered = lab[order]
    # Class boundaries of the sorted labels (np.unique would hash all 14.2M labels again).
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    classes = ordered[np.concatenate(([0], starts))] if len(ordered) else ordered
    members = np.split(pool[order], starts)
    return {int(c): m for c, m in zip(classes.tolist(), members)}


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even: round(0.5) == 0)."""
    return int(np.floor(x + 0.5))


def _permuted(members: np.ndarray, stream: int, seed: int, c: int) -> np.ndarray:
    return members[np.random.default_rng([stream, int(seed), c + 1]).permutation(len(members))]


def holdout_split(source, holdout, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), disjoint, both ascending. ``holdout``: fraction in (0, 1)
    or an image count >= 1 (approximate after per-class rounding)."""
    n = len(source.ids)
    if n == 0:
        raise DataError("cannot split an empty dataset")
    h = float(holdout)
    frac = h if 0.0 < h < 1.0 else h / n if h >= 1 else -1.0
    if not 0.0 < frac < 1.0:
        raise DataError(
            f"held-out size must be a fraction in (0, 1) or a count in [1, {n - 1}], got {holdout}"
        )
    held = []
    for c, members in _classes(source.labels(), np.arange(n)).items():
        held.append(_permuted(members, _HOLDOUT_STREAM, seed, c)[: _round(frac * len(members))])
    if sum(len(x) for x in held) == 0:  # tiny source: hold out one image of the largest class
        classes = _classes(source.labels(), np.arange(n))
        c = max(classes, key=lambda k: (len(classes[k]), -k))
        held = [_permuted(classes[c], _HOLDOUT_STREAM, seed, c)[:1]]
    val = np.sort(np.concatenate(held)).astype(np.int64)
    if len(val) == 0 or len(val) == n:
        raise DataError(f"held-out size {holdout} of {n} images leaves an empty split")
    keep = np.ones(n, dtype=bool)  # the complement by a mask: np.setdiff1d would sort 14.2M indices
    keep[val] = False
    train = np.flatnonzero(keep).astype(np.int64)
    return train, val


def _holdout_info(source, holdout, holdout_seed: int):
    """(pool indices, held-out indices or None, holdout description)."""
    n = len(source.ids)
    if holdout is None or source.validation() is not None:
        info = {"builtin": True} if source.validation() is not None else None
        return np.arange(n, dtype=np.int64), None, info
    if holdout == "auto":
        holdout = min(0.1, 10_000 / n)
    train, val = holdout_split(source, holdout, holdout_seed)
    return train, val, {"size": holdout, "seed": int(holdout_seed), "num_ids": len(val), "sha256": ids_sha256(
        [source.ids[i] for i in val])}  # fmt: skip


def _subset_orders(source, seed: int, pool: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(pool, each class's seeded permutation of its pool members): every fraction takes a prefix of each."""
    pool = np.arange(len(source.ids), dtype=np.int64) if pool is None else np.asarray(pool, dtype=np.int64)
    if len(pool) == 0:
        raise DataError("cannot take a subset of an empty dataset")
    return pool, [_permuted(m, _SUBSET_STREAM, seed, c) for c, m in _classes(source.labels(), pool).items()]


def _prefixes(pool: np.ndarray, orders: list[np.ndarray], f: float) -> np.ndarray:
    parts = [order[: _round(f * len(order))] for order in orders]
    out = np.sort(np.concatenate(parts)).astype(np.int64)
    if len(out) == 0:
        raise DataError(f"fraction {f:g} of {len(pool)} images selects no image")
    return out


def subset_indices(source, fraction: float, seed: int = 0, pool: np.ndarray | None = None) -> np.ndarray:
    """Ascending source indices of the ``fraction`` subset of ``pool`` (default: the whole source)."""
    f = _check_fraction(fraction)
    return _prefixes(*_subset_orders(source, seed, pool), f)


def _manifest(source, split, indices, seed, fraction, holdout_info) -> Manifest:
    labels = source.labels()
    per_class = {}
    if labels is not None:
        lab = np.asarray(labels)[indices]
        # Counting, not sorting, up to 14.2M labels: the same classes, in the same order, as np.unique (for
        # class indices: small non-negative integers).
        small = len(lab) and np.issubdtype(lab.dtype, np.integer) and lab.min() >= 0
        if small and lab.max() <= 4 * len(lab) + 2**16:
            counts = np.bincount(lab)
            cls = np.flatnonzero(counts)
            counts = counts[cls]
        else:
            cls, counts = np.unique(lab, return_counts=True)
        per_class = {str(int(c)): int(k) for c, k in zip(cls.tolist(), counts.tolist())}
    listing = source.ids
    return Manifest(split=split, source=source.describe(), seed=int(seed), fraction=fraction,
                    ids=[listing[i] for i in np.asarray(indices).tolist()], holdout=holdout_info,
                    per_class=per_class, num_source=len(listing))  # fmt: skip


def make_subsets(
    source, fractions, seed: int = 0, *, holdout="auto", holdout_seed: int = 0
) -> list[Manifest]:
    """Nested training manifests, one per fraction (ascending), then a "heldout" manifest when the
    source has no validation split of its own and ``holdout`` is not None ("auto" = 10% of the
    images, at most 10,000; or a fraction; or a count)."""
    fractions = parse_fractions(fractions)
    pool, val, info = _holdout_info(source, holdout, holdout_seed)
    pool, orders = _subset_orders(source, seed, pool)  # once for all fractions: each takes prefixes of them
    out = [_manifest(source, "train", _prefixes(pool, orders, f), seed, f, info) for f in fractions]
    if val is not None:
        out.append(_manifest(source, "heldout", val, holdout_seed, None, info))
    return out


def probe_indices(indices, count: int, seed: int = 0) -> np.ndarray:
    """A fixed, seeded sample of ``count`` entries of ``indices`` (ascending), e.g. the training-loss
    probe (docs/METHOD.md, Validation loss). Independent of the order of ``indices``."""
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    if count >= len(idx):
        return idx
    pick = np.random.default_rng([_PROBE_STREAM, int(seed)]).permutation(len(idx))[: int(count)]
    return np.sort(idx[pick])


def write_manifests(directory, manifests: list[Manifest], store=None) -> list[Path]:
    """Write each manifest to ``directory/<manifest.filename>`` atomically (with ``store``: as references to
    bodies under ``store``, see ``write_manifest``); returns the paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in manifests:
        p = d / m.filename
        write_manifest(p, m, store=store)
        paths.append(p)
    return paths


def write_manifest(path, manifest: Manifest, store=None) -> Path:
    """Write ``manifest`` to ``path`` atomically. Without ``store``: whole, ids inline (``FORMAT``). With
    ``store`` (a directory): its ids and per-class counts once to ``store/manifests/<sha256>.json.gz``
    (kept if already there, data/manifest_store.py) and at ``path`` a reference to it (``REF_FORMAT``)."""
    p = Path(path)
    if store is None:
        atomic_write_text(p, json.dumps(manifest.to_json(), indent=1) + "\n")
        return p
    body = write_body(store, manifest.ids, manifest.sha256, manifest.per_class)
    m = manifest
    ref = {"format": REF_FORMAT, "split": m.split, "source": m.source, "seed": m.seed, "fraction": m.fraction,
           "holdout": m.holdout, "num_source": m.num_source, "num_ids": len(m.ids), "sha256": m.sha256,
           "body": relative_body(p, body)}  # fmt: skip
    atomic_write_text(p, json.dumps(ref, indent=1) + "\n")
    return p


def load_manifest(path) -> Manifest:
    """Read a manifest, inline or a reference (its body read and checked), and check its sha256 (DataError
    on a missing file or body, bad JSON or a mismatch)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"manifest not found: {p}")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if isinstance(d, dict) and d.get("format") == REF_FORMAT:
        if not isinstance(d.get("body"), str):
            raise DataError(f"{p}: manifest reference lacks its body path")
        body = read_body(p, d["body"])
        if not isinstance(body.get("ids"), list) or not isinstance(body.get("per_class"), dict):
            raise DataError(f"{p}: body {d['body']} lacks its ids or per-class counts")
        if body.get("sha256") != d.get("sha256"):
            raise DataError(f"{p}: body {d['body']} holds other ids (sha256 {str(body.get('sha256'))[:12]}...)")
        d = {**d, "format": FORMAT, "ids": body.get("ids"), "per_class": body.get("per_class")}
    return Manifest.from_json(d, where=str(p))


def manifest_indices(source, manifest: Manifest) -> np.ndarray:
    """Source indices of a manifest's ids (DataError if an id is not in the source)."""
    where = {s: i for i, s in enumerate(source.ids)}
    missing = [s for s in manifest.ids if s not in where]
    if missing:
        raise DataError(f"{len(missing)} manifest ids are not in the source, e.g. {missing[0]!r}")
    return np.asarray([where[s] for s in manifest.ids], dtype=np.int64)
