"""The error hierarchy of archlab.

Every error a user can cause (an unknown name, a bad value, a corrupt file, a budget a paper does
not have) is an ``ArchlabError``: the CLI prints its message on one line and exits with
``exit_code`` (2 for usage errors, 1 when training diverged), never with a traceback. This module
imports nothing of archlab, so every layer (engine, data, nn, lab, registry) may raise these.
"""

from __future__ import annotations


class ArchlabError(Exception):
    """Base class of user-facing errors: the CLI prints them on one line and exits 2."""

    exit_code = 2


class UnknownNameError(ArchlabError, KeyError):
    """An unknown slug, variant, budget or field; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CheckpointError(ArchlabError, RuntimeError):
    """A checkpoint folder is missing, incomplete or corrupt."""


class NonFiniteLossError(ArchlabError):
    """The loss (or gradient norm) became NaN/Inf; training stopped, checkpoints untouched."""

    exit_code = 1


class MissingDependencyError(ArchlabError):
    """A paper needs an optional dependency that is not installed; the message names the extra."""


def close_matches_message(kind: str, name: str, choices: list[str] | tuple[str, ...]) -> str:
    """One-line message for an unknown name, with the closest valid names."""
    import difflib

    matches = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
    shown = ", ".join(sorted(choices)[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {kind} {name!r}{hint} (valid: {shown})"
