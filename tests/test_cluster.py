"""cluster: ``analyze --scheduler`` against a real local Dask cluster (127.0.0.1 only).

The test starts ``dask scheduler`` and ``dask worker`` processes bound to 127.0.0.1; they stop when
the test ends, and on their own (``--idle-timeout``, ``--death-timeout``) if it is killed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from kineto_builders import vlm_trace, write_ab_runs, write_run

from analyze import cluster
from analyze.cli import main
from analyze.tables import read_tables

pytest.importorskip("distributed")

TABLES = ("runs", "samples", "stages", "tokens", "ops")
HOST = "127.0.0.1"


def _dask(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "dask", *args]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _start_cluster(
    folder: Path, worker_prefix: tuple[str, ...] = ()
) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and one single-threaded worker on 127.0.0.1; returns (address, processes)."""
    info = folder / "scheduler.json"
    log = (folder / "dask.log").open("ab")
    procs = [
        subprocess.Popen(
            _dask("scheduler", "--host", HOST, "--port", "0", "--no-dashboard", "--no-show",
                  "--scheduler-file", str(info), "--idle-timeout", "300"),
            stdout=log, stderr=log,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(
                    f"dask scheduler did not start: {(folder / 'dask.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith(f"tcp://{HOST}:")
        procs.append(
            subprocess.Popen(
                [*worker_prefix, *_dask("worker", address, "--host", HOST, "--nthreads", "1", "--no-nanny",
                                        "--no-dashboard", "--death-timeout", "30", "--memory-limit", "0")],
                stdout=log, stderr=log,
            )
        )  # fmt: skip
    except BaseException:
        _stop(procs)
        raise
    return address, procs


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address, procs = _start_cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield address
    finally:
        _stop(procs)


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    return write_ab_runs(tmp_path / "traces", [vlm_trace("5.x", gpu=False), vlm_trace("4.x", flows=False)])


def test_the_cluster_gives_the_local_tables_and_reuses_them(
    scheduler: str, traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _run(traces, "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    monkeypatch.chdir(tmp_path)  # a relative --out: the worker runs in another folder
    remote = _run(traces, "--out", "dask", "--scheduler", scheduler)
    assert remote.exit_code == 0, remote.output
    assert "traces: 4 analysed, 0 reused" in remote.stdout
    a, b = read_tables(tmp_path / "local"), read_tables(tmp_path / "dask")
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        assert len(getattr(a, name)) > 0
    assert remote.stdout.split("traces:")[0] == local.stdout.split("traces:")[0]  # the same summary
    again = _run(traces, "--out", tmp_path / "dask", "--scheduler", scheduler, "-q")
    assert again.exit_code == 0 and again.stdout == ""
    assert (
        "traces: 0 analysed, 4 reused"
        in _run(traces, "--out", tmp_path / "dask", "--scheduler", scheduler).stdout
    )


def test_no_scheduler_there_is_one_line(traces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    result = _run(traces, "--scheduler", f"tcp://{HOST}:9")
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: --scheduler tcp://{HOST}:9: cannot connect")
    bad = _run(traces, "--scheduler", "http://x")
    assert (
        bad.stderr.strip()
        == "Error: --scheduler http://x: expected tcp://HOST:PORT (a Dask scheduler's address)"
    )


def test_a_worker_that_cannot_see_a_trace_is_one_line(tmp_path: Path) -> None:
    """The worker runs in its own mount namespace with a tmpfs over the folder of run `hidden`."""
    unshare = shutil.which("unshare")
    hidden = tmp_path / "traces" / "z-hidden"
    write_run(tmp_path / "traces" / "a-seen", [vlm_trace()])
    write_run(hidden, [vlm_trace()])
    if (
        unshare is None
        or subprocess.run([unshare, "-m", "true"], capture_output=True, check=False).returncode
    ):
        pytest.skip("needs unshare -m (a mount namespace) to hide a folder from the worker")
    prefix = (
        unshare,
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount -t tmpfs none \'{hidden}\' && exec "$0" "$@"',
    )
    address, procs = _start_cluster(tmp_path, prefix)
    try:
        result = _run(tmp_path / "traces", "--out", tmp_path / "out", "--scheduler", address)
    finally:
        _stop(procs)
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    trace = hidden / "sample-00000.pt.trace.json.gz"
    assert line.startswith(f"Error: {trace}: Dask worker tcp://{HOST}:")
    assert "cannot read it (" in line and "No such file" in line
    assert line.endswith("every worker must see the traces at the same path (a shared filesystem)")
    assert not (tmp_path / "out" / "tables").exists()  # nothing half-written became the tables
