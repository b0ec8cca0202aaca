"""``vlmrl-trl data``: synth, check and extract-frames from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmrl_trl.cli import main


def test_synth_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--train", "4", "--val", "2", "--test", "2", "--seed", "3"]) == 0
    assert "wrote 8 clips" in capsys.readouterr().out
    assert len(json.loads((out / "val_descriptions.json").read_text())) == 2

    assert main(["data", "check", "--root", str(out), "--split", "val"]) == 0
    printed = capsys.readouterr().out
    assert "val: 2 clips, frames per clip {4: 2}, 2 with a scene description" in printed
    assert "move_forward" in printed and "solid_right_line" in printed


def test_synth_refuses_an_existing_set_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "synth", "--out", str(tmp_path), "--train", "1", "--val", "1", "--test", "1"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_check_reports_invalid_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["data", "synth", "--out", str(tmp_path), "--train", "1", "--val", "2", "--test", "1"])
    (tmp_path / "data" / "synth_val_000001.jpg").unlink()
    assert main(["data", "check", "--root", str(tmp_path), "--split", "val"]) == 2
    assert "synth_val_000001.jpg" in capsys.readouterr().err


def test_extract_frames_fails_when_no_clip_has_a_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --videos folder holding none of the clips (a wrong path, typically) is an error, not a quiet success."""
    main(["data", "synth", "--out", str(tmp_path / "set"), "--train", "0", "--val", "2", "--test", "0"])
    capsys.readouterr()
    (tmp_path / "videos").mkdir()
    args = ["data", "extract-frames", "--videos", str(tmp_path / "videos"), "--root", str(tmp_path / "set")]
    assert main([*args, "--split", "val", "--overwrite"]) == 2
    captured = capsys.readouterr()
    assert "0 already present, 2 without a video, 0 failed" in captured.out
    error = captured.err.strip()
    assert error.count("\n") == 0 and error.startswith("vlmrl-trl data: error: no clip could be extracted: ")
    assert f"2 without a video under --videos {tmp_path / 'videos'}" in error
