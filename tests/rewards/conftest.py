"""Fixtures of the reward tests: a tiny random CLIP and synthetic frames."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image


def _make_clip(seed: int, num_frames: int = 4, size: int = 32) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(num_frames)]


@pytest.fixture(scope="session")
def make_clip() -> Callable[..., list[Image.Image]]:
    """``make_clip(seed, num_frames=4)``: random RGB frames; one seed gives the same pixels in new image objects."""
    return _make_clip
