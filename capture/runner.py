"""The capture loop: every sample under its own profiler session, labelled by stage.

Per sample: ``sample#i`` > ``stage1:load`` (dataset), ``stage2:preprocess`` (adapter), then the
model's ordinary ``generate()`` inside ``stage4:generate``, where forward hooks label vision and
every step. In decoupled mode the vision encoder runs first, outside ``stage4:generate``. Each
sample's trace and the manifest are written atomically, so a failure or Ctrl-C loses nothing
already captured.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from analyze import vocabulary as vocab
from capture import verify
from capture.config import CaptureConfig
from capture.data.registry import open_dataset
from capture.data.sample import Dataset
from capture.env import environment, resolve_device, resolve_dtype
from capture.errors import CaptureError
from capture.labels import StageLabeler
from capture.manifest import RunManifest, trace_name
from capture.models.base import Inputs, ModelAdapter, ModelSpec
from capture.models.registry import adapter_class
from capture.profiling import export_trace, profiled

# Called after every sample with (index, outcome) — the CLI's progress bar.
Progress = Callable[[int, dict[str, Any]], None]


@dataclass
class RunResult:
    """What the CLI reports at the end."""

    run_dir: Path
    manifest: RunManifest
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def new_run_dir(cfg: CaptureConfig) -> tuple[Path, str]:
    """``<out>/<model>-<UTC time>``, made unique with a suffix."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{cfg.model}-{stamp}"
    run_id, k = base, 1
    while (cfg.out_dir / run_id).exists():
        k += 1
        run_id = f"{base}-{k}"
    run_dir = cfg.out_dir / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise CaptureError(f"--out {cfg.out}: cannot create {run_dir} ({exc.strerror})") from None
    return run_dir, run_id


class Capture:
    """A model, a dataset and a run folder; ``run()`` captures every sample not yet done."""

    def __init__(self, cfg: CaptureConfig, manifest: RunManifest, adapter: ModelAdapter, dataset: Dataset):
        self.cfg = cfg
        self.manifest = manifest
        self.adapter = adapter
        self.dataset = dataset
        self.labeler = StageLabeler(adapter)
        self.device = adapter.spec.device

    @classmethod
    def prepare(cls, cfg: CaptureConfig, resume: Path | None = None) -> Capture:
        """Validate options, build the model and dataset, and create (or reopen) the run folder."""
        if resume is not None:
            manifest = RunManifest.load(resume)
            cfg = CaptureConfig.from_json(manifest.data["config"])
            for stale in resume.glob(".*.tmp-*"):  # left by a killed process mid-write
                stale.unlink()
        adapter_class(cfg.model)  # unknown names fail before anything is loaded
        if cfg.samples < 1:
            raise CaptureError(f"--samples {cfg.samples}: must be at least 1")
        if cfg.max_new_tokens < 1:
            raise CaptureError(f"--max-new-tokens {cfg.max_new_tokens}: must be at least 1")
        if cfg.min_new_tokens > cfg.max_new_tokens:
            raise CaptureError(
                f"--min-new-tokens {cfg.min_new_tokens} exceeds --max-new-tokens {cfg.max_new_tokens}"
            )
        device = resolve_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, device)
        dataset = open_dataset(
            Path(cfg.dataset) if cfg.dataset else None, seed=cfg.seed, n_samples=cfg.samples
        )
        if len(dataset) == 0:
            raise CaptureError(f"--dataset {cfg.dataset}: no samples found")
        spec = ModelSpec(cfg.model, cfg.model_path, device, dtype, cfg.seed)
        adapter = adapter_class(cfg.model).build(spec)
        if resume is None:
            run_dir, run_id = new_run_dir(cfg)
            manifest = RunManifest.create(run_dir, run_id, cfg.to_json())
        manifest.data["model"] = adapter.describe()
        manifest.data["env"] = environment(device)
        manifest.data["dtype"] = str(dtype).removeprefix("torch.")
        manifest.data["dataset"] = {"name": dataset.name, "size": len(dataset)}
        manifest.save()
        return cls(cfg, manifest, adapter, dataset)

    @property
    def n_samples(self) -> int:
        return min(self.cfg.samples, len(self.dataset))

    # -- one sample -------------------------------------------------------------------------
    def _inputs(self, index: int, timings: dict[str, float], labelled: bool) -> Inputs:
        """Load and preprocess sample ``index``; labelled and timed when ``labelled``."""
        lab = self.labeler
        t0 = time.perf_counter()
        with lab.label(vocab.LOAD) if labelled else nullcontext():
            raw = self.dataset.load(index, self.adapter.modality)
        t1 = time.perf_counter()
        with lab.label(vocab.PREPROCESS) if labelled else nullcontext():
            inputs = self.adapter.prepare(raw)
        timings["load"] = (t1 - t0) * 1e3
        timings["preprocess"] = (time.perf_counter() - t1) * 1e3
        return inputs

    def _generate(self, inputs: Inputs, timings: dict[str, float], labelled: bool) -> list[int]:
        """Vision first in decoupled mode, then the model's ordinary generate().

        Only generate() gets a host wall time (it ends with a device synchronize); the vision
        encoder's time is read from the trace, since an unsynchronised host clock would time
        kernel launches, not kernels.
        """
        cfg, lab = self.cfg, self.labeler
        if cfg.mode == "decoupled":
            inputs = self.adapter.encode_vision(inputs)
        t1 = time.perf_counter()
        with lab.generation() if labelled else nullcontext():
            ids = self.adapter.generate(
                inputs, max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timings["generate"] = (time.perf_counter() - t1) * 1e3
        return ids

    def run_plain(self, index: int) -> tuple[list[int], dict[str, float]]:
        """Sample ``index`` with no labels and no profiler: the reference for the checks."""
        timings: dict[str, float] = {}
        self.labeler.detach()
        ids = self._generate(self._inputs(index, timings, labelled=False), timings, labelled=False)
        return ids, timings

    def run_profiled(self, index: int) -> dict[str, Any]:
        """Sample ``index`` under the profiler with every label; returns its manifest outcome."""
        timings: dict[str, float] = {}
        trace = self.manifest.run_dir / trace_name(index)
        self.labeler.attach()
        t0 = time.perf_counter()
        try:
            with profiled(self.cfg, self.device) as prof, self.labeler.label(vocab.sample_label(index)):
                ids = self._generate(self._inputs(index, timings, labelled=True), timings, labelled=True)
        finally:
            self.labeler.detach()
        timings["total"] = (time.perf_counter() - t0) * 1e3
        export_trace(prof, trace)
        return {
            "index": index,
            "sample_id": self.dataset.sample_id(index),
            "trace": trace.name,
            "status": "ok",
            "error": None,
            "token_ids": ids,
            "text": self.adapter.decode(ids),
            "wall_ms": {k: round(v, 3) for k, v in timings.items()},
        }

    # -- the run ----------------------------------------------------------------------------
    def warmup(self) -> None:
        """Un-recorded runs so the first sample does not pay for lazy initialisation."""
        for _ in range(self.cfg.warmup):
            self.run_plain(0)

    def verify_indices(self, done: list[int]) -> list[int]:
        if self.cfg.verify == "none" or not done:
            return []
        return done if self.cfg.verify == "all" else done[:1]

    def run(self, progress: Progress | None = None) -> RunResult:
        """Capture every sample not already done, then verify; Ctrl-C leaves a resumable run."""
        result = RunResult(self.manifest.run_dir, self.manifest)
        data = self.manifest.data
        try:
            with torch.no_grad():
                self.warmup()
                for index in range(self.n_samples):
                    if self.manifest.is_done(index):
                        result.skipped.append(index)
                        continue
                    outcome = self._capture_one(index)
                    if outcome["status"] != "ok":
                        result.failed.append(index)
                    self.manifest.record(outcome)
                    data["completed"] = sum(s["status"] == "ok" for s in self.manifest.samples)
                    self.manifest.save()
                    if progress:
                        progress(index, outcome)
                data["verification"] = self._verify()
        except KeyboardInterrupt:
            data["status"] = "interrupted"
            self.manifest.save()
            raise
        failed_checks = [k for k, v in data["verification"].items() if v.get("ok") is False]
        data["status"] = "failed" if result.failed or failed_checks else "complete"
        self.manifest.save()
        return result

    def _capture_one(self, index: int) -> dict[str, Any]:
        try:
            outcome = self.run_profiled(index)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad sample must not end the run
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return {
                "index": index,
                "sample_id": _safe_sample_id(self.dataset, index),
                "trace": trace_name(index),
                "status": "error",
                "error": f"{type(exc).__name__}: {msg}",
            }
        outcome.update(
            verify.trace_summary(self.manifest.run_dir / outcome["trace"], len(outcome["token_ids"]))
        )
        return outcome

    def _verify(self) -> dict[str, Any]:
        done = [s["index"] for s in self.manifest.samples if s["status"] == "ok"]
        checked = self.verify_indices(done)
        reference = {i: self.run_plain(i) for i in checked}
        by_index = {s["index"]: s for s in self.manifest.samples}
        return {
            "identity": verify.identity(
                {i: by_index[i]["token_ids"] for i in checked}, {i: r[0] for i, r in reference.items()}
            ),
            "accounting": verify.accounting([by_index[i] for i in done]),
            "overhead": verify.overhead(
                [by_index[i]["wall_ms"]["generate"] for i in checked],
                [r[1]["generate"] for r in reference.values()],
            ),
        }


def _safe_sample_id(dataset: Dataset, index: int) -> str:
    try:
        return dataset.sample_id(index)
    except Exception:
        return str(index)
