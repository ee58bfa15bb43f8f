"""The project's exceptions, in one place (torch-free, imported by every layer).

The command line catches :class:`UserError` once (``cli.main``): one line on stderr, exit 2. Every
problem a user can fix by changing their input (config, data, model name, study file, results table,
evaluation request) is a subclass, so no command needs to know which layer raised it.
"""

from __future__ import annotations

import signal


class UserError(ValueError):
    """Bad input from the person who ran the command. The message is one line (whitespace collapsed)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """A bad configuration value or key."""


class DataError(UserError):
    """Bad data input: missing path, empty dataset, bad fraction, manifest hash mismatch, ..."""


class UnknownModelError(UserError):
    """A model name that is neither a family nor a preset."""


class EvalError(UserError):
    """A bad evaluation request (no checkpoint, a checkpoint that does not fit the model, ...)."""


class StudyError(UserError):
    """A bad study file or study directory."""


class ResultsError(UserError):
    """A results table or study directory from which nothing can be analysed."""


class CheckpointError(UserError):
    """A file that is not a readable checkpoint (or one that would run code when loaded)."""


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. too many consecutive non-finite losses); exit 1, one line."""


class Interrupted(Exception):
    """SIGTERM / SIGINT arrived; the run stopped at a step boundary and can be resumed (exit 128 + signal)."""

    def __init__(self, signum: int, step: int, saved: bool = True):
        where = ("checkpoint written" if saved
                 else "no checkpoint (the last steps were non-finite); the last good one is kept")
        super().__init__(f"stopped by signal {signal.Signals(signum).name} at step {step}; {where}, "
                         f"rerun the same command to resume")
        self.signum, self.step, self.saved = signum, step, saved
