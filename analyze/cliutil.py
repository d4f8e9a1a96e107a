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
    """``--version``: prints ``<command>, version X`` and exits.

    The version is looked up only when asked for (reading package metadata costs start-up time)."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(f"{command}, version {package_version()}")
            ctx.exit()

    return click.option(
        "--version", is_flag=True, expose_value=False, is_eager=True, callback=show,
        help=f"Show the {DISTRIBUTION} version and exit.",
    )  # fmt: skip
