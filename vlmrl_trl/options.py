"""Recipe checks run when a stage script's arguments are read, before any data or model is loaded.

``validate_options`` refuses, with a ``ValueError`` naming the option, what TRL or transformers would accept and
then fail on minutes later (or never): no model, a learning rate that is negative or NaN, an empty batch, a
``max_steps`` that is not a whole number or a run that would train nothing, negative reward weights or ``beta``, and
reward option values the rewards themselves reject. Each check applies to whichever parsed dataclass has the field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import yaml

logger = logging.getLogger(__name__)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# field: (test, what it must be)
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (lambda v: _finite(v) and v > 0, "a positive finite number"),
    "per_device_train_batch_size": (_positive_int, "an integer >= 1"),
    "per_device_eval_batch_size": (_positive_int, "an integer >= 1"),
    "gradient_accumulation_steps": (_positive_int, "an integer >= 1"),
    "num_train_epochs": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "warmup_steps": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "max_grad_norm": (lambda v: v is None or (_finite(v) and v >= 0), "a finite number >= 0"),
    "beta": (lambda v: _finite(v) and v >= 0, "a finite number >= 0 (the KL coefficient)"),
    "temperature": (lambda v: _finite(v) and v > 0, "a positive finite number"),
    "max_completion_length": (lambda v: v is None or _positive_int(v), "an integer >= 1"),
}  # VLMPPOConfig checks its own options (gamma, lam, vf_coef, ...) when it is built


def validate_options(parsed: Sequence[Any]) -> None:
    """Refuse, naming the option, a bad value in the parsed script, training and model arguments (see module)."""
    values: dict[str, Any] = {}
    for args in reversed(parsed):  # the script arguments (first) win over a same-named training argument
        values.update(vars(args))
    if "model_name_or_path" in values and not values["model_name_or_path"]:
        raise ValueError("model_name_or_path is required (a hub id or a model folder, e.g. outputs/tiny-vlm)")
    for name, (test, wanted) in _CHECKS.items():
        if name in values and not test(values[name]):
            raise ValueError(f"{name} must be {wanted}, got {values[name]!r}")
    _check_steps(values)
    if "reward_funcs" in values:
        _check_rewards(values)


def _check_steps(values: dict[str, Any]) -> None:
    """``max_steps`` is a whole number; -1 (or any value <= 0) trains ``num_train_epochs``, which must then be > 0."""
    max_steps = values.get("max_steps", -1)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool):
        raise ValueError(f"max_steps must be an integer, got {max_steps!r}")
    if max_steps < -1:
        raise ValueError(f"max_steps must be a positive integer, or -1 to train num_train_epochs; got {max_steps}")
    if max_steps <= 0 and not values.get("num_train_epochs", 1) > 0:
        raise ValueError(
            f"max_steps {max_steps} with num_train_epochs {values.get('num_train_epochs')} trains nothing: give "
            "max_steps > 0 or num_train_epochs > 0"
        )


def _check_rewards(values: dict[str, Any]) -> None:
    """Reward weights are finite and >= 0; each registered reward accepts its option values (built without
    its model: the CLIP is loaded when the trainer is built)."""
    from .rewards import REWARD_REGISTRY, ClipAlignmentReward

    for weight in values.get("reward_weights") or []:
        if not (_finite(weight) and weight >= 0):
            raise ValueError(f"reward_weights must be finite numbers >= 0, got {values['reward_weights']}")
    for name, options in (values.get("reward_kwargs") or {}).items():
        cls = REWARD_REGISTRY.get(name)
        if cls is None:
            continue  # a reward by import path: its own code checks its values when built
        try:
            if cls is ClipAlignmentReward:
                cls(**{k: v for k, v in options.items() if k not in ("model", "pretrained", "device")}, encoder=True)
            else:
                cls(**options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"reward_kwargs of {name!r}: {err}") from None


def read_recipe(path: str) -> dict[str, Any]:
    """A recipe's YAML mapping; a syntax error or a non-mapping is a ``ValueError`` naming the file. Its ``env:``
    variables, which TRL sets without checking their names, are logged."""
    try:
        with open(path, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start})") from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path} must be a mapping of option names to values, got {type(recipe).__name__}")
    env = recipe.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise ValueError(f"{path}: 'env' must map environment variable names to values, got {env!r}")
        logger.warning("%s sets environment variables: %s", path, ", ".join(f"{k}={v}" for k, v in env.items()))
    return recipe
