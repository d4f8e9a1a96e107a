"""store: partitioned Parquet datasets, swapped in as one set (issue 10.8), read by other engines."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from kineto_builders import manifest, vlm_trace, write_ab_runs, write_run

from analyze import store
from analyze.cli import main
from analyze.errors import AnalyzeError
from analyze.incremental import analyze_into
from analyze.tables import analyze_paths, read_tables

TABLES = ("runs", "samples", "stages", "tokens", "ops")


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    return write_ab_runs(tmp_path / "traces")


def test_partition_names_escape_like_hive() -> None:
    assert store.partition_name("tiny-llava-20261122-120000") == "run_id=tiny-llava-20261122-120000"
    assert store.partition_name("a/b=c:d%e f") == "run_id=a%2Fb%3Dc%3Ad%25e f"
    assert store.partition_name("x\ny") == "run_id=x%0Ay"
    assert store.partition_name("..") == "run_id=.."
    with pytest.raises(AnalyzeError, match="too long for a partition folder"):
        store.partition_name("r" * 300)
    with pytest.raises(AnalyzeError, match="empty run_id"):
        store.partition_name("")


def test_odd_run_ids_round_trip_through_every_reader(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    odd = "night/2026-11-23 = 50% é"
    write_run(tmp_path / "t" / "r", [vlm_trace()], manifest(odd))
    out = tmp_path / "out"
    analyze_into([tmp_path / "t"], out)
    assert read_tables(out).samples["run_id"].tolist() == [odd]
    [(run_id,)] = duckdb.sql(f"SELECT DISTINCT run_id FROM '{out}/tables/samples/*/*.parquet'").fetchall()
    assert run_id == odd
    assert pd.read_parquet(out / "tables" / "samples")["run_id"].astype(str).tolist() == [odd]


def test_duckdb_reads_the_tables_directly(traces: Path, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "analysis"
    assert CliRunner().invoke(main, [str(traces), "--out", str(out), "-q"]).exit_code == 0
    expected, _ = analyze_paths([traces])
    query = f"""
        SELECT run_id, stage, sum(host_self_ms) AS self_ms, count(*) AS n
        FROM read_parquet('{out}/tables/stages/*/*.parquet', hive_partitioning = true)
        WHERE stage LIKE 'stage4:%'
        GROUP BY run_id, stage ORDER BY run_id, stage
    """
    got = duckdb.sql(query).df()
    want = (
        expected.stages[expected.stages["stage"].str.startswith("stage4:")]
        .groupby(["run_id", "stage"], as_index=False)
        .agg(self_ms=("host_self_ms", "sum"), n=("host_self_ms", "size"))
    )
    assert got["run_id"].tolist() == want["run_id"].tolist() == ["b"] * 3 + ["run-a"] * 3
    assert got["self_ms"].tolist() == pytest.approx(want["self_ms"].tolist())
    assert got["n"].tolist() == want["n"].tolist()
    # The README's query.
    readme = f"""SELECT run_id, median(ttft_ms) AS ttft_ms, median(tpot_ms) AS tpot_ms, count(*) AS samples
           FROM read_parquet('{out}/tables/samples/*/*.parquet', hive_partitioning = true)
           GROUP BY run_id ORDER BY run_id"""
    assert duckdb.sql(readme).fetchall() == [
        ("b", pytest.approx(0.31), pytest.approx(0.145), 1),
        ("run-a", pytest.approx(0.32), pytest.approx(0.12), 2),
    ]
    # Partition pruning works on the folder names.
    [(n,)] = duckdb.sql(
        f"SELECT count(*) FROM '{out}/tables/samples/*/*.parquet' WHERE run_id = 'b'"
    ).fetchall()
    assert n == 1


def test_a_full_disk_while_writing_ops_leaves_the_old_set(
    traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10.8: a full disk while ops.parquet was written left four new tables and one old one."""
    out = tmp_path / "analysis"
    assert CliRunner().invoke(main, [str(traces), "--out", str(out), "-q"]).exit_code == 0
    old = read_tables(out)
    old_snapshot = store.current_snapshot(out)
    # New traces, so every table would change; the disk fills up at the first ops file.
    vlm_trace("5.x", sample=1, gpu=False).write(traces / "a" / "sample-00001.pt.trace.json.gz")
    write_run(traces / "c", [vlm_trace("4.x")])
    real = store.write_frame

    def full_at_ops(path: Path, frame: pd.DataFrame, table: str) -> None:
        if table == "ops":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, frame, table)

    monkeypatch.setattr(store, "write_frame", full_at_ops)
    result = CliRunner().invoke(main, [str(traces), "--out", str(out), "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: {out}: cannot write the tables (No space left on device); the previous tables are unchanged"
    ]
    assert store.current_snapshot(out) == old_snapshot
    now = read_tables(out)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(now, name), getattr(old, name))
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [old_snapshot.name]  # no half set left
    monkeypatch.setattr(store, "write_frame", real)
    done = analyze_into([traces], out)  # with room again, the new set replaces the old one whole
    assert (done.analysed, done.reused) == (2, 2)
    assert list(read_tables(out).runs["run_id"]) == ["run-a", "b", "c"]


def test_a_reader_holding_the_previous_set_keeps_it(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    analyze_into([traces], out)
    first = store.current_snapshot(out)
    analyze_into([traces], out, fresh=True)
    # A reader that resolved the link before the swap still reads a whole set.
    assert len(store.read_snapshot(first).samples) == 3
    analyze_into([traces], out)
    snapshots = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snapshots == ["000002", "000003"]  # the current one and the one it replaced


def test_garbage_collection_spares_live_writers(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    for name, marker in (
        ("000001", None),  # finished, superseded
        ("000002", f"{socket.gethostname()} 999999999"),  # abandoned by a dead process here
        ("000003", f"{socket.gethostname()} {os.getpid()}"),  # being written by a live one
        ("000004", "another-host 1"),  # being written elsewhere
        ("000005", None),  # current
    ):
        (root / name).mkdir(parents=True)
        if marker:
            (root / name / store.BUILDING).write_text(marker)
        else:
            (root / name / "_snapshot.json").write_text("{}")
    removed = store.collect_garbage(tmp_path, keep={"000005"})
    assert [p.name for p in removed] == ["000001", "000002"]
    assert sorted(p.name for p in root.iterdir()) == ["000003", "000004", "000005"]


def test_tables_load_without_stagetrace(traces: Path, tmp_path: Path) -> None:
    """pandas alone (pyarrow's dataset reader) reads a table folder with its run_id partitions."""
    out = tmp_path / "analysis"
    analyze_into([traces], out)
    code = (
        "import sys, pandas as pd; t = pd.read_parquet(sys.argv[1]); "
        "print(sorted(t['run_id'].astype(str).unique()), len(t))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out / "tables" / "tokens")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "['b', 'run-a'] 9"
