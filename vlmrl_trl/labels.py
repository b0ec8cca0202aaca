"""The label set as data: the actions, the reasons and which action each reason implies or rules out.

A label set is a JSON (or YAML) file; BDD-OIA's ships as ``vlmrl_trl/label_sets/bddoia.json`` and is the default.
Prompts, SFT targets, the decision JSON Schema, R2, R3, the metrics and the report read a :class:`LabelSet`, so a
taxonomy of your own is a file, not code (format in docs/data.md)::

    {"name": "lanes", "safety_action": "brake",
     "actions": [{"id": "keep", "label": "keep the lane"}, {"id": "brake", "label": "brake"}],
     "reasons": [{"id": "clear_road", "label": "the road is clear", "requires": "keep"},
                 {"id": "obstacle", "label": "an obstacle ahead", "forbids": "keep"}]}

Bits follow the order of the lists: a clip's ``actions`` column holds one 0/1 per action, ``reasons`` one per reason.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema

DEFAULT_LABEL_SET = "bddoia"
SCHEMA_FILE = "decision.schema.json"
_ID = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
_KEYS = frozenset({"name", "description", "safety_action", "actions", "reasons"})


@dataclass(frozen=True)
class Action:
    """One action bit of a label set."""

    bit: int
    id: str
    label: str


@dataclass(frozen=True)
class Reason:
    """One reason bit and the action it implies (``requires``) or rules out (``forbids``)."""

    bit: int
    id: str
    label: str
    action: str
    effect: Literal["requires", "forbids"]


class LabelSetError(ValueError):
    """An invalid label set file; the message names the file and the entry."""


@cache
def _shipped_schema() -> dict[str, Any]:
    return json.loads(resources.files("vlmrl_trl").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LabelSet:
    """Actions and reasons in bit order, the action R2's safety term watches, and where the set was read from."""

    name: str
    actions: tuple[Action, ...]
    reasons: tuple[Reason, ...]
    safety_action: str | None = None
    description: str = ""
    source: str = ""

    @cached_property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.actions)

    @cached_property
    def reason_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.reasons)

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    @property
    def num_reasons(self) -> int:
        return len(self.reasons)

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """The decision JSON Schema: the shipped ``decision.schema.json`` (BDD-OIA's), with this set's ids."""
        schema = copy.deepcopy(_shipped_schema())
        props = schema["properties"]
        if (props["actions"]["items"]["enum"], props["reasons"]["items"]["enum"]) != (
            list(self.action_ids),
            list(self.reason_ids),
        ):
            props["actions"]["items"]["enum"] = list(self.action_ids)
            props["reasons"]["items"]["enum"] = list(self.reason_ids)
            schema.pop("$id", None)
            schema["description"] = f"One driving decision with the {self.name!r} label set ({self.source})."
        return schema

    @cached_property
    def validator(self) -> jsonschema.protocols.Validator:
        """A checked validator of :attr:`json_schema`, built once per label set."""
        cls = jsonschema.validators.validator_for(self.json_schema)
        cls.check_schema(self.json_schema)
        return cls(self.json_schema)

    @cached_property
    def labels(self) -> dict[str, str]:
        """Human-readable label of every action and reason id."""
        return {item.id: item.label for item in (*self.actions, *self.reasons)}

    def describe_format(self) -> str:
        """One line naming the JSON fields and the allowed ids, for instruction prompts."""
        return (
            'Answer with one JSON object {"scene": "<what you see>", "actions": [...], "reasons": [...]} '
            f"using actions from {', '.join(self.action_ids)} and reasons from {', '.join(self.reason_ids)}."
        )

    def conflicts(self, actions: Iterable[str], reasons: Iterable[str]) -> list[str]:
        """Reasons that contradict the actions: a ``requires`` reason whose action is missing, or a ``forbids``
        reason whose action is present."""
        by_id = {r.id: r for r in self.reasons}
        present = set(actions)
        return [rid for rid in reasons if (by_id[rid].effect == "requires") != (by_id[rid].action in present)]

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> LabelSet:
        """A checked label set from its file's content; errors name ``source`` and the entry."""
        if not isinstance(data, Mapping):
            raise LabelSetError(f"{source}: a label set is an object with 'name', 'actions' and 'reasons'")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise LabelSetError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(_KEYS))}")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise LabelSetError(f"{source}: 'name' must be a non-empty string, got {name!r}")
        actions = tuple(
            Action(bit, *_entry(item, f"{source}: actions[{bit}]", ())[:2])
            for bit, item in enumerate(_list(data, "actions", source))
        )
        if not actions:
            raise LabelSetError(f"{source}: 'actions' must list at least one action")
        _unique([a.id for a in actions], f"{source}: actions")
        action_ids = [a.id for a in actions]
        reasons = tuple(
            Reason(bit, *_entry(item, f"{source}: reasons[{bit}]", action_ids))
            for bit, item in enumerate(_list(data, "reasons", source))
        )
        _unique([r.id for r in reasons], f"{source}: reasons")
        safety = data.get("safety_action")
        if safety is not None and safety not in action_ids:
            raise LabelSetError(f"{source}: safety_action {safety!r} is not an action id ({', '.join(action_ids)})")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise LabelSetError(f"{source}: 'description' must be a string")
        return cls(name, actions, reasons, safety, description, source)

    def to_dict(self) -> dict[str, Any]:
        """The file form of this label set (``from_dict`` of it gives it back)."""
        return {
            "name": self.name,
            "description": self.description,
            "safety_action": self.safety_action,
            "actions": [{"id": a.id, "label": a.label} for a in self.actions],
            "reasons": [{"id": r.id, "label": r.label, r.effect: r.action} for r in self.reasons],
        }


def _list(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key, [] if key == "reasons" else None)
    if not isinstance(value, list):
        raise LabelSetError(f"{source}: {key!r} must be a list of {{'id', 'label'}} objects, got {value!r}")
    return value


def _entry(item: Any, where: str, action_ids: Iterable[str]) -> tuple[str, ...]:
    """(id, label) of an action, or (id, label, action, effect) of a reason when ``action_ids`` are given."""
    if not isinstance(item, Mapping):
        raise LabelSetError(f"{where}: expected an object with 'id' and 'label', got {item!r}")
    action_ids = list(action_ids)
    allowed = {"id", "label", "requires", "forbids"} if action_ids else {"id", "label"}
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise LabelSetError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(allowed))}")
    ident = item.get("id")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise LabelSetError(f"{where}: 'id' must be lower_snake_case letters and digits, got {ident!r}")
    label = item.get("label", ident.replace("_", " "))
    if not isinstance(label, str) or not label.strip():
        raise LabelSetError(f"{where}: 'label' must be a non-empty string, got {label!r}")
    if not action_ids:
        return ident, label
    effects = [key for key in ("requires", "forbids") if key in item]
    if len(effects) != 1:
        raise LabelSetError(f"{where}: a reason names its action with exactly one of 'requires' or 'forbids'")
    action = item[effects[0]]
    if action not in action_ids:
        raise LabelSetError(f"{where}: {effects[0]} {action!r} is not an action id ({', '.join(action_ids)})")
    return ident, label, action, effects[0]


def _unique(ids: list[str], where: str) -> None:
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise LabelSetError(f"{where}: ids {repeated} appear more than once")


def _read(path: Path) -> LabelSet:
    if not path.is_file():
        raise LabelSetError(f"label set file not found: {path}")
    import yaml

    text = path.read_text(encoding="utf-8")
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        data = yaml.safe_load(text) if is_yaml else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise LabelSetError(f"{path}: not valid {'YAML' if is_yaml else 'JSON'}: {err}") from None
    return LabelSet.from_dict(data, str(path))


def shipped_label_sets() -> list[str]:
    """Names of the label sets shipped with the package (``vlmrl_trl/label_sets/<name>.json``)."""
    folder = resources.files("vlmrl_trl").joinpath("label_sets")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def _shipped(name: str) -> LabelSet:
    """A shipped label set, read once per process."""
    with resources.as_file(resources.files("vlmrl_trl").joinpath("label_sets", f"{name}.json")) as path:
        return _read(Path(path))


def load_label_set(spec: str | Path | LabelSet | None = None) -> LabelSet:
    """A label set by shipped name (``bddoia``, the default for None) or file path (``.json``, ``.yaml``)."""
    if isinstance(spec, LabelSet):
        return spec
    spec = DEFAULT_LABEL_SET if spec is None else spec
    if isinstance(spec, str) and spec in shipped_label_sets():
        return _shipped(spec)
    path = Path(spec)
    if not path.suffix:
        raise LabelSetError(
            f"unknown label set {str(spec)!r}; shipped: {', '.join(shipped_label_sets())}, or a .json/.yaml path"
        )
    return _read(path.resolve())


BDDOIA: LabelSet = load_label_set(DEFAULT_LABEL_SET)
