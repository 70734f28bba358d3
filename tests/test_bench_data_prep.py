"""The data-prep benchmark runs at a chosen frame size and files its figures under that size."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from benchmarks import data_prep


def run(tmp_path: Path, *extra: str) -> str:
    markdown = tmp_path / "BENCHMARKS.md"
    code = data_prep.main(["--clips", "24", "--small-fraction", "0.5", "--min-small-clips", "1",
                           "--num-proc", "1", "--work", str(tmp_path / "work"), "--markdown", str(markdown),
                           *extra])
    assert code == 0
    return markdown.read_text()


def test_frame_size_reaches_the_world_and_names_its_own_section(tmp_path):
    text = run(tmp_path, "--frame-size", "320x180")
    with Image.open(next((tmp_path / "work" / "synth-24-320x180" / "data").glob("*.jpg"))) as frame:
        assert frame.size == (320, 180)
    start, end = data_prep.section_markers("320x180")
    assert start in text and end in text
    assert "## Data preparation at 320x180" in text
    assert "kB per frame" in text
    # a run at the default size adds its own section and leaves this one
    text = run(tmp_path)
    assert start in text and data_prep.section_markers(data_prep.DEFAULT_FRAME_SIZE)[0] in text
    assert "| 12 |" in text and "| 24 |" in text


def test_bad_frame_size_is_a_clear_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_prep.main(["--frame-size", "1280by720", "--work", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--frame-size '1280by720'" in capsys.readouterr().err
