"""R2 action-reasoning: each term of the formula on hand-built decisions."""

from __future__ import annotations

import json

import pytest
from bit_cases import BitCase, bit_cases

from vlmrl_trl.rewards.action_reasoning import ActionReasoningReward, label_ids, set_f1
from vlmrl_trl.schema import ACTION_IDS, REASON_IDS, ids_to_bits, parse_decision


def decision(actions: list[str], reasons: list[str], scene: str = "a street") -> str:
    return json.dumps({"scene": scene, "actions": actions, "reasons": reasons})


def run(reward: ActionReasoningReward, completions: list, actions: list[str], reasons: list[str]) -> list[float]:
    n = len(completions)
    return reward(
        prompts=[None] * n,
        completions=completions,
        completion_ids=None,
        actions=[ids_to_bits(actions, ACTION_IDS)] * n,
        reasons=[ids_to_bits(reasons, REASON_IDS)] * n,
    )


def test_set_f1_counts_an_empty_prediction_for_an_empty_label_as_correct():
    assert set_f1(frozenset(), frozenset()) == 1.0
    assert set_f1(frozenset({"a"}), frozenset()) == 0.0
    assert set_f1(frozenset({"a", "b"}), frozenset({"a"})) == pytest.approx(2 / 3)


def test_exact_decision_scores_one_and_unparseable_output_zero():
    reward = ActionReasoningReward()
    got = run(reward, [decision(["stop"], ["obstacle_car"]), "stop, there is a car", ""], ["stop"], ["obstacle_car"])
    assert got == [1.0, 0.0, 0.0]


def test_weighted_mean_of_the_four_terms():
    reward = ActionReasoningReward()
    # actions F1 2/3, reasons F1 1, consistent, safe: (2/3 + 1 + 0.5 + 0.5) / 3
    (got,) = run(reward, [decision(["move_forward", "stop"], ["obstacle_car"])], ["stop"], ["obstacle_car"])
    assert got == pytest.approx((2 / 3 + 1 + 0.5 + 0.5) / 3)


def test_reason_contradicting_the_predicted_action_costs_consistency():
    reward = ActionReasoningReward()
    parts = reward.components(
        parse_decision(decision(["turn_left"], ["solid_left_line", "on_left_turn_lane"])),
        frozenset({"turn_left"}),
        frozenset({"on_left_turn_lane"}),
    )
    assert parts["consistency"] == 0.5  # a solid line on the left forbids turning left
    assert parts["reason_f1"] == pytest.approx(2 / 3)


def test_no_predicted_reason_is_vacuously_consistent():
    reward = ActionReasoningReward()
    parts = reward.components(parse_decision(decision(["stop"], [])), frozenset({"stop"}), frozenset())
    assert parts == {"action_f1": 1.0, "reason_f1": 1.0, "consistency": 1.0, "safety": 1.0}


def test_missing_stop_costs_more_than_a_spurious_stop():
    reward = ActionReasoningReward()
    (missed,) = run(reward, [decision(["move_forward"], [])], ["move_forward", "stop"], [])
    (spurious,) = run(reward, [decision(["move_forward", "stop"], [])], ["move_forward"], [])
    assert missed == pytest.approx((2 / 3 + 1 + 0.5 + 0.5 * 0.0) / 3)
    assert spurious == pytest.approx((2 / 3 + 1 + 0.5 + 0.5 * 0.75) / 3)
    assert missed < spurious


def test_weights_select_terms():
    only_actions = ActionReasoningReward(reason_weight=0, consistency_weight=0, safety_weight=0)
    (got,) = run(only_actions, [decision(["move_forward", "stop"], ["red_light"])], ["stop"], ["obstacle_car"])
    assert got == pytest.approx(2 / 3)


def test_conversational_completions_and_id_labels_are_accepted():
    reward = ActionReasoningReward()
    completion = [{"role": "assistant", "content": [{"type": "text", "text": decision(["stop"], ["red_light"])}]}]
    got = reward(prompts=[None], completions=[completion], actions=[["stop"]], reasons=[["red_light"]])
    assert got == [1.0]


def test_components_are_logged_through_trl_log_metric():
    logged = {}
    reward = ActionReasoningReward()
    reward(
        prompts=[None, None],
        completions=[decision(["stop"], []), "junk"],
        actions=[["stop"], ["stop"]],
        reasons=[[], []],
        log_metric=logged.__setitem__,
    )
    assert logged["rewards/action_reasoning/parsed"] == 0.5
    assert logged["rewards/action_reasoning/action_f1"] == 1.0


def test_bad_labels_and_options_are_clear_errors():
    reward = ActionReasoningReward()
    with pytest.raises(ValueError, match="dataset column 'actions'"):
        reward(prompts=[None], completions=["x"], reasons=[[0] * 21])
    with pytest.raises(ValueError, match="column 'reasons'.*21 label bits"):
        reward(prompts=[None], completions=["x"], actions=[[1, 0, 0, 0]], reasons=[[0, 1]])
    with pytest.raises(ValueError, match="unknown ids"):
        reward(prompts=[None], completions=["x"], actions=[["fly"]], reasons=[[]])
    with pytest.raises(ValueError, match="'false_stop_cost'"):
        ActionReasoningReward(false_stop_cost=2)
    with pytest.raises(ValueError, match="sum to 0"):
        ActionReasoningReward(action_weight=0, reason_weight=0, consistency_weight=0, safety_weight=0)


@pytest.mark.parametrize("case", bit_cases(4), ids=lambda c: c.name)
def test_label_columns_holding_bits_are_checked_as_bit_vectors(case: BitCase):
    """A row of the ``actions`` column is taken or refused as check_bits decides (tests/bit_cases.py); a list of
    strings is read as ids, so "0"/"1" strings are refused as unknown ids."""
    if case.expected is None:
        with pytest.raises(ValueError, match="column 'actions'"):
            label_ids(case.value, ACTION_IDS, "actions")
        return
    assert label_ids(case.value, ACTION_IDS, "actions") == frozenset({"stop"})
    reward = ActionReasoningReward()
    assert reward(prompts=[None], completions=[decision(["stop"], [])], actions=[case.value], reasons=[[]]) == [1.0]
