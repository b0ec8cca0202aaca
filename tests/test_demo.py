"""``make demo``'s before/after figures for GRPO Stage 2 (the full pipeline is run by hand, see the README)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


def test_every_stage_trains_on_the_clips_it_is_evaluated_on(tmp_path, monkeypatch):
    """`--data` reaches the three training recipes (their data_dir) as well as the evaluation."""
    from vlmrl_trl import demo

    commands = []

    def fake_run(command, timings, stage):
        commands.append(command)
        if "vlmrl_trl.ppo" in command:
            ppo_dir = Path(command[command.index("--output_dir") + 1])
            ppo_dir.mkdir(parents=True)
            side = {"by_clip": {"a": 0.1, "b": 0.2}, "examples": []}
            (ppo_dir / "r1_eval.json").write_text(json.dumps({"before": side, "after": side}))

    metrics = {"actions": {"f1_all": 0.5, "mf1": 0.5}, "reasons": {"f1_all": 0.3, "mf1": 0.1}}
    metrics.update(json_validity=1.0, strict_json_validity=1.0)
    monkeypatch.setattr(demo, "run", fake_run)
    monkeypatch.setattr(
        demo, "predict_and_eval", lambda model, data, *rest: commands.append(["eval", str(data)]) or metrics
    )
    monkeypatch.setattr(demo, "r2_by_clip", lambda path: {"a": 0.5, "b": 0.6})
    monkeypatch.setattr(
        demo, "description_facts", lambda model, data, *rest: commands.append(["facts", str(data)]) or None
    )
    data = tmp_path / "my-clips"
    assert demo.main(["--out", str(tmp_path / "out"), "--models", str(tmp_path), "--data", str(data)]) == 0

    stages = [c for c in commands if any(m in c for m in ("vlmrl_trl.sft", "vlmrl_trl.grpo", "vlmrl_trl.ppo"))]
    assert len(stages) == 3
    assert all(c[c.index("--data_dir") + 1] == str(data) for c in stages)
    assert [c[1] for c in commands if c[0] == "eval"] == [str(data), str(data)]
    assert [c[1] for c in commands if c[0] == "facts"] == [str(data), str(data)]  # PPO before and after


def test_summary_puts_description_fact_agreement_beside_r1(tmp_path, monkeypatch, capsys):
    """PPO Stage 1's R1 change comes with the fact agreement of frames-only descriptions before and after."""
    from vlmrl_trl import demo
    from vlmrl_trl.facts import fact_agreement

    def fake_run(command, timings, stage):
        if "vlmrl_trl.ppo" in command:
            ppo_dir = Path(command[command.index("--output_dir") + 1])
            ppo_dir.mkdir(parents=True)
            side = {"by_clip": {"a": 0.1, "b": 0.2}, "examples": []}
            (ppo_dir / "r1_eval.json").write_text(json.dumps({"before": side, "after": side}))

    truths = [{"red_light": True, "green_light": False, "stop_sign": False, "pedestrian": False, "rider": False,
               "car_ahead": True, "lanes": 2}] * 2  # fmt: skip
    said = {"before": "A two-lane road. The traffic light is red and a gray car drives ahead.", "after": "A road."}
    metrics = {"actions": {"f1_all": 0.5, "mf1": 0.5}, "reasons": {"f1_all": 0.3, "mf1": 0.1}}
    metrics.update(json_validity=1.0, strict_json_validity=1.0, facts=fact_agreement([said["before"]] * 2, truths))
    monkeypatch.setattr(demo, "run", fake_run)
    monkeypatch.setattr(demo, "predict_and_eval", lambda *args: metrics)
    monkeypatch.setattr(demo, "r2_by_clip", lambda path: {"a": 0.5, "b": 0.6})
    monkeypatch.setattr(
        demo,
        "description_facts",
        lambda model, data, out, clips, *rest: fact_agreement([said[out.name.split("-")[1]]] * clips, truths[:clips]),
    )
    assert demo.main(["--out", str(tmp_path / "out"), "--models", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sft"]["fact_agreement"] == 1.0
    facts = summary["ppo_stage1"]["fact_agreement"]
    assert facts["before"]["mean_agreement"] == 1.0 and facts["after"]["mean_agreement"] < 1.0
    assert "description facts" in capsys.readouterr().out


def test_models_go_where_the_stage_targets_read_them_and_compare_is_written(tmp_path, monkeypatch):
    """The demo trains into the recipes' output_dir names (so `make grpo-stage2` after it starts from its SFT model)
    and writes the SFT-vs-GRPO before/after page."""
    from vlmrl_trl import demo
    from vlmrl_trl.stages import recipe_value

    commands = []

    def fake_run(command, timings, stage):
        commands.append(command)
        if "vlmrl_trl.ppo" in command:
            ppo_dir = Path(command[command.index("--output_dir") + 1])
            ppo_dir.mkdir(parents=True)
            side = {"by_clip": {"a": 0.1, "b": 0.2}, "examples": []}
            (ppo_dir / "r1_eval.json").write_text(json.dumps({"before": side, "after": side}))

    metrics = {"actions": {"f1_all": 0.5, "mf1": 0.5}, "reasons": {"f1_all": 0.3, "mf1": 0.1}}
    metrics.update(json_validity=1.0, strict_json_validity=1.0)
    monkeypatch.setattr(demo, "run", fake_run)
    monkeypatch.setattr(demo, "predict_and_eval", lambda *args: metrics)
    monkeypatch.setattr(demo, "description_facts", lambda *args: None)
    monkeypatch.setattr(demo, "r2_by_clip", lambda path: {"a": 0.5, "b": 0.6})
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--models", str(tmp_path)]) == 0

    def option(module, key):
        command = next(c for c in commands if module in c)
        return command[command.index(key) + 1]

    sft_dir = str(tmp_path / Path(recipe_value(demo.SFT_RECIPE, "output_dir")).name)
    assert option("vlmrl_trl.sft", "--output_dir") == sft_dir
    assert Path(recipe_value(demo.GRPO_RECIPE, "model_name_or_path")).name == Path(sft_dir).name
    assert option("vlmrl_trl.grpo", "--model_name_or_path") == sft_dir
    assert option("compare", "--before") == str(out / "predictions.jsonl")
    assert json.loads((out / "summary.json").read_text())["compare"] == str(out / "compare.html")
