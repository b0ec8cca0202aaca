"""Fixtures for the data tests: BDD-OIA-layout folders built in temporary folders."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


def jpeg_bytes(size: int = 8, color: tuple[int, int, int] = (90, 90, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def placeholder_bddoia_root(shared_labels_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared label files (linked, not copied) with an 8x8 placeholder JPG for every image they list."""
    root = tmp_path_factory.mktemp("bddoia-placeholder")
    data = root / "data"
    data.mkdir()
    jpg = jpeg_bytes()
    for path in sorted(shared_labels_dir.glob("*_25k_images_*.json")):
        (root / path.name).symlink_to(path)
        if path.name.endswith("_actions.json"):
            for img in json.loads(path.read_text())["images"]:
                (data / img["file_name"]).write_bytes(jpg)
    return root


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[..., Path]:
    """Write a small BDD-OIA-layout folder: ``clips`` maps file names to (action bits, reason bits)."""

    def make(
        clips: dict[str, tuple[list[int], list[int]]],
        split: str = "val",
        *,
        images: bool = True,
        frames: dict[str, int] | None = None,
        descriptions: dict[str, str] | None = None,
    ) -> Path:
        root = tmp_path / "bddoia"
        (root / "data").mkdir(parents=True, exist_ok=True)
        names = list(clips)
        actions = {
            "images": [{"id": i, "file_name": n, "width": 8, "height": 8} for i, n in enumerate(names)],
            "annotations": [{"id": i, "category": clips[n][0]} for i, n in enumerate(names)],
        }
        reasons = [{"file_name": n, "reason": clips[n][1]} for n in names]
        (root / f"{split}_25k_images_actions.json").write_text(json.dumps(actions))
        (root / f"{split}_25k_images_reasons.json").write_text(json.dumps(reasons))
        if images:
            for n in names:
                (root / "data" / n).write_bytes(jpeg_bytes())
        for clip, count in (frames or {}).items():
            folder = root / "frames" / clip
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(color=(i * 20, 0, 0)))
        if descriptions is not None:
            (root / f"{split}_descriptions.json").write_text(json.dumps(descriptions))
        return root

    return make
