"""The one way stagetrace writes a file: to a temporary name beside it, then renamed over it.

Readers therefore see the old file or the new one, never half of one, and a failure or Ctrl-C
removes the temporary file. Temporary names start with a dot and end in ``.tmp-<pid>`` (plus an
optional suffix, e.g. ``.gz`` for a writer that picks compression by suffix), so nothing that
lists traces or tables mistakes one for output, and ``tmp_files`` finds those a killed process
left behind. Files get the process umask's mode (``mkstemp`` would make them 0600).

Torch-free: capture and analyze both use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".tmp-"


def tmp_path(path: Path, suffix: str = "") -> Path:
    """The temporary name ``write_atomic`` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}{suffix}")


def write_atomic(path: Path, write: Callable[[Path], object], *, suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    ``path`` then exists whole or not at all; on any failure (Ctrl-C included) the temporary
    file is removed and the exception propagates. Returns ``path``.
    """
    path = Path(path)
    tmp = tmp_path(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """``path`` holds exactly ``data``, written atomically."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), written atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def tmp_files(folder: Path) -> list[Path]:
    """Temporary files that ``write_atomic`` left in ``folder`` (a killed process leaves them)."""
    return sorted(p for p in Path(folder).glob(f".*{TMP_MARK}*") if p.is_file())
