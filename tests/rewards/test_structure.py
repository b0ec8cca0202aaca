"""R3 structure-formatting: the graded ladder from any JSON object to the exact decision and nothing else."""

from __future__ import annotations

import json

import pytest

from vlmrl_trl.rewards.structure import StructureReward

VALID = {"scene": "a wet road, a bus ahead", "actions": ["stop"], "reasons": ["obstacle_car"]}


def text(obj: object) -> str:
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (text(VALID), 1.0),
        ("  " + text(VALID) + "\n", 1.0),
        ("Sure! " + text(VALID), 0.75),
        ("```json\n" + text(VALID) + "\n```", 0.75),
        (text(VALID) + text(VALID), 0.75),
        (text({**VALID, "scene": "", "reasons": []}), (1 + 1 + 1 / 3 + 1) / 4),
        (text({"scene": "x", "actions": ["stop"]}), 0.25),  # structurally invalid: json credit only
        (text({**VALID, "extra": 1}), 0.25),
        (text({**VALID, "scene": 3}), 0.25),
        (text({**VALID, "actions": ["stop", "fly"]}), (1 + 0.75 + 1 + 1) / 4),
        (text({**VALID, "actions": ["stop", "stop"]}), (1 + 0.75 + 1 + 1) / 4),
        (
            text({**VALID, "actions": ["stop", "stop", "fly"], "reasons": ["why", "obstacle_car"]}),
            (1 + 0.25 + 1 + 1) / 4,
        ),
        (text({}), 0.25),
        # A non-string id is a wrong type, structural like a wrong-type field, not an unknown id.
        (text({"scene": "x", "actions": [1], "reasons": [None]}), 0.25),
        (text({**VALID, "actions": ["stop", {"a": 1}]}), 0.25),
        (text({**VALID, "reasons": [None]}), 0.25),
        (text({**VALID, "actions": ["fly", 1]}), 0.25),
        ('{"scene": "a road", "actions": [', 0.0),
        ("stop because of a car", 0.0),
        ("[1, 2]", 0.0),
        ("", 0.0),
    ],
)
def test_graded_credit(completion: str, expected: float):
    assert StructureReward().score(completion) == pytest.approx(expected)


def test_each_level_of_the_ladder_earns_more():
    reward = StructureReward()
    ladder = [
        "nothing",
        'the answer: {"actions": "stop"}',
        'the answer: {"scene": "", "actions": [], "reasons": []}',
        "the answer: " + text(VALID),
        text(VALID),
    ]
    scores = [reward.score(t) for t in ladder]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)


@pytest.mark.parametrize("item", [1, None, {"a": 1}])
def test_wrong_type_items_score_like_a_wrong_type_field(item):
    """``"actions": [1]`` is as structural as ``"actions": "stop"``: both earn the json credit only."""
    reward = StructureReward()
    wrong_field = reward.components(text({**VALID, "actions": "stop"}))
    for name in ("actions", "reasons"):
        assert reward.components(text({**VALID, name: [item]})) == wrong_field
        assert reward.score(text({**VALID, name: [item]})) < reward.score(text({**VALID, name: ["unknown"]}))


def test_id_penalty_and_weights_are_options():
    strict = StructureReward(id_penalty=1.0, json_weight=0, complete_weight=0, exclusive_weight=0)
    assert strict.score(text({**VALID, "actions": ["fly"]})) == 0.0
    assert strict.score(text(VALID)) == 1.0
    with pytest.raises(ValueError, match="'id_penalty'"):
        StructureReward(id_penalty=-1)


def test_trl_call_with_conversational_completions_logs_components():
    logged = {}
    completions = [[{"role": "assistant", "content": text(VALID)}], [{"role": "assistant", "content": "no"}]]
    got = StructureReward()(prompts=[None, None], completions=completions, log_metric=logged.__setitem__)
    assert got == [1.0, 0.0]
    assert logged["rewards/structure/json"] == 0.5
