"""Write a tiny clip manifest: clips of plain frames, red ahead meaning an obstacle (brake), green a clear road."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw


def write_manifest(root: str | Path, train: int = 6, val: int = 2, num_frames: int = 2) -> Path:
    """``root/clips.jsonl`` and the frames under ``root/frames/``, in the manifest format of docs/data.md."""
    root = Path(root)
    lines = []
    for i in range(train + val):
        obstacle = i % 2 == 1
        clip_id = f"clip{i:03d}"
        folder = root / "frames" / clip_id
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        for t in range(num_frames):
            img = Image.new("RGB", (64, 64), (90, 90, 90))
            size = 8 + 6 * t  # the thing ahead grows as the car approaches
            colour = (200, 30, 30) if obstacle else (30, 170, 60)
            ImageDraw.Draw(img).rectangle((32 - size, 20 - size // 2, 32 + size, 20 + size // 2), fill=colour)
            img.save(folder / f"{t}.png")
            frames.append(f"frames/{clip_id}/{t}.png")
        lines.append(
            {
                "clip_id": clip_id,
                "frames": frames,
                "actions": ["brake"] if obstacle else ["keep"],
                "reasons": ["obstacle_ahead", "solid_line"] if obstacle else ["clear_road"],
                "description": "a red car stops ahead" if obstacle else "an empty road",
                "split": "train" if i < train else "val",
            }
        )
    path = root / "clips.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path
