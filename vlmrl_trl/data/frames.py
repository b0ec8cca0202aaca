"""Cut the frames before each BDD-OIA annotated frame out of the BDD100K / BDD-OIA videos (PyAV, no ffmpeg binary).

BDD-OIA ships one JPG per clip (the clip's last frame); a multi-frame model also needs the frames before it.
For every clip of the label files this writes ``frames/<clip>/<i>.jpg``, ``i = 0..count-1`` oldest first,
taken ``1/fps`` seconds apart and ending at the annotated frame, the layout :func:`load_bddoia` reads.

Which frame is the annotated one:

* a clip video (``<clip>.<ext>``, at most ``clip_seconds + 1`` s long, as in BDD-OIA's video package): its
  last frame;
* a full BDD100K video (``<video>.<ext>``, 40 s): ``end_time`` when given, otherwise the end of the clip's
  5-second segment, ``(k + 1) * clip_seconds`` for a clip named ``<video>_<k>`` and ``clip_seconds`` for a
  plain ``<video>``. This reading of the ``_1``/``_3`` suffixes is an assumption (the release does not
  document it); check a few extracted last frames against ``data/<clip>.jpg`` before trusting it.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from .bddoia import SPLITS, _read_json, _unsafe_name, label_files

VIDEO_EXTENSIONS: tuple[str, ...] = (".mov", ".mp4", ".avi", ".mkv")
CLIP_SECONDS = 5.0
DEFAULT_FPS = 2.0  # 0.5 s between frames, the synthetic clips' frame interval
_SUFFIX = re.compile(r"^(?P<video>.+)_(?P<k>\d+)$")


@dataclass
class ExtractionReport:
    """What :func:`extract_frames` did: clips written, already present, without a video, and failures."""

    extracted: int = 0
    skipped_existing: int = 0
    missing_video: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"extracted {self.extracted} clips, {self.skipped_existing} already present, "
            f"{len(self.missing_video)} without a video, {len(self.failed)} failed"
        )

    @property
    def nothing_extracted(self) -> bool:
        """Whether clips were asked for but none has its frames now, so the run produced nothing usable."""
        return not (self.extracted or self.skipped_existing) and bool(self.missing_video or self.failed)


def check_fps(fps: float, name: str = "fps") -> None:
    """Reject a frame rate that is not a finite positive number, naming the option as the caller spells it."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{name} must be a positive number of frames per second, got {fps}")


def index_videos(videos_dir: str | Path) -> dict[str, Path]:
    """Map each video's name (without extension) to its path, searching ``videos_dir`` recursively."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"videos folder not found: {videos_dir}")
    return {p.stem: p for p in sorted(videos_dir.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()}


def segment_end_time(clip_id: str, clip_seconds: float = CLIP_SECONDS) -> float:
    """Assumed time (s) of the annotated frame of ``clip_id`` inside its full-length video (see module doc)."""
    match = _SUFFIX.match(clip_id)
    k = int(match.group("k")) if match else 0
    return (k + 1) * clip_seconds


def _last_frame_time(container, stream) -> float:
    last = None
    for packet in container.demux(stream):
        if packet.pts is not None and (last is None or packet.pts > last):
            last = packet.pts
    if last is None:
        raise ValueError("the video has no frames")
    return float(last * stream.time_base)


def extract_clip_frames(
    video: str | Path,
    out_dir: str | Path,
    *,
    count: int,
    fps: float = DEFAULT_FPS,
    end_time: float | None = None,
    max_side: int | None = None,
) -> list[Path]:
    """Write ``count`` frames ``1/fps`` s apart ending at ``end_time`` (None: the last frame) as ``<i>.jpg``.

    Each target time gets the decoded frame nearest to it. Raises ValueError when the video does not cover
    the requested span. Frames are written to a temporary folder renamed at the end, so an interrupted run
    leaves no half-filled clip folder.
    """
    import av

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    check_fps(fps)
    video, out_dir = Path(video), Path(out_dir)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        end = _last_frame_time(container, stream) if end_time is None else float(end_time)
        targets = [end - (count - 1 - i) / fps for i in range(count)]
        if targets[0] < -0.5 / fps:
            raise ValueError(
                f"{video}: {count} frames at {fps} fps span {targets[-1] - targets[0]:.2f} s, more than the "
                f"{end:.2f} s of video before the annotated frame"
            )
        targets = [max(t, 0.0) for t in targets]
        container.seek(max(0, int((targets[0] - 1.0) / stream.time_base)), stream=stream, backward=True)
        picked: list[Image.Image] = []
        prev = None  # (time, frame) of the last decoded frame
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else frame.time
            while len(picked) < count and t >= targets[len(picked)]:
                target = targets[len(picked)]
                best = frame if prev is None or abs(t - target) <= abs(prev[0] - target) else prev[1]
                picked.append(best.to_image())
            if len(picked) == count:
                break
            prev = (t, frame)
        if len(picked) < count and prev is not None and abs(prev[0] - targets[len(picked)]) <= 1.0 / fps:
            while len(picked) < count:  # the last requested time falls just after the last frame
                picked.append(prev[1].to_image())
        if len(picked) < count:
            last = f"{prev[0]:.2f} s" if prev is not None else "its start"
            raise ValueError(f"{video} ends at {last}, before the annotated time {end:.2f} s")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, img in enumerate(picked):
        if max_side is not None:
            img.thumbnail((max_side, max_side))
        img.convert("RGB").save(tmp / f"{i}.jpg", quality=92)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return [out_dir / f"{i}.jpg" for i in range(count)]


def _video_duration(video: Path) -> float:
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000
        return _last_frame_time(container, stream)


def _clip_ids(labels_root: Path, splits: Iterable[str]) -> list[str]:
    clips: list[str] = []
    for split in splits:
        actions_path, _ = label_files(labels_root, split)
        data = _read_json(actions_path)
        for img in data.get("images", []) if isinstance(data, dict) else []:
            name = img.get("file_name") if isinstance(img, dict) else None
            if _unsafe_name(name) is None:
                clips.append(str(PurePosixPath(name.replace("\\", "/")).with_suffix("")))
    return list(dict.fromkeys(clips))


def extract_frames(
    videos_dir: str | Path,
    labels_root: str | Path,
    out_dir: str | Path | None = None,
    *,
    splits: Iterable[str] = SPLITS,
    num_frames: int = 4,
    frame_stride: int = 1,
    fps: float = DEFAULT_FPS,
    clip_seconds: float = CLIP_SECONDS,
    end_time: float | None = None,
    max_side: int | None = None,
    overwrite: bool = False,
) -> ExtractionReport:
    """Extract ``(num_frames - 1) * frame_stride + 1`` frames for every clip of ``splits`` into ``out_dir``.

    ``out_dir`` defaults to ``<labels_root>/frames``. Clips whose folder already holds that many frames are
    skipped unless ``overwrite``; clips without a video and videos that fail to decode are reported, not fatal
    (``ExtractionReport.nothing_extracted`` tells a run where that was every clip). A bad ``fps`` raises first.
    """
    if num_frames < 1 or frame_stride < 1:
        raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames} and {frame_stride}")
    check_fps(fps)  # up front: per clip it would only turn every clip into a failure
    labels_root = Path(labels_root)
    out = Path(out_dir) if out_dir is not None else labels_root / "frames"
    count = (num_frames - 1) * frame_stride + 1
    videos = index_videos(videos_dir)
    report = ExtractionReport()
    durations: dict[Path, float] = {}
    for clip in _clip_ids(labels_root, splits):
        target = out / clip
        if not overwrite and target.is_dir() and sum(1 for _ in target.glob("*.jpg")) >= count:
            report.skipped_existing += 1
            continue
        name = clip.rsplit("/", 1)[-1]
        match = _SUFFIX.match(name)
        video = videos.get(name) or (videos.get(match.group("video")) if match else None)
        if video is None:
            report.missing_video.append(clip)
            continue
        try:
            if video not in durations:
                durations[video] = _video_duration(video)
            clip_video = durations[video] <= clip_seconds + 1.0
            end = None if clip_video else (end_time if end_time is not None else segment_end_time(name, clip_seconds))
            extract_clip_frames(video, target, count=count, fps=fps, end_time=end, max_side=max_side)
        except Exception as err:  # a broken video must not stop a 20k-clip run; it is reported instead
            report.failed[clip] = f"{video}: {type(err).__name__}: {err}"
            continue
        report.extracted += 1
    return report
