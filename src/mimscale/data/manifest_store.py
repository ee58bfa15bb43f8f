"""Content-addressed manifest bodies: a manifest's id list written once, shared by every run that uses it.

A run's ``subset.json`` / ``heldout.json`` is a small reference (format ``REF_FORMAT``: split, source, seed,
fraction, holdout, counts, the ids' sha256, and ``body``: the body's path relative to the reference). The
body holds the ids and per-class counts, gzipped, at ``<store>/manifests/<sha256>.json.gz`` where the
name is the SHA-256 of the uncompressed body. ``<store>`` is the study directory for a run of a study
(``rundir.manifest_store``), so the 63 runs of a paper grid share one body per (fraction, seed) and one
held-out body, instead of each run keeping its own 40 MB (ImageNet-1K) or 430 MB (ImageNet-22K) copy.

Bodies are written race-free: the name is computed first (one hashing pass); a file already there with
the right content is kept; otherwise the body goes to a temp file, fsynced, renamed onto the name. Two
processes writing the same body at once both rename identical bytes; a reader sees a whole file or none.
The body is encoded chunk by chunk, so no second copy of a 14.2M-id list is held as one string.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mimscale.errors import DataError
from mimscale.rundir import MANIFESTS, atomic_write

BODY_FORMAT = "mimscale-manifest-body/1"
BODY_SUFFIX = ".json.gz"
_CHUNK = 100_000  # ids encoded per piece: bounded temporary strings, few Python calls
# Level 6 (gzip's default): ImageNet-style ids compress about 8x; level 1 saves a few seconds at 14.2M ids
# for a body written once per study, level 9 a few percent of bytes for much more time.
_LEVEL = 6


def _body_pieces(ids: Sequence[str], sha256: str, per_class: dict) -> Iterator[bytes]:
    """The canonical body bytes, in pieces: one id per line, so ``zcat BODY | head`` is readable."""
    head = {"format": BODY_FORMAT, "sha256": sha256, "num_ids": len(ids), "per_class": per_class}
    yield (json.dumps(head)[:-1] + ', "ids": [\n').encode()
    for start in range(0, len(ids), _CHUNK):
        chunk = json.dumps(list(ids[start:start + _CHUNK]), separators=(",\n", ": "))[1:-1]
        yield ((",\n" if start else "") + chunk).encode()
    yield b"\n]}\n"


def _content_hash(pieces: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()


def _intact(path: Path, digest: str) -> bool:
    """Whether ``path`` is a readable gzip file whose content hashes to ``digest``."""
    try:
        with gzip.open(path, "rb") as f:
            h = hashlib.sha256()
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest() == digest
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


def write_body(store, ids: Sequence[str], sha256: str, per_class: dict) -> Path:
    """Write (or find) the body of these ids under ``store``/manifests/; returns its path."""
    digest = _content_hash(_body_pieces(ids, sha256, per_class))
    path = Path(store) / MANIFESTS / f"{digest}{BODY_SUFFIX}"
    if path.is_file() and _intact(path, digest):
        return path

    def write(f) -> None:
        # mtime=0 and no file name in the header: the same body is the same bytes on every host.
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=_LEVEL, mtime=0) as z:
            for piece in _body_pieces(ids, sha256, per_class):
                z.write(piece)

    atomic_write(path, write)
    return path


def relative_body(reference: Path, body: Path) -> str:
    """``body``'s path as a reference at ``reference`` records it: relative, with "/" separators, so a study
    directory can be moved or copied whole. Both sides are real paths: the system resolves a symlinked run
    directory before the ".." of the reference, so a path kept through the link would point elsewhere."""
    rel = os.path.relpath(os.path.realpath(body), os.path.dirname(os.path.realpath(reference)))
    return Path(rel).as_posix()


def read_body(reference: Path, rel: str) -> dict:
    """The body named by a reference's ``body`` field: {"sha256", "num_ids", "per_class", "ids"}, its content
    checked against its name (DataError, one line, on a missing, damaged or foreign file)."""
    path = Path(reference).parent / rel
    name = path.name
    if not name.endswith(BODY_SUFFIX):
        raise DataError(f"{reference}: body {rel!r} is not a {BODY_SUFFIX} manifest body")
    if not path.is_file():
        # Absolute, without "..": it says where the store's folder must go for a run copied out of its study.
        where = Path(os.path.realpath(path))
        raise DataError(f"{reference}: its ids are in {where}, which is missing (a run directory copied out of "
                        f"its study keeps only the reference: copy the study's {MANIFESTS}/ folder to "
                        f"{where.parent.parent})")
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if hashlib.sha256(data).hexdigest() != name[: -len(BODY_SUFFIX)]:
        raise DataError(f"{path}: content does not match its name (damaged or edited)")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{path}: not valid JSON") from None
    if not isinstance(body, dict) or body.get("format") != BODY_FORMAT:
        raise DataError(f"{path}: not a mimscale manifest body (format {BODY_FORMAT!r} expected)")
    return body
