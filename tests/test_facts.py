"""Description-fact agreement: true descriptions agree, gamed or borrowed ones do not beat the base rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmrl_trl.data import generate_synthetic, load_bddoia
from vlmrl_trl.data.synthetic import make_clip
from vlmrl_trl.facts import FACTS, fact_agreement, record_fact_agreement, scene_facts, stated_facts
from vlmrl_trl.metrics import format_metrics_table, score_records
from vlmrl_trl.schema import render_decision


@pytest.fixture(scope="module")
def clips():
    return [make_clip(0, "test", i) for i in range(300)]


def test_stated_facts_read_the_generators_wording() -> None:
    stated = stated_facts(
        "A three-lane road, with the car in the left lane. The signal shows green with a green left arrow "
        "and a cyclist rides ahead in the lane."
    )
    assert stated == {
        "red_light": False,
        "green_light": True,
        "stop_sign": False,
        "pedestrian": False,
        "rider": True,
        "car_ahead": False,
        "lanes": 3,
    }
    car = stated_facts("A one-lane street. A green car drives ahead and a person walks into the road.")
    assert car["car_ahead"] and car["pedestrian"] and not car["green_light"] and car["lanes"] == 1
    assert stated_facts("nothing useful")["lanes"] is None


def test_true_descriptions_agree_with_their_scenes_and_beat_the_base_rate(clips) -> None:
    facts = fact_agreement([c.description for c in clips], [scene_facts(c.scene) for c in clips])
    assert set(facts["per_fact"]) == set(FACTS) and facts["n"] == 300
    assert all(f["agreement"] >= 0.99 for f in facts["per_fact"].values())
    assert facts["mean_agreement"] > facts["mean_base_rate"] + 0.2


def test_another_clips_description_or_always_naming_a_pedestrian_does_not_beat_the_base_rate(clips) -> None:
    truths = [scene_facts(c.scene) for c in clips]
    borrowed = fact_agreement([c.description for c in clips[1:] + clips[:1]], truths)
    assert borrowed["mean_agreement"] < borrowed["mean_base_rate"]
    gamed = fact_agreement([c.description + " A pedestrian steps off the curb." for c in clips], truths)
    assert gamed["per_fact"]["pedestrian"]["agreement"] < gamed["per_fact"]["pedestrian"]["base_rate"]


def test_eval_scores_the_facts_of_synthetic_predictions_and_skips_data_without_them(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "synth", train=0, val=0, test=20, seed=1)
    ds = load_bddoia(root, "test")
    records = [
        {
            "clip_id": row["clip_id"],
            "text": render_decision(row["actions"], row["reasons"], row["scene"]),
            "prediction": json.loads(render_decision(row["actions"], row["reasons"], row["scene"])),
            "actions": row["actions"],
            "reasons": row["reasons"],
            "data_root": str(root),
            "split": "test",
        }
        for row in ds
    ]
    metrics = score_records(records)
    assert metrics["facts"]["n"] == 20 and metrics["facts"]["mean_agreement"] >= 0.99
    assert "description facts" in format_metrics_table(metrics)
    assert record_fact_agreement([{**r, "data_root": str(tmp_path)} for r in records]) is None
    assert "facts" not in score_records([{**r, "data_root": str(tmp_path)} for r in records])
