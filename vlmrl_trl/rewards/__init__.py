"""The method's three rewards as TRL reward functions, and a registry that builds them by name from a recipe.

Each reward is a callable object with the TRL reward signature ``(prompts, completions, completion_ids,
**dataset_columns) -> list[float]`` and a ``__name__`` equal to its registry name, so ``trl.GRPOTrainer`` logs
``rewards/<name>/mean``; components are logged as ``rewards/<name>/<component>`` through TRL's ``log_metric``.
A recipe names them like this (formulas in docs/rewards.md)::

    reward_funcs: [clip_alignment, action_reasoning, structure]
    reward_weights: [0.5, 1.0, 1.0]
    reward_kwargs:
      clip_alignment: {model: "local-dir:runs/clip", renormalize: true}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from .action_reasoning import ActionReasoningReward
from .base import RewardFunction, completion_text
from .clip_alignment import ClipAlignmentReward
from .structure import StructureReward

REWARD_REGISTRY: dict[str, type[RewardFunction]] = {
    cls.name: cls for cls in (ClipAlignmentReward, ActionReasoningReward, StructureReward)
}


def reward_options(name: str) -> list[str]:
    """The option names a registered reward accepts."""
    return list(inspect.signature(_reward_class(name)).parameters)


def _reward_class(name: str) -> type[RewardFunction]:
    if name not in REWARD_REGISTRY:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {', '.join(REWARD_REGISTRY)}")
    return REWARD_REGISTRY[name]


def build_reward(name: str, options: Mapping[str, Any] | None = None) -> RewardFunction:
    """One reward by registry name; an unknown name or option is a ValueError listing the valid ones."""
    cls = _reward_class(name)
    options = dict(options or {})
    _check_options(name, options)
    return cls(**options)


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    valid = reward_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for reward {name!r}; valid options: {', '.join(valid)}")


def check_reward_config(names: Sequence[str], options: Mapping[str, Any] | None = None) -> None:
    """Check reward names and option names without building anything (a recipe is checked when it is read);
    unknown names, options for a reward not listed, or unknown options are a ValueError listing the valid ones."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError(f"no reward functions given; valid rewards: {', '.join(REWARD_REGISTRY)}")
    for name in names:
        _reward_class(name)
    for name, value in dict(options or {}).items():
        _reward_class(name)
        if name not in names:
            raise ValueError(f"options given for reward {name!r}, which is not in reward_funcs {list(names)}")
        if not isinstance(value, Mapping):
            raise ValueError(f"options of reward {name!r} must be a mapping of option names to values, got {value!r}")
        _check_options(name, value)


def get_reward_funcs(
    names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[RewardFunction]:
    """The rewards ``names`` in order, each built with ``options[name]``; options for a reward not listed are an
    error (a typo would otherwise be silently ignored)."""
    if isinstance(names, str):
        names = [names]
    check_reward_config(names, options)
    options = dict(options or {})
    return [build_reward(name, options.get(name)) for name in names]


def rewards_from_config(config: Mapping[str, Any]) -> tuple[list[RewardFunction], list[float] | None]:
    """The reward functions and weights of a recipe's ``reward_funcs``, ``reward_weights`` and ``reward_kwargs``;
    weights are None when the recipe gives none (TRL then weighs every reward 1)."""
    names = config.get("reward_funcs")
    if isinstance(names, str):
        names = [names]
    if not names or not isinstance(names, Sequence) or any(not isinstance(n, str) for n in names):
        raise ValueError(f"'reward_funcs' must be a list of reward names from: {', '.join(REWARD_REGISTRY)}")
    funcs = get_reward_funcs(names, config.get("reward_kwargs"))
    weights = config.get("reward_weights")
    if weights is not None:
        if not isinstance(weights, Sequence) or len(weights) != len(names):
            raise ValueError(f"'reward_weights' must list one number per reward in {list(names)}, got {weights!r}")
        try:
            weights = [float(w) for w in weights]
        except (TypeError, ValueError):
            raise ValueError(f"'reward_weights' must be numbers, got {weights!r}") from None
    return funcs, weights


__all__ = [
    "REWARD_REGISTRY",
    "ActionReasoningReward",
    "ClipAlignmentReward",
    "RewardFunction",
    "StructureReward",
    "build_reward",
    "check_reward_config",
    "completion_text",
    "get_reward_funcs",
    "reward_options",
    "rewards_from_config",
]
