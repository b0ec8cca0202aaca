"""The method's three rewards as TRL reward functions, and a registry that builds them, or a user's reward given by
its import path, by name from a recipe.

Each reward is a callable object with the TRL reward signature ``(prompts, completions, completion_ids,
**dataset_columns) -> list[float]`` and a ``__name__`` equal to its registry name, so ``trl.GRPOTrainer`` logs
``rewards/<name>/mean``; components are logged as ``rewards/<name>/<component>`` through TRL's ``log_metric``.
A recipe names them like this (formulas in docs/rewards.md)::

    reward_funcs: [clip_alignment, action_reasoning, structure]
    reward_weights: [0.5, 1.0, 1.0]
    reward_kwargs:
      clip_alignment: {model: "local-dir:runs/clip", renormalize: true}

An entry with a dot that is no registry name is an import path (``my_pkg.rewards.lane_keeping``), as in TRL's
``grpo.py``: a function with the TRL signature, or a class built with its ``reward_kwargs``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .action_reasoning import ActionReasoningReward
from .base import DenseReward, RewardFunction, completion_text
from .clip_alignment import ClipAlignmentReward
from .structure import StructureReward

REWARD_REGISTRY: dict[str, type[RewardFunction]] = {
    cls.name: cls for cls in (ClipAlignmentReward, ActionReasoningReward, StructureReward)
}
# The parameters TRL fills in a reward call, which are no options.
_CALL_PARAMETERS = ("prompts", "completions", "completion_ids")


def _valid_rewards() -> str:
    return f"{', '.join(REWARD_REGISTRY)}, or an import path such as my_pkg.rewards.my_reward"


def resolve_reward(name: str) -> Callable[..., Any]:
    """The class of a registered reward, or the object an import path (``my_pkg.rewards.fn``) names, as TRL's
    ``grpo.py`` script resolves it: a reward function, or a reward class built with its options."""
    if name in REWARD_REGISTRY:
        return REWARD_REGISTRY[name]
    if not isinstance(name, str) or "." not in name.strip("."):
        raise ValueError(f"unknown reward {name!r}; valid rewards: {_valid_rewards()}")
    module_name, attribute = name.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"unknown reward {name!r}: cannot import {module_name!r} ({err}); valid rewards: {_valid_rewards()}"
        ) from None
    target = getattr(module, attribute, None)
    if not callable(target):
        raise ValueError(f"unknown reward {name!r}: module {module_name!r} has no callable {attribute!r}")
    return target


def reward_options(name: str) -> list[str]:
    """The option names a reward accepts: a class's constructor parameters, a function's keyword parameters
    beyond TRL's call arguments (bound with ``functools.partial``)."""
    target = resolve_reward(name)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(target).parameters.values()
    skip = () if inspect.isclass(target) else _CALL_PARAMETERS
    return [p.name for p in parameters if p.kind in kinds and p.name not in skip]


def build_reward(name: str, options: Mapping[str, Any] | None = None) -> Callable[..., list[float]]:
    """One reward by registry name or import path; an unknown name or option is a ValueError listing the valid
    ones. A class is built with ``options``; a function gets them bound (``functools.partial``, which TRL logs
    under the function's name)."""
    target = resolve_reward(name)
    options = dict(options or {})
    _check_options(name, options)
    if inspect.isclass(target):
        return target(**options)
    return functools.partial(target, **options) if options else target


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    valid = reward_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for reward {name!r}; valid options: {', '.join(valid) or 'none'}"
        )


def check_reward_config(names: Sequence[str], options: Mapping[str, Any] | None = None) -> None:
    """Check reward names (registered or import paths) and option names without building anything (a recipe is
    checked when it is read); unknown names, options for a reward not listed, or unknown options are a ValueError
    listing the valid ones."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError(f"no reward functions given; valid rewards: {_valid_rewards()}")
    for name in names:
        resolve_reward(name)
    for name, value in dict(options or {}).items():
        resolve_reward(name)
        if name not in names:
            raise ValueError(f"options given for reward {name!r}, which is not in reward_funcs {list(names)}")
        if not isinstance(value, Mapping):
            raise ValueError(f"options of reward {name!r} must be a mapping of option names to values, got {value!r}")
        _check_options(name, value)


def get_reward_funcs(
    names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Callable[..., list[float]]]:
    """The rewards ``names`` in order, each built with ``options[name]``; options for a reward not listed are an
    error (a typo would otherwise be silently ignored)."""
    if isinstance(names, str):
        names = [names]
    check_reward_config(names, options)
    options = dict(options or {})
    return [build_reward(name, options.get(name)) for name in names]


def rewards_from_config(config: Mapping[str, Any]) -> tuple[list[Callable[..., list[float]]], list[float] | None]:
    """The reward functions and weights of a recipe's ``reward_funcs``, ``reward_weights`` and ``reward_kwargs``;
    weights are None when the recipe gives none (TRL then weighs every reward 1)."""
    names = config.get("reward_funcs")
    if isinstance(names, str):
        names = [names]
    if not names or not isinstance(names, Sequence) or any(not isinstance(n, str) for n in names):
        raise ValueError(f"'reward_funcs' must be a list of reward names: {_valid_rewards()}")
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
    "DenseReward",
    "RewardFunction",
    "StructureReward",
    "build_reward",
    "check_reward_config",
    "completion_text",
    "get_reward_funcs",
    "resolve_reward",
    "reward_options",
    "rewards_from_config",
]
