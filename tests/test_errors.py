"""Quoting exceptions: one line, never a multi-line library message."""

from __future__ import annotations

from analyze.errors import describe, first_line


def test_first_line_skips_blank_lines_and_strips() -> None:
    exc = ValueError("\n  Unrecognized configuration class <X>  \nfor this kind of AutoModel\n")
    assert first_line(exc) == "Unrecognized configuration class <X>"
    assert describe(exc) == "ValueError: Unrecognized configuration class <X>"


def test_an_empty_message_becomes_the_type_name() -> None:
    assert first_line(KeyError()) == "KeyError"
    assert describe(MemoryError()) == "MemoryError"
    assert describe(OSError(28, "No space left on device")) == "OSError: [Errno 28] No space left on device"
