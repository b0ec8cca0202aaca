"""``make demo``'s before/after figures for GRPO Stage 2 (the full pipeline is run by hand, see the README)."""

from __future__ import annotations

import math

import pytest

from vlmrl_trl.demo import paired_change, r2_by_clip
from vlmrl_trl.predict import prediction_record, write_predictions
from vlmrl_trl.schema import REASON_IDS, render_decision

ACTIONS = [0, 1, 0, 0]  # stop
REASONS = [int(r == "red_light") for r in REASON_IDS]


def test_paired_change_by_hand():
    change = paired_change({"a": 0.5, "b": 0.2, "c": 0.8}, {"a": 0.7, "b": 0.2, "c": 0.9})
    # diffs 0.2, 0.0, 0.1: mean 0.1, sample variance 0.01, standard error sqrt(0.01 / 3)
    assert change["change"] == pytest.approx(0.1)
    assert change["std_error"] == pytest.approx(math.sqrt(0.01 / 3))
    assert change["before"] == pytest.approx(0.5) and change["after"] == pytest.approx(0.6)
    assert change["clips"] == 3


@pytest.mark.parametrize(
    ("before", "after"),
    [({"a": 0.0, "b": 0.0}, {"a": 1.0, "x": 1.0}), ({"a": 0.0}, {"a": 1.0})],
    ids=["different clips", "one clip"],
)
def test_paired_change_needs_the_same_clips(before, after):
    with pytest.raises(ValueError, match="same clips"):
        paired_change(before, after)


def test_r2_by_clip_scores_each_prediction_against_its_labels(tmp_path):
    example = {"actions": ACTIONS, "reasons": REASONS, "num_frames": 4}
    right = render_decision(ACTIONS, REASONS, "a red light")
    records = [
        prediction_record(right, {**example, "clip_id": "right"}),
        prediction_record("not json", {**example, "clip_id": "junk"}),
    ]
    scores = r2_by_clip(write_predictions(records, tmp_path / "predictions.jsonl"))
    assert scores == {"right": pytest.approx(1.0), "junk": 0.0}
