"""The one exception type of the data layer (the CLI turns it into a one-line message and exit 2)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data input: missing path, empty dataset, bad fraction, manifest hash mismatch, ...

    The message is always a single line, written for the person who ran the command.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
