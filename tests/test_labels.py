"""The label set as data: BDD-OIA's file is the default, and a custom set drives prompts, parsing, R2, R3, metrics."""

from __future__ import annotations

import json
from dataclasses import astuple

import pytest

from vlmrl_trl.data.formatting import INSTRUCTION, build_prompt, sft_target
from vlmrl_trl.labels import BDDOIA, LabelSet, LabelSetError, load_label_set, shipped_label_sets
from vlmrl_trl.metrics import decision_metrics
from vlmrl_trl.rewards import build_reward
from vlmrl_trl.schema import ACTIONS, REASONS, Decision, decision_json_schema, parse_decision

LANES = {
    "name": "lanes",
    "safety_action": "brake",
    "actions": [{"id": "keep", "label": "keep the lane"}, {"id": "brake"}, {"id": "change", "label": "change lane"}],
    "reasons": [
        {"id": "clear_road", "label": "the road is clear", "requires": "keep"},
        {"id": "obstacle", "label": "an obstacle ahead", "requires": "brake"},
        {"id": "solid_line", "label": "a solid line", "forbids": "change"},
    ],
}


@pytest.fixture
def lanes(tmp_path) -> LabelSet:
    path = tmp_path / "lanes.json"
    path.write_text(json.dumps(LANES))
    return load_label_set(str(path))


def test_bddoia_is_the_shipped_default_and_matches_the_schema_module():
    assert shipped_label_sets() == ["bddoia"] and load_label_set() is BDDOIA
    assert [astuple(a) for a in BDDOIA.actions] == [astuple(a) for a in ACTIONS]
    assert [astuple(r) for r in BDDOIA.reasons] == [astuple(r) for r in REASONS]
    assert BDDOIA.json_schema == decision_json_schema() and BDDOIA.safety_action == "stop"
    assert LabelSet.from_dict(BDDOIA.to_dict(), BDDOIA.source) == BDDOIA


def test_a_custom_label_set_drives_prompt_target_parsing_and_metrics(lanes):
    assert lanes.action_ids == ("keep", "brake", "change") and lanes.labels["brake"] == "brake"
    text = build_prompt(1, labels=lanes)[0]["content"][-1]["text"]
    assert "keep, brake, change" in text and "clear_road, obstacle, solid_line" in text and text != INSTRUCTION
    target = sft_target([0, 1, 0], [0, 1, 0], "a car ahead", labels=lanes)
    assert target == '{"scene":"a car ahead","actions":["brake"],"reasons":["obstacle"]}'
    assert parse_decision(target, lanes) == Decision("a car ahead", ("brake",), ("obstacle",))
    assert parse_decision(target).kind == "unknown_id"  # not BDD-OIA ids
    metrics = decision_metrics([target], [[0, 1, 0]], [[0, 1, 0]], lanes)
    assert metrics["actions"]["exact_match"] == 1.0 and list(metrics["reasons"]["per_class"]) == list(lanes.reason_ids)


def test_r2_and_r3_read_the_label_set(lanes):
    r2, r3 = build_reward("action_reasoning", {"label_set": lanes}), build_reward("structure", {"label_set": lanes})
    right = '{"scene":"s","actions":["keep"],"reasons":["clear_road"]}'
    missed_brake = '{"scene":"s","actions":["change"],"reasons":["solid_line"]}'  # and inconsistent
    rewards = r2(None, [right, missed_brake], actions=[[1, 0, 0], [0, 1, 0]], reasons=[[1, 0, 0], [0, 1, 0]])
    assert rewards[0] == 1.0
    parts = r2.components(parse_decision(missed_brake, lanes), frozenset({"brake"}), frozenset({"obstacle"}))
    assert parts == {"action_f1": 0.0, "reason_f1": 0.0, "consistency": 0.0, "safety": 0.0}
    assert r3(None, [right]) == [1.0] and r3(None, ['{"scene":"s","actions":["stop"],"reasons":[]}']) < [1.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"actions": []}, "'actions' must list at least one action"),
        ({"actions": [{"id": "Keep"}]}, r"actions\[0\]: 'id' must be lower_snake_case"),
        ({"actions": [{"id": "a"}, {"id": "a"}]}, r"actions: ids \['a'\] appear more than once"),
        ({"reasons": [{"id": "r", "requires": "fly"}]}, r"reasons\[0\]: requires 'fly' is not an action id"),
        ({"reasons": [{"id": "r"}]}, r"reasons\[0\]: a reason names its action with exactly one of"),
        ({"safety_action": "stop"}, "safety_action 'stop' is not an action id"),
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_a_bad_label_set_names_the_file_and_entry(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**LANES, **change}))
    with pytest.raises(LabelSetError, match=f"bad.json: {message}"):
        load_label_set(path)


def test_unknown_names_and_yaml_files(tmp_path):
    with pytest.raises(LabelSetError, match="unknown label set 'bdd'; shipped: bddoia"):
        load_label_set("bdd")
    path = tmp_path / "lanes.yaml"
    path.write_text("name: lanes\nactions: [{id: go}, {id: halt}]\n")
    assert load_label_set(path).action_ids == ("go", "halt")
    path.write_text("name: [unclosed\n")
    with pytest.raises(LabelSetError, match="not valid YAML"):
        load_label_set(path)
