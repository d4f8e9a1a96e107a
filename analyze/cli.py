"""``analyze``: traces -> stage tables (Parquet), a terminal summary, and optionally report.html."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from analyze.cliutil import CONTEXT_SETTINGS, InputError, version_option
from analyze.contract import DEFAULT_MAX_TRACE_MB
from analyze.discover import OUTPUT_DIR
from analyze.errors import AnalyzeError
from analyze.stagemap import combine

# Start-up is part of every run's time (a single trace takes well under a second), so each path
# imports only what it uses: pandas and the tables here, rich for the summary unless --quiet,
# plotly, Jinja2 and HTA only with --html.

if TYPE_CHECKING:
    from analyze.incremental import AnalysisResult

EXAMPLES = """
\b
Examples:
  analyze traces/                                   # every run folder under traces/
  analyze traces/tiny-llava-20261122-231500 --html  # one run, plus report.html
  analyze traces/run-a traces/run-b --out cmp/      # compare two runs
  analyze traces/ --html --no-hta                   # report.html without HTA's GPU breakdowns
  analyze traces/ --jobs 4                          # analyse traces in 4 processes
  analyze traces/ --scheduler tcp://10.0.0.5:8786   # per-trace work on a Dask cluster
  analyze traces/ --fresh                           # recompute every trace (no reuse)
  analyze trace.json.gz --stage 'forward=## forward ##' --stage 'backward=## backward ##'
  analyze profiles/ --stage-map stages.toml         # [stages] NAME = "REGEX" entries
\b
Tables go to <first PATH>/analysis/tables/ (or --out): runs, samples, stages, tokens, ops,
each a Parquet dataset partitioned by run_id. Running again into the same folder reuses the rows
of every unchanged trace.
"""



def traces_line(done: AnalysisResult) -> str:
    """``traces: A analysed, R reused`` (then skipped and dropped traces, when there were any)."""
    line = f"traces: {done.analysed} analysed, {done.reused} reused"
    extra = [f"{n} {what}" for n, what in ((done.skipped, "skipped"), (done.dropped, "dropped")) if n]
    return line + (f" ({', '.join(extra)})" if extra else "")


def default_out_dir(first: Path) -> Path:
    """``<first PATH>/analysis``, or beside a trace file given on its own."""
    first = Path(first)
    return (first.parent if first.is_file() else first) / OUTPUT_DIR


@click.command(
    epilog=EXAMPLES, context_settings=CONTEXT_SETTINGS
)
@version_option("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder for the tables and report.html  [default: <first PATH>/analysis]",
)  # fmt: skip
@click.option("--html", is_flag=True, help="Also write report.html (self-contained plotly report).")
@click.option("--open", "open_report", is_flag=True, help="Open report.html in a browser (implies --html).")
@click.option("--no-hta", "no_hta", is_flag=True,
              help="Leave HolisticTraceAnalysis's GPU breakdowns out of report.html "
                   "(HTA re-reads the traces; slow on long runs).")  # fmt: skip
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Analyse traces in this many processes.")  # fmt: skip
@click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
              help="Send the per-trace work to this Dask scheduler instead (its workers must see the "
                   "traces and the output folder at the same paths: a shared filesystem).")  # fmt: skip
@click.option("--fresh", is_flag=True,
              help="Analyse every trace again instead of reusing the rows of unchanged ones.")  # fmt: skip
@click.option("--stage", "stages", multiple=True, metavar="NAME=REGEX",
              help="Stage map entry for foreign traces: user_annotation names matching REGEX "
                   "become stage NAME (repeatable; replaces the built-in labels).")  # fmt: skip
@click.option("--stage-map", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='TOML file with a [stages] table of NAME = "REGEX" (after any --stage).')  # fmt: skip
@click.option("--max-trace-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_TRACE_MB,
              show_default=True,
              help="Refuse (skip, with a warning) a trace larger than this uncompressed; a .json.gz is "
                   "inflated as a stream and refused as soon as it passes the limit.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary; warnings only.")
def main(
    paths: tuple[Path, ...],
    out: Path | None,
    html: bool,
    open_report: bool,
    no_hta: bool,
    jobs: int,
    scheduler: str | None,
    fresh: bool,
    stages: tuple[str, ...],
    stage_map: Path | None,
    max_trace_mb: float,
    quiet: bool,
) -> None:
    """Attribute the work in Kineto traces to stages and write tables.

    PATH is a run folder made by `capture`, a folder of run folders, or a single
    .json/.json.gz trace (any torch.profiler trace; use --stage for its ranges).
    """
    try:
        from analyze.incremental import analyze_into
        from analyze.store import read_snapshot

        mapping = combine(stages, stage_map)
        out_dir = out if out is not None else default_out_dir(paths[0])
        done = analyze_into(
            list(paths),
            out_dir,
            stage_map=mapping,
            jobs=jobs,
            scheduler=scheduler,
            fresh=fresh,
            progress=not quiet and sys.stderr.isatty(),
            max_trace_mb=max_trace_mb,
        )
        for warning in done.warnings:
            click.echo(f"warning: {warning}", err=True)
        report_wanted = html or open_report
        if quiet and not report_wanted:
            return
        needed = None if report_wanted else ("runs", "samples", "stages", "tokens")  # no ops for the summary
        tables = read_snapshot(done.snapshot, needed)
        if not quiet:
            from analyze.terminal import format_summary

            click.echo(format_summary(tables))
            click.echo(f"\n{traces_line(done)}")
            click.echo(f"tables: {out_dir}/tables/{{runs,samples,stages,tokens,ops}}/ (Parquet, by run_id)")
        if report_wanted:
            from analyze import hta_breakdown
            from analyze.report import write_report

            hta = None if no_hta else hta_breakdown.compute_hta(tables)
            report = write_report(tables, hta, out_dir / "report.html")
            click.echo(f"report: {report}")
            if open_report:
                import webbrowser

                webbrowser.open(Path(report).resolve().as_uri())
    except AnalyzeError as exc:
        warnings = getattr(exc, "warnings", [])
        if len(paths) == 1 and Path(paths[0]).is_file():  # the error quotes the one reason
            warnings = [w for w in warnings if not w.endswith(" - skipped")]
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        raise InputError(str(exc)) from None
