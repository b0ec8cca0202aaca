"""What every vlmrl-trl reward shares: completion text extraction, a TRL-visible name, metric logging, and the
protocol of a reward PPO can pay per token."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable


def completion_text(completion: Any) -> str:
    """The text of one completion: a plain string, or the assistant text of a conversational completion
    (a list of ``{"role", "content"}`` messages whose content is a string or a list of typed parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, bytes | bytearray):
        return bytes(completion).decode("utf-8", errors="replace")
    messages = [completion] if isinstance(completion, Mapping) else completion
    if not isinstance(messages, Sequence):
        return ""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, Sequence):
            parts.extend(
                part["text"]
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
            )
    return "".join(parts)


def check_weight(name: str, value: Any, *, upper: float | None = None) -> float:
    """A non-negative finite option value (at most ``upper`` when given), or a ValueError naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name!r} must be a number, got {value!r}") from None
    if not 0.0 <= number < float("inf") or (upper is not None and number > upper):
        bound = f"in [0, {upper}]" if upper is not None else ">= 0 and finite"
        raise ValueError(f"option {name!r} must be {bound}, got {value!r}")
    return number


class RewardFunction:
    """Base of the vlmrl-trl rewards: a TRL reward function (``prompts, completions, completion_ids, **columns``
    -> one float per completion) whose ``__name__`` is its registry name, so TRL logs ``rewards/<name>/mean``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.__name__ = self.name

    def log_components(self, kwargs: Mapping[str, Any], components: Mapping[str, Sequence[float]]) -> None:
        """Report each component's batch mean through TRL's ``log_metric`` callback, when the trainer passes one."""
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is None:
            return
        for component, values in components.items():
            if values:
                log_metric(f"rewards/{self.name}/{component}", sum(values) / len(values))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WeightedMeanReward(RewardFunction):
    """A reward in [0, 1] that is the weighted mean of its components in [0, 1] (R2, R3)."""

    weights: dict[str, float]

    def set_weights(self, options: Mapping[str, tuple[str, Any]]) -> None:
        """Check and keep ``{component: (option name, weight)}``, in component order; weights summing to 0 are an
        error naming the options."""
        self.weights = {component: check_weight(option, value) for component, (option, value) in options.items()}
        if sum(self.weights.values()) <= 0:
            raise ValueError(f"options {', '.join(option for option, _ in options.values())} sum to 0")

    def combine(self, components: Mapping[str, float]) -> float:
        """The weighted mean of the components, in [0, 1]."""
        return sum(weight * components[k] for k, weight in self.weights.items()) / sum(self.weights.values())


@runtime_checkable
class DenseReward(Protocol):
    """A reward that can also pay per token, as PPO's dense reward (``dense_clip_reward``) needs.

    ``per_token_rewards`` gets the rollout's dataset rows (``inputs``, one dict of columns per completion), the
    completions' token ids and the tokenizer, and returns one list per completion with one float per token; they
    should sum to the completion's sequence reward, so that with gamma = 1 the returns telescope to it.
    """

    def per_token_rewards(
        self,
        inputs: Sequence[Mapping[str, Any]],
        completion_ids: Sequence[Sequence[int]],
        tokenizer: Any,
        *,
        every_k: int = 1,
    ) -> list[list[float]]: ...
