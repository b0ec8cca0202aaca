"""Frame extraction from videos (PyAV) into the frames/<clip>/<i>.jpg layout the loader reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmrl_trl.cli import main
from vlmrl_trl.data import extract_clip_frames, extract_frames, load_bddoia
from vlmrl_trl.data.frames import ExtractionReport, segment_end_time

STEP = 8  # gray-level step between consecutive frames of a test video


def write_video(path: Path, num_frames: int, fps: int, step: int = STEP) -> Path:
    """An MPEG-4 video whose frame ``i`` is uniformly gray at level ``i * step``, so frames can be told apart."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.bit_rate = 20_000_000  # near-lossless, so gray levels survive the encoding
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * step, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_indices(paths: list[Path], step: int = STEP) -> list[int]:
    return [round(float(np.asarray(Image.open(p)).mean()) / step) for p in paths]


def test_frames_end_at_the_last_frame_spaced_by_fps(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=30, fps=10)  # 3 s, last frame at 2.9 s
    paths = extract_clip_frames(video, tmp_path / "out", count=3, fps=2)
    assert [p.name for p in paths] == ["0.jpg", "1.jpg", "2.jpg"]
    assert frame_indices(paths) == [19, 24, 29]


def test_frames_end_at_a_given_time(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=30, fps=10)
    paths = extract_clip_frames(video, tmp_path / "out", count=4, fps=5, end_time=2.0, max_side=32)
    assert frame_indices(paths) == [14, 16, 18, 20]
    assert Image.open(paths[0]).size == (32, 24)


def test_a_video_too_short_for_the_span_is_an_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=30, fps=10)
    with pytest.raises(ValueError, match="span 4.50 s"):
        extract_clip_frames(video, tmp_path / "out", count=10, fps=2)
    with pytest.raises(ValueError, match="before the annotated time 5.00 s"):
        extract_clip_frames(video, tmp_path / "out", count=2, fps=2, end_time=5.0)
    assert not (tmp_path / "out").exists()


def test_segment_end_time_reads_the_clip_suffix() -> None:
    assert segment_end_time("b1c9c847-3bda4659") == 5.0
    assert segment_end_time("b1c9c847-3bda4659_1") == 10.0
    assert segment_end_time("b1c9c847-3bda4659_3", clip_seconds=4.0) == 16.0


def test_extract_frames_for_label_files_feeds_the_loader(tmp_path: Path) -> None:
    root = tmp_path / "bddoia"
    (root / "data").mkdir(parents=True)
    names = ["short.jpg", "long_1.jpg", "novideo.jpg"]
    actions = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"id": i, "category": [1, 0, 0, 0]} for i in range(len(names))],
    }
    (root / "val_25k_images_actions.json").write_text(json.dumps(actions))
    (root / "val_25k_images_reasons.json").write_text(
        json.dumps([{"file_name": n, "reason": [1] + [0] * 20} for n in names])
    )
    for n in names:
        Image.new("RGB", (8, 8)).save(root / "data" / n)
    write_video(tmp_path / "videos" / "short.mp4", num_frames=25, fps=10)  # a 2.5 s clip video: its last frame
    write_video(tmp_path / "videos" / "sub" / "long.mov", num_frames=60, fps=10, step=4)  # 6 s: a full video

    report = extract_frames(tmp_path / "videos", root, splits=["val"], num_frames=3, fps=2, clip_seconds=2.0)
    assert (report.extracted, report.missing_video, report.failed) == (2, ["novideo"], {})
    assert frame_indices(sorted((root / "frames" / "short").glob("*.jpg"))) == [14, 19, 24]
    assert frame_indices(sorted((root / "frames" / "long_1").glob("*.jpg")), step=4) == [30, 35, 40]  # _1: 4.0 s

    again = extract_frames(tmp_path / "videos", root, splits=["val"], num_frames=3, fps=2, clip_seconds=2.0)
    assert again.skipped_existing == 2 and again.extracted == 0

    with pytest.warns(UserWarning, match="1 of 3 clips have fewer than 3 frames"):
        ds = load_bddoia(root, "val", num_frames=3)
    assert ds["num_frames"] == [3, 3, 1]


def make_labels(root: Path, names: list[str], split: str = "val") -> Path:
    """Label files for clips ``names`` (no images: extraction only reads the clip ids)."""
    root.mkdir(parents=True, exist_ok=True)
    actions = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"id": i, "category": [1, 0, 0, 0]} for i in range(len(names))],
    }
    (root / f"{split}_25k_images_actions.json").write_text(json.dumps(actions))
    return root


@pytest.mark.parametrize("fps", [0.0, -2.0, float("nan"), float("inf")])
def test_a_bad_fps_is_rejected_before_any_clip(tmp_path: Path, fps: float) -> None:
    root = make_labels(tmp_path / "bddoia", ["short.jpg"])
    write_video(tmp_path / "videos" / "short.mp4", num_frames=25, fps=10)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        extract_frames(tmp_path / "videos", root, splits=["val"], fps=fps)
    with pytest.raises(ValueError, match="fps must be a positive number"):  # not a missing-folder error first
        extract_frames(tmp_path / "nowhere", root, splits=["val"], fps=fps)
    assert not (root / "frames").exists()


@pytest.mark.parametrize("fps", ["0", "-1", "nan"])
def test_cli_rejects_a_bad_fps_up_front_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fps: str
) -> None:
    root = make_labels(tmp_path / "bddoia", ["short.jpg"])
    write_video(tmp_path / "videos" / "short.mp4", num_frames=25, fps=10)
    args = ["data", "extract-frames", "--videos", str(tmp_path / "videos"), "--root", str(root), f"--fps={fps}"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (root / "frames").exists()  # no clip was tried
    assert (
        captured.err.strip()
        == f"vlmrl-trl data: error: --fps must be a positive number of frames per second, got {float(fps)}"
    )


def test_cli_partial_run_succeeds_and_counts_the_clips_without_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_labels(tmp_path / "bddoia", ["short.jpg", "novideo.jpg"])
    write_video(tmp_path / "videos" / "short.mp4", num_frames=25, fps=10)
    args = [
        "data",
        "extract-frames",
        "--videos",
        str(tmp_path / "videos"),
        "--root",
        str(root),
        "--split",
        "val",
        "--num-frames",
        "2",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "extracted 1 clips, 0 already present, 1 without a video, 0 failed" in captured.out
    assert captured.err == "" and len(list((root / "frames" / "short").glob("*.jpg"))) == 2
    assert main(args) == 0  # a re-run finds the clip already present: nothing new, still a success
    assert "extracted 0 clips, 1 already present, 1 without a video" in capsys.readouterr().out


def test_cli_fails_when_every_clip_fails_or_lacks_a_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_labels(tmp_path / "bddoia", ["bad.jpg", "novideo.jpg"])
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"not a video")
    assert (
        main(["data", "extract-frames", "--videos", str(tmp_path / "videos"), "--root", str(root), "--split=val"]) == 2
    )
    captured = capsys.readouterr()
    assert "failed bad:" in captured.out
    error = captured.err.strip()
    assert "\n" not in error and "no clip could be extracted: 1 without a video under --videos" in error
    assert "novideo.mov" in error and error.endswith("1 failed (see above)")


def test_report_tells_a_run_that_produced_nothing() -> None:
    assert ExtractionReport(missing_video=["a"], failed={"b": "x"}).nothing_extracted
    assert not ExtractionReport(extracted=1, missing_video=["a"]).nothing_extracted
    assert not ExtractionReport(skipped_existing=1, failed={"b": "x"}).nothing_extracted
    assert not ExtractionReport().nothing_extracted  # no clips asked for: nothing failed


def test_a_broken_video_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "bddoia"
    root.mkdir()
    actions = {"images": [{"id": 0, "file_name": "bad.jpg"}], "annotations": [{"id": 0, "category": [1, 0, 0, 0]}]}
    (root / "test_25k_images_actions.json").write_text(json.dumps(actions))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"not a video")
    report = extract_frames(tmp_path / "videos", root, splits=["test"])
    assert list(report.failed) == ["bad"] and "bad.mp4" in report.failed["bad"]
