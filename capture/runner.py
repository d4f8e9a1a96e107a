"""The capture loop: every sample under its own profiler session, labelled by stage.

Per sample: ``sample#i`` > ``stage1:load`` (dataset), ``stage2:preprocess`` (adapter), then the
model's ordinary ``generate()`` inside ``stage4:generate``, where forward hooks label vision and
every step. In decoupled mode the vision encoder runs first, outside ``stage4:generate``. Each
sample's trace is written and checked in the background (capture.exporter) while the next sample
runs, and the sample is recorded in the manifest once its trace is whole; both are written
atomically, so a failure or Ctrl-C loses nothing already captured. Under torchrun each rank
captures its shard of the samples into the same run folder (capture/distributed.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.profiler import profile

from analyze import vocabulary as vocab
from analyze.contract import (
    DatasetInfo,
    Environment,
    SampleOutcome,
    TimingCheck,
    Verification,
    trace_file_name,
)
from analyze.errors import describe, first_line
from analyze.files import tmp_files
from capture import distributed, settings, verify
from capture.config import CaptureConfig
from capture.data.registry import open_dataset
from capture.data.sample import Dataset, RawSample
from capture.env import environment, resolve_device, resolve_dtype
from capture.errors import CaptureError
from capture.exporter import Export, Exporter
from capture.labels import StageLabeler
from capture.manifest import RunFolder
from capture.memory import MIB, PeakMemory
from capture.models.base import Inputs, ModelAdapter, ModelSpec
from capture.models.hf import Generated
from capture.models.registry import adapter_class
from capture.profiling import profiled, save_json

# Called after every sample with its outcome — the CLI's progress bar.
Progress = Callable[[SampleOutcome], None]


@dataclass
class RunResult:
    """What the CLI reports at the end."""

    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def new_run_dir(cfg: CaptureConfig) -> tuple[Path, str]:
    """``<out>/<model>-<UTC time>``, made unique with a suffix.

    ``mkdir`` itself decides (it fails if the folder exists), so processes started together
    never share a folder: each takes the next free suffix.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{cfg.model}-{stamp}"
    try:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        for k in range(1, 10_000):
            run_id = base if k == 1 else f"{base}-{k}"
            try:
                (cfg.out_dir / run_id).mkdir()
            except FileExistsError:
                continue
            return cfg.out_dir / run_id, run_id
    except OSError as exc:
        raise CaptureError(f"--out {cfg.out}: cannot create a run folder there ({first_line(exc)})") from None
    raise CaptureError(f"--out {cfg.out}: 9,999 run folders named {base}-* already exist; use another --out")


class Capture:
    """A model, a dataset and a run folder; ``run()`` captures every sample not yet done."""

    def __init__(
        self, cfg: CaptureConfig, folder: RunFolder, adapter: ModelAdapter, dataset: Dataset
    ) -> None:
        self.cfg = cfg
        self.folder = folder
        self.adapter = adapter
        self.dataset = dataset
        self.labeler = StageLabeler(adapter)
        self.device = adapter.spec.device
        self.request = cfg.input_request(adapter.modality, adapter.frame_pick)
        self.settings = cfg.generation()
        # Under torchrun: this rank, the process group, and run.json's folder (``folder`` is then
        # this rank's manifest part). One process: rank 0 of 1, and ``head`` is ``folder``.
        self.sync_devices = adapter.devices() if self.device.type == "cuda" else []
        self.world = distributed.World()
        self.group: distributed.Group | None = None
        self.head = folder

    @classmethod
    def prepare(cls, cfg: CaptureConfig, resume: Path | None = None) -> Capture:
        """Validate options, build the model and dataset, and create (or reopen) the run folder."""
        world = distributed.World.from_env()
        if resume is not None:
            folder = RunFolder.open(resume)
            cfg = CaptureConfig.from_json(folder.manifest.config, str(resume / "run.json"))
            if world.rank == 0:
                for stale in tmp_files(resume):  # left by a killed process mid-write
                    stale.unlink()
        family = adapter_class(cfg.model)  # unknown names fail before anything is loaded
        cfg = cfg.for_model(family.modality, family.default_frames)  # and impossible options
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        device = world.device(resolve_device(cfg.device))
        if cfg.device_map is not None:
            device = distributed.device_map_device(cfg.device_map, world)
        dtype = resolve_dtype(cfg.dtype, device)
        dataset = open_dataset(
            Path(cfg.dataset) if cfg.dataset else None, seed=cfg.seed, n_samples=cfg.samples
        )
        if len(dataset) == 0:
            raise CaptureError(f"--dataset {cfg.dataset}: no samples found")
        settings.check(cfg, device, dtype)
        spec = ModelSpec(
            cfg.model, cfg.model_path, device, dtype, cfg.seed,
            weights=cfg.weights, attn_implementation=cfg.attn_implementation, load_in=cfg.load_in,
            device_map=cfg.device_map,
        )  # fmt: skip
        group = distributed.Group(world) if world.distributed else None
        adapter = family.build(spec)
        settings.apply(adapter, cfg)
        model, env = adapter.describe(), environment(device)
        if group is not None and world.rank != 0:  # rank 0 sets the run folder up; this rank joins it
            folder = distributed.join(group)
        elif resume is None:
            run_dir, run_id = new_run_dir(cfg)
            folder = RunFolder.create(run_dir, run_id, cfg.to_json())
        else:
            distributed.consolidate(folder)  # manifest parts a stopped torchrun run left behind
        cap = cls(cfg, folder, adapter, dataset)
        manifest = folder.manifest
        manifest.model = model
        manifest.env = env
        manifest.dtype = str(dtype).removeprefix("torch.")
        manifest.dataset = DatasetInfo(name=dataset.name, size=len(dataset), warnings=list(dataset.warnings))
        manifest.generation = cap.settings.describe(cfg.seed)
        new_warnings = [w for w in settings.run_warnings(cfg) if w not in manifest.warnings]
        manifest.warnings = [*manifest.warnings, *new_warnings]
        manifest.world_size = world.size
        try:
            distributed.publish(folder, world, group)  # rank 0: run.json, then its path to the others
        except BaseException:
            if resume is None and world.rank == 0:  # a new folder without its run.json is no run
                with contextlib.suppress(OSError):
                    folder.run_dir.rmdir()
            raise
        if group is not None:
            cap.world, cap.group = world, group
            cap.folder = distributed.rank_folder(folder, world)  # with this rank's env
            cap.folder.save()
        return cap

    def close(self) -> None:
        """Leave the ranks' process group (torchrun runs)."""
        if self.group is not None:
            self.group.close()

    @property
    def n_samples(self) -> int:
        return min(self.cfg.samples, len(self.dataset))

    # -- one sample -------------------------------------------------------------------------
    def _inputs(
        self, index: int, timings: dict[str, float], labelled: bool
    ) -> tuple[Inputs, RawSample]:
        """Load and preprocess sample ``index``; labelled and timed when ``labelled``."""
        lab = self.labeler
        t0 = time.perf_counter()
        with lab.label(vocab.LOAD) if labelled else nullcontext():
            raw = self.dataset.load(index, self.request)
        t1 = time.perf_counter()
        with lab.label(vocab.PREPROCESS) if labelled else nullcontext():
            inputs = self.adapter.prepare(raw)
        timings["load"] = (t1 - t0) * 1e3
        timings["preprocess"] = (time.perf_counter() - t1) * 1e3
        return inputs, raw

    def _generate(
        self, index: int, inputs: Inputs, timings: dict[str, float], labelled: bool
    ) -> Generated:
        """Vision first in decoupled mode, then the model's ordinary generate().

        Only generate() gets a host wall time (it ends with a device synchronize); the vision
        encoder's time is read from the trace, since an unsynchronised host clock would time
        kernel launches, not kernels. A sampled run seeds generate() with ``seed + index``,
        labelled or not, so both draw the same tokens.
        """
        cfg, lab = self.cfg, self.labeler
        if cfg.mode == "decoupled":
            inputs = self.adapter.encode_vision(inputs)
        t1 = time.perf_counter()
        with lab.generation() if labelled else nullcontext():
            out = self.adapter.generate(inputs, self.settings, seed=self.settings.seed_for(cfg.seed, index))
        if self.device.type == "cuda":
            for device in self.sync_devices:  # every GPU a --device-map model spans
                torch.cuda.synchronize(device)
        timings["generate"] = (time.perf_counter() - t1) * 1e3
        return out

    def run_plain(self, index: int) -> tuple[list[int], dict[str, float]]:
        """Sample ``index`` with no labels and no profiler: the reference for the checks."""
        timings: dict[str, float] = {}
        self.labeler.detach()
        inputs, _raw = self._inputs(index, timings, labelled=False)
        return self._generate(index, inputs, timings, labelled=False).token_ids, timings

    def run_profiled(self, index: int) -> tuple[SampleOutcome, profile]:
        """Sample ``index`` under the profiler with every label: its manifest outcome (not yet
        checked) and the stopped profiler session, whose trace is still to be exported."""
        timings: dict[str, float] = {}
        trace = self.folder.run_dir / trace_file_name(index)
        self.labeler.attach()
        t0 = time.perf_counter()
        try:
            with (
                profiled(self.cfg, self.device) as prof,
                PeakMemory(self.device) as peak,
                self.labeler.label(vocab.sample_label(index)),
            ):
                inputs, raw = self._inputs(index, timings, labelled=True)
                out = self._generate(index, inputs, timings, labelled=True)
        finally:
            self.labeler.detach()
        timings["total"] = (time.perf_counter() - t0) * 1e3
        ids = out.token_ids
        outcome = SampleOutcome(
            index=index,
            sample_id=self.dataset.sample_id(index),
            trace=trace.name,
            status="ok",
            token_ids=ids,
            text=self.adapter.decode(ids),
            wall_ms={k: round(v, 3) for k, v in timings.items()},
            **self._where(),
            prompt=self.adapter.prompt_text(raw.prompt, raw.n_frames),
            prefill_tokens=self.adapter.prefill_tokens(inputs),
            new_tokens=len(ids),
            kv_cache_mb=None if out.kv_cache_bytes is None else round(out.kv_cache_bytes / MIB, 3),
            peak_mem_mb=None if peak.mb is None else round(peak.mb, 3),
            input_files=raw.files,
            seed=self.settings.seed_for(self.cfg.seed, index),
        )
        return outcome, prof

    def _where(self) -> dict[str, Any]:
        """Where a sample ran: host, rank and device (for run.json)."""
        env = self.folder.manifest.env
        device = str(self.device) if self.world.distributed else env.device
        return {"host": env.hostname, "rank": self.world.rank, "device": device}

    # -- the run ----------------------------------------------------------------------------
    def warmup(self, pending: list[int]) -> dict[int, SampleOutcome]:
        """Un-recorded runs so the first sample pays for no lazy initialisation.

        On the first of ``pending`` that loads and runs: ``--warmup`` plain generate() calls,
        then one profiled, labelled generate() whose trace is discarded (the profiler's own
        first sessions, CUPTI on a GPU, are slow). Samples that fail on the way are returned
        as error outcomes (the run skips them); CaptureError when none of them runs at all.
        """
        failed: dict[int, SampleOutcome] = {}
        if self.cfg.warmup == 0 or not pending:
            return failed
        for index in pending:
            try:
                inputs, _raw = self._inputs(index, {}, labelled=False)
                for _ in range(self.cfg.warmup):
                    self._generate(index, inputs, {}, labelled=False)
                self.labeler.attach()
                try:
                    with profiled(self.cfg, self.device), self.labeler.label(vocab.sample_label(index)):
                        self._generate(index, inputs, {}, labelled=True)
                finally:
                    self.labeler.detach()
                return failed
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # this sample fails; the next one may not
                failed[index] = self._error_outcome(index, exc)
        first = failed[pending[0]]
        raise NoSampleRuns(
            f"none of the {len(pending)} samples could be run; sample {first.index} ({first.sample_id}): "
            f"{first.error}",
            failed,
        )

    def verify_indices(self, done: list[int]) -> list[int]:
        if self.cfg.verify == "none" or not done:
            return []
        return done if self.cfg.verify == "all" else done[:1]

    def run(self, progress: Progress | None = None) -> RunResult:
        """Capture every sample not already done, then verify; Ctrl-C leaves a resumable run.

        Raises CaptureError (after saving run.json) when no sample could be captured at all,
        and when run.json cannot be written.
        """
        result = RunResult()
        folder, manifest = self.folder, self.folder.manifest
        captured = {i: self.head.is_done(i) for i in range(self.n_samples)}  # each looked up once
        result.skipped = [i for i, done in captured.items() if done]
        pending = self.world.shard([i for i, done in captured.items() if not done])
        exporter = Exporter()
        try:
            with torch.no_grad():
                try:
                    warm_failed = self.warmup(pending)
                except NoSampleRuns as exc:
                    for outcome in exc.outcomes.values():
                        folder.record(outcome)
                    manifest.status = "failed"
                    folder.save()
                    raise
                for index in pending:
                    failed = warm_failed.get(index) or self._capture_one(index, exporter)
                    if failed is not None:
                        self._record(failed, result, progress)
                    for export in exporter.finished():
                        self._record(self._exported(export), result, progress)
                for export in exporter.drain():  # every trace whole on disk before the checks
                    self._record(self._exported(export), result, progress)
                if pending and manifest.completed == 0:
                    manifest.status = "failed"
                    folder.save()
                    first = manifest.sample(pending[0])
                    raise CaptureError(
                        f"none of the {len(pending)} samples could be captured; sample {first.index} "
                        f"({first.sample_id}): {first.error}"
                    )
                manifest.verification = self._verify()
        except KeyboardInterrupt:
            # Nothing captured is lost: the traces in flight are finished and recorded first
            # (a second Ctrl-C stops the wait; --resume then captures those samples again).
            with contextlib.suppress(KeyboardInterrupt):
                for export in exporter.drain():
                    folder.record(self._exported(export))
            manifest.status = "interrupted"
            folder.save()
            raise
        finally:
            exporter.close()
        timing = manifest.verification.timing
        if timing is not None and timing.ok is False:
            manifest.warnings = [*manifest.warnings, timing_warning(timing, manifest.env)]
        result.failed.sort()  # traces finish in the background, after later samples' errors
        manifest.status = "failed" if result.failed or manifest.verification.failed() else "complete"
        folder.save()
        if self.group is not None:  # rank 0 merges every rank's part into run.json
            self.folder = distributed.finish(self.group, self.head, folder)
        return result

    def _error_outcome(self, index: int, exc: BaseException) -> SampleOutcome:
        """Sample ``index`` failed with ``exc``: its outcome (the trace, if any, is not kept)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        sample_id = _safe_sample_id(self.dataset, index)
        return _failed(index, sample_id, trace_file_name(index), describe(exc), **self._where())

    def _capture_one(self, index: int, exporter: Exporter) -> SampleOutcome | None:
        """Run sample ``index`` and hand its trace to ``exporter``; its error outcome if it failed."""
        try:
            outcome, prof = self.run_profiled(index)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad sample must not end the run
            return self._error_outcome(index, exc)
        path = self.folder.run_dir / outcome.trace
        tokens = len(outcome.token_ids)
        exporter.submit(Export(key=outcome, save=partial(save_json, prof), path=path, tokens=tokens))
        return None

    def _exported(self, export: Export) -> SampleOutcome:
        """The outcome of a sample whose trace export finished (whole on disk, or an error)."""
        outcome, done = export.key, export.result
        assert isinstance(outcome, SampleOutcome) and done is not None
        if done.error is not None:
            return _failed(
                outcome.index, outcome.sample_id, outcome.trace, done.error,
                host=outcome.host, rank=outcome.rank, device=outcome.device,
            )  # fmt: skip
        outcome.ttft_ms, outcome.tpot_ms, outcome.accounting = done.ttft_ms, done.tpot_ms, done.accounting
        outcome.export_ms, outcome.check_ms = export.export_ms, done.check_ms
        return outcome

    def _record(self, outcome: SampleOutcome, result: RunResult, progress: Progress | None) -> None:
        """Record one sample in run.json (saved at once) and report it."""
        if outcome.status != "ok":
            result.failed.append(outcome.index)
        self.folder.record(outcome)
        self.folder.save()
        if progress:
            progress(outcome)

    def _verify(self) -> Verification:
        by_index = {s.index: s for s in self.folder.samples if s.status == "ok"}
        checked = self.verify_indices(sorted(by_index))
        reference = {i: self.run_plain(i) for i in checked}
        accounting, timing = verify.sample_checks(by_index.values())
        return Verification(
            identity=verify.identity(
                {i: by_index[i].token_ids for i in checked}, {i: r[0] for i, r in reference.items()}
            ),
            accounting=accounting,
            overhead=verify.overhead(
                [by_index[i].wall_ms["generate"] for i in checked],
                [r[1]["generate"] for r in reference.values()],
            ),
            timing=timing,
        )


class NoSampleRuns(CaptureError):
    """Warm-up found no sample that loads and runs; ``outcomes`` holds each one's error."""

    def __init__(self, message: str, outcomes: dict[int, SampleOutcome] | None = None) -> None:
        super().__init__(message)
        self.outcomes = outcomes or {}


def timing_warning(timing: TimingCheck, env: Environment) -> str:
    """Why per-sample generate() times that vary this much cannot be trusted, and what to do."""
    load = f"load average {env.load_avg[0]:.1f}" if env.load_avg else "load unknown"
    cores = env.cpu_count or "?"
    return (
        f"per-sample generate() times vary {timing.max_over_median:.1f}x (max/median over {timing.samples} "
        f"samples): host timings are unreliable. Likely cause: the CPU is oversubscribed ({load} on "
        f"{cores} cores at start, torch using {env.cpu_threads} threads); capture again on an idle machine, "
        "or with --threads 1"
    )


def _failed(
    index: int, sample_id: str, trace: str, error: str, *, host: str, rank: int, device: str
) -> SampleOutcome:
    """The outcome of a sample that failed: where it ran and why, nothing measured."""
    return SampleOutcome(
        index=index, sample_id=sample_id, trace=trace, status="error", error=error,
        host=host, rank=rank, device=device,
    )  # fmt: skip


def _safe_sample_id(dataset: Dataset, index: int) -> str:
    try:
        return dataset.sample_id(index)
    except Exception:
        return str(index)
