"""The exception tree of the ``nlp`` package (a pure text library: it never imports ``monitor``).

Every message is one line naming what failed and what to try, so a caller can show it as is.

    NLPError
     +-- ModelLoadError   a model, dictionary or data file could not be loaded
     +-- TextError        the input is not text the stage can work on (e.g. not a str)
"""

from __future__ import annotations


class NLPError(Exception):
    """Base class of every error raised by ``nlp``."""

    def __str__(self) -> str:  # keep the one-line promise even if a caller passes newlines
        return " ".join(super().__str__().split())


class ModelLoadError(NLPError):
    """A model, dictionary or reference data file is missing, unreadable or malformed."""


class TextError(NLPError):
    """The input cannot be treated as text (wrong type, undecodable bytes)."""
