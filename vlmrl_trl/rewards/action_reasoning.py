"""R2, action-reasoning: are the predicted actions and reasons right, consistent with each other, and safe?

For a completion that parses as a decision over the label set (``vlmrl_trl.schema.parse_decision``; option
``label_set``, BDD-OIA's by default), against the clip's label bits:

- ``action_f1`` = 2|P & L| / (|P| + |L|) over action ids (1 when both sets are empty),
- ``reason_f1``, the same over reason ids,
- ``consistency`` = 1 - (#predicted reasons contradicting the predicted actions) / (#predicted reasons), 1 when
  no reason is predicted; contradictions follow the label set's reason -> action map (``reason_action_conflicts``),
- ``safety`` = 1 - ``missed_stop_cost`` when the label has the label set's ``safety_action`` (BDD-OIA: ``stop``)
  and the prediction lacks it, 1 - ``false_stop_cost`` when the prediction has it and the label lacks it, else 1
  (always 1 for a label set without a safety action),

and R2 = (w_a action_f1 + w_r reason_f1 + w_c consistency + w_s safety) / (w_a + w_r + w_c + w_s), in [0, 1].
An unparseable completion scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..labels import LabelSet, load_label_set
from ..schema import Decision, bits_to_ids, parse_decision, reason_action_conflicts
from .base import WeightedMeanReward, check_weight, completion_text

COMPONENTS: tuple[str, ...] = ("action_f1", "reason_f1", "consistency", "safety")


def set_f1(predicted: frozenset[str], label: frozenset[str]) -> float:
    """F1 of a predicted id set against the label set; an empty prediction for an empty label is correct (1)."""
    if not predicted and not label:
        return 1.0
    return 2 * len(predicted & label) / (len(predicted) + len(label))


def label_ids(value: Any, vocabulary: Sequence[str], column: str) -> frozenset[str]:
    """The ids of one row's label: a 0/1 vector over ``vocabulary`` (BDD-OIA bits) or a list of ids."""
    if hasattr(value, "tolist"):  # numpy arrays, torch tensors
        value = value.tolist()
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in vocabulary]
        if unknown:
            raise ValueError(f"column {column!r}: unknown ids {unknown}; expected ids from {list(vocabulary)}")
        return frozenset(value)
    try:
        return frozenset(bits_to_ids(value, vocabulary))
    except ValueError as err:
        raise ValueError(f"column {column!r} must hold label bits or a list of ids per row: {err}") from None


class ActionReasoningReward(WeightedMeanReward):
    """R2 against the ``actions`` and ``reasons`` dataset columns (BDD-OIA: 4 and 21 bits); see the module
    docstring."""

    name = "action_reasoning"

    def __init__(
        self,
        *,
        action_weight: float = 1.0,
        reason_weight: float = 1.0,
        consistency_weight: float = 0.5,
        safety_weight: float = 0.5,
        missed_stop_cost: float = 1.0,
        false_stop_cost: float = 0.25,
        actions_column: str = "actions",
        reasons_column: str = "reasons",
        label_set: str | LabelSet | None = None,
    ) -> None:
        super().__init__()
        self.set_weights(
            {
                "action_f1": ("action_weight", action_weight),
                "reason_f1": ("reason_weight", reason_weight),
                "consistency": ("consistency_weight", consistency_weight),
                "safety": ("safety_weight", safety_weight),
            }
        )
        self.labels = load_label_set(label_set)
        self.missed_stop_cost = check_weight("missed_stop_cost", missed_stop_cost, upper=1.0)
        self.false_stop_cost = check_weight("false_stop_cost", false_stop_cost, upper=1.0)
        self.actions_column = actions_column
        self.reasons_column = reasons_column

    def components(self, decision: Decision, actions: frozenset[str], reasons: frozenset[str]) -> dict[str, float]:
        """The four terms of R2 for a parsed decision and the label's action and reason ids."""
        predicted_actions = frozenset(decision.actions)
        safety, watched = 1.0, self.labels.safety_action  # None: no action is watched, safety stays 1
        if watched is not None and watched in actions and watched not in predicted_actions:
            safety -= self.missed_stop_cost
        elif watched is not None and watched in predicted_actions and watched not in actions:
            safety -= self.false_stop_cost
        return {
            "action_f1": set_f1(predicted_actions, actions),
            "reason_f1": set_f1(frozenset(decision.reasons), reasons),
            "consistency": 1.0 - len(reason_action_conflicts(decision, self.labels)) / len(decision.reasons)
            if decision.reasons
            else 1.0,
            "safety": safety,
        }

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Any] | None = None, **kwargs
    ) -> list[float]:
        for column in (self.actions_column, self.reasons_column):
            if column not in kwargs:
                raise ValueError(
                    f"reward {self.name!r} needs the dataset column {column!r} (label bits per row); "
                    f"got columns {sorted(k for k in kwargs if not k.startswith('log_'))}"
                )
        actions = [label_ids(v, self.labels.action_ids, self.actions_column) for v in kwargs[self.actions_column]]
        reasons = [label_ids(v, self.labels.reason_ids, self.reasons_column) for v in kwargs[self.reasons_column]]
        if not len(actions) == len(reasons) == len(completions):
            raise ValueError(
                f"reward {self.name!r}: {len(completions)} completions but {len(actions)} {self.actions_column!r} "
                f"and {len(reasons)} {self.reasons_column!r} labels"
            )
        rewards: list[float] = []
        logged: dict[str, list[float]] = {k: [] for k in (*COMPONENTS, "parsed")}
        for completion, label_actions, label_reasons in zip(completions, actions, reasons, strict=True):
            decision = parse_decision(completion_text(completion), self.labels)
            logged["parsed"].append(float(isinstance(decision, Decision)))
            if not isinstance(decision, Decision):
                rewards.append(0.0)
                continue
            parts = self.components(decision, label_actions, label_reasons)
            for key, value in parts.items():
                logged[key].append(value)
            rewards.append(self.combine(parts))
        self.log_components(kwargs, logged)
        return rewards
