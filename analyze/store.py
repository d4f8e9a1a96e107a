"""The analysis folder on disk: the five tables as Parquet datasets, swapped in as one set.

Layout (DESIGN.md, Files; names in :mod:`analyze.contract`)::

    <out>/tables -> snapshots/000007            symbolic link to the current snapshot
    <out>/snapshots/000007/_snapshot.json       catalogue: runs in order, row counts (written last)
    <out>/snapshots/000007/_index.parquet       reuse index: one row per trace (INDEX_SCHEMA)
    <out>/snapshots/000007/<table>/run_id=<id>/<NNNNNNNN>.parquet

Each table is a hive-partitioned Parquet dataset (``run_id=<id>`` folders; the run_id column lives
in the folder name, as DuckDB, Polars, Spark, pyarrow and pandas expect), one file per trace
(``NNNNNNNN`` its position in the run; the runs table has one file per run). A snapshot is never
changed once it is in use: a new analysis builds a new snapshot beside it (taking over unchanged
traces' files as hard links, so nothing already written is rewritten), and then replaces the
``tables`` link with one atomic rename. A reader that resolves the link once therefore sees the
old set or the new one, never a mix, and an analysis that fails half way (a full disk, Ctrl-C)
leaves the old set in place and its own unfinished snapshot to be removed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
from collections.abc import Collection, Sequence
from dataclasses import fields
from pathlib import Path

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analyze.contract import (
    ANALYSIS_SCHEMA,
    BUILDING_NAME,
    CATALOGUE_NAME,
    INDEX_NAME,
    INDEX_SCHEMA,
    PARTITION_KEY,
    SNAPSHOTS_DIR,
    TABLE_NAMES,
    TABLE_SCHEMAS,
    TABLES_LINK,
    AnalysisSnapshot,
    SnapshotRun,
)
from analyze.errors import AnalyzeError, first_line
from analyze.files import tmp_path, write_atomic, write_bytes_atomic
from analyze.tables import Tables, conform, empty_table

BUILDING = BUILDING_NAME  # marker in a snapshot still being written: "<host> <pid>"
# Characters Hive (and so Spark) escapes as %XX in partition folder names; all readers decode them.
_HIVE_ESCAPED = frozenset("\"#%'*/:=?\\{[]^\x7f") | frozenset(chr(c) for c in range(0x20))
MAX_PARTITION_BYTES = 200  # file names are at most 255 bytes on common filesystems
PER_TRACE_TABLES = ("samples", "stages", "tokens", "ops")
_ARROW = {
    "str": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "Int64": pa.int64(),
}


def partition_name(run_id: str) -> str:
    """``run_id=<run_id>`` with Hive's escapes (``%2F`` for ``/``, ...); AnalyzeError for a run_id
    that cannot name a folder (empty, or too long once escaped)."""
    escaped = "".join(f"%{ord(c):02X}" if c in _HIVE_ESCAPED else c for c in run_id)
    name = f"{PARTITION_KEY}={escaped}"
    if not run_id:
        raise AnalyzeError("a run has an empty run_id: give its run.json a run_id or rename its folder")
    if len(name.encode("utf-8")) > MAX_PARTITION_BYTES:
        raise AnalyzeError(
            f"run_id {run_id[:40]!r}...: too long for a partition folder "
            f"({len(name.encode())} bytes escaped, "
            f"at most {MAX_PARTITION_BYTES}); give the run a shorter run_id"
        )
    return name


def part_name(order: int) -> str:
    """File name of the rows of the trace at position ``order`` of its run (runs table: 0)."""
    return f"{order:08d}.parquet"


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table``'s files (without run_id, which the folder names; the index
    keeps it)."""
    cols = TABLE_SCHEMAS.get(table, INDEX_SCHEMA)
    keep = [c for c in cols if c != PARTITION_KEY or table == "index"]
    return pa.schema([pa.field(c, _ARROW[cols[c]]) for c in keep])


def to_arrow(frame: pd.DataFrame, table: str) -> pa.Table:
    """``frame``'s columns of ``table`` (run_id left out: the folder names it) with the table's Arrow
    types. Arrow converts directly where the dtypes already fit (a pandas astype per trace costs
    more than analysing a small trace); anything else is conformed with pandas first."""
    schema = arrow_schema(table)
    try:
        return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError):
        if table == "index":
            typed = frame[list(INDEX_SCHEMA)].astype(INDEX_SCHEMA)
        else:
            typed = conform(frame, table).drop(columns=PARTITION_KEY)
        return pa.Table.from_pandas(typed, schema=schema, preserve_index=False)


def write_frame(path: Path, frame: pd.DataFrame, table: str) -> None:
    """``frame`` with ``table``'s columns and types as one Parquet file at ``path``, atomically."""
    data = to_arrow(frame, table)
    write_atomic(path, lambda tmp: pq.write_table(data, tmp))


def cannot_write(out_dir: Path, exc: OSError) -> str:
    """The one-line message for an output folder that refused a write."""
    reason = exc.strerror or first_line(exc)
    return f"{out_dir}: cannot write the tables ({reason}); the previous tables are unchanged"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ snapshots
def _claim(root: Path) -> Path:
    """A new, empty snapshot folder ``root/NNNNNN`` (mkdir decides, so concurrent writers differ)."""
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    root.mkdir(parents=True, exist_ok=True)
    seq = max(taken, default=0) + 1
    while True:
        path = root / f"{seq:06d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            seq += 1


class Snapshot:
    """A snapshot folder being built; :meth:`commit` makes it the current set, :meth:`abandon`
    removes it."""

    def __init__(self, out_dir: Path, path: Path) -> None:
        self.out_dir = out_dir
        self.path = path

    @classmethod
    def create(cls, out_dir: Path) -> Snapshot:
        """Claim a new snapshot folder under ``out_dir/snapshots`` (AnalyzeError, one line, when the
        output folder cannot be made or written)."""
        out_dir = Path(out_dir)
        try:
            path = _claim(out_dir / SNAPSHOTS_DIR)
            write_bytes_atomic(path / BUILDING, f"{socket.gethostname()} {os.getpid()}\n".encode())
        except OSError as exc:
            raise AnalyzeError(f"{out_dir}: cannot create the output folder ({first_line(exc)})") from None
        return cls(out_dir, path)

    def table_dir(self, table: str, partition: str) -> Path:
        return self.path / table / partition

    def write_runs(self, runs: pd.DataFrame, partitions: dict[str, str]) -> None:
        """One file per run under ``runs/run_id=<id>/``."""
        runs = conform(runs, "runs")
        for position, run_id in enumerate(runs[PARTITION_KEY]):
            folder = self.table_dir("runs", partitions[run_id])
            folder.mkdir(parents=True, exist_ok=True)
            write_frame(folder / part_name(0), runs.iloc[position : position + 1], "runs")

    def write_index(self, rows: pd.DataFrame) -> None:
        write_frame(self.path / INDEX_NAME, rows, "index")

    def commit(self, catalogue: AnalysisSnapshot) -> Path:
        """Write the catalogue, then point ``<out>/tables`` at this snapshot in one atomic rename;
        then remove snapshots that no reader can still be using. Returns the snapshot folder."""
        catalogue.schema = ANALYSIS_SCHEMA
        catalogue.created = catalogue.created or now_iso()
        write_bytes_atomic(
            self.path / CATALOGUE_NAME, msgspec.json.format(msgspec.json.encode(catalogue), indent=1) + b"\n"
        )
        (self.path / BUILDING).unlink(missing_ok=True)
        previous = current_snapshot(self.out_dir)
        link = self.out_dir / TABLES_LINK
        tmp = tmp_path(link)
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(f"{SNAPSHOTS_DIR}/{self.path.name}", tmp)
            os.replace(tmp, link)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        collect_garbage(self.out_dir, keep={self.path.name, previous.name if previous else ""})
        for table in TABLE_NAMES:  # the flat <table>.parquet files of stagetrace before snapshots
            (self.out_dir / f"{table}.parquet").unlink(missing_ok=True)
        return self.path

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def current_snapshot(out_dir: Path) -> Path | None:
    """The snapshot folder ``<out>/tables`` points at now (resolved once), or None."""
    link = Path(out_dir) / TABLES_LINK
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    return target if (target / CATALOGUE_NAME).is_file() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect_garbage(out_dir: Path, keep: Collection[str]) -> list[Path]:
    """Remove snapshots nobody needs: finished ones other than ``keep`` (the current one and the one
    it replaced, which a reader may still be reading) and unfinished ones whose writer, on this
    host, is gone. Unfinished snapshots of live or other hosts' writers are left alone."""
    root = Path(out_dir) / SNAPSHOTS_DIR
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for path in sorted(root.iterdir()):
        if not path.name.isdigit() or path.name in keep:
            continue
        if not (path / CATALOGUE_NAME).is_file():
            try:
                who, pid = (path / BUILDING).read_text().split()
            except (OSError, ValueError):
                continue
            if who != host or _pid_alive(int(pid)):
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


# -------------------------------------------------------------------------------------- reading
def read_catalogue(snapshot: Path) -> AnalysisSnapshot:
    path = Path(snapshot) / CATALOGUE_NAME
    try:
        return msgspec.json.decode(path.read_bytes(), type=AnalysisSnapshot)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AnalyzeError(f"{path}: unreadable snapshot catalogue ({first_line(exc)})") from None


def empty_index() -> pd.DataFrame:
    """A reuse index with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in INDEX_SCHEMA.items()})


def read_index(snapshot: Path) -> pd.DataFrame:
    """The reuse index of a snapshot (no rows when it has none)."""
    path = Path(snapshot) / INDEX_NAME
    if not path.is_file():
        return empty_index()
    return pq.read_table(path, schema=arrow_schema("index")).to_pandas().astype(INDEX_SCHEMA)


CONSOLIDATE_EVERY = 64  # files read before their small tables are merged into one (bounds overhead)


def _merged(pieces: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(pieces).combine_chunks()


def _read_table(snapshot: Path, table: str, runs: Sequence[SnapshotRun]) -> pd.DataFrame:
    """One table of a snapshot, runs in catalogue order and each run's files in name order.

    Files are read one by one (pyarrow's dataset scanner costs ~65 KB per small file) and merged
    every CONSOLIDATE_EVERY files, so a thousand traces' files cost little beyond their rows; the
    run_id column comes from the catalogue (the same value the partition folder's name encodes).
    """
    base = snapshot / table
    per_run: list[pa.Table] = []
    for run in runs:
        done: list[pa.Table] = []
        pending: list[pa.Table] = []
        for path in sorted((base / run.partition).glob("*.parquet")):
            if path.name.startswith("."):
                continue
            pending.append(pq.ParquetFile(path).read(use_threads=False))
            if len(pending) == CONSOLIDATE_EVERY:
                done.append(_merged(pending))
                pending = []
        if done or pending:
            rows = _merged(done + pending)
            run_ids = pa.array([run.run_id] * rows.num_rows, pa.string())
            per_run.append(rows.append_column(PARTITION_KEY, run_ids))
    if not per_run:
        return empty_table(table)
    return conform(pa.concat_tables(per_run).to_pandas(), table)


def read_snapshot(snapshot: Path, only: Collection[str] | None = None) -> Tables:
    """The five tables of one snapshot folder; tables not in ``only`` come back empty."""
    snapshot = Path(snapshot)
    runs = read_catalogue(snapshot).runs
    frames = {
        f.name: _read_table(snapshot, f.name, runs) if only is None or f.name in only else empty_table(f.name)
        for f in fields(Tables)
    }
    return Tables(**frames)


def read_tables(out_dir: Path, only: Collection[str] | None = None) -> Tables:
    """The current set of tables in ``out_dir`` (the snapshot ``tables`` points at, resolved once;
    a set replaced while it is being read is read again from the new snapshot). Also reads the flat
    ``<table>.parquet`` files of stagetrace before 0.2."""
    out_dir = Path(out_dir)
    for _attempt in range(3):
        snapshot = current_snapshot(out_dir)
        if snapshot is None:
            return _read_flat(out_dir, only)
        try:
            return read_snapshot(snapshot, only)
        except FileNotFoundError:  # the snapshot was removed under us: read the newer one
            continue
    raise AnalyzeError(f"{out_dir}: the tables kept changing while being read; try again")


def _read_flat(out_dir: Path, only: Collection[str] | None) -> Tables:
    frames = {}
    for f in fields(Tables):
        path = out_dir / f"{f.name}.parquet"
        if only is not None and f.name not in only:
            frames[f.name] = empty_table(f.name)
            continue
        if not path.exists():
            raise AnalyzeError(f"{out_dir / TABLES_LINK}: missing; run `analyze` on the traces first")
        frames[f.name] = conform(pd.read_parquet(path), f.name)
    return Tables(**frames)


# -------------------------------------------------------------------------------------- writing
def write_tables(tables: Tables, out_dir: Path) -> list[Path]:
    """Write in-memory tables as a new snapshot of ``out_dir`` (one file per run and table) and make
    it the current set; returns the five table folders. The reuse index is left empty, so a later
    ``analyze`` into ``out_dir`` analyses every trace again."""
    out_dir = Path(out_dir)
    order = [str(r) for r in tables.runs[PARTITION_KEY]]
    partitions = {run_id: partition_name(run_id) for run_id in order}
    snapshot = Snapshot.create(out_dir)
    try:
        snapshot.write_runs(tables.runs, partitions)
        rows = {}
        for table in PER_TRACE_TABLES:
            frame = conform(getattr(tables, table), table)
            rows[table] = len(frame)
            groups = dict(iter(frame.groupby(PARTITION_KEY, sort=False)))
            for run_id in order:
                folder = snapshot.table_dir(table, partitions[run_id])
                folder.mkdir(parents=True, exist_ok=True)
                write_frame(folder / part_name(0), groups.get(run_id, frame.iloc[:0]), table)
        snapshot.write_index(empty_index())
        counts = tables.samples[PARTITION_KEY].value_counts()
        snapshot.commit(
            AnalysisSnapshot(
                runs=[
                    SnapshotRun(run_id=r, partition=partitions[r], traces=int(counts.get(r, 0)))
                    for r in order
                ],
                rows={"runs": len(tables.runs), **rows},
            )
        )
    except OSError as exc:
        snapshot.abandon()
        raise AnalyzeError(cannot_write(out_dir, exc)) from None
    except BaseException:
        snapshot.abandon()
        raise
    return [out_dir / TABLES_LINK / t for t in TABLE_NAMES]


