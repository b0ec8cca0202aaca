"""Every reward takes any completion (text, JSON-ish fragments, byte junk, chat messages) without raising, and
returns finite values in its documented range."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmrl_trl.rewards import ActionReasoningReward, ClipAlignmentReward, StructureReward
from vlmrl_trl.schema import ACTION_IDS, REASON_IDS

FRAGMENTS = ['{"scene": ', '"a road"', '"actions": [', '"reasons": [', '"stop"', '"fly"', "]", "}", ",", "{", "```"]
ids = st.lists(st.sampled_from([*ACTION_IDS, *REASON_IDS, "unknown", ""]), max_size=4)
decisions = st.fixed_dictionaries(
    {"scene": st.one_of(st.text(max_size=30), st.integers()), "actions": ids, "reasons": ids}
).map(json.dumps)
texts = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.binary(max_size=100),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.tuples(st.text(max_size=20), decisions, st.text(max_size=20)).map("".join),
    decisions,
)
completions = st.one_of(texts, texts.map(lambda t: [{"role": "assistant", "content": t}]))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def rewards(tiny_clip):
    return {
        "clip_alignment": (ClipAlignmentReward(encoder=tiny_clip), -1.0, 1.0),
        "clip_alignment_clipscore": (ClipAlignmentReward(encoder=tiny_clip, clipscore_weight=2.5), 0.0, 2.5),
        "action_reasoning": (ActionReasoningReward(), 0.0, 1.0),
        "structure": (StructureReward(), 0.0, 1.0),
    }


@SETTINGS
@given(batch=st.lists(completions, min_size=1, max_size=3))
def test_any_completion_gets_a_finite_reward_in_range(rewards, make_clip, batch):
    n = len(batch)
    columns = {
        "images": [make_clip(0)] * n,
        "actions": [[0, 1, 0, 0]] * n,
        "reasons": [[0, 0, 0, 1] + [0] * 17] * n,
    }
    for name, (reward, low, high) in rewards.items():
        values = reward(prompts=[None] * n, completions=batch, completion_ids=None, **columns)
        assert len(values) == n, name
        for value in values:
            assert isinstance(value, float) and math.isfinite(value), name
            assert low - 1e-6 <= value <= high + 1e-6, (name, value)
