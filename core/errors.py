"""Typed errors. Each names the bad value and what would have been accepted.

The CLI turns every `NNError` into one line on stderr and exit status 2; a Python
user catches them like any other exception.
"""

from __future__ import annotations

import difflib


class NNError(Exception):
    """Base of every error this framework raises on purpose (bad input, bad plugin)."""


class SettingsError(NNError, ValueError):
    """A setting has a value outside what it accepts."""


class UnknownComponentError(NNError, KeyError):
    """A name that no plugin registered for that kind."""

    def __init__(self, kind: str, name: str, known: list[str], see: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        see = see or f"nn-cli list {kind}"
        by_case = [k for k in self.known if k.lower() == str(name).lower()]  # MSE -> mse
        close = by_case or difflib.get_close_matches(name, self.known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        accepted = ", ".join(self.known) or "none registered"
        super().__init__(
            f"unknown {kind} {name!r}; {hint}registered: {accepted} (see `{see}`)"
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class RegistrationError(NNError):
    """A plugin registered something the registry cannot accept."""


class StateError(NNError, RuntimeError):
    """A method was called out of order, e.g. `backward` before `forward`."""


class ShapeError(NNError, ValueError):
    """A module cannot take an input of this shape: names the module and both shapes."""


class PluginError(NNError):
    """A plugin could not be loaded: its import failed, its hook raised, or it was refused.

    Outside strict mode the loader reports it and carries on without that plugin.
    """


class ModelFileError(NNError, ValueError):
    """A file that cannot be loaded as a model or checkpoint: names the file and the reason."""


class DivergenceError(NNError, ArithmeticError):
    """Training produced a NaN or infinite loss or weight; says at which epoch."""


class RowError(NNError, ValueError):
    """A row of inputs the model cannot score; `row` counts from 0, the message from 1."""

    def __init__(self, row: int, reason: str):
        self.row, self.reason = row, reason
        super().__init__(f"row {row + 1}: {reason}")


class UnverifiedFileWarning(UserWarning):
    """A file loaded without an integrity check (written before checksums): the CLI's note."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training: in which epoch, and the newest checkpoint on disk.

    A KeyboardInterrupt still, so code that stops on Ctrl-C keeps stopping on it.
    """

    def __init__(self, epoch: int, epochs: int, checkpoint: str | None, checkpoint_epoch: int | None):
        super().__init__(epoch, epochs, checkpoint, checkpoint_epoch)
        self.epoch, self.epochs = epoch, epochs  # the epoch that was training, of how many
        self.checkpoint = checkpoint  # the checkpoint file a resume starts from, if written
        self.checkpoint_epoch = checkpoint_epoch  # the epoch it holds
