"""Capture across processes and nodes with torchrun: one run folder, the samples sharded by rank.

Under ``torchrun --nproc-per-node N -m capture ...`` (WORLD_SIZE > 1 in the environment):

- rank 0 creates the run folder and writes run.json (status running, ``world_size``); the other
  ranks learn the folder through torch.distributed (``broadcast_object_list`` over a gloo group:
  only a few small objects ever travel, so NCCL, its GPU memory and its watchdog are kept out of
  the measured processes, on GPUs too);
- each rank captures every N-th of the samples still to do (on a new run: samples r, r+N, ...),
  on its own GPU (``LOCAL_RANK``), and rewrites its own manifest part ``run.rank-R.json`` (run.json's
  schema) atomically after every sample;
- at the end the parts are gathered and rank 0 merges them into run.json (samples by index;
  verification: identity of every rank, accounting and timing over all samples, overhead as the
  median over ranks; ``ranks`` keeps each rank's own) and removes them. A rank that stops early
  leaves its part: ``capture --resume`` (any world size) and ``analyze`` read run.json with the parts.

Without torchrun nothing here is used and a run is one process, as before.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch

from analyze.contract import (
    IdentityCheck,
    ManifestError,
    OverheadCheck,
    RankInfo,
    RunManifest,
    Verification,
    decode_manifest,
    encode_manifest,
    merge_parts,
    part_file_name,
    part_paths,
)
from analyze.errors import first_line
from capture import verify
from capture.errors import CaptureError
from capture.manifest import RunFolder

# Ranks wait for each other only at the start and at the end; shards of a long run may finish
# hours apart, so the group's timeout is generous (torchrun still ends every rank if one dies).
GROUP_TIMEOUT = dt.timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among torchrun's: rank, world size, local rank and local world size."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> World:
        """From torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (one process without them)."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        values = {}
        for key, default in (
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("LOCAL_RANK", "0"),
            ("LOCAL_WORLD_SIZE", "1"),
        ):
            raw = env.get(key, default)
            if not raw.isdigit():
                raise CaptureError(f"{key}={raw!r}: not a number; start capture with torchrun")
            values[key] = int(raw)
        world = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
        if not (0 <= world.rank < world.size and 0 <= world.local_rank < max(world.local_size, 1)):
            raise CaptureError(
                f"RANK {world.rank} / WORLD_SIZE {world.size}: inconsistent; start capture with torchrun"
            )
        return world

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, pending: Sequence[int]) -> list[int]:
        """This rank's share of the samples still to do: every size-th, from position rank."""
        return list(pending[self.rank :: self.size])

    def device(self, device: torch.device) -> torch.device:
        """This rank's own GPU (``cuda:LOCAL_RANK``) when running on CUDA under torchrun."""
        if device.type != "cuda" or not self.distributed:
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise CaptureError(
                f"LOCAL_RANK {self.local_rank}: this node has {count} GPUs; "
                f"start at most {count} processes per node (torchrun --nproc-per-node {count})"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)


class Group:
    """The ranks' gloo process group: share rank 0's objects, gather everyone's, wait for all."""

    def __init__(self, world: World) -> None:
        import torch.distributed as dist

        self.world = world
        self.dist = dist
        if not dist.is_available():
            raise CaptureError(
                "torch.distributed is not available in this torch build; run capture without torchrun"
            )
        if not dist.is_initialized():
            try:
                dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
            except (RuntimeError, ValueError) as exc:
                raise CaptureError(f"torchrun rendezvous failed ({first_line(exc)})") from None

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj``, on every rank."""
        box = [obj if self.world.rank == 0 else None]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.world.size
        self.dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self.dist.barrier()

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


# ------------------------------------------------------------------------------- manifest parts
def read_parts(run_dir: Path) -> list[RunManifest]:
    """The manifest parts of a run folder, by rank (CaptureError naming a damaged one)."""
    parts = []
    for path in part_paths(run_dir):
        try:
            parts.append(decode_manifest(path.read_bytes()))
        except (OSError, ManifestError) as exc:
            raise CaptureError(
                f"{path}: invalid manifest part ({first_line(exc)}); remove it to resume"
            ) from None
    return parts


def consolidate(folder: RunFolder) -> None:
    """Fold the parts a stopped distributed run left into run.json, then remove them (resume)."""
    parts = read_parts(folder.run_dir)
    if not parts:
        return
    merge_parts(folder.manifest, parts)
    folder.save()
    for path in part_paths(folder.run_dir):
        path.unlink(missing_ok=True)


def publish(folder: RunFolder, world: World, group: Group | None) -> None:
    """Rank 0 (or a lone process): write run.json, then tell the other ranks where it is. Should
    rank 0 fail first, it exits and torchrun ends the ranks still waiting in :func:`join`."""
    if world.rank == 0:
        folder.save()
        if group is not None:
            group.share(str(folder.run_dir))


def join(group: Group) -> RunFolder:
    """A rank other than 0: the run folder rank 0 set up (waits for :func:`publish`)."""
    return RunFolder.open(Path(group.share(None)))


def rank_folder(head: RunFolder, world: World) -> RunFolder:
    """This rank's part of the run: run.json's header, this rank's rank, no samples yet."""
    part = msgspec.structs.replace(
        head.manifest, samples=[], completed=0, rank=world.rank, ranks=[], warnings=[]
    )
    part.verification = Verification()
    return RunFolder(head.run_dir, part, name=part_file_name(world.rank))


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def merge_verification(parts: Sequence[RunManifest], merged: RunManifest) -> Verification:
    """The run's checks from the ranks' own: identity of every rank, accounting and timing over all
    samples, overhead as the median over the ranks that measured it."""
    idents = [p.verification.identity for p in parts if p.verification.identity is not None]
    ran = [i for i in idents if i.ok is not None]
    identity = IdentityCheck(
        ok=all(i.ok for i in ran) if ran else None,
        checked=sorted({c for i in idents for c in i.checked}),
        mismatches=sorted((m for i in idents for m in i.mismatches), key=lambda m: m.index),
    )
    accounting, timing = verify.sample_checks(merged.samples)
    overheads = [
        p.verification.overhead for p in parts if p.verification.overhead and p.verification.overhead.ratio
    ]
    overhead = OverheadCheck(
        ratio=_median([o.ratio for o in overheads if o.ratio is not None]),
        samples=sum(o.samples for o in overheads),
        profiled_ms=_median([o.profiled_ms for o in overheads if o.profiled_ms is not None]),
        unprofiled_ms=_median([o.unprofiled_ms for o in overheads if o.unprofiled_ms is not None]),
    )
    return Verification(
        identity=identity,
        accounting=accounting,
        overhead=overhead,
        timing=timing,
    )


def merge_run(
    head: RunManifest, parts: Sequence[RunManifest], local_ranks: Sequence[int] | None = None
) -> RunManifest:
    """run.json of a distributed run: rank 0's header, every rank's samples and checks merged
    (``local_ranks``: each part's LOCAL_RANK, in the same order)."""
    merged = msgspec.structs.replace(head, rank=None)
    merge_parts(merged, parts)
    merged.world_size = len(parts)
    merged.ranks = [
        RankInfo(
            rank=p.rank if p.rank is not None else i,
            local_rank=local_ranks[i] if local_ranks is not None else 0,
            host=p.env.hostname,
            device=next((s.device for s in p.samples if s.device), p.env.device),
            gpu_name=p.env.gpu_name,
            status=p.status,
            samples=len(p.samples),
            completed=p.completed,
            verification=p.verification,
        )
        for i, p in enumerate(parts)
    ]
    merged.verification = merge_verification(parts, merged)
    warnings = list(head.warnings)
    for p in parts:
        warnings.extend(w if w in warnings else f"rank {p.rank}: {w}" for w in p.warnings)
    merged.warnings = list(dict.fromkeys(warnings))
    statuses = {p.status for p in parts}
    if "interrupted" in statuses or "running" in statuses:
        merged.status = "interrupted"
    elif (
        "failed" in statuses or merged.verification.failed() or any(s.status != "ok" for s in merged.samples)
    ):
        merged.status = "failed"
    else:
        merged.status = "complete"
    return merged


def finish(group: Group, head: RunFolder, part: RunFolder) -> RunFolder:
    """Gather every rank's part; rank 0 merges them into run.json and removes the part files.
    Returns run.json's folder on rank 0 and this rank's part elsewhere. No rank returns before
    run.json is written, so torchrun never stops rank 0 half way through it."""
    gathered = group.gather((encode_manifest(part.manifest), group.world.local_rank))
    try:
        if group.world.rank == 0:
            parts = [decode_manifest(data) for data, _ in gathered]
            head.manifest = merge_run(head.manifest, parts, [local for _, local in gathered])
            head.save()
            for path in part_paths(head.run_dir):
                path.unlink(missing_ok=True)
    finally:
        group.barrier()
    return head if group.world.rank == 0 else part


def device_map_device(device_map: str, world: World) -> torch.device:
    """The input device of a model spread with ``--device-map auto`` (the first GPU); CaptureError,
    one line, where that cannot work: no CUDA, several processes per node, no accelerate."""
    if not torch.cuda.is_available():
        raise CaptureError(
            f"--device-map {device_map}: needs CUDA GPUs and none is available here; "
            "leave --device-map out to run the model on one device"
        )
    if world.local_size > 1:
        raise CaptureError(
            f"--device-map {device_map} spreads one model over all of this node's GPUs: start one "
            "process per node (torchrun --nproc-per-node 1)"
        )
    try:
        import accelerate  # noqa: F401  (imported, not only found: a broken install fails here)
    except ImportError:
        raise CaptureError(
            f"--device-map {device_map}: needs the accelerate package (pip install 'stagetrace[multi-gpu]')"
        ) from None
    return torch.device("cuda", 0)
