"""R3, structure-formatting: graded credit for writing the decision as one schema-valid JSON object and nothing else.

For the first JSON object in the completion (``vlmrl_trl.schema.extract_json_object``):

- ``json`` = 1 (a JSON object was found; no object at all scores R3 = 0),
- ``schema`` = 0 when the decision JSON Schema (of the ``label_set`` option, BDD-OIA's by default) reports a
  structural violation (wrong type, a non-string id
  included; missing or extra field), else max(0, 1 - ``id_penalty`` x (#unknown ids + #duplicate ids)),
  so 1 exactly when schema-valid,
- ``complete`` = the fraction of the fields ``scene``, ``actions``, ``reasons`` present and non-empty
  (a non-blank string, a non-empty list),
- ``exclusive`` = 1 when the completion is the JSON object and nothing else (surrounding whitespace aside),

``complete`` and ``exclusive`` count only for an object with no structural violation (bad ids aside), so the
credit is a ladder: any object < a schema-valid one < a complete one < a complete one with nothing around it.
R3 = (w_j json + w_s schema + w_c complete + w_e exclusive) / (w_j + w_s + w_c + w_e), in [0, 1];
1 only for a complete, schema-valid object with nothing around it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..labels import LabelSet, load_label_set
from ..schema import FIELDS, ParseFailure, extract_json_object, schema_errors
from .base import WeightedMeanReward, check_weight, completion_text

COMPONENTS: tuple[str, ...] = ("json", "schema", "complete", "exclusive")
ID_VALIDATORS = ("enum", "uniqueItems")  # the schema keywords an unknown or a repeated id violates


def bad_id_count(errors: Sequence[Any]) -> int:
    """Unknown ids (one ``enum`` error each) plus repeats beyond the first (from ``uniqueItems`` errors)."""
    count = 0
    for error in errors:
        if error.validator == "enum":
            count += 1
        elif error.validator == "uniqueItems":
            distinct = {json.dumps(item, sort_keys=True) for item in error.instance}
            count += len(error.instance) - len(distinct)
    return count


def field_filled(obj: dict[str, Any], name: str) -> bool:
    """Whether a decision field is present and non-empty."""
    value = obj.get(name)
    if name == "scene":
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, list) and bool(value)


class StructureReward(WeightedMeanReward):
    """R3 of each completion; see the module docstring for the formula."""

    name = "structure"

    def __init__(
        self,
        *,
        json_weight: float = 0.25,
        schema_weight: float = 0.25,
        complete_weight: float = 0.25,
        exclusive_weight: float = 0.25,
        id_penalty: float = 0.25,
        label_set: str | LabelSet | None = None,
    ) -> None:
        super().__init__()
        self.set_weights(
            {
                "json": ("json_weight", json_weight),
                "schema": ("schema_weight", schema_weight),
                "complete": ("complete_weight", complete_weight),
                "exclusive": ("exclusive_weight", exclusive_weight),
            }
        )
        self.id_penalty = check_weight("id_penalty", id_penalty, upper=1.0)
        self.labels = load_label_set(label_set)

    def components(self, text: str) -> dict[str, float]:
        """The four terms of R3 for one completion text (all 0 when it holds no JSON object)."""
        found = extract_json_object(text)
        if isinstance(found, ParseFailure):
            return dict.fromkeys(COMPONENTS, 0.0)
        errors = schema_errors(found.obj, self.labels)
        if any(e.validator not in ID_VALIDATORS for e in errors):  # a structural violation ends the ladder here
            return {"json": 1.0, "schema": 0.0, "complete": 0.0, "exclusive": 0.0}
        return {
            "json": 1.0,
            "schema": max(0.0, 1.0 - self.id_penalty * bad_id_count(errors)),
            "complete": sum(field_filled(found.obj, name) for name in FIELDS) / len(FIELDS),
            "exclusive": float(found.alone),
        }

    def score(self, text: str) -> float:
        """R3 of one completion text."""
        return self.combine(self.components(text))

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Any] | None = None, **kwargs
    ) -> list[float]:
        parts = [self.components(completion_text(c)) for c in completions]
        self.log_components(kwargs, {k: [p[k] for p in parts] for k in COMPONENTS})
        return [self.combine(p) for p in parts]
