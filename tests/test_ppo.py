"""The Stage 1 script: recipes parse, bad keys are errors, and a short tiny run trains, saves and measures R1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmrl_trl.ppo import R1_EVAL_FILE, cli, parse_args
from vlmrl_trl.trainers.value_head import VALUE_HEAD_FILE

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/ppo/config_stage1.yaml"))
TINY_STAGE1 = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "ppo" / "config_stage1.yaml"
CPU = ["--bf16", "false", "--use_cpu", "true"]  # the GPU recipes ask for bf16, which this machine may lack


def test_there_is_a_stage1_recipe_per_model():
    models = {path.parts[-3] for path in Path(RECIPES[0]).parents[2].glob("*/sft/*.yaml")}
    assert {path.parts[-3] for path in RECIPES} == models >= {"qwen2.5-vl-3b-instruct", "qwen3-vl-2b-instruct", "tiny"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.parts[-3])
def test_recipes_parse_into_frames_only_dense_r1_ppo(recipe):
    script_args, training_args, model_args = parse_args(["--config", str(recipe), *CPU])
    assert script_args.prompt_mode == "frames_only"
    assert script_args.reward_funcs == ["clip_alignment"] and "clip_alignment" in script_args.reward_kwargs
    assert training_args.dense_clip_reward and training_args.num_generations == 1
    assert model_args.model_name_or_path


def test_unknown_keys_and_bad_options_exit_2(tmp_path, capsys):
    recipe = TINY_STAGE1
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text() + "\nvalue_head_widht: 64\n")
    assert cli(["--config", str(bad)]) == 2
    assert "value_head_widht" in capsys.readouterr().err
    assert cli(["--config", str(recipe), "--reward_kwargs", "{not json"]) == 2
    assert "reward_kwargs must be a JSON object" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_stage1_trains_saves_the_critic_and_measures_r1(tmp_path, tiny_vlm_dir, capsys):
    out = tmp_path / "stage1"
    overrides = {
        "model_name_or_path": str(tiny_vlm_dir),
        "data_dir": str(tmp_path / "synthetic"),
        "synthetic_train_clips": "8",
        "synthetic_val_clips": "2",
        "synthetic_test_clips": "3",
        "num_frames": "2",
        "reward_kwargs": json.dumps({"clip_alignment": {"device": "cpu"}}),  # the untrained tiny CLIP
        "r1_eval_samples": "3",
        "max_steps": "2",
        "per_device_train_batch_size": "2",
        "max_completion_length": "6",
        "output_dir": str(out),
    }
    argv = ["--config", str(TINY_STAGE1)] + [item for key, value in overrides.items() for item in (f"--{key}", value)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    # 2 steps within the recipe's 5 critic warm-up steps: the run says it trained only the value head
    assert "max_steps 2 <= critic_warmup_steps 5" in printed and "only the value head trained" in printed
    assert (out / "config.json").is_file() and (out / VALUE_HEAD_FILE).is_file()
    report = json.loads((out / R1_EVAL_FILE).read_text())
    assert report["before"]["clips"] == report["after"]["clips"] == 3
    for when in ("before", "after"):
        by_clip = report[when]["by_clip"]
        assert sorted(by_clip) == ["synth_test_000000", "synth_test_000001", "synth_test_000002"]
        assert report[when]["mean_r1"] == pytest.approx(sum(by_clip.values()) / 3)
        assert all(-1.0 <= score <= 1.0 for score in by_clip.values())
