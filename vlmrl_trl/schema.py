"""The driving decision: the output JSON format and its parsing, over a label set (BDD-OIA's by default).

Everything that reads or writes a model's answer (prompts, SFT targets, rewards, metrics) goes through
this module, so the JSON format has one definition; the vocabularies are data (:mod:`vlmrl_trl.labels`), and
the functions here take a ``labels`` :class:`~vlmrl_trl.labels.LabelSet`. The JSON Schema shipped beside it
(``decision.schema.json``) is the machine-readable form of the format with BDD-OIA's ids.
"""

from __future__ import annotations

import heapq
import json
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema
import numpy as np

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

# Finding the first JSON object: one decode attempt per "{" is quadratic on long outputs (each failed attempt scans
# ahead and builds an error message that counts lines from the start). Instead, regular expressions matching JSON
# as Python's decoder reads it (strict strings, its whitespace, NaN/Infinity) reject most "{" at once, in C, and
# one left-to-right parse tries every object it opens; only the object found is decoded.
MAX_DEPTH = 200  # objects nested deeper are not decoded (Python's decoder itself stops near 1000 levels)
_WS = r"[ \t\n\r]*+"
_STRING = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_LITERALS = r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][-+]?[0-9]++)?+|true|false|null|NaN|Infinity|-Infinity"
_SCALAR = rf"(?:{_STRING}|{_LITERALS})"
_PAIRS = rf"{_STRING}{_WS}:{_WS}(?:{_SCALAR}{_WS},{_WS}{_STRING}{_WS}:{_WS})*+"  # keys and flat values, then a value
_ITEMS = rf"(?:{_SCALAR}{_WS},{_WS})*+"  # flat array items, then a value
_DESCENT = rf"(?:\[{_WS}{_ITEMS}|\{{{_WS}{_PAIRS})"
# A "{" that may start an object: "{}", a flat object, or up to 8 nested openings and what must follow the first
# close inside the object. Every "{" an object decodes from matches. The openings are matched once (possessive; an
# 8th is tried only after 7), so a long flat array inside is scanned once, not once per alternative.
_OPENING = re.compile(
    rf"\{{{_WS}(?:\}}|{_PAIRS}(?:{_SCALAR}{_WS}\}}|{_DESCENT}{{0,7}}+(?:{_DESCENT}|"
    rf"(?:(?:{_SCALAR}{_WS})?[}}\]]|\{{{_WS}\}}){_WS}(?:,{_WS}[-\"\[{{0-9tfnNI]|[}}\]]))))"
)
# In the parse: a value (groups: scalar; "{", "}" of "{}"; "[", "]" of "[]"), what follows a value, more flat items.
_VALUE = re.compile(rf"{_WS}(?:({_SCALAR})|(\{{){_WS}(?:(\}})|{_PAIRS})|(\[){_WS}(?:(\])|{_ITEMS}))")
_AFTER = re.compile(rf"{_WS}(?:(,){_WS}|[}}\]])")
_MORE_PAIRS = re.compile(_PAIRS)
_MORE_ITEMS = re.compile(_ITEMS)
# MAX_DEPTH nested openings with no "{" in their strings: whatever is open before them is too deep to decode.
_PLAIN = _STRING.replace(r"\x1f]", r"\x1f{]")
_PLAIN_SCALAR = rf"(?:{_PLAIN}|{_LITERALS})"
_DEEP = re.compile(
    rf"(?:{_WS}(?:\[{_WS}(?:{_PLAIN_SCALAR}{_WS},{_WS})*+|\{{{_WS}{_PLAIN}{_WS}:{_WS}"
    rf"(?:{_PLAIN_SCALAR}{_WS},{_WS}{_PLAIN}{_WS}:{_WS})*+)){{{MAX_DEPTH}}}"
)
_ARRAY = -1  # an open array on the parse's stack (an open object is its start)


class _Openings:
    """The next "{" at or after a position that ``_OPENING`` matches, each stretch of text searched once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.searched = (-1, -1)

    def after(self, pos: int) -> int:
        low, found = self.searched
        if not low <= pos <= found:
            match = _OPENING.search(self.text, pos)
            self.searched = (pos, match.start() if match else len(self.text))
        return self.searched[1]


def _earlier(best: tuple[int, int] | None, start: int, end: int) -> tuple[int, int]:
    return (start, end) if best is None or start < best[0] else best


def _parse_from(
    text: str, start: int, openings: _Openings, tried: set[int], inner: list[int]
) -> tuple[tuple[int, int] | None, int]:
    """Parse from the "{" at ``start`` until the parse fails or its outermost open object closes, trying every object
    it opens at once (added to ``tried``); "{" inside its strings that may start objects go to ``inner``. Returns
    the earliest start whose object closed, with its end, and where the parse stopped."""

    def note_strings(low: int, high: int) -> None:
        if text.find("{", low, high) != -1:
            found = openings.after(low)
            while found < high:
                inner.append(found)
                found = openings.after(found + 1)

    stack: list[int] = []
    best: tuple[int, int] | None = None
    pos = start
    while True:
        match = _VALUE.match(text, pos)
        if match is None:
            return best, pos
        pos = match.end()
        if match.start(1) >= 0:
            note_strings(match.start(1), pos)
        elif match.start(3) >= 0 or match.start(5) >= 0:  # "{}" or "[]"
            if match.start(3) >= 0:
                best = _earlier(best, match.start(2), pos)
            if not stack:
                return best, pos
        else:
            opener = max(match.start(2), match.start(4))
            note_strings(opener + 1, pos)
            if match.start(2) >= 0:
                tried.add(opener)
                stack.append(opener)
            else:
                stack.append(_ARRAY)
            if len(stack) > MAX_DEPTH:
                skipped = None
                while (deep := _DEEP.match(text, pos)) is not None:
                    skipped, pos = pos, deep.end()
                if skipped is not None:  # all open so far is too deep: go on from the last MAX_DEPTH openings
                    if best is not None:
                        return best, pos
                    stack, pos = [], skipped
                    continue
                stack.pop(0)
                live = next((s for s in stack if s != _ARRAY), None)
                if live is None or (best is not None and live > best[0]):
                    return best, pos
            continue
        while True:  # after a value: a comma and more, or closes
            match = _AFTER.match(text, pos)
            if match is None:
                return best, pos
            pos = match.end()
            top = stack[-1]
            if match.start(1) >= 0:
                match = (_MORE_ITEMS if top == _ARRAY else _MORE_PAIRS).match(text, pos)
                if match is None:
                    return best, pos
                note_strings(pos, match.end())
                pos = match.end()
                break
            if (text[pos - 1] == "]") != (top == _ARRAY):
                return best, pos - 1
            stack.pop()
            if top != _ARRAY:
                best = _earlier(best, top, pos)
            live = next((s for s in stack if s != _ARRAY), None)
            if live is None or (best is not None and live > best[0]):
                return best, pos


def _first_object_span(text: str, start: int) -> tuple[int, int] | None:
    """Start and end of the first object that decodes from a "{" at or after ``start``, in linear time but for
    contrived texts: every "{" is tried, most by ``_OPENING`` alone, the rest by one shared parse per lexing."""
    openings, tried, pending = _Openings(text), set(), []
    frontier, best = start, None
    while True:
        following = openings.after(frontier)
        if pending and pending[0] < following:
            candidate = heapq.heappop(pending)
        elif following < len(text):
            candidate = frontier = following
            frontier += 1
        else:
            return best
        if best is not None and candidate >= best[0]:
            return best
        if candidate in tried:
            continue
        tried.add(candidate)
        inner: list[int] = []
        found, stop = _parse_from(text, candidate, openings, tried, inner)
        for position in inner:
            heapq.heappush(pending, position)
        frontier = max(frontier, stop)
        if found is not None:
            best = _earlier(best, *found)


def extract_json_object(text: str) -> ExtractedJSON | ParseFailure:
    """Find the first JSON object in ``text`` (code fences and chatter around it tolerated), the object Python's
    ``json`` decodes from the first "{" where one decodes, in about linear time. Never raises."""
    if not isinstance(text, str) or not text.strip():
        return ParseFailure("empty", "the output is empty")
    first = text.find("{")
    if first == -1:
        return ParseFailure("no_json", "no JSON object in the output")
    search_from = first
    while (span := _first_object_span(text, search_from)) is not None:
        start, end = span
        try:
            obj, length = _DECODER.raw_decode(text[start:end])
        except (ValueError, RecursionError):  # an integer too long for int(), or a call stack already deep
            search_from = start + 1
            continue
        end = start + length
        outside = _FENCE.sub("", text[:start] + text[end:]).strip()
        alone = not (text[:start].strip() or text[end:].strip())
        return ExtractedJSON(obj, start, end, outside, alone)
    try:  # one decode from the first "{" gives the message, as before
        _DECODER.raw_decode(text, first)
    except (ValueError, RecursionError) as err:
        return ParseFailure("invalid_json", str(err))
    return ParseFailure("invalid_json", f"the JSON object is nested deeper than {MAX_DEPTH} levels")


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


def check_bits(value: Any, length: int | tuple[int, ...]) -> list[int]:
    """``value`` as a list of 0/1 ints of ``length`` items (or any of several lengths), else ValueError saying why.
    The one check of label bits wherever they come in: lists, tuples and 1-D numpy arrays of ints or bools, and the
    floats 0.0 and 1.0 that pandas and JSON round-trips give; callers put the reason into their own error."""
    lengths = (length,) if isinstance(length, int) else length
    expected = f"a list of {' or '.join(map(str, lengths))} label bits"
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"expected {expected}, got a {value.ndim}-D array of shape {value.shape}")
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected {expected}, got {type(value).__name__} {reprlib.repr(value)}")
    if len(value) not in lengths:
        raise ValueError(f"expected {expected}, got {len(value)} value{'s' * (len(value) != 1)}")
    bits = []
    for pos, bit in enumerate(value):
        item = bit.item() if isinstance(bit, np.bool_ | np.integer | np.floating) else bit
        if not isinstance(item, int | float) or item not in (0, 1):  # bools are ints; NaN, 0.5 and 2 are refused
            raise ValueError(f"label bits must be 0 or 1, got {bit!r} at position {pos} of {reprlib.repr(value)}")
        bits.append(int(item))
    return bits


def bits_to_ids(bits: Sequence[int], vocabulary: Sequence[str]) -> tuple[str, ...]:
    """Ids of the set bits, in vocabulary order; the vector must be label bits (:func:`check_bits`), one per id."""
    checked = check_bits(bits, len(vocabulary))
    return tuple(name for name, b in zip(vocabulary, checked, strict=True) if b)


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
