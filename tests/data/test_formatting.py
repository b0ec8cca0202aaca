"""TRL formatting: SFT prompt/completion and RL prompts, in both prompt modes, fed to a tiny VLM processor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmrl_trl.data import INSTRUCTION, build_prompt, generate_synthetic, load_bddoia, to_rl_dataset, to_sft_dataset
from vlmrl_trl.schema import Decision, parse_decision


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory):
    out = generate_synthetic(tmp_path_factory.mktemp("synth") / "set", train=3, val=1, test=1, seed=4)
    return load_bddoia(out, "train")


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir: Path):
    from vlmrl_trl.models import load_processor

    return load_processor(str(tiny_vlm_dir))


def test_instruction_prompt_is_frames_then_the_instruction() -> None:
    prompt = build_prompt(3, "instruction")
    assert prompt == [{"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": INSTRUCTION}]}]
    assert '"scene"' in INSTRUCTION and "turn_left" in INSTRUCTION and "solid_left_line" in INSTRUCTION


def test_frames_only_prompt_has_no_text() -> None:
    assert build_prompt(4, "frames_only") == [{"role": "user", "content": [{"type": "image"}] * 4}]
    with pytest.raises(ValueError, match="prompt_mode must be one of"):
        build_prompt(4, "describe")


def test_sft_completion_is_the_decision_json_of_the_labels_and_description(clips) -> None:
    sft = to_sft_dataset(clips)
    assert set(sft.column_names) == {"prompt", "completion", "images", "clip_id"}
    for row, source in zip(sft, clips, strict=True):
        assert row["completion"][0]["role"] == "assistant"
        decision = parse_decision(row["completion"][0]["content"][0]["text"])
        assert isinstance(decision, Decision)
        assert decision.action_bits() == source["actions"] and decision.reason_bits() == source["reasons"]
        assert decision.scene == source["scene"]
        assert sum(p["type"] == "image" for p in row["prompt"][0]["content"]) == len(row["images"]) == 4
    assert sft.data.column("images")[0].as_py()[0]["bytes"] is None  # still lazy paths after formatting


def test_scene_target_and_empty_scenes(clips) -> None:
    sft = to_sft_dataset(clips, "frames_only", target="scene")
    assert [r["completion"][0]["content"][0]["text"] for r in sft] == clips["scene"]
    no_scene = clips.map(lambda _: {"scene": None})
    text = to_sft_dataset(no_scene)[0]["completion"][0]["content"][0]["text"]
    assert text.startswith('{"scene":"",')
    with pytest.raises(ValueError, match="needs a scene description"):
        to_sft_dataset(no_scene, target="scene")


def test_rl_dataset_keeps_the_columns_rewards_read(clips) -> None:
    rl = to_rl_dataset(clips, "frames_only")
    assert set(rl.column_names) == {"prompt", "images", "actions", "reasons", "scene", "clip_id", "num_frames"}
    assert rl[0]["prompt"] == build_prompt(4, "frames_only") and rl["actions"] == clips["actions"]
    with pytest.raises(ValueError, match="lacks columns"):
        to_rl_dataset(rl.remove_columns(["num_frames"]))


def _image_tokens(processor, input_ids: torch.Tensor) -> int:
    return int((input_ids == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())


@pytest.mark.parametrize("mode", ["instruction", "frames_only"])
def test_sft_rows_feed_trl_vision_collator(clips, processor, mode: str) -> None:
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    sft = to_sft_dataset(clips, mode)
    batch = collator([sft[0], sft[1]])
    assert batch["pixel_values"].shape[:2] == (2, 4)  # 2 clips x 4 frames
    per_frame = _image_tokens(processor, batch["input_ids"]) // 8
    assert per_frame > 0 and _image_tokens(processor, batch["input_ids"]) == 8 * per_frame
    answer = batch["input_ids"][0][batch["labels"][0] != -100]
    assert isinstance(parse_decision(processor.tokenizer.decode(answer, skip_special_tokens=True)), Decision)


@pytest.mark.parametrize("mode", ["instruction", "frames_only"])
def test_rl_prompts_tokenize_like_grpo_does(clips, processor, mode: str) -> None:
    from trl.data_utils import prepare_multimodal_messages

    rl = to_rl_dataset(clips, mode)
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for row in (rl[0], rl[1])]
    out = processor.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert len(out["input_ids"]) == 2 and out["pixel_values"].shape[:2] == (2, 4)
    text = processor.apply_chat_template(prompts[0], add_generation_prompt=True)
    assert text.count("<image>") >= 4 and (INSTRUCTION in text) == (mode == "instruction")
