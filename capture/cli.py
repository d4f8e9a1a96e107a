"""``capture``: profile a VLM's generate() with stage labels, one Chrome trace per sample."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from analyze.cliutil import CONTEXT_SETTINGS, InputError, version_option
from analyze.contract import RunManifest, SampleOutcome
from capture.config import CaptureConfig, help_of
from capture.errors import CaptureError
from capture.models.registry import MODELS

if TYPE_CHECKING:
    from capture.runner import Capture

EXAMPLES = """
\b
Examples:
  capture --model tiny-llava --samples 8                  # CPU, seconds, no downloads
  capture --model llava-1.5 --samples 200 --device cuda   # weights from the HF cache or --model-path
  capture --model video-llava --dataset DIR --samples 200 --max-new-tokens 64
  capture --model tiny-eventgpt --mode decoupled
  capture --model llava-1.5 --weights random --min-new-tokens 32 --max-new-tokens 32
  capture --model tiny-llava --cache static --compile   # torch.compile'd decoding
  capture --model eventgpt --model-path ckpt/EventGPT-7b --dataset DIR --event-input image --frames 1
  capture --model eventgpt --model-path ckpt/EventGPT-7b --do-sample --temperature 0.6 --max-new-tokens 512
  capture --model llava-1.5 --dataset DIR --image-source event   # LLaVA-1.5 on the event image
  capture --resume traces/tiny-llava-20261122-120000      # continue a stopped run
\b
Then: analyze traces/ --html
"""


def _o(name: str, **kw: Any) -> Any:
    """A click option whose help text is the config field's, so it is written once."""
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, help=help_of(name), show_default=True, **kw)


D = CaptureConfig()


@click.command(epilog=EXAMPLES, context_settings=CONTEXT_SETTINGS)
@version_option("capture")
@_o("model", type=str, default=D.model, metavar="|".join(MODELS))
@_o("model_path", type=str, default=None)
@_o("dataset", type=click.Path(file_okay=False), default=None)
@_o("samples", type=int, default=D.samples)
@_o("out", type=click.Path(file_okay=False), default=D.out)
@_o("mode", type=click.Choice(["fused", "decoupled"]), default=D.mode)
@_o("device", type=str, default=D.device)
@_o("device_map", type=click.Choice(["auto"]), default=None)
@_o("dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), default=D.dtype)
@_o("max_new_tokens", type=int, default=D.max_new_tokens)
@_o("min_new_tokens", type=int, default=D.min_new_tokens)
@_o("warmup", type=int, default=D.warmup)
@_o("verify", type=click.Choice(["first", "all", "none"]), default=D.verify)
@_o("record_shapes", is_flag=True, default=D.record_shapes)
@_o("with_stack", is_flag=True, default=D.with_stack)
@_o("profile_memory", is_flag=True, default=D.profile_memory)
@_o("seed", type=int, default=D.seed)
@_o("threads", type=int, default=None)
@_o("weights", type=click.Choice(["pretrained", "random"]), default=D.weights)
@_o("attn_implementation", type=click.Choice(["eager", "sdpa", "flash_attention_2"]), default=None)
@_o("cache", type=click.Choice(["dynamic", "static"]), default=D.cache)
@_o("compile", is_flag=True, default=D.compile)
@_o("load_in", type=click.Choice(["4bit", "8bit"]), default=None)
@_o("event_input", type=click.Choice(["auto", "npy", "image"]), default=D.event_input)
@_o("frames", type=int, default=None)
@_o("image_source", type=click.Choice(["video", "event"]), default=None)
@_o("sensor_size", type=str, default=None, metavar="WxH")
@_o("prompt", type=str, default=None, metavar="TEXT")
@_o("do_sample", is_flag=True, default=D.do_sample)
@_o("temperature", type=float, default=None)
@_o("top_p", type=float, default=None)
@_o("repetition_penalty", type=float, default=None)
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue a stopped run folder (its run.json's options are used).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(resume: Path | None, quiet: bool, **options: Any) -> None:
    """Run a vision-language model's ordinary generate() under torch.profiler with stage labels
    (load, preprocess, vision, prefill, every decode step) and write one Chrome trace per sample
    plus run.json to traces/<run_id>/.

    Exit status: 0 all captured and checked, 1 some samples or checks failed, 2 bad input (one
    line), 130 interrupted (the run folder is resumable)."""
    cap: Capture | None = None
    bar: _Bar | None = None
    try:
        from capture.runner import Capture  # torch loads here, not for --help

        cap = Capture.prepare(CaptureConfig(**options), resume=resume)
        lead = cap.world.rank == 0  # under torchrun only rank 0 shows progress (its shard) and reports
        for warning in cap.dataset.warnings if lead else ():
            click.echo(f"warning: {warning}", err=True)
        bar = None if quiet or not lead else _Bar(len(cap.world.shard(range(cap.n_samples))))
        result = cap.run(progress=bar.update_sample if bar else None)
        cap.close()
    except CaptureError as exc:
        _close(bar)
        raise InputError(str(exc)) from None
    except KeyboardInterrupt:
        _close(bar)
        click.echo("\n" + _interrupted(cap), err=True)
        sys.exit(130)
    _close(bar)
    if not lead:  # rank 0 has merged this rank's part into run.json and reports the run
        return
    manifest = cap.folder.manifest
    _report(manifest, cap.folder.run_dir)
    for warning in manifest.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.failed or manifest.status != "complete":
        sys.exit(1)


def _interrupted(cap: Capture | None) -> str:
    """The Ctrl-C line; run.json says "interrupted" wherever the interrupt landed."""
    if cap is None:
        return "interrupted before the first sample; nothing was captured"
    folder = cap.folder
    if folder.manifest.status == "running":
        folder.manifest.status = "interrupted"
        with contextlib.suppress(CaptureError):
            folder.save()
    return (
        f"interrupted after {folder.manifest.completed} of {cap.n_samples} samples; "
        f"continue with: capture --resume {folder.run_dir}"
    )


def _close(bar: _Bar | None) -> None:
    if bar is not None:
        bar.close()


class _Bar:
    """tqdm bar with running means of TTFT and per-token latency."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        # A Ctrl-C inside tqdm's constructor leaves a half-made bar whose __del__ prints a
        # traceback; hold SIGINT until the bar exists (it is delivered right after).
        with sigint_deferred():
            self.tqdm = tqdm(total=total, unit="sample", file=sys.stderr, dynamic_ncols=True)
        self.ttft: list[float] = []
        self.tpot: list[float] = []

    def update_sample(self, outcome: SampleOutcome) -> None:
        if outcome.ttft_ms is not None:
            self.ttft.append(outcome.ttft_ms)
        if outcome.tpot_ms is not None:
            self.tpot.append(outcome.tpot_ms)
        post = {}
        if self.ttft:
            post["ttft_ms"] = f"{sum(self.ttft) / len(self.ttft):.1f}"
        if self.tpot:
            post["tpot_ms"] = f"{sum(self.tpot) / len(self.tpot):.2f}"
        if outcome.status != "ok":
            post["failed"] = outcome.index
        self.tqdm.set_postfix(post, refresh=False)
        self.tqdm.update(1)

    def close(self) -> None:
        self.tqdm.close()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Block SIGINT for a moment (POSIX main thread); a Ctrl-C meanwhile arrives at the end."""
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _report(manifest: RunManifest, run_dir: Path) -> None:
    """The end-of-run lines: where the traces are and how the checks went."""
    samples = manifest.samples
    click.echo(f"run {manifest.run_id}: {manifest.completed} of {len(samples)} samples captured -> {run_dir}")
    for s in samples:
        if s.status != "ok":
            click.echo(f"  sample {s.index} ({s.sample_id}) failed: {s.error}")
    if manifest.world_size > 1:
        ranks = ", ".join(f"rank {r.rank} {r.host} {r.device}: {r.completed}" for r in manifest.ranks)
        click.echo(f"  {manifest.world_size} ranks (samples captured by each): {ranks}")
    ver = manifest.verification
    ident, acc, ovh = ver.identity, ver.accounting, ver.overhead
    if ident is not None and ident.ok is not None:
        verdict = "identical" if ident.ok else f"DIFFERENT for samples {[m.index for m in ident.mismatches]}"
        click.echo(f"  identity: tokens with labels+profiler vs without: {verdict} (checked {ident.checked})")
    if acc is not None and acc.ok is not None:
        verdict = "ok" if acc.ok else f"FAILED for samples {acc.failed}"
        click.echo(f"  accounting: stages add up to wall time: {verdict} (max error {acc.max_error_ms} ms)")
    if ovh is not None and ovh.ratio is not None:
        click.echo(
            f"  overhead: profiled/unprofiled generate() = {ovh.ratio:.3f}x "
            f"({ovh.profiled_ms:.1f} vs {ovh.unprofiled_ms:.1f} ms)"
        )
    click.echo(f"next: analyze {run_dir} --html")
