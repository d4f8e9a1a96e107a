"""terminal: the summary text (rich tables, no colour codes), and the same headline as report.html."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from kineto_builders import write_mixed_runs, write_verdict_runs
from report_fixtures import RUN_CPU, RUN_GPU, make_tables

from analyze import report
from analyze.tables import Tables, analyze_paths
from analyze.terminal import format_summary


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("traces")
    write_mixed_runs(root)
    return analyze_paths([root])[0]


def _skewed(root: Path) -> Tables:
    """The report fixture with one slow sample in the CPU run: TTFT 10, 12, 14, 40 (median 13,
    mean 19) and TPOT 4, 4, 5, 9 (median 4.5, mean 5.5)."""
    t = make_tables(root)
    samples = t.samples.copy()
    cpu = samples["run_id"] == RUN_CPU
    samples.loc[cpu, "ttft_ms"] = [10.0, 12.0, 14.0, 40.0]
    samples.loc[cpu, "tpot_ms"] = [4.0, 4.0, 5.0, 9.0]
    return dataclasses.replace(t, samples=samples)


def _block(text: str, run_id: str) -> str:
    return next(b for b in text.split("\n\n") if b.startswith(f"run {run_id} "))


def test_format_summary_has_real_numbers(tables: Tables) -> None:
    text = format_summary(tables)
    assert "run gpu  model tiny-llava  fused  cuda  Synthetic GPU  (2 traces)" in text
    assert "TTFT 0.320 ms (median of 2 samples; mean 0.320, p90 0.320)" in text
    tpot = "TPOT 0.120 ms (median of 2 samples; over 4 decode tokens: mean 0.120, p90 0.150, p99 0.150)"
    assert tpot in text
    assert "4,285.7 tokens/s (median of 2 samples; 6 tokens, device timeline)" in text
    assert "vision vs LLM (mean of samples): host 25.7% / 74.3%, GPU kernels 46.6% / 53.4%" in text
    gpu_block = _block(text, "gpu")
    line = next(x for x in gpu_block.splitlines() if x.strip().startswith("stage4:decode "))
    assert line.split() == ["stage4:decode", "0.200", "0.200", "0.200", "0.125", "20.0%"]
    assert "host timeline" in text and "no generation steps" in text
    assert text.split("\n\n")[-1].startswith("warnings:\n  - run foreign")


def test_stage_table_layout(tables: Tables) -> None:
    lines = _block(format_summary(tables), "gpu").splitlines()
    head = lines[1]
    assert re.split(r"\s{2,}", head.strip()) == [
        "stage",
        "self ms (mean)",
        "p50",
        "p90",
        "GPU kernel ms (mean)",
        "share",
    ]
    assert set(lines[2].strip()) == {"-"} and len(lines[2]) == len(head)  # a rule under the header
    total_at = next(i for i, x in enumerate(lines) if x.strip().startswith("total (wall)"))
    assert set(lines[total_at - 1].strip()) == {"-"}  # and one above the total row
    # numbers are right-aligned: every value of the share column ends where its header ends
    end = head.index("share") + len("share")
    body = lines[3 : total_at - 1]
    assert body and all(len(x) == end and x.endswith("%") for x in body)
    assert all(x == x.rstrip() and x.startswith("  ") for x in lines[1:])


def test_no_colour_codes_and_literal_brackets(tables: Tables) -> None:
    stages = tables.stages.assign(stage=tables.stages["stage"].replace("stage4:decode", "[bold]decode[/]"))
    text = format_summary(dataclasses.replace(tables, stages=stages))
    assert "\x1b[" not in text
    assert "[bold]decode[/]" in text  # a stage name is printed as is, never read as rich markup


def test_terminal_and_report_show_the_same_median_ttft_and_tpot(tmp_path: Path) -> None:
    skewed = _skewed(tmp_path)
    text = format_summary(skewed)
    cpu = _block(text, RUN_CPU)
    assert "TTFT 13.000 ms (median of 4 samples; mean 19.000, p90 32.200)" in cpu
    assert re.search(r"TPOT 4\.500 ms \(median of 4 samples;", cpu)
    assert "TTFT 26.000 ms" in _block(text, RUN_GPU)
    page = report.render_report(skewed, None).html
    glance = page[page.index('id="glance"') : page.index('id="compare"')]
    row = next(r for r in glance.split("<tr>") if f"<b>{RUN_CPU}</b>" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    # run, samples, wall ms, TTFT ms, TPOT ms, ...
    assert cells[3] == "13.00" and cells[4] == "4.50"
    assert "19.00" not in glance  # the mean is not the report's headline


def test_summary_does_no_io(tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    format_summary(tables)
    assert list(tmp_path.iterdir()) == []


def test_verdict_lines_name_the_bound_the_evidence_and_the_remedy(tmp_path: Path) -> None:
    text = format_summary(analyze_paths(write_verdict_runs(tmp_path))[0])
    eager = _block(text, "eager").splitlines()
    at = eager.index("  verdicts (what bounds each part; the thresholds are in the README):")
    assert [x.strip() for x in eager[at + 1 :]] == [
        "stage2:preprocess: host-bound in 1/1 samples (no device work) -> try fewer --frames or a "
        "faster preprocessing path",
        "prefill: device-bound in 1/1 steps (GPU busy 100% of each step, median) -> try "
        "--attn-implementation sdpa|flash_attention_2 or a smaller --dtype",
        "decode: launch-bound in 3/3 steps (GPU busy 4% of each step, median) -> try --cache static "
        "--compile (CUDA graphs: one launch per step)",
        "stage4:other: device-bound in 1/1 samples (GPU busy 99% of its span, median)",
    ]
    graphs = _block(text, "graphs")
    assert (
        "decode: device-bound in 3/3 steps (GPU busy 100% of each step, median) -> try a smaller --dtype "
        "or --load-in 4bit|8bit (decode reads every weight per token)"
    ) in graphs


def test_cpu_only_run_gets_one_host_bound_line(tables: Tables) -> None:
    cpu = _block(format_summary(tables), "cpu")
    assert cpu.splitlines()[-1] == "  verdict: host-bound throughout (CPU-only trace: no GPU verdict applies)"
    assert "launch-bound" not in cpu and "device-bound" not in cpu


def test_prefill_tokens_and_kv_cache_beside_ttft_and_tpot(tmp_path: Path, tables: Tables) -> None:
    text = format_summary(make_tables(tmp_path))
    gpu = _block(text, RUN_GPU).splitlines()
    line = next(x for x in gpu if "prefill" in x and "tokens," in x)
    assert line.strip() == (
        "prefill 639 tokens, KV cache 25.000 MB, peak memory 115.0 MB (median of 4 samples, from run.json)"
    )
    assert gpu.index(line) == next(i for i, x in enumerate(gpu) if "TPOT" in x) + 2
    assert "peak memory" not in _block(text, RUN_CPU)  # NaN: left out, not printed as nan
    assert "from run.json" not in format_summary(tables)  # traces without these fields
