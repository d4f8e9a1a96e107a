"""The one atomic writer: whole file or none, temporary file removed on any failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analyze.files import tmp_files, tmp_path, write_atomic, write_bytes_atomic, write_text_atomic


def test_writes_replace_the_file_whole_and_keep_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    write_bytes_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert write_text_atomic(tmp_path / "t.txt", "é") == tmp_path / "t.txt"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é"
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)  # not mkstemp's 0600
    assert tmp_files(tmp_path) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_the_suffix_keeps_a_writer_s_format_and_never_looks_like_a_trace(tmp_path: Path) -> None:
    target = tmp_path / "sample-00000.pt.trace.json.gz"
    seen = []
    write_atomic(target, lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"x")), suffix=".gz")
    assert seen[0].startswith(".sample-00000.pt.trace.json.gz.tmp-") and seen[0].endswith(".gz")
    assert not seen[0].endswith(".json.gz") and seen[0] == tmp_path.joinpath(seen[0]).name
    assert tmp_path_of(target) in seen[0]


def tmp_path_of(target: Path) -> str:
    return tmp_path(target).name


def test_tmp_files_finds_what_a_killed_writer_left(tmp_path: Path) -> None:
    left = tmp_path / f".run.json.tmp-{os.getpid() + 1}"
    left.write_text("{")
    (tmp_path / "run.json").write_text("{}")
    assert tmp_files(tmp_path) == [left]
