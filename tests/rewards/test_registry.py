"""The reward registry: rewards by name with options from a recipe, and clear errors for typos."""

from __future__ import annotations

import pytest
import yaml

from vlmrl_trl.rewards import (
    REWARD_REGISTRY,
    ActionReasoningReward,
    build_reward,
    check_reward_config,
    get_reward_funcs,
    reward_options,
    rewards_from_config,
)
from vlmrl_trl.rewards.clip_alignment import ClipAlignmentReward

RECIPE = """
reward_funcs: [clip_alignment, action_reasoning, structure]
reward_weights: [0.5, 1, 1]
reward_kwargs:
  clip_alignment: {device: cpu, renormalize: true, floor: -1.0}
  action_reasoning: {safety_weight: 2.0}
learning_rate: 1.0e-5
"""


def test_recipe_builds_named_rewards_with_their_options():
    funcs, weights = rewards_from_config(yaml.safe_load(RECIPE))
    assert [f.__name__ for f in funcs] == ["clip_alignment", "action_reasoning", "structure"]
    assert weights == [0.5, 1.0, 1.0]
    clip, reasoning, _ = funcs
    assert isinstance(clip, ClipAlignmentReward) and clip.renormalize and clip.floor == -1.0
    assert isinstance(reasoning, ActionReasoningReward) and reasoning.weights["safety"] == 2.0


def test_trl_names_the_logged_mean_after_the_registry_name():
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(build_reward("structure")) == "structure"


def test_unknown_reward_or_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown reward 'format'.*clip_alignment, action_reasoning, structure"):
        get_reward_funcs(["format"])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['weight'\].*id_penalty"):
        build_reward("structure", {"weight": 1})
    with pytest.raises(ValueError, match="not in reward_funcs"):
        get_reward_funcs(["structure"], {"action_reasoning": {}})
    assert "safety_weight" in reward_options("action_reasoning")
    assert set(REWARD_REGISTRY) == {"clip_alignment", "action_reasoning", "structure"}


def test_a_recipe_s_rewards_are_checked_without_building_them():
    """`check_reward_config` validates names and options at parse time, before any CLIP is loaded."""
    check_reward_config(["clip_alignment", "structure"], {"clip_alignment": {"model": "ViT-B-32"}})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['modle'\] for reward 'clip_alignment'"):
        check_reward_config(["clip_alignment"], {"clip_alignment": {"modle": "ViT-B-32"}})
    with pytest.raises(ValueError, match="options of reward 'structure' must be a mapping"):
        check_reward_config(["structure"], {"structure": 1})


def test_recipe_errors_name_the_key():
    with pytest.raises(ValueError, match="'reward_funcs'"):
        rewards_from_config({"reward_funcs": []})
    with pytest.raises(ValueError, match="'reward_weights'"):
        rewards_from_config({"reward_funcs": ["structure"], "reward_weights": [1, 2]})
    funcs, weights = rewards_from_config({"reward_funcs": "structure"})
    assert [f.__name__ for f in funcs] == ["structure"] and weights is None
