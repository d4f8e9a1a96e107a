"""The walkthrough notebook: stored clean, and it runs top to bottom on a tables folder."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from report_fixtures import RUN_CPU, RUN_GPU, make_tables, write_parquet_tables

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "stagetrace_walkthrough.ipynb"


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(str(out["data"].get("text/plain", "")))
    return "\n".join(parts)


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert any("STAGETRACE_ANALYSIS_DIR" in c.source for c in code)


def test_notebook_runs_on_analysis_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    analysis = write_parquet_tables(make_tables(tmp_path, gpu=True), tmp_path / "analysis")
    monkeypatch.setenv("STAGETRACE_ANALYSIS_DIR", str(analysis))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # one extra cell, in memory only: which python runs the kernel
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('KERNEL', sys.executable)"))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    text = _outputs_text(nb)
    # GPU run: decode steps 1-3 are launch-bound (fixture verdicts: GPU busy 4%), the others device-bound
    assert f"{RUN_GPU}: launch-bound decode steps [1, 2, 3] of 7" in text
    # CPU run: aten::linear, 4 calls x 200 us per sample, 4 samples over 28 decode steps
    assert f"{RUN_CPU}: aten::linear dominates a decode step (0.114 ms per step)" in text
    kernel_python = next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("KERNEL "))
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve()


def test_notebook_says_where_tables_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("STAGETRACE_ANALYSIS_DIR", str(tmp_path / "nowhere"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = nb.cells[:2]  # the intro and the loading cell
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="STAGETRACE_ANALYSIS_DIR"):
        client.execute()


def test_notebook_runs_on_tables_from_tiny_captures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run
) -> None:
    """The issue's end-to-end case: capture two tiny models, analyze, execute the notebook."""
    nbclient = pytest.importorskip("nbclient")
    from analyze.tables import analyze_paths, write_tables

    runs = [tiny_run("tiny-llava"), tiny_run("tiny-eventgpt")]
    tables, _ = analyze_paths(runs)
    write_tables(tables, tmp_path / "analysis")
    monkeypatch.setenv("STAGETRACE_ANALYSIS_DIR", str(tmp_path / "analysis"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    text = _outputs_text(nb)
    for run_dir in runs:  # CPU traces: each run names the op that dominates its decode steps
        assert f"{run_dir.name}: aten::" in text and "dominates a decode step" in text
