"""The GRPO script: recipes parse strictly and follow the method's stages, and a run trains and saves the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from trl import ModelConfig

from vlmrl_trl.data import generate_synthetic
from vlmrl_trl.grpo import cli, main, parse_args
from vlmrl_trl.rewards import REWARD_REGISTRY, reward_options

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*/grpo/*.yaml"))
GPU_RECIPES = (
    "smolvlm-256m-instruct",
    "smolvlm-instruct",
    "qwen2.5-vl-3b-instruct",
    "qwen2.5-vl-3b-instruct-video",
    "qwen3-vl-2b-instruct",
)
FAMILIES = ("tiny", "tiny-video", *GPU_RECIPES)
TINY_STAGE2 = REPO_ROOT / "recipes" / "tiny" / "grpo" / "config_stage2.yaml"
TINY_STAGE3 = REPO_ROOT / "recipes" / "tiny" / "grpo" / "config_stage3.yaml"


def recipe_args(recipe: Path, *overrides: str):
    # bf16 is off here only because the test machine has no GPU.
    return parse_args(["--config", str(recipe), "--bf16", "false", *overrides])


def test_every_family_has_both_stages() -> None:
    found = {(path.parent.parent.name, path.name) for path in RECIPES}
    assert found == {(family, f"config_stage{stage}.yaml") for family in FAMILIES for stage in (2, 3)}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO_ROOT / "recipes")))
def test_recipes_parse_with_valid_rewards(recipe: Path) -> None:
    script_args, training_args, model_args = recipe_args(recipe)
    assert model_args.model_name_or_path
    assert set(script_args.reward_funcs) <= set(REWARD_REGISTRY)
    assert len(training_args.reward_weights) == len(script_args.reward_funcs)
    for name, options in (script_args.reward_kwargs or {}).items():
        assert name in script_args.reward_funcs
        assert set(options) <= set(reward_options(name))
    assert not training_args.use_vllm and training_args.deduplicate_vision


@pytest.mark.parametrize("family", FAMILIES)
def test_stages_weigh_the_rewards_as_the_method_says(family: str) -> None:
    folder = REPO_ROOT / "recipes" / family / "grpo"
    script_args, training_args, _ = recipe_args(folder / "config_stage2.yaml")
    weights = dict(zip(script_args.reward_funcs, training_args.reward_weights, strict=True))
    assert set(weights) == {"action_reasoning", "structure"}
    assert 0 < weights["structure"] < weights["action_reasoning"]  # R2, small R3 weight
    script_args, training_args, _ = recipe_args(folder / "config_stage3.yaml")
    assert set(script_args.reward_funcs) == {"structure", "action_reasoning", "clip_alignment"}  # R3 + R2 + R1
    assert all(weight > 0 for weight in training_args.reward_weights)


@pytest.mark.parametrize("family", FAMILIES)
def test_stages_start_from_the_sft_output(family: str) -> None:
    sft_recipe = next((REPO_ROOT / "recipes" / family / "sft").glob("*.yaml"))
    sft_output = yaml.safe_load(sft_recipe.read_text())["output_dir"]
    for stage in (2, 3):
        _, training_args, model_args = recipe_args(
            REPO_ROOT / "recipes" / family / "grpo" / f"config_stage{stage}.yaml"
        )
        assert model_args.model_name_or_path == sft_output
        assert training_args.output_dir != sft_output


@pytest.mark.parametrize("family", GPU_RECIPES)
def test_reference_recipes_use_gpu_settings(family: str) -> None:
    for stage in (2, 3):
        recipe = REPO_ROOT / "recipes" / family / "grpo" / f"config_stage{stage}.yaml"
        assert yaml.safe_load(recipe.read_text())["bf16"] is True
        script_args, args, model_args = recipe_args(recipe)
        assert model_args.model_name_or_path.startswith("outputs/") and model_args.dtype == "bfloat16"
        assert (args.num_generations, args.max_completion_length) == (8, 256)
        assert args.gradient_checkpointing and script_args.dataset_name != "synthetic"


def test_command_line_overrides_the_recipe() -> None:
    script_args, args, model_args = recipe_args(
        TINY_STAGE2,
        *("--model_name_or_path", "outputs/other", "--learning_rate", "0.5"),
        *("--reward_kwargs", '{"structure": {"id_penalty": 0.5}}'),
    )
    assert model_args.model_name_or_path == "outputs/other" and args.learning_rate == 0.5
    assert script_args.reward_kwargs == {"structure": {"id_penalty": 0.5}}


def test_unknown_recipe_key_is_an_error_naming_it(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_STAGE2.read_text() + "reward_fucns: [structure]\n")
    with pytest.raises(ValueError, match="reward_fucns"):
        parse_args(["--config", str(recipe)])


def test_bad_options_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--config", str(TINY_STAGE2), "--not_an_option", "1"]) == 2
    assert "not_an_option" in capsys.readouterr().err
    assert cli(["--config", str(TINY_STAGE2), "--reward_weights", "1.0"]) == 2
    assert "reward_weights" in capsys.readouterr().err
    assert cli(["--config", str(TINY_STAGE2), "--reward_kwargs", "{not json"]) == 2
    assert "reward_kwargs" in capsys.readouterr().err
    # Reward names and options are checked when the recipe is read, not when the trainer is built.
    assert cli(["--config", str(TINY_STAGE2), "--reward_funcs", "action_reasonin", "structure"]) == 2
    assert "unknown reward 'action_reasonin'" in capsys.readouterr().err
    assert cli(["--config", str(TINY_STAGE2), "--reward_kwargs", '{"structure": {"bogus": 1}}']) == 2
    assert "unknown option(s) ['bogus'] for reward 'structure'" in capsys.readouterr().err
    assert cli(["--config", str(TINY_STAGE2), "--dataset_train_split", "training"]) == 2
    assert "dataset_train_split" in capsys.readouterr().err


@pytest.mark.slow
def test_stage3_trains_and_saves_model_and_processor(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.trainers import VLMGRPOTrainer

    clips = generate_synthetic(tmp_path / "clips", train=4, val=2, test=2)
    output_dir = tmp_path / "out"
    args = recipe_args(
        TINY_STAGE3,
        *("--model_name_or_path", str(tiny_vlm_dir), "--data_dir", str(clips), "--output_dir", str(output_dir)),
        *("--reward_kwargs", '{"clip_alignment": {"model": "vlmrl-tiny"}}'),  # untrained: no fitted CLIP needed
        *("--max_steps", "1", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1"),
        *("--num_generations", "2", "--max_completion_length", "8", "--disable_tqdm", "true"),
    )
    trainer = main(*args)
    assert isinstance(trainer, VLMGRPOTrainer) and trainer.share_vision
    assert trainer.reward_func_names == ["structure", "action_reasoning", "clip_alignment"]
    assert trainer.state.global_step == 1
    load_processor(str(output_dir))
    model = load_model(ModelConfig(model_name_or_path=str(output_dir), dtype="float32"))
    assert model.config.model_type == "idefics3"
