"""The files on disk: the one declaration of each, imported by capture and analyze alike.

- The five Parquet tables of an analysis: ``TABLE_SCHEMAS`` maps each table to its columns
  (name -> pandas dtype), in order. Every time column carries its unit in its name.
- run.json, the manifest of a capture run: see the Structs below.

Torch-free, like :mod:`analyze.vocabulary` (the label contract).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

STR, INT, FLOAT, BOOL, NULLABLE_BOOL = "str", "int64", "float64", "bool", "boolean"

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


# ---------------------------------------------------------------------------------------- run.json
# One file per capture run folder, rewritten atomically after every sample. Version 2 adds, per
# sample, where it ran (host, rank, device); version 1 files are migrated on read (migrate()).

MANIFEST_NAME = "run.json"
SCHEMA_NAME = "stagetrace.run"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

RunStatus = Literal["running", "interrupted", "complete", "failed"]
SampleStatus = Literal["ok", "error"]


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
    samples: list[SampleOutcome] = []
    completed: int = 0
    verification: Verification = msgspec.field(default_factory=Verification)
    warnings: list[str] = []  # what the reader of this run must know (e.g. unreliable timings)

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


def encode_manifest(manifest: RunManifest) -> bytes:
    """run.json's bytes: indented JSON, one key per line, so a person can read it."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=1) + b"\n"
