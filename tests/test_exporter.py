"""capture.exporter: traces written and checked in the background, whole or not at all, in order."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import pytest
from kineto_builders import vlm_trace

from analyze.files import tmp_files
from capture.exporter import Export, Exporter, Finished, _Worker, finish_trace, gzip_file


def _save_vlm(path: Path) -> None:
    """What Kineto's export does, for a labelled trace with 3 steps (prefill and 2 decodes)."""
    vlm_trace().write(path)


def _exports(folder: Path, n: int, save=_save_vlm) -> list[Export]:
    return [
        Export(key=i, save=save, path=folder / f"sample-{i:05d}.pt.trace.json.gz", tokens=3) for i in range(n)
    ]


def test_gzip_file_is_plain_gzip(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_bytes(b'{"traceEvents": []}' * 100_000)
    gzip_file(src, tmp_path / "a.json.gz")
    assert gzip.decompress((tmp_path / "a.json.gz").read_bytes()) == src.read_bytes()


@pytest.mark.parametrize("use_worker", [True, False])
def test_traces_are_written_checked_and_returned_in_order(tmp_path: Path, use_worker: bool) -> None:
    exporter = Exporter(use_worker=use_worker)
    try:
        for export in _exports(tmp_path, 4):
            exporter.submit(export)
        done = exporter.drain()
    finally:
        exporter.close()
    assert [e.key for e in done] == [0, 1, 2, 3]
    for e in done:
        assert isinstance(e.result, Finished) and e.result.error is None
        assert e.result.accounting is not None and e.result.accounting.ok
        assert e.result.accounting.steps_labelled == 3
        assert e.result.ttft_ms == pytest.approx(0.32) and e.result.tpot_ms == pytest.approx(0.12)
        assert e.export_ms > 0 and e.result.check_ms > 0
        doc = json.loads(gzip.decompress(e.path.read_bytes()))  # whole, and gzip
        assert any(ev.get("name") == "stage4:decode#2" for ev in doc["traceEvents"])
    assert tmp_files(tmp_path) == []
    names = [f"sample-{i:05d}.pt.trace.json.gz" for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_a_failed_save_or_check_is_the_samples_error_and_leaves_nothing(tmp_path: Path) -> None:
    def broken(path: Path) -> None:
        path.write_text("{half a")
        raise OSError(28, "No space left on device")

    def not_a_trace(path: Path) -> None:
        path.write_text('{"traceEvents": [{"ph": "i", "ts": 1}]}')

    exporter = Exporter()
    try:
        exporter.submit(_exports(tmp_path, 1, broken)[0])
        exporter.submit(Export(key=1, save=not_a_trace, path=tmp_path / "b.pt.trace.json.gz", tokens=3))
        first, second = exporter.drain()
    finally:
        exporter.close()
    assert first.result.error == "trace export failed: OSError: [Errno 28] No space left on device"
    assert second.result.error.startswith("the accounting check could not read the trace: AnalyzeError")
    assert list(tmp_path.iterdir()) == []  # no trace, no temporary file


def test_the_thread_takes_over_when_the_worker_dies(tmp_path: Path) -> None:
    exporter = Exporter()
    exporter._worker = _Worker()  # not the process's shared one
    try:
        first, second = _exports(tmp_path, 2)
        exporter.submit(first)
        exporter.drain()
        exporter._worker._proc.kill()  # e.g. killed for memory
        exporter._worker._proc.wait()
        exporter.submit(second)
        (done,) = exporter.drain()
    finally:
        exporter.close()
    assert done.result.error is None and done.result.accounting.ok
    assert done.path.exists() and tmp_files(tmp_path) == []
    assert exporter._worker._proc is None  # the next job starts a new one
    exporter._worker.stop()


def test_one_worker_serves_every_run_of_a_process(tmp_path: Path) -> None:
    pids = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        exporter = Exporter()
        try:
            exporter.submit(_exports(tmp_path / run, 1)[0])
            exporter.drain()
            pids.append(exporter._worker._proc.pid)
        finally:
            exporter.close()
    assert pids[0] == pids[1]
    assert (tmp_path / "b" / "sample-00000.pt.trace.json.gz").exists()


def test_submit_waits_while_the_exports_in_flight_are_at_the_limit(tmp_path: Path) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def slow(path: Path) -> None:
        with lock:
            running[0] += 1
        time.sleep(0.2)
        _save_vlm(path)
        with lock:
            running[0] -= 1

    exporter = Exporter(max_in_flight=1, use_worker=False)
    try:
        t0 = time.perf_counter()
        for export in _exports(tmp_path, 3, slow):
            exporter.submit(export)
            with lock:
                peak[0] = max(peak[0], running[0])
        waited = time.perf_counter() - t0
        exporter.drain()
    finally:
        exporter.close()
    assert waited >= 0.35  # the 2nd and 3rd submit each waited for the one before
    assert peak[0] <= 1


def test_finish_trace_removes_its_input_whatever_happens(tmp_path: Path) -> None:
    plain = tmp_path / ".x.tmp-1.json"
    plain.write_text("not json")
    done = finish_trace(plain, tmp_path / "x.pt.trace.json.gz", 3)
    assert done.error is not None and not plain.exists()
    assert not (tmp_path / "x.pt.trace.json.gz").exists()
