"""The ``vlmrl-trl`` command: its version, help with defaults, one-line errors and the skip option of eval/score."""

from __future__ import annotations

import json

import pytest

from vlmrl_trl import __version__
from vlmrl_trl.cli import main
from vlmrl_trl.schema import REASON_IDS, render_decision

STOP = [0, 1, 0, 0]
RED = [int(r == "red_light") for r in REASON_IDS]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"vlmrl-trl {__version__}"


def test_subcommand_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["clip", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "optimizer steps (default: 200)" in text and "split to train on (default: train)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["predict", "--model", "outputs/never-trained", "--data", ".", "--out", "o"],
            "--model outputs/never-trained",
        ),
        (["predict", "--model", "m", "--data", "/data/bddoia", "--out", "o"], "_25k_images_actions.json"),
    ],
    ids=["model folder missing", "data folder missing"],
)
def test_errors_are_one_line_naming_the_option(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "model_name_or_path" not in err


def _write_predictions(path, truncated: bool):
    line = {"clip_id": "a", "text": render_decision(STOP, RED, "a red light"), "actions": STOP, "reasons": RED}
    lines = [json.dumps(line), json.dumps({**line, "clip_id": "b"}), json.dumps({**line, "actions": [1]})]
    text = "\n".join(lines) + "\n"
    path.write_text(text + (json.dumps(line)[:25] if truncated else ""))
    return path


def test_score_stops_at_a_bad_line_and_names_the_skip_option(tmp_path, capsys):
    preds = _write_predictions(tmp_path / "p.jsonl", truncated=True)
    assert main(["score", "--predictions", str(preds), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{preds}:3" in err and "--skip-invalid" in err


def test_eval_skip_invalid_counts_the_skipped_lines_a_truncated_last_one_included(tmp_path, capsys):
    preds = _write_predictions(tmp_path / "p.jsonl", truncated=True)
    assert main(["eval", "--predictions", str(preds), "--out", str(tmp_path), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 invalid lines" in out and f"{preds}:3" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 2


def test_a_line_that_is_not_utf8_is_named_by_file_and_line(tmp_path, capsys):
    preds = _write_predictions(tmp_path / "p.jsonl", truncated=False)
    lines = preds.read_bytes().splitlines(keepends=True)
    preds.write_bytes(lines[0] + b'{"clip_id": "\xff"}\n' + lines[1])
    assert main(["score", "--predictions", str(preds), "--out", str(tmp_path)]) == 2
    assert f"{preds}:2: not UTF-8 text (byte 13: b'\\xff')" in capsys.readouterr().err
    assert main(["eval", "--predictions", str(preds), "--out", str(tmp_path), "--skip-invalid"]) == 0
    assert f"skipped 1 invalid line of {preds} (first: {preds}:2: not UTF-8" in capsys.readouterr().out


def test_eval_shows_clips_whose_frames_are_not_images_without_them_and_counts_them(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    line = {"text": render_decision(STOP, RED, "a red light"), "actions": STOP, "reasons": RED}
    records = [
        {**line, "clip_id": "int", "frames": 3},
        {**line, "clip_id": "text", "frames": [str(tmp_path / "notes.txt")]},
        {**line, "clip_id": "listed-int", "frames": [3]},
    ]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["eval", "--predictions", str(preds), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "frames not shown for 3 reported clips" in out
    assert (tmp_path / "out" / "report.html").is_file()
