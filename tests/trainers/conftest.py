"""Fixtures the trainer tests share: the tiny VLM's processor and fresh fp32 copies of its model, the tiny CLIP,
seeded random frames and the CPU-only training arguments every trainer config sets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from transformers import PreTrainedModel, ProcessorMixin
from trl import ModelConfig

from vlmrl_trl.models import load_model, load_processor


@pytest.fixture(scope="session")
def tiny_processor(tiny_vlm_dir: Path) -> ProcessorMixin:
    """The tiny VLM's processor, loaded once, for tests that only read it (each trainer loads its own to set up)."""
    return load_processor(str(tiny_vlm_dir))


@pytest.fixture(scope="session")
def load_tiny_model(tiny_vlm_dir: Path) -> Callable[[], PreTrainedModel]:
    """``load_tiny_model()``: a fresh fp32 copy of the tiny VLM per call, since tests patch, wrap or train it."""

    def load() -> PreTrainedModel:
        return load_model(ModelConfig(model_name_or_path=str(tiny_vlm_dir), dtype="float32"))

    return load


def _random_frame(seed: int, width: int = 32, height: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def random_frame() -> Callable[..., Image.Image]:
    """``random_frame(seed, width=32, height=32)``: a random RGB frame; the same seed gives the same pixels."""
    return _random_frame


@pytest.fixture
def cpu_args(tmp_path: Path) -> dict[str, Any]:
    """The training arguments every trainer config here sets: CPU, fp32, no tracker, output in ``tmp_path``."""
    return {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": "none"}
