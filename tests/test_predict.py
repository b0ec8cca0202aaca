"""Batched generation (``vlmrl-trl predict``) and scoring with a report (``vlmrl-trl eval``)."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
import torch
from PIL import Image
from trl import ModelConfig

from vlmrl_trl.cli import main
from vlmrl_trl.models import load_model
from vlmrl_trl.predict import GenerationOptions, generate, load_for_inference, prediction_record
from vlmrl_trl.schema import REASON_IDS, render_decision


def _reason_bits(*ids: str) -> list[int]:
    return [int(r in ids) for r in REASON_IDS]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from vlmrl_trl.data import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "clips", train=1, val=1, test=4)


@pytest.fixture(scope="module")
def tiny(tiny_vlm_dir):
    return load_for_inference(str(tiny_vlm_dir), dtype="float32", device="cpu")


def test_prediction_record_keeps_output_decision_and_labels():
    example = {"clip_id": "c1", "actions": [1, 0, 0, 0], "reasons": _reason_bits("road_clear"), "num_frames": 4}
    good = prediction_record(render_decision([1, 0, 0, 0], _reason_bits("road_clear"), "open road"), example)
    assert good["prediction"] == {"scene": "open road", "actions": ["move_forward"], "reasons": ["road_clear"]}
    assert good["error"] is None and good["clip_id"] == "c1" and good["num_frames"] == 4
    bad = prediction_record("I would stop.", example, split="test")
    assert bad["prediction"] is None and bad["error"].startswith("no_json") and bad["split"] == "test"
    assert bad["text"] == "I would stop." and bad["actions"] == [1, 0, 0, 0]


def test_generation_options_are_checked():
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationOptions(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        GenerationOptions(do_sample=True, temperature=0)


def test_batching_does_not_change_greedy_outputs(tiny):
    model, processor = tiny
    frames = [Image.new("RGB", (96, 64), (30 * k, 120, 200 - 30 * k)) for k in range(3)]
    long_prompt = [{"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": "Decide now."}]}]
    short_prompt = [{"role": "user", "content": [{"type": "image"}]}]
    options = GenerationOptions(max_new_tokens=6)
    batched = generate(model, processor, [long_prompt, short_prompt], [frames, frames[:1]], options)
    alone = [
        generate(model, processor, [long_prompt], [frames], options)[0],
        generate(model, processor, [short_prompt], [frames[:1]], options)[0],
    ]
    assert batched == alone  # left padding: the shorter prompt is not disturbed by the longer one


def test_adapter_directory_is_loaded_on_its_base(tiny_vlm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(ModelConfig(model_name_or_path=str(tiny_vlm_dir), dtype="float32"))
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    merged, processor = load_for_inference(str(tmp_path / "adapter"), dtype="float32", device="cpu")
    ids = processor.tokenizer("Assistant: the road", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, lora.eval()(input_ids=ids).logits, atol=1e-4, rtol=0)
    assert not hasattr(merged, "peft_config")  # merged: generation pays no adapter overhead
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_for_inference(str(tmp_path))


def test_predict_then_eval_on_synthetic_clips(tiny_vlm_dir, synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["predict", "--model", str(tiny_vlm_dir), "--data", str(synthetic_root), "--out", str(out)]
    assert main([*argv, "--max-samples", "3", "--batch-size", "2", "--max-new-tokens", "8"]) == 0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["clip_id"] for r in records] == ["synth_test_000000", "synth_test_000001", "synth_test_000002"]
    for rec in records:  # an untrained model: the shape is checked, not the answers
        assert isinstance(rec["text"], str) and (rec["prediction"] is None) != (rec["error"] is None)
        assert len(rec["actions"]) == 4 and len(rec["reasons"]) == 21 and rec["num_frames"] == 4
        assert len(rec["frames"]) == 4 and all(p.startswith(str(synthetic_root)) for p in rec["frames"])
        assert rec["split"] == "test"
        assert isinstance(rec["true_scene"], str) and rec["true_scene"]  # the synthetic clips are described

    assert main(["eval", "--predictions", str(out / "predictions.jsonl"), "--out", str(out)]) == 0
    assert "per-class F1 (reasons)" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["n"] == 3
    page = (out / "report.html").read_text()
    assert page.count('<section class="clip"') == 3 and "frames not found" not in page
    assert len(list((out / "report").glob("*_frames.png"))) == 3
    assert f"<dt>true scene</dt><dd>{html.escape(records[0]['true_scene'])}</dd>" in page


def test_eval_metrics_by_hand_and_moved_frames(synthetic_root, tmp_path, capsys):
    frames = [str(synthetic_root / "frames" / "synth_test_000000" / f"{i}.jpg") for i in range(4)]
    old_root, moved = str(synthetic_root), tmp_path / "moved"
    shutil.copytree(synthetic_root, moved)

    def rec(text, actions, reasons):
        return {
            "clip_id": "c",
            "text": text,
            "actions": actions,
            "reasons": reasons,
            "frames": frames,
            "data_root": old_root,
        }

    records = [
        # exact: forward because of follow_traffic
        rec(
            render_decision([1, 0, 0, 0], _reason_bits("follow_traffic")), [1, 0, 0, 0], _reason_bits("follow_traffic")
        ),
        # forward is a false positive, red_light a false positive reason
        rec(
            render_decision([1, 1, 0, 0], _reason_bits("obstacle_car", "red_light")),
            [0, 1, 0, 0],
            _reason_bits("obstacle_car"),
        ),
        # unparseable: predicts nothing, so turn_left and on_left_turn_lane are missed
        rec("turn left", [0, 0, 1, 0], _reason_bits("on_left_turn_lane")),
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["eval", "--predictions", str(path), "--out", str(tmp_path), "--data", str(moved)]
    assert main(argv) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 3 and m["json_validity"] == pytest.approx(2 / 3)
    # actions per class: forward tp1 fp1 -> 2/3; stop tp1 -> 1; left fn1 -> 0; right never -> 0
    assert m["actions"]["per_class"] == pytest.approx(
        {"move_forward": 2 / 3, "stop": 1.0, "turn_left": 0.0, "turn_right": 0.0}
    )
    assert m["actions"]["mf1"] == pytest.approx((2 / 3 + 1) / 4)
    assert m["actions"]["f1_all"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # sample 2: tp1 fp1 -> 2/3
    assert m["actions"]["exact_match"] == pytest.approx(1 / 3)
    assert m["reasons"]["mf1"] == pytest.approx(2 / 21)  # follow_traffic and obstacle_car at 1, the rest 0
    assert m["reasons"]["f1_all"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    out = capsys.readouterr().out
    assert re.search(r"actions\s+0\.5556\s+0\.4167", out)  # the printed table: f1_all, mF1
    page = (tmp_path / "report.html").read_text()
    assert page.count('<section class="clip"') == 3 and "frames not found" not in page  # found under --data
    assert len(list((tmp_path / "report").glob("*_frames.png"))) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--model", "m", "--data", "{data}", "--out", "o", "--batch-size", "0"], "--batch-size"),
        (["predict", "--model", "m", "--data", "{tmp}/absent", "--out", "o"], "absent: no such folder"),
        (["eval", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}", "--report-samples", "0"], "--report-samples"),
        (["eval", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}", "--data", "{tmp}/gone"], "gone: no such folder"),
    ],
)
def test_bad_options_exit_2_naming_them(argv, message, synthetic_root, tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text(json.dumps({"text": "", "actions": [0] * 4, "reasons": [0] * 21}) + "\n")
    argv = [a.format(data=synthetic_root, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
