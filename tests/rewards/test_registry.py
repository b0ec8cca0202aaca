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


USER_REWARDS = """
def short(prompts, completions, completion_ids=None, *, limit=10, **columns):
    return [float(len(str(c)) <= limit) for c in completions]


class Constant:
    def __init__(self, value=1.0):
        self.value = value

    def __call__(self, prompts, completions, **columns):
        return [self.value] * len(completions)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_rewards.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_user_rewards"


def test_an_import_path_names_a_user_reward_with_checked_options(user_module):
    from trl.trainer.utils import get_callable_name

    short, constant = get_reward_funcs(
        [f"{user_module}.short", f"{user_module}.Constant"], {f"{user_module}.Constant": {"value": 0.5}}
    )
    assert short(None, ["abc", "x" * 20]) == [1.0, 0.0] and constant(None, ["a", "b"]) == [0.5, 0.5]
    assert reward_options(f"{user_module}.short") == ["limit"] and reward_options(f"{user_module}.Constant") == [
        "value"
    ]
    bound = build_reward(f"{user_module}.short", {"limit": 1})
    assert bound(None, ["ab"]) == [0.0] and get_callable_name(bound) == "short"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['limt'\] for reward 'my_user_rewards.short'"):
        check_reward_config([f"{user_module}.short"], {f"{user_module}.short": {"limt": 1}})


def test_a_bad_import_path_says_why_and_lists_the_registry(user_module):
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg.rewards'.*clip_alignment, action_reasoning"):
        check_reward_config(["no_such_pkg.rewards.fn"])
    with pytest.raises(ValueError, match="module 'my_user_rewards' has no callable 'missing'"):
        check_reward_config([f"{user_module}.missing"])
    with pytest.raises(ValueError, match="import path such as my_pkg.rewards"):
        check_reward_config(["nodots"])


def test_clip_alignment_is_a_dense_reward_and_the_text_rewards_are_not():
    from vlmrl_trl.rewards import DenseReward

    assert isinstance(ClipAlignmentReward(device="cpu"), DenseReward)
    assert not isinstance(build_reward("structure"), DenseReward)
