"""Bad recipes and options: each exits 2 with one line naming it, before any data or model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmrl_trl import grpo, ppo, sft

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = REPO_ROOT / "recipes" / "tiny"
SFT = TINY / "sft" / "config_synthetic.yaml"
STAGE2 = TINY / "grpo" / "config_stage2.yaml"
STAGE1 = TINY / "ppo" / "config_stage1.yaml"


def _no_loading(*args, **kwargs):
    raise AssertionError("data or a model was loaded")


@pytest.fixture(autouse=True)
def refuse_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (sft, grpo, ppo):
        monkeypatch.setattr(module, "main", _no_loading)


@pytest.mark.parametrize(
    ("script", "recipe", "override", "named"),
    [
        (sft, SFT, "model_name_or_path: ''", "model_name_or_path is required"),
        (sft, SFT, "learning_rate: -1.0e-4", "learning_rate must be a positive finite number, got -0.0001"),
        (sft, SFT, "learning_rate: .nan", "learning_rate must be a positive finite number, got nan"),
        (sft, SFT, "per_device_train_batch_size: 0", "per_device_train_batch_size must be an integer >= 1"),
        (sft, SFT, "gradient_accumulation_steps: 0", "gradient_accumulation_steps must be an integer >= 1"),
        (sft, SFT, "max_steps: 1.5", "max_steps must be an integer, got 1.5"),
        (sft, SFT, "max_steps: -5", "max_steps must be a positive integer, or -1"),
        (sft, SFT, "max_steps: -1\nnum_train_epochs: 0", "max_steps -1 with num_train_epochs 0 trains nothing"),
        (grpo, STAGE2, "beta: -0.1", "beta must be a finite number >= 0"),
        (grpo, STAGE2, "temperature: 0", "temperature must be a positive finite number"),
        (grpo, STAGE2, "reward_weights: [1.0, -0.2]", "reward_weights must be finite numbers >= 0"),
        (grpo, STAGE2, "reward_kwargs: {structure: {id_penalty: 2}}", "reward_kwargs of 'structure': option"),
        (grpo, STAGE2, "reward_kwargs: {structure: {json_weight: -1}}", "'json_weight' must be >= 0"),
        (ppo, STAGE1, "gamma: 1.5", "gamma must be in [0, 1], got 1.5"),
        (ppo, STAGE1, "reward_kwargs: {clip_alignment: {cache_size: 0}}", "'cache_size' must be a positive integer"),
    ],
)
def test_a_bad_option_exits_2_with_one_line_naming_it(script, recipe, override, named, tmp_path, capsys) -> None:
    bad = tmp_path / "recipe.yaml"
    bad.write_text(recipe.read_text() + "\n" + override + "\n")
    assert script.cli(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


def test_a_yaml_syntax_error_names_the_file(tmp_path, capsys) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("model_name_or_path: a\nlearning_rate: [1\n")
    assert sft.cli(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad} is not valid YAML" in err


def test_the_tiny_recipes_pass_and_a_recipe_env_is_logged(tmp_path, caplog) -> None:
    for script, recipe in ((sft, SFT), (grpo, STAGE2), (ppo, STAGE1)):
        script.parse_args(["--config", str(recipe), "--output_dir", str(tmp_path / script.__name__)])
    with_env = tmp_path / "env.yaml"
    with_env.write_text(SFT.read_text() + "\nenv:\n  VLMRL_TEST_VARIABLE: 1\n")
    with caplog.at_level("WARNING"):
        sft.parse_args(["--config", str(with_env), "--output_dir", str(tmp_path / "env")])
    assert f"{with_env} sets environment variables: VLMRL_TEST_VARIABLE=1" in caplog.text


def test_a_data_error_while_training_ends_with_one_line(monkeypatch, tmp_path, capsys) -> None:
    from vlmrl_trl.data import BDDOIADataError
    from vlmrl_trl.data.bddoia import Issue

    def bad_data(*args):
        raise BDDOIADataError("train", [Issue("bad_image", tmp_path / "a.jpg", "image id 1", "image not found")] * 3)

    monkeypatch.setattr(sft, "main", bad_data)
    assert sft.cli(["--config", str(SFT), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 invalid entries in BDD-OIA split 'train'" in err
    monkeypatch.setenv("VLMRL_VERBOSE", "1")
    with pytest.raises(BDDOIADataError):
        sft.cli(["--config", str(SFT), "--output_dir", str(tmp_path / "out")])
