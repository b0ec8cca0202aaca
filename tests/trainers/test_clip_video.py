"""Clips as video in GRPO on the tiny Qwen families: every saving kept, exact against the same trainer with sharing,
packing and clip grouping off (stock TRL has no video GRPO to compare with)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from grpo_helpers import (
    FrameCounter,
    assert_gradients_close,
    assert_same_training,
    frame,
    log_prob_pass,
    make_trainer,
    train_recording,
)

from vlmrl_trl.tiny import build_tiny_model
from vlmrl_trl.trainers import VLMGRPOTrainer

VIDEO_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
OFF = dict(deduplicate_vision=False)


@pytest.fixture(scope="module", params=VIDEO_FAMILIES)
def model_dir(request, tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", request.param)


def video_rows(frame_counts: tuple[int, ...] = (4, 2, 4, 2)) -> Dataset:
    """RL rows carrying their clip as video: one video entry in the prompt, the frames in `video`, 2 fps."""
    prompt = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What now?"}]}]
    return Dataset.from_list(
        [
            {"prompt": prompt, "video": [frame(10 * row + i) for i in range(count)], "fps": 2.0}
            for row, count in enumerate(frame_counts)
        ]
    )


@pytest.mark.slow
def test_video_rollout_and_log_probs_match_the_unshared_trainer_with_fewer_frames(model_dir, tmp_path):
    settings = dict(num_iterations=2, beta=0.1, gradient_accumulation_steps=2, num_generations=4)
    runs = []
    for name, extra in (("reference", OFF), ("shared", {})):
        trainer = make_trainer(VLMGRPOTrainer, model_dir, video_rows(), tmp_path / name, **settings, **extra)
        trainer.model.train()
        counter = FrameCounter(trainer.model)
        output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        logps, _, grads = log_prob_pass(trainer, output, trainer.adapter.visual_keys)
        runs.append((trainer, output, logps, grads, counter.frames))
    (_, reference, reference_logps, reference_grads, reference_frames) = runs[0]
    (trainer, shared, logps, grads, frames) = runs[1]
    assert trainer.share_vision and trainer.pack_prompts
    assert "pixel_values_videos" in shared and "pixel_values" not in shared
    assert torch.equal(shared["completion_ids"], reference["completion_ids"])
    mask = reference["completion_mask"].bool()
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        torch.testing.assert_close(shared[key][mask], reference[key][mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(logps[mask], reference_logps[mask], rtol=0, atol=1e-5)
    assert_gradients_close(reference_grads, grads)
    assert 0 < frames <= reference_frames / 2


@pytest.mark.slow
def test_video_training_matches_the_unshared_trainer(model_dir, tmp_path):
    settings = dict(num_iterations=2, beta=0.1, gradient_accumulation_steps=2, num_generations=4)
    assert_same_training(
        *(
            train_recording(VLMGRPOTrainer, model_dir, video_rows(), tmp_path / name, **settings, **extra)
            for name, extra in (("reference", OFF), ("shared", {}))
        )
    )


def test_a_family_without_a_video_path_refuses_video_rows(tmp_path):
    model_dir = build_tiny_model(tmp_path / "llava", "llava")
    with pytest.raises(ValueError, match="no video path here; use clip_input=images"):
        make_trainer(VLMGRPOTrainer, model_dir, video_rows(), tmp_path / "run")


@pytest.mark.slow
def test_shared_prefill_samples_the_same_video_completions(model_dir, tmp_path):
    completions, frames = [], []
    for name, extra in (("reference", OFF), ("shared", {})):
        trainer = make_trainer(VLMGRPOTrainer, model_dir, video_rows(), tmp_path / name, fixed=False, **extra)
        counter = FrameCounter(trainer.model)
        torch.manual_seed(0)
        batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        completions.append(batch["completion_ids"])
        frames.append(counter.frames)
    assert torch.equal(completions[0], completions[1])
    assert frames[1] < frames[0]


@pytest.mark.slow
def test_ppo_trains_on_video_rows(model_dir, tiny_clip, cpu_args):
    from trl import ModelConfig

    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.rewards import ClipAlignmentReward
    from vlmrl_trl.trainers import VLMPPOConfig, VLMPPOTrainer

    config = VLMPPOConfig(
        **cpu_args,
        per_device_train_batch_size=2,
        max_completion_length=6,
        max_steps=2,
        num_iterations=2,  # the rollout's old-policy pass carries the video too
        critic_warmup_steps=0,
        activation_checkpointing=False,
        dense_clip_reward=True,
        save_strategy="no",
        seed=0,
    )
    trainer = VLMPPOTrainer(
        load_model(ModelConfig(model_name_or_path=str(model_dir), dtype="float32")),
        reward_funcs=[ClipAlignmentReward(encoder=tiny_clip, images_column="video")],
        args=config,
        train_dataset=video_rows(),
        processing_class=load_processor(str(model_dir)),
    )
    counter = FrameCounter(trainer.model)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert counter.frames > 0 and trainer.share_vision
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert any("visual" in name for name in changed) and any("value_head" in name for name in changed)
