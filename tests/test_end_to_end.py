"""The whole pipeline on tiny models: one dataset folder, three models, one analyze, one report."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from analyze import report
from analyze.cli import main as analyze_main
from analyze.tables import read_tables
from capture.cli import main as capture_main
from capture.data.synthetic import write_synthetic_folder
from tests.conftest import TINY_MODELS


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same DSEC-layout folder captured with every tiny model (events, clip frames, one frame)."""
    root = tmp_path_factory.mktemp("e2e")
    data = write_synthetic_folder(root / "dsec", n_samples=2)
    for model in TINY_MODELS:
        args = [
            "--model",
            model,
            "--dataset",
            str(data),
            "--samples",
            "2",
            "--max-new-tokens",
            "3",
            "--min-new-tokens",
            "3",
            "--warmup",
            "0",
            "--out",
            str(root / "traces"),
            "-q",
        ]
        result = CliRunner().invoke(capture_main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root


def test_one_analyze_compares_three_models_on_the_same_samples(three_models: Path) -> None:
    out = three_models / "analysis"
    result = CliRunner().invoke(analyze_main, [str(three_models / "traces"), "--html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tables = read_tables(out)
    assert sorted(tables.runs["model"]) == sorted(TINY_MODELS)
    assert tables.runs["identity_ok"].all() and tables.runs["accounting_ok"].all()
    samples = tables.samples
    assert len(samples) == 6 and (samples["vision_ms"] > 0).all() and (samples["tokens"] == 3).all()
    stage_cols = [
        "load_ms",
        "preprocess_ms",
        "vision_ms",
        "prefill_ms",
        "decode_ms",
        "other_ms",
        "unlabelled_ms",
    ]
    assert samples[stage_cols].sum(axis=1).to_numpy() == pytest.approx(
        samples["total_ms"].to_numpy(), rel=1e-9
    )
    for model in TINY_MODELS:
        assert model in result.output
    assert (out / "report.html").stat().st_size > 100_000


def test_the_report_shows_every_model_in_every_comparison_figure(three_models: Path) -> None:
    from analyze.tables import analyze_paths

    tables, _ = analyze_paths([three_models / "traces"])
    rep = report.render_report(tables, None)
    run_ids = set(tables.runs["run_id"])
    assert rep.comparison_ids
    for div_id in rep.comparison_ids:
        names = {trace.name for trace in rep.figures[div_id].data}
        assert run_ids <= names, div_id
