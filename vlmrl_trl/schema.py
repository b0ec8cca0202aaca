"""The driving decision: the output JSON format and its parsing, over a label set (BDD-OIA's by default).

Everything that reads or writes a model's answer (prompts, SFT targets, rewards, metrics) goes through
this module, so the JSON format has one definition; the vocabularies are data (:mod:`vlmrl_trl.labels`), and
the functions here take a ``labels`` :class:`~vlmrl_trl.labels.LabelSet`. The JSON Schema shipped beside it
(``decision.schema.json``) is the machine-readable form of the format with BDD-OIA's ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema

from .labels import BDDOIA, SCHEMA_FILE, Action, LabelSet, Reason

# BDD-OIA's vocabularies (``vlmrl_trl/label_sets/bddoia.json``), bit order as in the released label files.
ACTIONS: tuple[Action, ...] = BDDOIA.actions
REASONS: tuple[Reason, ...] = BDDOIA.reasons
ACTION_IDS: tuple[str, ...] = BDDOIA.action_ids
REASON_IDS: tuple[str, ...] = BDDOIA.reason_ids
NUM_ACTIONS = BDDOIA.num_actions
NUM_REASONS = BDDOIA.num_reasons
FIELDS: tuple[str, ...] = ("scene", "actions", "reasons")


@cache
def decision_json_schema() -> dict[str, Any]:
    """The shipped JSON Schema of a BDD-OIA decision, checked once against BDD-OIA's label set."""
    schema = json.loads(resources.files("vlmrl_trl").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))
    props = schema["properties"]
    if (
        tuple(props["actions"]["items"]["enum"]) != ACTION_IDS
        or tuple(props["reasons"]["items"]["enum"]) != REASON_IDS
    ):
        raise RuntimeError(f"{SCHEMA_FILE} and the bddoia label set disagree on the action/reason ids")
    return schema


@dataclass(frozen=True)
class Decision:
    """A schema-valid driving decision."""

    scene: str
    actions: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def action_bits(self, labels: LabelSet = BDDOIA) -> list[int]:
        """The action vector of this decision over ``labels`` (4 bits for BDD-OIA)."""
        return ids_to_bits(self.actions, labels.action_ids)

    def reason_bits(self, labels: LabelSet = BDDOIA) -> list[int]:
        """The reason vector of this decision over ``labels`` (21 bits for BDD-OIA)."""
        return ids_to_bits(self.reasons, labels.reason_ids)

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "actions": list(self.actions), "reasons": list(self.reasons)}

    def to_json(self) -> str:
        """Compact JSON, fields in schema order: the exact text the model is trained to write."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_bits(
        cls, action_bits: Sequence[int], reason_bits: Sequence[int], scene: str = "", labels: LabelSet = BDDOIA
    ) -> Decision:
        """Build a decision from label vectors over ``labels`` (BDD-OIA: 4 and 21 bits)."""
        return cls(scene, bits_to_ids(action_bits, labels.action_ids), bits_to_ids(reason_bits, labels.reason_ids))


FailureKind = Literal["empty", "no_json", "invalid_json", "schema", "unknown_id"]


@dataclass(frozen=True)
class ParseFailure:
    """Why a model output is not a valid decision; ``path`` is the JSON path of a schema violation."""

    kind: FailureKind
    message: str
    path: str = "$"
    obj: Any = field(default=None, compare=False)

    def __str__(self) -> str:
        return (
            f"{self.kind} at {self.path}: {self.message}"
            if self.kind in ("schema", "unknown_id")
            else f"{self.kind}: {self.message}"
        )


@dataclass(frozen=True)
class ExtractedJSON:
    """The first JSON object found in a text, with the text around it."""

    obj: dict[str, Any]
    start: int
    end: int
    outside: str  # non-whitespace text outside the object, code fences removed
    alone: bool  # the text is the object and nothing else, whitespace aside (no prose, no code fence)


_FENCE = re.compile(r"```[a-zA-Z]*")
_DECODER = json.JSONDecoder()


def extract_json_object(text: str) -> ExtractedJSON | ParseFailure:
    """Find the first JSON object in ``text`` (code fences and chatter around it tolerated). Never raises."""
    if not isinstance(text, str) or not text.strip():
        return ParseFailure("empty", "the output is empty")
    first_error: str | None = None
    start = text.find("{")
    while start != -1:
        try:
            obj, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
            first_error = first_error or str(err)
        else:
            if isinstance(obj, dict):
                outside = _FENCE.sub("", text[:start] + text[end:]).strip()
                alone = not (text[:start].strip() or text[end:].strip())
                return ExtractedJSON(obj, start, end, outside, alone)
        start = text.find("{", start + 1)
    if first_error is None:
        return ParseFailure("no_json", "no JSON object in the output")
    return ParseFailure("invalid_json", first_error)


def validate_decision_obj(obj: Any, labels: LabelSet = BDDOIA) -> Decision | ParseFailure:
    """Check a decoded JSON value against the decision schema of ``labels``; the violation reported names its
    JSON path."""
    errors = schema_errors(obj, labels)
    if errors:
        # Structure outranks vocabulary: a non-string item (``1``) fails ``type`` and ``enum``; it is a type error.
        structural = [e for e in errors if e.validator != "enum"]
        error = jsonschema.exceptions.best_match(structural or errors)
        kind: FailureKind = "schema" if structural else "unknown_id"
        return ParseFailure(kind, error.message, error.json_path, obj)
    return Decision(obj["scene"], tuple(obj["actions"]), tuple(obj["reasons"]))


def schema_errors(obj: Any, labels: LabelSet = BDDOIA) -> list[jsonschema.ValidationError]:
    """Every violation of the decision schema of ``labels`` by a decoded JSON value (empty when valid), for
    graded checks."""
    return list(labels.validator.iter_errors(obj))


def parse_decision(text: str, labels: LabelSet = BDDOIA) -> Decision | ParseFailure:
    """Parse a model output into a :class:`Decision` over ``labels``, or say why it is not one. Never raises."""
    found = extract_json_object(text)
    if isinstance(found, ParseFailure):
        return found
    return validate_decision_obj(found.obj, labels)


def ids_to_bits(ids: Sequence[str], vocabulary: Sequence[str]) -> list[int]:
    """Multi-hot vector over ``vocabulary``; ids outside it are an error."""
    bits = [0] * len(vocabulary)
    index = {name: i for i, name in enumerate(vocabulary)}
    for name in ids:
        if name not in index:
            raise ValueError(f"unknown id {name!r}; expected one of {list(vocabulary)}")
        bits[index[name]] = 1
    return bits


def bits_to_ids(bits: Sequence[int], vocabulary: Sequence[str]) -> tuple[str, ...]:
    """Ids of the set bits, in vocabulary order; the vector must have one 0/1 entry per id."""
    if len(bits) != len(vocabulary):
        raise ValueError(f"expected {len(vocabulary)} label bits, got {len(bits)}")
    if any(b not in (0, 1) for b in bits):
        raise ValueError(f"label bits must be 0 or 1, got {list(bits)}")
    return tuple(name for name, b in zip(vocabulary, bits, strict=True) if b)


def render_decision(
    action_bits: Sequence[int], reason_bits: Sequence[int], scene: str = "", labels: LabelSet = BDDOIA
) -> str:
    """The target JSON text for a labelled clip (SFT completions)."""
    return Decision.from_bits(action_bits, reason_bits, scene, labels).to_json()


def reason_action_conflicts(decision: Decision, labels: LabelSet = BDDOIA) -> list[str]:
    """Reasons that contradict the decision's actions: a ``requires`` reason whose action is missing,
    or a ``forbids`` reason whose action is present (e.g. ``solid_left_line`` with ``turn_left``)."""
    return labels.conflicts(decision.actions, decision.reasons)


def describe_format(labels: LabelSet = BDDOIA) -> str:
    """One line naming the JSON fields and the allowed ids, for instruction prompts."""
    return labels.describe_format()
