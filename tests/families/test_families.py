"""Every family adapter against stock TRL on its tiny offline model: same log-probs, entropies, gradients and samples,
with each clip's vision work done once per group (and each shared prompt run once where the family packs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from grpo_helpers import (
    FrameCounter,
    assert_gradients_close,
    assert_same_training,
    clip_rows,
    log_prob_pass,
    make_trainer,
    record_sampled_training,
    train_recording,
)
from trl import GRPOTrainer, ModelConfig

from vlmrl_trl.families import adapter_for
from vlmrl_trl.models import load_model, load_processor
from vlmrl_trl.tiny import build_tiny_model
from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer, vision_sharing_fallback
from vlmrl_trl.trainers.grpo_trainer import prompt_packing_fallback

# family -> (adapter name, whether its log-prob passes pack shared prompts)
FAMILIES = {
    "qwen2_vl": ("qwen_vl", True),
    "qwen2_5_vl": ("qwen_vl", True),
    "qwen3_vl": ("qwen_vl", True),
    "llava": ("llava", True),
    "gemma3": ("gemma3", True),
    "llava_next": ("llava", True),
    "llava_onevision": ("llava_onevision", True),
}
# Where stock TRL 1.16 cannot run a family, the tests compare it where it can: TRL passes OneVision's processor output
# `batch_num_images` to its old/reference log-prob passes, whose signature lacks it (a TypeError with
# `num_iterations > 1` or `beta > 0`), and drops it from the loss pass (rows of several images then fail).
FRAME_COUNTS = {"llava_onevision": (1, 1, 1, 1)}
STOCK_SETTINGS = {"llava_onevision": dict(num_iterations=1, beta=0.0)}


def runnable(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with the overrides that stock TRL needs to run family `name`."""
    return {**settings, **STOCK_SETTINGS.get(name, {})}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, Path]:
    """A family name and its tiny model directory, built once per module."""
    return request.param, build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", request.param)


@pytest.fixture(scope="module")
def clips(family):
    """Four RL rows of 2, 3, 1 and 2 frames (of one frame each where `FRAME_COUNTS` says so)."""
    name, _ = family
    return clip_rows(*(FRAME_COUNTS[name],) if name in FRAME_COUNTS else ())


def language_model(model: torch.nn.Module) -> torch.nn.Module:
    """The text decoder inside a VLM."""
    return next(m for name, m in model.named_modules() if name.endswith(("language_model", "text_model")))


class LMTokenCounter:
    """Counts the positions the language model runs over."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        language_model(model).register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        self.tokens += kwargs["inputs_embeds"].shape[:2].numel()


def test_adapter_and_fallbacks_say_what_each_family_shares(family, tmp_path):
    name, model_dir = family
    adapter_name, packs = FAMILIES[name]
    model = load_model(ModelConfig(model_name_or_path=str(model_dir), dtype="float32"))
    assert adapter_for(model).name == adapter_name
    config = VLMGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert vision_sharing_fallback(config, model, load_processor(str(model_dir))) is None
    reason = prompt_packing_fallback(model)
    assert (reason is None) == packs
    if not packs:
        assert "bidirectional" in reason


# The rollout fields stock TRL's loss pass hands to the log-prob pass (those the rollout holds).
LOSS_PASS_KEYS = ("pixel_values", "image_grid_thw", "mm_token_type_ids", "token_type_ids", "image_sizes", "num_images")


@pytest.mark.slow
def test_log_prob_passes_match_stock_with_fewer_frames_and_tokens(family, clips, tmp_path):
    name, model_dir = family
    # num_iterations > 1 makes TRL compute old-policy log-probs, beta > 0 reference ones.
    settings = runnable(name, dict(num_iterations=2, beta=0.1, gradient_accumulation_steps=2, num_generations=4))
    runs = []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        trainer = make_trainer(trainer_cls, model_dir, clips, tmp_path / trainer_cls.__name__, **settings)
        trainer.model.train()
        output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        frames, tokens = FrameCounter(trainer.model), LMTokenCounter(trainer.model)
        runs.append((output, *log_prob_pass(trainer, output, LOSS_PASS_KEYS), frames.frames, tokens.tokens))
    (stock, stock_logps, stock_entropies, stock_grads, stock_frames, stock_tokens) = runs[0]
    (shared, logps, entropies, grads, frames, tokens) = runs[1]
    assert trainer.share_vision
    assert torch.equal(shared["completion_ids"], stock["completion_ids"])
    mask = stock["completion_mask"].bool()
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        assert (shared.get(key) is None) == (stock.get(key) is None) == (name in STOCK_SETTINGS)
        if key in stock:
            torch.testing.assert_close(shared[key][mask], stock[key][mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(logps[mask], stock_logps[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(entropies[mask], stock_entropies[mask], rtol=0, atol=1e-5)
    assert_gradients_close(stock_grads, grads)
    # Two clips x 4 completions in chunks of 3 rows: 8 rows' frames in stock TRL, at most 4 chunk-clips here.
    assert 0 < frames <= stock_frames / 2
    if FAMILIES[name][1]:
        assert trainer.pack_prompts
        assert tokens < stock_tokens * 3 / 4
    else:
        assert tokens == stock_tokens


# Families that cut images into anyres tiles, padded in `pixel_values` to the batch's most tiles.
ANYRES = frozenset({"llava_next", "llava_onevision"})
# Frame shapes (height, width) that give 2 or 3 tiles on the tiny anyres grids.
MIXED_SHAPES = ((40, 56), (56, 40), (32, 32), (24, 70))


@pytest.mark.slow
def test_anyres_tiles_of_mixed_image_sizes_match_stock(family, tmp_path):
    name, model_dir = family
    if name not in ANYRES:
        pytest.skip("no anyres tiles")
    counts = FRAME_COUNTS.get(name, (2, 3, 1, 2))
    rows = clip_rows(counts).map(
        lambda row, r: {
            "images": [image.resize(MIXED_SHAPES[(2 * r + i) % 4][::-1]) for i, image in enumerate(row["images"])]
        },
        with_indices=True,
    )
    runs = []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        trainer = make_trainer(
            trainer_cls,
            model_dir,
            rows,
            tmp_path / trainer_cls.__name__,
            gradient_accumulation_steps=2,
            num_generations=4,
        )
        trainer.model.train()
        output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        runs.append((output, *log_prob_pass(trainer, output, LOSS_PASS_KEYS)))
    (stock, stock_logps, stock_entropies, stock_grads), (_, logps, entropies, grads) = runs
    padded = {image.size(0) for image in stock["pixel_values"]}
    real = {int((image.flatten(1).abs().sum(-1) > 0).sum()) for image in stock["pixel_values"]}
    assert len(padded) == 1 and len(real) > 1  # images of 2 and 3 real tiles, padded (with zeros) alike
    mask = stock["completion_mask"].bool()
    torch.testing.assert_close(logps[mask], stock_logps[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(entropies[mask], stock_entropies[mask], rtol=0, atol=1e-5)
    assert_gradients_close(stock_grads, grads)


TRAINING_SETUPS = {
    "grad_accumulation_num_iterations_beta": dict(
        num_iterations=2, beta=0.1, gradient_accumulation_steps=2, num_generations=4
    ),
    "lora": dict(lora=True, beta=0.1),
}


@pytest.mark.slow
@pytest.mark.parametrize("setup", TRAINING_SETUPS.values(), ids=TRAINING_SETUPS.keys())
def test_training_gradients_match_stock(family, clips, tmp_path, setup):
    name, model_dir = family
    setup = runnable(name, setup)
    assert_same_training(
        *(
            train_recording(cls, model_dir, clips, tmp_path / cls.__name__, **setup)
            for cls in (GRPOTrainer, VLMGRPOTrainer)
        )
    )


@pytest.mark.slow
def test_shared_prefill_samples_the_same_completions_as_stock(family, clips, tmp_path):
    _, model_dir = family
    records = [
        record_sampled_training(make_trainer(cls, model_dir, clips, tmp_path / cls.__name__, fixed=False))
        for cls in (GRPOTrainer, VLMGRPOTrainer)
    ]
    stock, shared = records
    assert len(stock["completions"]) == 2
    assert shared["completions"] == stock["completions"]
    # One prefill per distinct prompt: the language model reads each prompt once, not once per completion.
    assert shared["generation_tokens"] < stock["generation_tokens"]
    # Two completions per prompt: generation encodes each clip once instead of twice.
    assert stock["generation_frames"] == 2 * shared["generation_frames"] > 0
    assert shared["preprocessed_clips"] < stock["preprocessed_clips"]


@pytest.mark.slow
def test_ppo_value_head_learns_on_each_family(family, clips, tmp_path):
    from vlmrl_trl.clip import load_clip
    from vlmrl_trl.rewards import ClipAlignmentReward
    from vlmrl_trl.trainers import VLMPPOConfig, VLMPPOTrainer

    _, model_dir = family
    config = VLMPPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_completion_length=6,
        max_steps=2,
        learning_rate=3e-3,
        critic_warmup_steps=100,
        cliprange_value=None,
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        dense_clip_reward=True,
        dense_reward_every_k=2,
        save_strategy="no",
        seed=0,
    )
    trainer = VLMPPOTrainer(
        load_model(ModelConfig(model_name_or_path=str(model_dir), dtype="float32")),
        reward_funcs=[ClipAlignmentReward(encoder=load_clip(device="cpu"))],
        args=config,
        train_dataset=clips,
        processing_class=load_processor(str(model_dir)),
    )
    assert trainer.share_vision
    trainer.model.train()
    batch = trainer._generate_and_score_completions([clips[i] for i in range(2)])
    optimizer = trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    losses = []
    for _ in range(30):
        trainer.compute_loss(trainer.model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(trainer._metrics["train"]["value/loss"][-1])
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses
