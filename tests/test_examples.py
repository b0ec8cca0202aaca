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


@pytest.mark.slow
def test_custom_project_trains_and_scores_with_its_reward_manifest_and_label_set(tmp_path, tiny_vlm_dir, monkeypatch):
    """The three extension points together: a reward by import path, a manifest dataset, a custom label set."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from custom_project.data import write_manifest

    from vlmrl_trl import grpo
    from vlmrl_trl.labels import load_label_set
    from vlmrl_trl.metrics import decision_metrics
    from vlmrl_trl.predict import GenerationOptions, generate

    project = EXAMPLES / "custom_project"
    manifest = write_manifest(tmp_path / "lanes")
    args = grpo.parse_args(
        ["--config", str(project / "config_grpo.yaml"), "--model_name_or_path", str(tiny_vlm_dir)]
        + ["--dataset_name", str(manifest), "--label_set", str(project / "labels.json")]
        + ["--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true"]
    )
    trainer = grpo.main(*args)
    assert trainer.state.global_step == 2
    assert trainer.reward_func_names == ["action_reasoning", "structure", "brakes_when_needed"]
    assert math.isfinite(trainer.state.log_history[0]["rewards/brakes_when_needed/mean"])
    labels = load_label_set(project / "labels.json")
    assert trainer.reward_funcs[0].labels == labels and trainer.reward_funcs[1].labels == labels

    val = grpo.build_rl_dataset(args[0], "val", max_samples=None)
    assert "keep, brake, change_lane" in val[0]["prompt"][0]["content"][-1]["text"]
    texts = generate(trainer.model, trainer.processing_class, val["prompt"], val["images"], GenerationOptions(16))
    metrics = decision_metrics(texts, val["actions"], val["reasons"], labels)
    assert metrics["n"] == 2 and list(metrics["actions"]["per_class"]) == ["keep", "brake", "change_lane"]
    assert list(metrics["reasons"]["per_class"]) == ["clear_road", "obstacle_ahead", "solid_line"]
