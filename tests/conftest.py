"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores in CI: keep torch from oversubscribing them when tests run in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_LABELS = REPO_ROOT.parent / "shared" / "bddoia-labels"


@pytest.fixture(scope="session")
def shared_labels_dir() -> Path:
    """The reconstructed BDD-OIA label files beside the repository; tests using them skip without it."""
    if not (SHARED_LABELS / "train_25k_images_actions.json").is_file():
        pytest.skip(f"{SHARED_LABELS} is absent")
    return SHARED_LABELS


@pytest.fixture(scope="session")
def tiny_clip():
    """The untrained tiny CLIP on CPU (deterministic weights, eval mode): R1's encoder in the reward and trainer
    tests."""
    from vlmrl_trl.clip import load_clip

    return load_clip(device="cpu")


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SmolVLM-architecture model directory (128 px frames), built once per test session."""
    from vlmrl_trl.models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm") / "model")
