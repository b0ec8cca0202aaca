"""VLMPPOConfig: one generation per prompt is allowed, GRPO's other checks still apply, bad options are named."""

from __future__ import annotations

import pytest

from vlmrl_trl.trainers.grpo_config import VLMGRPOConfig
from vlmrl_trl.trainers.ppo_config import VLMPPOConfig


def test_one_generation_per_prompt_is_the_default_and_allowed_with_any_batch(cpu_args):
    config = VLMPPOConfig(**cpu_args, per_device_train_batch_size=3)
    assert type(config.num_generations) is int and config.num_generations == 1
    assert config.generation_batch_size == 3
    assert isinstance(config, VLMGRPOConfig) and config.deduplicate_vision


def test_grpo_checks_other_than_the_group_size_still_apply(cpu_args):
    with pytest.raises(ValueError, match="divisible by num_generations"):
        VLMPPOConfig(**cpu_args, per_device_train_batch_size=3, num_generations=2)
    with pytest.raises(ValueError, match="num_generations must be a positive integer"):
        VLMPPOConfig(**cpu_args, num_generations=0)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("gamma", 1.5),
        ("lam", -0.1),
        ("vf_coef", -1.0),
        ("cliprange_value", 0.0),
        ("value_head_hidden_size", 0),
        ("value_head_num_layers", 0),
        ("critic_warmup_steps", -1),
        ("dense_reward_every_k", 0),
    ],
)
def test_bad_values_are_rejected_by_name(cpu_args, option, value):
    with pytest.raises(ValueError, match=option):
        VLMPPOConfig(**cpu_args, **{option: value})


def test_value_clipping_can_be_turned_off(cpu_args):
    assert VLMPPOConfig(**cpu_args, cliprange_value=None).cliprange_value is None


@pytest.mark.parametrize(
    ("option", "value"), [("scale_rewards", "batch"), ("multi_objective_aggregation", "normalize_then_sum")]
)
def test_group_advantage_options_warn_that_ppo_ignores_them(cpu_args, option, value):
    with pytest.warns(UserWarning, match=f"ignores {option}="):
        VLMPPOConfig(**cpu_args, **{option: value})


def test_default_group_advantage_options_do_not_warn(cpu_args, recwarn):
    VLMPPOConfig(**cpu_args, scale_rewards=True)  # TRL's spelling of the default, "group"
    assert not [w for w in recwarn if "ignores" in str(w.message)]
