"""The files on disk: the one declaration of each, imported by capture and analyze alike.

- The five Parquet tables of an analysis: ``TABLE_SCHEMAS`` maps each table to its columns
  (name -> pandas dtype), in order. Every time column carries its unit in its name.
- run.json, the manifest of a capture run: see the Structs below.

Torch-free, like :mod:`analyze.vocabulary` (the label contract).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

STR, INT, FLOAT, BOOL, NULLABLE_BOOL = "str", "int64", "float64", "bool", "boolean"
NULLABLE_INT = "Int64"  # pandas' integer with NA: counts that only run.json knows

# The verdict of a generation step or a sample's stage and its evidence (analyze.bound), columns of
# both the stages and the tokens table.
VERDICT_COLUMNS: dict[str, str] = {
    "bound": STR,
    "bound_span_ms": FLOAT,
    "gpu_busy_share": FLOAT,
    "launch_ms": FLOAT,
    "n_launches": INT,
    "n_graph_launches": INT,
    "kernel_mean_us": FLOAT,
    "kernel_median_us": FLOAT,
    "sync_ms": FLOAT,
}

TABLE_SCHEMAS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": STR,
        "model": STR,
        "mode": STR,
        "device": STR,
        "gpu_name": STR,
        "torch_version": STR,
        "transformers_version": STR,
        "n_samples": INT,
        "n_skipped": INT,
        "trace_dir": STR,
        "has_manifest": BOOL,
        "identity_ok": NULLABLE_BOOL,
        "accounting_ok": NULLABLE_BOOL,
        "overhead_ratio": FLOAT,
        "has_gpu": BOOL,
        "mixed_devices": BOOL,
        "dtype": STR,
        "attn_implementation": STR,
        "cache": STR,
        "compile": BOOL,
        "load_in": STR,
        "weights": STR,
    },
    "samples": {
        "run_id": STR,
        "sample_id": STR,
        "sample_index": INT,
        "trace_file": STR,
        "model": STR,
        "total_ms": FLOAT,
        "load_ms": FLOAT,
        "preprocess_ms": FLOAT,
        "vision_ms": FLOAT,
        "prefill_ms": FLOAT,
        "decode_ms": FLOAT,
        "other_ms": FLOAT,
        "unlabelled_ms": FLOAT,
        "generate_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "vision_gpu_ms": FLOAT,
        "llm_gpu_ms": FLOAT,
        "unattributed_gpu_ms": FLOAT,
        "ttft_ms": FLOAT,
        "tpot_ms": FLOAT,
        "tokens": INT,
        "tokens_per_s": FLOAT,
        "vision_share_host": FLOAT,
        "llm_share_host": FLOAT,
        "vision_share_gpu": FLOAT,
        "llm_share_gpu": FLOAT,
        "timeline": STR,
        "gpu_busy_ms": FLOAT,
        "gpu_name": STR,
        # From run.json's sample outcome (NA / NaN / "" for traces without one):
        "prompt": STR,
        "prefill_tokens": NULLABLE_INT,
        "new_tokens": NULLABLE_INT,
        "kv_cache_mb": FLOAT,
        "peak_mem_mb": FLOAT,
    },
    "stages": {
        "run_id": STR,
        "sample_id": STR,
        "stage": STR,
        "host_ms": FLOAT,
        "host_self_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "gpu_memcpy_ms": FLOAT,
        "gpu_busy_ms": FLOAT,
        "gpu_span_ms": FLOAT,
        "n_labels": INT,
        "n_host_ops": INT,
        "n_kernels": INT,
        "n_device_events": INT,
        **VERDICT_COLUMNS,
        "model": STR,
    },
    "tokens": {
        "run_id": STR,
        "sample_id": STR,
        "step": INT,
        "phase": STR,
        "start_ms": FLOAT,
        "emitted_ms": FLOAT,
        "latency_ms": FLOAT,
        "host_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "n_kernels": INT,
        **VERDICT_COLUMNS,
        "model": STR,
    },
    "ops": {
        "run_id": STR,
        "sample_id": STR,
        "stage": STR,
        "kind": STR,
        "name": STR,
        "count": INT,
        "total_us": FLOAT,
        "mean_us": FLOAT,
        "model": STR,
    },
}

TABLE_NAMES = tuple(TABLE_SCHEMAS)


# ------------------------------------------------------------------------------ analysis/ on disk
# The tables are Parquet datasets partitioned by run_id (hive-style ``run_id=<id>/`` folders), kept
# as immutable snapshots: ``<out>/snapshots/<NNNNNN>/`` holds one complete set (the five tables,
# the reuse index and the catalogue) and ``<out>/tables`` is a symbolic link to the current one,
# replaced by one atomic rename. See analyze/store.py and DESIGN.md, Files.

TABLES_LINK = "tables"  # <out>/tables -> snapshots/<NNNNNN>
SNAPSHOTS_DIR = "snapshots"
CATALOGUE_NAME = "_snapshot.json"  # in a snapshot folder: AnalysisSnapshot
BUILDING_NAME = "_building"  # in a snapshot still being written: "<host> <pid>" of its writer
INDEX_NAME = "_index.parquet"  # in a snapshot folder: one row per analysed trace (INDEX_SCHEMA)
PARTITION_KEY = "run_id"
ANALYSIS_SCHEMA = "stagetrace.analysis/1"

# The reuse index: which trace file each trace's rows came from, so that a later ``analyze`` into the
# same folder reuses the rows of every unchanged trace. A trace is unchanged when path, size_bytes,
# mtime_ns and head_tail_hash (BLAKE2b-128 of its first and last 64 KiB) are the same and so is
# task_key (what else decides its rows: run, sample, model, order, stage map, run.json's facts of the
# sample, the analysis code).
INDEX_SCHEMA: dict[str, str] = {
    "path": STR,  # the trace file, absolute
    "size_bytes": INT,
    "mtime_ns": INT,
    "head_tail_hash": STR,
    "task_key": STR,
    "run_id": STR,
    "sample_id": STR,
    "order": INT,  # position of the trace in its run
    "partition": STR,  # the run's folder name in each table: run_id=<escaped id>
    "part": STR,  # file name of this trace's rows in each of samples/, stages/, tokens/, ops/
    "gpu_name": STR,
    "has_gpu": BOOL,
    "rows_samples": INT,
    "rows_stages": INT,
    "rows_tokens": INT,
    "rows_ops": INT,
    "analysed": STR,  # UTC time the rows were computed (kept when reused)
    "warnings": STR,  # what reading the trace dropped (parse), one per line; "" for none
}


class SnapshotRun(msgspec.Struct, kw_only=True):
    run_id: str
    partition: str  # folder name under each table: run_id=<escaped run_id>
    traces: int = 0  # traces whose rows are in this snapshot


class AnalysisSnapshot(msgspec.Struct, kw_only=True):
    """``_snapshot.json``, written last into a snapshot folder: the runs in order and the counts."""

    schema: str = ANALYSIS_SCHEMA
    created: str = ""
    code: str = ""  # the analysis code that computed the rows (incremental.code_key(); "" if unknown)
    runs: list[SnapshotRun] = []
    rows: dict[str, int] = {}  # table -> number of rows
    analysed: int = 0  # traces analysed for this snapshot
    reused: int = 0  # traces whose rows were taken over from the previous snapshot
    skipped: int = 0  # traces that could not be read
    dropped: int = 0  # traces of the previous snapshot no longer among the inputs


# ---------------------------------------------------------------------------------------- run.json
# One file per capture run folder, rewritten atomically after every sample. Version 2 adds, per
# sample, where it ran (host, rank, device); version 1 files are migrated on read (migrate()).

MANIFEST_NAME = "run.json"

MB = 1_000_000  # megabytes in sizes of traces are decimal
# analyze's --max-trace-mb: a trace that inflates past this is refused, not read.
DEFAULT_MAX_TRACE_MB = 4096
# A rank of a distributed capture (torchrun) writes its own part, same schema; rank 0 merges the
# parts into run.json at the end (capture/distributed.py).
PART_PREFIX, PART_SUFFIX = "run.rank-", ".json"
SCHEMA_NAME = "stagetrace.run"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

RunStatus = Literal["running", "interrupted", "complete", "failed"]
SampleStatus = Literal["ok", "error"]


def part_file_name(rank: int) -> str:
    """File name of rank ``rank``'s manifest part in a run folder: ``run.rank-<rank>.json``."""
    return f"{PART_PREFIX}{rank}{PART_SUFFIX}"


def part_rank(name: str) -> int | None:
    """The rank a manifest part's file name carries, or None for any other name."""
    if name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX):
        middle = name[len(PART_PREFIX) : -len(PART_SUFFIX)]
        if middle.isdigit():
            return int(middle)
    return None


def part_paths(run_dir: Path) -> list[Path]:
    """The manifest parts in a run folder, by rank number (rank 2 before rank 10)."""
    found = [
        (rank, path.name, path)
        for path in Path(run_dir).glob(f"{PART_PREFIX}*{PART_SUFFIX}")
        if (rank := part_rank(path.name)) is not None
    ]
    return [path for _rank, _name, path in sorted(found)]


def trace_file_name(index: int) -> str:
    """File name of sample ``index``'s trace in a run folder."""
    return f"sample-{index:05d}.pt.trace.json.gz"


class ModelInfo(msgspec.Struct, kw_only=True):
    """The model a run measured."""

    name: str = ""
    class_name: str = msgspec.field(default="", name="class")
    parameters: int | None = None
    weights: str = ""  # where the weights came from: a folder, a hub id, or "random ..."
    modality: str = ""
    attn_implementation: str | None = None  # the attention kernel the language model ran


class Environment(msgspec.Struct, kw_only=True):
    """Where a run ran: versions, device, threads (capture.env fills it)."""

    python: str = ""
    platform: str = ""
    hostname: str = ""
    torch: str = ""
    transformers: str = ""
    device: str = ""
    cuda: str | None = None
    gpu_name: str | None = None
    cpu_threads: int | None = None  # torch's intra-op threads
    interop_threads: int | None = None
    cpu_count: int | None = None  # CPUs this process may run on
    load_avg: list[float] = []  # 1, 5 and 15 minute load averages when the run started
    thread_env: dict[str, str] = {}  # OMP_NUM_THREADS, MKL_NUM_THREADS, ... as set


class DatasetInfo(msgspec.Struct, kw_only=True):
    name: str = ""
    size: int = 0
    warnings: list[str] = []  # e.g. JSON files skipped because they are not instruction lists


class SampleAccounting(msgspec.Struct, kw_only=True):
    """One trace analysed as ``analyze`` would: do its stages add up to its wall time?"""

    ok: bool
    total_ms: float
    stage_self_sum_ms: float
    error_ms: float
    steps_labelled: int
    tokens: int


class SampleOutcome(msgspec.Struct, kw_only=True):
    """How one sample went. ``status`` ok: its trace is whole on disk; error: ``error`` says why."""

    index: int
    sample_id: str
    trace: str
    status: SampleStatus
    error: str | None = None
    token_ids: list[int] = []
    text: str = ""
    wall_ms: dict[str, float] = {}  # host clocks: load, preprocess, generate (synchronised), total
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    accounting: SampleAccounting | None = None
    host: str = ""
    rank: int = 0
    device: str = ""
    prompt: str = ""  # the full prompt text as tokenized, placeholders unexpanded
    prefill_tokens: int | None = None  # the prompt's length with the vision tokens expanded
    new_tokens: int | None = None  # len(token_ids)
    kv_cache_mb: float | None = None  # the KV cache's size after generate(), MiB
    peak_mem_mb: float | None = None  # CUDA: peak allocated; CPU: peak RSS growth; MiB
    input_files: list[str] = []  # the dataset files read, relative to the dataset folder
    seed: int | None = None  # the seed generate() drew with (sampled runs only)
    # Off the sample loop's critical path (capture.exporter): writing the trace whole (Kineto's
    # JSON plus gzip) and the accounting check (analysing it), in ms; None in older run.json files.
    export_ms: float | None = None
    check_ms: float | None = None


class Mismatch(msgspec.Struct):
    index: int
    first_difference: int


class IdentityCheck(msgspec.Struct, kw_only=True):
    """Token ids with labels and profiler on vs both off; ``ok`` None when nothing was checked."""

    ok: bool | None = None
    checked: list[int] = []
    mismatches: list[Mismatch] = []


class AccountingCheck(msgspec.Struct, kw_only=True):
    ok: bool | None = None
    checked: int = 0
    failed: list[int] = []
    max_error_ms: float | None = None


class OverheadCheck(msgspec.Struct, kw_only=True):
    """Median profiled / median unprofiled generate() wall time over the verified samples."""

    ratio: float | None = None
    samples: int = 0
    profiled_ms: float | None = None
    unprofiled_ms: float | None = None


# Per-sample generate() times of one run that spread wider than this (max/median) measure the
# machine's load, not the model: capture and analyze both warn.
TIMING_SPREAD_LIMIT = 3.0


class TimingCheck(msgspec.Struct, kw_only=True):
    """Spread of per-sample generate() wall times: ``ok`` False when max/median exceeds the limit,
    the mark of an oversubscribed CPU (a measurement warning, not a failed run)."""

    ok: bool | None = None
    max_over_median: float | None = None
    samples: int = 0
    limit: float = TIMING_SPREAD_LIMIT


class Verification(msgspec.Struct, kw_only=True):
    identity: IdentityCheck | None = None
    accounting: AccountingCheck | None = None
    overhead: OverheadCheck | None = None
    timing: TimingCheck | None = None

    def failed(self) -> list[str]:
        """Names of the pass/fail checks that ran and failed (overhead is a measurement, not a check)."""
        checks = {"identity": self.identity, "accounting": self.accounting}
        return [name for name, check in checks.items() if check is not None and check.ok is False]


class GenerationInfo(msgspec.Struct, kw_only=True):
    """The decoding settings every generate() of the run used (None: not used)."""

    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    num_beams: int = 1
    seeding: str | None = None  # how sampled runs are seeded per sample
    cache: str = "dynamic"  # the KV cache generate() used: "dynamic" or "static"


class RankInfo(msgspec.Struct, kw_only=True):
    """One rank of a distributed (torchrun) capture, as merged into run.json by rank 0."""

    rank: int
    local_rank: int = 0
    host: str = ""
    device: str = ""
    gpu_name: str | None = None
    status: str = ""  # the rank's own run status
    samples: int = 0  # outcomes it recorded
    completed: int = 0
    verification: Verification = msgspec.field(default_factory=Verification)


class RunManifest(msgspec.Struct, kw_only=True):
    """run.json. ``config`` is capture's CaptureConfig as a dict (capture validates it)."""

    schema: str = SCHEMA
    run_id: str
    status: RunStatus = "running"
    created: str = ""
    updated: str = ""
    config: dict[str, Any] = {}
    model: ModelInfo = msgspec.field(default_factory=ModelInfo)
    env: Environment = msgspec.field(default_factory=Environment)
    dtype: str = ""
    dataset: DatasetInfo | None = None
    generation: GenerationInfo | None = None
    samples: list[SampleOutcome] = []
    completed: int = 0
    verification: Verification = msgspec.field(default_factory=Verification)
    warnings: list[str] = []  # what the reader of this run must know (e.g. unreliable timings)
    world_size: int = 1  # processes that captured this run (torchrun's WORLD_SIZE; 1 without it)
    rank: int | None = None  # in a manifest part (run.rank-R.json): the rank that wrote it
    ranks: list[RankInfo] = []  # a distributed run's ranks, merged by rank 0 (empty otherwise)

    def sample(self, index: int) -> SampleOutcome | None:
        """The outcome recorded for sample ``index``, if any."""
        return next((s for s in self.samples if s.index == index), None)


class ManifestError(ValueError):
    """run.json is not a stagetrace manifest this version can read; the message names the field."""


_SCHEMA_RE = re.compile(rf"^{re.escape(SCHEMA_NAME)}/(\d+)$")


def _migrate_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no per-sample host, rank or device: they are the run's own."""
    env = doc.get("env") if isinstance(doc.get("env"), dict) else {}
    samples = doc.get("samples")
    if isinstance(samples, list):
        doc["samples"] = [
            {"host": env.get("hostname") or "", "rank": 0, "device": env.get("device") or "", **s}
            if isinstance(s, dict)
            else s
            for s in samples
        ]
    return doc


_MIGRATIONS = {1: _migrate_1_to_2}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a decoded run.json of any known version up to SCHEMA_VERSION (a new dict)."""
    tag = doc.get("schema")
    match = _SCHEMA_RE.match(tag) if isinstance(tag, str) else None
    if match is None:
        raise ManifestError(f"schema is {tag!r}: not a stagetrace run manifest ({SCHEMA} expected)")
    version = int(match.group(1))
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"schema {tag}: written by a newer stagetrace (this one reads up to {SCHEMA}); upgrade stagetrace"
        )
    doc = dict(doc)
    while version < SCHEMA_VERSION:
        doc = _MIGRATIONS[version](doc)
        version += 1
    doc["schema"] = SCHEMA
    return doc


def decode_manifest(data: bytes) -> RunManifest:
    """Parse, migrate and validate run.json; ManifestError names the first bad field."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ManifestError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"holds a JSON {type(doc).__name__}, not an object")
    try:
        return msgspec.convert(migrate(doc), RunManifest)
    except msgspec.ValidationError as exc:
        raise ManifestError(str(exc).replace("`$.", "`").replace("- at `$`", "")) from None


def merge_samples(*manifests: RunManifest) -> list[SampleOutcome]:
    """The outcomes of several manifests of one run (run.json, then its parts), one per sample index
    in index order; a later manifest's outcome replaces an earlier one's, except that an ok outcome is
    never replaced by an error (a resumed rank may retry a sample another rank already captured)."""
    by_index: dict[int, SampleOutcome] = {}
    for manifest in manifests:
        for outcome in manifest.samples:
            held = by_index.get(outcome.index)
            if held is None or outcome.status == "ok" or held.status != "ok":
                by_index[outcome.index] = outcome
    return [by_index[i] for i in sorted(by_index)]


def count_completed(samples: Sequence[SampleOutcome]) -> int:
    """run.json's ``completed``: the samples captured successfully."""
    return sum(s.status == "ok" for s in samples)


def merge_parts(manifest: RunManifest, parts: Sequence[RunManifest]) -> None:
    """Fold the manifest parts of a run (in rank order, :func:`part_paths`) into ``manifest``: its
    samples merged (:func:`merge_samples`) and ``completed`` recounted."""
    manifest.samples = merge_samples(manifest, *parts)
    manifest.completed = count_completed(manifest.samples)


def encode_manifest(manifest: RunManifest) -> bytes:
    """run.json's bytes: indented JSON, one key per line, so a person can read it."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=1) + b"\n"
