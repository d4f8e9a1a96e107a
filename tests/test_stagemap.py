"""stagemap: --stage options, TOML files, priority, and the built-in vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze import vocabulary as voc
from analyze.errors import AnalyzeError
from analyze.stagemap import (
    StageMap,
    combine,
    label_stage,
    load_stage_map,
    parse_stage_option,
    stage_map_from_options,
)


def test_option_splits_at_the_first_equals_sign() -> None:
    assert parse_stage_option("fwd=## forward ##") == ("fwd", "## forward ##")
    assert parse_stage_option(" a = x=y") == ("a", " x=y")


@pytest.mark.parametrize("bad", ["forward", "=regex", "name="])
def test_bad_option_is_a_one_line_error(bad: str) -> None:
    with pytest.raises(AnalyzeError, match="NAME=REGEX"):
        parse_stage_option(bad)


def test_first_matching_regex_wins_and_search_is_unanchored() -> None:
    m = stage_map_from_options(["enc=encoder", "any=##"])
    assert m.stage_of("## encoder fp8 None ##") == "enc"
    assert m.stage_of("## decoder fp8 None ##") == "any"
    assert m.stage_of("aten::mm") is None


def test_bad_regex_and_reserved_names_are_rejected() -> None:
    with pytest.raises(AnalyzeError, match="bad regex"):
        StageMap((("x", "(unclosed"),))
    with pytest.raises(AnalyzeError, match="reserved"):
        StageMap((("unlabelled", "x"),))
    with pytest.raises(AnalyzeError, match="empty"):
        StageMap(())


def test_toml_file_keeps_its_order(tmp_path: Path) -> None:
    path = tmp_path / "stages.toml"
    path.write_text('[stages]\nencoder = "## encoder"\nforward = "## forward ##"\n"my stage" = "^x$"\n')
    m = load_stage_map(path)
    assert m.stages == (("encoder", "## encoder"), ("forward", "## forward ##"), ("my stage", "^x$"))
    assert m.stage_of("x") == "my stage"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stages = 3", r"\[stages\] table"),
        ('[other]\na = "b"', r"\[stages\] table"),
        ("[stages]\na = 1", "must map to a regex string"),
        ("[stages\n", "not valid TOML"),
    ],
)
def test_bad_toml_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(AnalyzeError, match=message) as err:
        load_stage_map(path)
    assert str(path) in str(err.value)


def test_missing_toml_file(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="cannot read stage map"):
        load_stage_map(tmp_path / "nope.toml")


def test_command_line_entries_come_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[stages]\nfile = "forward"\n')
    m = combine(["cli=forward"], path)
    assert m is not None and m.stage_of("## forward ##") == "cli"
    assert combine([], path) == load_stage_map(path)
    assert combine([], None) is None


def test_builtin_labels_map_to_attributed_stages() -> None:
    assert label_stage("stage3:vision/tower", None) == voc.VISION_TOWER
    assert label_stage("stage4:decode#7", None) == voc.DECODE
    assert label_stage("stage4:generate", None) == voc.OTHER
    assert label_stage("sample#3", None) == voc.UNLABELLED
    assert label_stage("## forward ##", None) is None
    # With a stage map, only the map counts.
    m = StageMap((("fwd", "forward"),))
    assert label_stage("stage3:vision", m) is None
    assert label_stage("## forward ##", m) == "fwd"
