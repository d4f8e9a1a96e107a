"""What both command-line tools share: the bad-input error and ``--version``.

Each CLI is a thin click command: it parses, calls its library, and turns the library's one
error type into :class:`InputError`, which click prints as one line with exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from analyze import DISTRIBUTION, package_version

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InputError(click.ClickException):
    """Bad input: one line on stderr (``Error: ...``), exit status 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def version_option(command: str) -> Callable[[Any], Any]:
    """``--version``: prints ``<command>, version X`` and exits."""
    return click.version_option(package_version(), "--version", package_name=DISTRIBUTION, prog_name=command)
