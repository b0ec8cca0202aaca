"""Clips from seeds and the BDD-OIA layout they are written in, with a data card (``synthetic_info.json``)."""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...facts import FACTS_FILE, scene_facts
from ...schema import NUM_ACTIONS, NUM_REASONS
from ..bddoia import SPLITS  # the layout it writes: the same splits, in the order that seeds them
from .describe import describe_scene
from .drawing import render_clip
from .labels import scene_labels
from .sampling import sample_scene
from .scene import DEFAULT_SCALE, FRAME_INTERVAL_S, SCALES, ScaleName, Scene

INFO_FILE = "synthetic_info.json"
_JPEG_QUALITY = 92
SCALE_NOTES: dict[str, str] = {
    "near": "near field: lights, stop signs, people and riders drawn large, spanning several 32 px image tokens "
    "of a 128 px frame; the default, readable by a from-scratch model",
    "far": "far field: the decision cues mostly fit inside one 32 px image token; the harder test, for "
    "pretrained models",
}


@dataclass(frozen=True)
class SyntheticClip:
    """One generated clip: frames (oldest first), label bits, description and the scene it came from."""

    clip_id: str
    frames: list[Image.Image]
    actions: list[int]
    reasons: list[int]
    description: str
    scene: Scene


def make_clip(
    seed: int,
    split: str,
    index: int,
    *,
    num_frames: int = 4,
    image_size: int = 128,
    scale: ScaleName = DEFAULT_SCALE,
) -> SyntheticClip:
    """The clip at ``index`` of ``split`` for ``seed``: each (seed, split, index) has its own random stream."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    scene = sample_scene(rng, motion=num_frames > 1, scale=scale)
    actions, reasons = scene_labels(scene)
    frames = render_clip(scene, num_frames=num_frames, image_size=image_size)
    return SyntheticClip(f"synth_{split}_{index:06d}", frames, actions, reasons, describe_scene(scene, rng), scene)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


def _write_split(
    out: Path, split: str, count: int, seed: int, num_frames: int, image_size: int, scale: ScaleName
) -> dict:
    images, annotations, reasons_rows, descriptions, facts = [], [], [], {}, {}
    action_counts, reason_counts = [0] * NUM_ACTIONS, [0] * NUM_REASONS
    for index in range(count):
        clip = make_clip(seed, split, index, num_frames=num_frames, image_size=image_size, scale=scale)
        frame_dir = out / "frames" / clip.clip_id
        frame_dir.mkdir(parents=True, exist_ok=True)
        data = b""
        for i, frame in enumerate(clip.frames):
            data = _jpeg(frame)
            (frame_dir / f"{i}.jpg").write_bytes(data)
        file_name = f"{clip.clip_id}.jpg"
        (out / "data" / file_name).write_bytes(data)
        images.append({"id": index, "file_name": file_name, "width": image_size, "height": image_size})
        annotations.append({"id": index, "category": clip.actions})
        reasons_rows.append({"file_name": file_name, "reason": clip.reasons})
        descriptions[clip.clip_id] = clip.description
        facts[clip.clip_id] = scene_facts(clip.scene)
        action_counts = [a + b for a, b in zip(action_counts, clip.actions, strict=True)]
        reason_counts = [a + b for a, b in zip(reason_counts, clip.reasons, strict=True)]
    (out / f"{split}_25k_images_actions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    (out / f"{split}_25k_images_reasons.json").write_text(json.dumps(reasons_rows))
    (out / f"{split}_descriptions.json").write_text(json.dumps(descriptions, indent=0, ensure_ascii=False))
    (out / FACTS_FILE.format(split=split)).write_text(json.dumps(facts))
    return {"clips": count, "action_counts": action_counts, "reason_counts": reason_counts}


def generate_synthetic(
    out_dir: str | Path,
    *,
    train: int,
    val: int,
    test: int,
    seed: int = 0,
    num_frames: int = 4,
    image_size: int = 128,
    scale: ScaleName = DEFAULT_SCALE,
    overwrite: bool = False,
) -> Path:
    """Write synthetic clips in BDD-OIA's layout (plus ``frames/``, descriptions and facts).

    Layout: ``data/<clip>.jpg`` (the last frame), ``frames/<clip>/<i>.jpg`` (oldest first),
    ``{split}_25k_images_{actions,reasons}.json`` and ``synthetic_info.json`` (settings, per-bit counts).
    ``scale`` is the world scale (:data:`SCALES`): ``near`` for from-scratch models, ``far`` the harder test.
    Splits draw from distinct random streams, so no clip is shared between them. An existing output folder
    is only replaced with ``overwrite=True`` and only if it holds an earlier synthetic set.
    """
    counts = {"train": train, "val": val, "test": test}
    for name, n in counts.items():
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if num_frames < 1 or image_size < 16:
        raise ValueError(f"num_frames must be >= 1 and image_size >= 16, got {num_frames} and {image_size}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / INFO_FILE).is_file():
            raise FileExistsError(
                f"{out} is not empty and holds no {INFO_FILE}: refusing to write a synthetic set there"
            )
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a synthetic set; pass overwrite=True (--overwrite) to replace it"
            )
        for sub in ("data", "frames"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for path in out.glob("*_25k_images_*.json"):
            path.unlink()
        for path in [*out.glob("*_descriptions.json"), *out.glob(FACTS_FILE.format(split="*"))]:
            path.unlink()
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    start = time.perf_counter()
    stats = {split: _write_split(out, split, n, seed, num_frames, image_size, scale) for split, n in counts.items()}
    info = {
        "generator": "vlmrl_trl.data.synthetic",
        "seed": seed,
        "num_frames": num_frames,
        "image_size": image_size,
        "scale": scale,
        "scale_note": SCALE_NOTES[scale],
        "frame_interval_s": FRAME_INTERVAL_S,
        "seconds": round(time.perf_counter() - start, 2),
        "splits": stats,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    return out
