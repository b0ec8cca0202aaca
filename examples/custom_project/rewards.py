"""The project's own reward, named in a recipe by its import path: ``custom_project.rewards.brakes_when_needed``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmrl_trl.labels import load_label_set
from vlmrl_trl.rewards import completion_text
from vlmrl_trl.schema import Decision, parse_decision

LABELS = load_label_set(Path(__file__).with_name("labels.json"))
BRAKE = LABELS.action_ids.index("brake")


def brakes_when_needed(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    completion_ids: Sequence[Any] | None = None,
    *,
    miss_penalty: float = 1.0,
    **columns: Any,
) -> list[float]:
    """1 when the decision brakes exactly when the clip's label does, -``miss_penalty`` for a missed brake,
    0 otherwise (a wrong brake or an unparseable answer)."""
    rewards = []
    for completion, actions in zip(completions, columns["actions"], strict=True):
        decision = parse_decision(completion_text(completion), LABELS)
        braked = isinstance(decision, Decision) and "brake" in decision.actions
        needed = bool(actions[BRAKE])
        rewards.append(1.0 if braked == needed else -miss_penalty if needed else 0.0)
    return rewards
