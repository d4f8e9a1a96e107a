"""The one error type of analyze, and the one way any stagetrace message quotes an exception."""

from __future__ import annotations


class AnalyzeError(Exception):
    """Bad input (missing, empty or unreadable traces); the message names the input."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, or its type name when it has none.

    Library messages are quoted into one-line errors, warnings and run.json; a multi-line
    message (transformers and HTA write several) must not break that line.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` when the message is empty)."""
    line = first_line(exc)
    name = type(exc).__name__
    return name if line == name else f"{name}: {line}"
