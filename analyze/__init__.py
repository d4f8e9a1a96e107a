"""stagetrace analyze: parse Kineto traces, attribute work to stages, write tables and reports.

Never imports torch, so it starts fast and runs where torch is absent.
"""

from __future__ import annotations

DISTRIBUTION = "stagetrace"


def package_version() -> str:
    """stagetrace's version from the installed package metadata (pyproject.toml is the source)."""
    from importlib import metadata  # here, not at import: it costs start-up time on every run

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
