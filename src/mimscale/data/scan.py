"""Listing an image folder without letting one bad entry break it: symlink loops, broken links, names that
are not UTF-8 and unreadable sub-folders are skipped and recorded (path -> reason), never followed or raised.
Used by ``FolderSource``."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mimscale.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")



def is_utf8(name: str) -> bool:
    """False for a name made of bytes that are not UTF-8 (os decodes them to lone surrogates)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(rel: str) -> str:
    """A relative path as text that can be printed and written as UTF-8: undecodable bytes as \\xNN."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def skip_note(skips: dict[str, str]) -> str:
    if not skips:
        return ""
    first = min(skips)
    return f" ({len(skips)} entries skipped at scan, e.g. {first}: {skips[first]})"


def path_contains(outer: str, inner: str) -> bool:
    """Whether real path ``outer`` is ``inner`` or one of its parents."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def link_error(entry: os.DirEntry) -> int | None:
    """The errno of following a symlink (None when it resolves)."""
    try:
        entry.stat()
    except OSError as e:
        return e.errno
    return None


def is_dir_entry(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # e.g. a symlink loop (ELOOP): not a folder
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def dir_entries(folder: str, rel: str, skips: dict[str, str]) -> list[os.DirEntry]:
    """The non-hidden entries of ``folder``; an unreadable sub-folder is recorded in ``skips``."""
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as e:
        if not rel:
            raise DataError(f"cannot read data folder {folder}: {e.strerror or e}") from None
        skips[printable(rel.rstrip("/"))] = f"cannot read folder: {e.strerror or e}"
        return []


def list_images(
    folder: str | os.PathLike, prefix: str = "", skips: dict[str, str] | None = None
) -> list[str]:
    """Sorted relative paths (``prefix`` + POSIX path) of the image files below ``folder``, walking
    like ``os.walk`` (symlinked sub-folders are not followed); unsafe entries go to ``skips``."""
    skips = {} if skips is None else skips
    out: list[str] = []
    _walk(os.fspath(folder), prefix, os.path.realpath(folder), out, skips, top=True)
    return sorted(out)


def _walk(folder: str, rel: str, real: str, out: list[str], skips: dict[str, str], top: bool = False) -> None:
    for entry in dir_entries(folder, "" if top else rel, skips):
        name, path = entry.name, rel + entry.name
        is_image = name.lower().endswith(IMAGE_EXTENSIONS)
        if entry.is_symlink():
            try:
                target = entry.stat()  # follows the link
            except OSError as e:
                if e.errno == errno.ELOOP:
                    skips[printable(path)] = "symlink loop"
                elif is_image:
                    skips[printable(path)] = f"broken symlink: {e.strerror or e}"
                continue
            if stat.S_ISDIR(target.st_mode):
                if path_contains(os.path.realpath(entry.path), real):
                    skips[printable(path)] = "symlink loop (links to a folder that contains it)"
                continue  # symlinked sub-folders are not followed (as os.walk)
        if is_dir_entry(entry):
            if not is_utf8(name):
                if has_images(entry.path):
                    skips[printable(path)] = "folder name is not valid UTF-8"
                continue
            _walk(entry.path, path + "/", os.path.join(real, name), out, skips)
        elif is_image:
            if not is_utf8(name):
                skips[printable(path)] = "file name is not valid UTF-8"
            else:
                out.append(path)


def is_split_layout(root: Path) -> bool:
    """root/train (+ root/val, root/test) and nothing else that looks like data."""
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    dirs = {e.name for e in entries if is_dir_entry(e)}
    direct = any(_is_file(e) and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries)
    return "train" in dirs and dirs <= {"train", "val", "test"} and not direct


def has_images(folder: str | os.PathLike) -> bool:
    for _dirpath, _dirs, filenames in os.walk(folder):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            return True
    return False
