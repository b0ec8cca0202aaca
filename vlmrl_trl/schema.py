"""The driving decision: BDD-OIA's action and reason vocabularies, the output JSON format, parsing.

Everything that reads or writes a model's answer (prompts, SFT targets, rewards, metrics) goes through
this module, so the vocabulary and the JSON format have one definition. The JSON Schema shipped beside
it (``decision.schema.json``) is the machine-readable form of the same format.
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

SCHEMA_FILE = "decision.schema.json"


@dataclass(frozen=True)
class Action:
    """One of BDD-OIA's four action bits."""

    bit: int
    id: str
    label: str


@dataclass(frozen=True)
class Reason:
    """One of BDD-OIA's 21 explanation bits and the action it implies (``requires``) or rules out."""

    bit: int
    id: str
    label: str
    action: str
    effect: Literal["requires", "forbids"]


# Bit order as in the released label files (see ../shared/bddoia-labels/README.md), not the paper's table.
ACTIONS: tuple[Action, ...] = (
    Action(0, "move_forward", "move forward"),
    Action(1, "stop", "stop/slow down"),
    Action(2, "turn_left", "turn left (or change to the left lane)"),
    Action(3, "turn_right", "turn right (or change to the right lane)"),
)

REASONS: tuple[Reason, ...] = (
    Reason(0, "follow_traffic", "follow traffic", "move_forward", "requires"),
    Reason(1, "road_clear", "the road is clear", "move_forward", "requires"),
    Reason(2, "green_light", "the traffic light is green", "move_forward", "requires"),
    Reason(3, "obstacle_car", "obstacle: car", "stop", "requires"),
    Reason(4, "obstacle_person", "obstacle: person/pedestrian", "stop", "requires"),
    Reason(5, "obstacle_rider", "obstacle: rider", "stop", "requires"),
    Reason(6, "obstacle_other", "obstacle: others", "stop", "requires"),
    Reason(7, "red_light", "the traffic light is red", "stop", "requires"),
    Reason(8, "traffic_sign", "traffic sign", "stop", "requires"),
    Reason(9, "front_car_turning_left", "the front car is turning left", "turn_left", "requires"),
    Reason(10, "on_left_turn_lane", "on the left-turn lane", "turn_left", "requires"),
    Reason(11, "light_allows_left", "the traffic light allows turning left", "turn_left", "requires"),
    Reason(12, "front_car_turning_right", "the front car is turning right", "turn_right", "requires"),
    Reason(13, "on_right_turn_lane", "on the right-turn lane", "turn_right", "requires"),
    Reason(14, "light_allows_right", "the traffic light allows turning right", "turn_right", "requires"),
    Reason(15, "obstacle_left_lane", "obstacles on the left lane", "turn_left", "forbids"),
    Reason(16, "no_left_lane", "no lane on the left", "turn_left", "forbids"),
    Reason(17, "solid_left_line", "solid line on the left", "turn_left", "forbids"),
    Reason(18, "obstacle_right_lane", "obstacles on the right lane", "turn_right", "forbids"),
    Reason(19, "no_right_lane", "no lane on the right", "turn_right", "forbids"),
    Reason(20, "solid_right_line", "solid line on the right", "turn_right", "forbids"),
)

ACTION_IDS: tuple[str, ...] = tuple(a.id for a in ACTIONS)
REASON_IDS: tuple[str, ...] = tuple(r.id for r in REASONS)
NUM_ACTIONS = len(ACTIONS)
NUM_REASONS = len(REASONS)
FIELDS: tuple[str, ...] = ("scene", "actions", "reasons")


@cache
def decision_json_schema() -> dict[str, Any]:
    """The shipped JSON Schema of a decision, checked once against the vocabularies above."""
    schema = json.loads(resources.files("vlmrl_trl").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))
    props = schema["properties"]
    if (
        tuple(props["actions"]["items"]["enum"]) != ACTION_IDS
        or tuple(props["reasons"]["items"]["enum"]) != REASON_IDS
    ):
        raise RuntimeError(f"{SCHEMA_FILE} and vlmrl_trl.schema disagree on the action/reason ids")
    return schema


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = decision_json_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@dataclass(frozen=True)
class Decision:
    """A schema-valid driving decision."""

    scene: str
    actions: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def action_bits(self) -> list[int]:
        """The 4-bit BDD-OIA action vector of this decision."""
        return ids_to_bits(self.actions, ACTION_IDS)

    def reason_bits(self) -> list[int]:
        """The 21-bit BDD-OIA reason vector of this decision."""
        return ids_to_bits(self.reasons, REASON_IDS)

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "actions": list(self.actions), "reasons": list(self.reasons)}

    def to_json(self) -> str:
        """Compact JSON, fields in schema order: the exact text the model is trained to write."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_bits(cls, action_bits: Sequence[int], reason_bits: Sequence[int], scene: str = "") -> Decision:
        """Build a decision from BDD-OIA label vectors (4 and 21 bits)."""
        return cls(scene, bits_to_ids(action_bits, ACTION_IDS), bits_to_ids(reason_bits, REASON_IDS))


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


def validate_decision_obj(obj: Any) -> Decision | ParseFailure:
    """Check a decoded JSON value against the shipped schema; the violation reported names its JSON path."""
    errors = schema_errors(obj)
    if errors:
        # Structure outranks vocabulary: a non-string item (``1``) fails ``type`` and ``enum``; it is a type error.
        structural = [e for e in errors if e.validator != "enum"]
        error = jsonschema.exceptions.best_match(structural or errors)
        kind: FailureKind = "schema" if structural else "unknown_id"
        return ParseFailure(kind, error.message, error.json_path, obj)
    return Decision(obj["scene"], tuple(obj["actions"]), tuple(obj["reasons"]))


def schema_errors(obj: Any) -> list[jsonschema.ValidationError]:
    """Every violation of the shipped schema by a decoded JSON value (empty when valid), for graded checks."""
    return list(_validator().iter_errors(obj))


def parse_decision(text: str) -> Decision | ParseFailure:
    """Parse a model output into a :class:`Decision`, or say why it is not one. Never raises."""
    found = extract_json_object(text)
    if isinstance(found, ParseFailure):
        return found
    return validate_decision_obj(found.obj)


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


def render_decision(action_bits: Sequence[int], reason_bits: Sequence[int], scene: str = "") -> str:
    """The target JSON text for a labelled clip (SFT completions)."""
    return Decision.from_bits(action_bits, reason_bits, scene).to_json()


def reason_action_conflicts(decision: Decision) -> list[str]:
    """Reasons that contradict the decision's actions: a ``requires`` reason whose action is missing,
    or a ``forbids`` reason whose action is present (e.g. ``solid_left_line`` with ``turn_left``)."""
    by_id = {r.id: r for r in REASONS}
    actions = set(decision.actions)
    return [rid for rid in decision.reasons if (by_id[rid].effect == "requires") != (by_id[rid].action in actions)]


def describe_format() -> str:
    """One line naming the JSON fields and the allowed ids, for instruction prompts."""
    return (
        'Answer with one JSON object {"scene": "<what you see>", "actions": [...], "reasons": [...]} '
        f"using actions from {', '.join(ACTION_IDS)} and reasons from {', '.join(REASON_IDS)}."
    )
