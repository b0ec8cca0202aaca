"""`clip_input: video` through the stage scripts and predict on tiny Qwen models: SFT learns from the video path with
the loss on the answer only and predict reads the same clips (every Qwen family), the scripts run SFT -> GRPO ->
predict on video, and a family without a video path refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmrl_trl.data import load_clips
from vlmrl_trl.data.formatting import build_prompt, to_rl_dataset, to_sft_dataset
from vlmrl_trl.families import adapter_for
from vlmrl_trl.grpo import cli as grpo_cli
from vlmrl_trl.models import load_model, load_processor
from vlmrl_trl.predict import GenerationOptions, generate, predict_dataset
from vlmrl_trl.sft import SFTScriptArguments
from vlmrl_trl.sft import cli as sft_cli
from vlmrl_trl.tiny import build_tiny_model
from vlmrl_trl.trainers.clip_video import VideoSFTCollator

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ("--synthetic_train_clips", "6", "--synthetic_val_clips", "2", "--synthetic_test_clips", "2")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("qwen") / "model", "qwen2_5_vl")


def test_video_prompts_have_one_video_entry_and_rows_carry_the_frames_and_rate(tmp_path):
    prompt = build_prompt(4, "instruction", clip_input="video")
    kinds = [part["type"] for part in prompt[0]["content"]]
    assert kinds == ["video", "text"] and "video" in prompt[0]["content"][1]["text"]
    with pytest.raises(ValueError, match="clip_input must be one of"):
        build_prompt(4, clip_input="frames")
    clips = load_clips(SFTScriptArguments(data_dir=str(tmp_path / "synthetic"), synthetic_train_clips=2), "train")
    rows = to_rl_dataset(clips, clip_input="video", fps=4.0)
    assert "images" not in rows.column_names and rows[0]["fps"] == 4.0
    assert len(rows[0]["video"]) == rows[0]["num_frames"]
    assert to_sft_dataset(clips, clip_input="video")[0]["video"]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_the_sft_collator_trains_on_the_answer_alone(family, qwen_dir, tmp_path):
    model_dir = qwen_dir if family == "qwen2_5_vl" else build_tiny_model(tmp_path / family, family)
    clips = load_clips(SFTScriptArguments(data_dir=str(tmp_path / "synthetic"), synthetic_train_clips=2), "train")
    rows = to_sft_dataset(clips, clip_input="video")
    processor = load_processor(str(model_dir))
    model = load_model_dir(model_dir)
    batch = VideoSFTCollator(processor, adapter_for(model))([rows[0], rows[1]])
    assert "pixel_values_videos" in batch and "pixel_values" not in batch
    tokenizer = processor.tokenizer
    for row, labels in enumerate(batch["labels"]):
        answer = tokenizer.decode(labels[labels != -100])
        assert answer.startswith(rows[row]["completion"][0]["content"][0]["text"])
    assert torch.isfinite(model(**batch).loss)
    # predict reads the same clips through the same video path
    options = GenerationOptions(max_new_tokens=3)
    texts = generate(model, processor, [rows[0]["prompt"]], [rows[0]["video"]], options, video_fps=[rows[0]["fps"]])
    assert len(texts) == 1 and isinstance(texts[0], str)


def load_model_dir(path: Path):
    from trl import ModelConfig

    return load_model(ModelConfig(model_name_or_path=str(path), dtype="float32"))


@pytest.mark.slow
def test_sft_grpo_and_predict_run_on_video(qwen_dir, tmp_path):
    data = ("--data_dir", str(tmp_path / "synthetic"), *SYNTHETIC, "--clip_input", "video")
    sft_out = tmp_path / "sft"
    sft = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"),
        "--model_name_or_path", str(qwen_dir), *data,
        "--per_device_train_batch_size", "2", "--max_steps", "2", "--save_strategy", "no",
        "--output_dir", str(sft_out),
    ]  # fmt: skip
    assert sft_cli(sft) == 0
    grpo_out = tmp_path / "grpo"
    grpo = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "grpo" / "config_stage2.yaml"),
        "--model_name_or_path", str(sft_out), *data,
        "--per_device_train_batch_size", "4", "--num_generations", "2", "--gradient_accumulation_steps", "1",
        "--max_completion_length", "8", "--max_steps", "1", "--save_strategy", "no", "--output_dir", str(grpo_out),
    ]  # fmt: skip
    assert grpo_cli(grpo) == 0
    assert (grpo_out / "model.safetensors").is_file()
    clips = load_clips(SFTScriptArguments(data_dir=str(tmp_path / "synthetic")), "test")
    model = load_model_dir(grpo_out)
    records = list(
        predict_dataset(model, load_processor(str(grpo_out)), clips, clip_input="video", progress=False, batch_size=2)
    )
    assert len(records) == len(clips) and all(isinstance(r["text"], str) for r in records)


def test_a_family_without_a_video_path_refuses_video_in_sft(tiny_vlm_dir, tmp_path, capsys):
    argv = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"),
        "--model_name_or_path", str(tiny_vlm_dir), "--data_dir", str(tmp_path / "synthetic"), *SYNTHETIC,
        "--clip_input", "video", "--max_steps", "1", "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert sft_cli(argv) == 2
    assert "no video path" in capsys.readouterr().err


@pytest.mark.parametrize("folder", ["tiny-video", "qwen2.5-vl-3b-instruct-video"])
def test_the_video_recipes_feed_clips_as_video(folder):
    from vlmrl_trl.grpo import parse_args as grpo_args
    from vlmrl_trl.ppo import parse_args as ppo_args
    from vlmrl_trl.sft import parse_args as sft_args

    recipes = REPO_ROOT / "recipes" / folder
    for parse, recipe in (
        (sft_args, next((recipes / "sft").glob("*.yaml"))),
        (grpo_args, recipes / "grpo" / "config_stage2.yaml"),
        (grpo_args, recipes / "grpo" / "config_stage3.yaml"),
        (ppo_args, recipes / "ppo" / "config_stage1.yaml"),
    ):
        script_args, _, _ = parse(["--config", str(recipe), "--bf16", "false", "--use_cpu", "true"])
        assert script_args.clip_input == "video", recipe
