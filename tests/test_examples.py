"""The examples run as users run them."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_stock_grpo_trainer_logs_each_reward(tmp_path, tiny_vlm_dir):
    example = load_example("stock_grpo_trainer")
    history = example.main(["--output-dir", str(tmp_path), "--model", str(tiny_vlm_dir), "--max-steps", "1"])
    logged = history[0]
    for name in ("clip_alignment", "action_reasoning", "structure"):
        assert math.isfinite(logged[f"rewards/{name}/mean"]), name
    assert "rewards/structure/json" in logged  # components come through TRL's log_metric
