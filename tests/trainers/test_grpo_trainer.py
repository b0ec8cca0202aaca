"""VLMGRPOTrainer against TRL's GRPOTrainer: same log-probs, gradients and samples, with each clip's vision work once.

Everything runs the tiny random Idefics3 model in fp32 on CPU, on prompts of mixed frame counts (2, 3, 1 and 2).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from datasets import Dataset
from grpo_helpers import (
    FrameCounter,
    GradientRecorder,
    assert_gradients_close,
    clip_rows,
    make_trainer,
    record_sampled_training,
)
from trl import GRPOTrainer

from vlmrl_trl.families.per_row import PerRowAdapter
from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer, vision_sharing_fallback
from vlmrl_trl.trainers.grpo_trainer import (
    MICRO_BATCH_INDEPENDENT_LOSS_TYPES,
    clip_grouped_permutation,
    micro_batch_dependence,
    permute_rows,
    prompt_packing_fallback,
)


@pytest.fixture(scope="module")
def clips() -> Dataset:
    """Four RL rows of 2, 3, 1 and 2 frames."""
    return clip_rows()


def test_log_prob_passes_match_stock_on_fixed_completions(tiny_vlm_dir, clips, tmp_path):
    # num_iterations > 1 makes TRL compute old-policy log-probs, beta > 0 reference ones.
    settings = dict(num_iterations=2, beta=0.1, gradient_accumulation_steps=2, num_generations=4)
    outputs, loss_logps = [], []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        trainer = make_trainer(trainer_cls, tiny_vlm_dir, clips, tmp_path / trainer_cls.__name__, **settings)
        trainer.model.train()
        batch = next(iter(trainer.get_train_dataloader()))
        output = trainer._generate_and_score_completions(batch)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
            torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
            output["completion_ids"].size(1),
            batch_size=3,  # chunks that cut through the groups
            pixel_values=output["pixel_values"],
            pixel_attention_mask=output["pixel_attention_mask"],
            num_images=output["num_images"],
        )
        outputs.append(output)
        loss_logps.append(logps)
    stock, shared = outputs
    assert torch.equal(shared["completion_ids"], stock["completion_ids"])
    assert torch.equal(shared["pixel_values"], stock["pixel_values"])
    assert torch.equal(shared["pixel_attention_mask"], stock["pixel_attention_mask"])
    assert shared["num_images"] == stock["num_images"]
    mask = stock["completion_mask"].bool()
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        torch.testing.assert_close(shared[key][mask], stock[key][mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_logps[1][mask], loss_logps[0][mask], rtol=0, atol=1e-5)


class LMTokenCounter:
    """Counts the positions the language model runs over (a forward pre-hook on the text model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        model.model.text_model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        self.tokens += kwargs["inputs_embeds"].shape[:2].numel()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_rows_sharing_a_prompt_run_it_once_in_the_loss_pass(tiny_vlm_dir, clips, tmp_path, attn_implementation):
    runs = []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        trainer = make_trainer(
            trainer_cls,
            tiny_vlm_dir,
            clips,
            tmp_path / trainer_cls.__name__,
            num_generations=4,
            gradient_accumulation_steps=2,
            attn_implementation=attn_implementation,
        )
        trainer.model.train()
        output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        counter = LMTokenCounter(trainer.model)
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
            torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
            output["completion_ids"].size(1),
            compute_entropy=True,
            pixel_values=output["pixel_values"],
            pixel_attention_mask=output["pixel_attention_mask"],
            num_images=output["num_images"],
        )
        (logps * output["completion_mask"]).sum().backward()
        grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
        runs.append((logps.detach(), entropies.detach(), grads, counter.tokens))
    (stock_logps, stock_entropies, stock_grads, stock_tokens), (logps, entropies, grads, tokens) = runs
    mask = output["completion_mask"].bool()
    torch.testing.assert_close(logps[mask], stock_logps[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(entropies[mask], stock_entropies[mask], rtol=0, atol=1e-5)
    assert_gradients_close(stock_grads, grads)
    # Eight rows of two prompts: each prompt runs once instead of four times.
    assert tokens < stock_tokens / 2


def test_prompt_packing_needs_an_attention_that_takes_a_4d_mask(load_tiny_model):
    model = load_tiny_model()
    assert prompt_packing_fallback(model) is None
    model.config.get_text_config()._attn_implementation = "flash_attention_2"
    assert "flash_attention_2" in prompt_packing_fallback(model)


TRAINING_SETUPS = {
    "default": {},
    # Eight rows of two clips per generation batch, shuffled into micro-batches of four.
    "grad_accumulation_shuffled": dict(gradient_accumulation_steps=2, num_generations=4),
    "num_iterations": dict(num_iterations=2, gradient_accumulation_steps=2, num_generations=4),
    "reference_model": dict(beta=0.1),
    "lora_reference_adapter_off": dict(lora=True, beta=0.1),
    "no_gradient_checkpointing": dict(gradient_checkpointing=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("setup", TRAINING_SETUPS.values(), ids=TRAINING_SETUPS.keys())
def test_training_gradients_match_stock(tiny_vlm_dir, clips, tmp_path, setup):
    runs = []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        recorder = GradientRecorder()
        trainer = make_trainer(
            trainer_cls, tiny_vlm_dir, clips, tmp_path / trainer_cls.__name__, callbacks=[recorder], **setup
        )
        counter = FrameCounter(trainer.model)
        trainer.train()
        runs.append((recorder.steps, counter.frames))
    (stock_steps, stock_frames), (shared_steps, shared_frames) = runs
    assert len(shared_steps) == len(stock_steps) == 2
    for stock, shared in zip(stock_steps, shared_steps, strict=True):
        assert_gradients_close(stock, shared)
    assert any("vision_model" in name for name in stock_steps[0])
    assert shared_frames < stock_frames


@pytest.fixture(scope="module")
def sampled_runs(tiny_vlm_dir, clips, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Both trainers sampling for real (same seed), 2 steps of one generation batch of 2 prompts x 2 completions."""
    return {
        trainer_cls.__name__: record_sampled_training(
            make_trainer(trainer_cls, tiny_vlm_dir, clips, tmp_path_factory.mktemp(trainer_cls.__name__), fixed=False)
        )
        for trainer_cls in (GRPOTrainer, VLMGRPOTrainer)
    }


def test_shared_prefill_samples_the_same_completions_as_stock(sampled_runs):
    stock, shared = sampled_runs["GRPOTrainer"], sampled_runs["VLMGRPOTrainer"]
    assert len(stock["completions"]) == 2
    assert shared["completions"] == stock["completions"]
    # One prefill per distinct prompt: the language model reads each prompt once, not once per completion.
    assert shared["generation_tokens"] < stock["generation_tokens"]


def test_vision_tower_encodes_each_clip_once_per_pass(sampled_runs):
    stock, shared = sampled_runs["GRPOTrainer"], sampled_runs["VLMGRPOTrainer"]
    num_generations = 2
    # Generation batches hold two prompts x 2 completions; each micro-batch is a whole generation batch here.
    assert stock["generation_frames"] == num_generations * shared["generation_frames"] > 0
    assert stock["frames"] == num_generations * shared["frames"]


def test_frames_are_preprocessed_once_per_distinct_prompt(sampled_runs):
    stock, shared = sampled_runs["GRPOTrainer"], sampled_runs["VLMGRPOTrainer"]
    # Two generation batches of 2 distinct prompts: TRL preprocesses every row twice (4 rows x 2 calls).
    assert stock["preprocessed_clips"] == 2 * 4 * 2
    assert shared["preprocessed_clips"] == 2 * 2


def test_use_vllm_falls_back_to_trl_path_and_says_so_once(tiny_vlm_dir, clips, tmp_path, monkeypatch, caplog):
    class OfflineVLLM:
        """Stands in for vLLM (not installed here): the trainer only builds it."""

        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    monkeypatch.setattr("trl.trainer.grpo_trainer.VLLMGeneration", OfflineVLLM)
    with caplog.at_level(logging.WARNING, logger="vlmrl_trl.trainers.grpo_trainer"):
        trainer = make_trainer(VLMGRPOTrainer, tiny_vlm_dir, clips, tmp_path, fixed=False, use_vllm=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "vlmrl_trl.trainers.grpo_trainer"]
    assert len(messages) == 1 and "use_vllm=True" in messages[0]
    assert not trainer.share_vision
    assert "get_image_features" not in vars(trainer.model.model)
    assert isinstance(trainer.vllm_generation, OfflineVLLM)


def test_fallback_reasons_name_the_unsupported_setup(load_tiny_model, tiny_processor, cpu_args):
    model = load_tiny_model()
    config = VLMGRPOConfig(**cpu_args)
    assert vision_sharing_fallback(config, model, tiny_processor) is None
    assert "use_vllm" in vision_sharing_fallback(VLMGRPOConfig(**cpu_args, use_vllm=True), model, tiny_processor)
    assert "tokenizer" in vision_sharing_fallback(config, model, tiny_processor.tokenizer)
    assert "Linear" in vision_sharing_fallback(config, torch.nn.Linear(2, 2), tiny_processor)


def test_deduplicate_vision_false_keeps_trl_path(tiny_vlm_dir, clips, tmp_path):
    trainer = make_trainer(VLMGRPOTrainer, tiny_vlm_dir, clips, tmp_path, deduplicate_vision=False)
    assert not trainer.share_vision
    assert "get_image_features" not in vars(trainer.model.model)


GROUPING_SETUPS = {
    **{loss_type: dict(loss_type=loss_type) for loss_type in sorted(MICRO_BATCH_INDEPENDENT_LOSS_TYPES)},
    # Two generation batches per optimizer step (gradient_accumulation_steps a multiple of steps_per_generation).
    "two_generation_batches_per_step": dict(gradient_accumulation_steps=4, steps_per_generation=2),
}


@pytest.mark.slow
@pytest.mark.parametrize("setup", GROUPING_SETUPS.values(), ids=GROUPING_SETUPS.keys())
def test_clip_grouped_micro_batches_keep_stock_gradients(tiny_vlm_dir, clips, tmp_path, setup):
    # Generation batches of 2 clips x 4 completions, shuffled into 2 micro-batches of 4 rows.
    setup = dict(gradient_accumulation_steps=2, num_generations=4) | setup
    runs = []
    for trainer_cls in (GRPOTrainer, VLMGRPOTrainer):
        recorder = GradientRecorder()
        trainer = make_trainer(
            trainer_cls, tiny_vlm_dir, clips, tmp_path / trainer_cls.__name__, callbacks=[recorder], **setup
        )
        counter = FrameCounter(trainer.model)
        trainer.train()
        runs.append((recorder.steps, counter.frames))
    assert trainer.group_clips
    (stock_steps, stock_frames), (shared_steps, shared_frames) = runs
    assert len(shared_steps) == len(stock_steps) == 2
    for stock, shared in zip(stock_steps, shared_steps, strict=True):
        assert_gradients_close(stock, shared)
    # Completions are fixed, so only the loss pass encodes: each micro-batch holds one clip, encoded once.
    assert stock_frames == 4 * shared_frames


def test_clip_grouped_permutation_keeps_clips_together_and_trl_random_stream():
    clip_of_row = torch.arange(3).repeat_interleave(4)  # RepeatSampler order: 3 clips x 4 completions
    batch = {
        "prompt_ids": torch.ones(12, 5, dtype=torch.long),
        "prompt_mask": torch.ones(12, 5, dtype=torch.long),
        "pixel_values": clip_of_row.float().view(12, 1, 1, 1, 1).expand(12, 2, 3, 4, 4),
        "num_items_in_batch": torch.tensor(30.0),
        "num_images": [2] * 12,
    }
    orders, clip_orders = set(), set()
    for seed in range(200):
        torch.manual_seed(seed)
        permutation = clip_grouped_permutation(batch, PerRowAdapter())
        after = torch.rand(1)
        torch.manual_seed(seed)
        torch.randperm(12)  # what TRL's `shuffle_sequence_dict` draws
        assert torch.equal(after, torch.rand(1))
        assert sorted(permutation.tolist()) == list(range(12))
        clips_in_order = clip_of_row[permutation].view(3, 4)
        assert (clips_in_order == clips_in_order[:, :1]).all()
        orders.add(tuple(permutation[:4].tolist()))
        clip_orders.add(tuple(clips_in_order[:, 0].tolist()))
    assert len(clip_orders) == 6  # every order of the 3 clips
    assert len(orders) > 30  # and of the rows within a clip
    shuffled = permute_rows(batch, permutation)
    assert torch.equal(shuffled["pixel_values"], batch["pixel_values"][permutation])
    assert shuffled["num_items_in_batch"] is batch["num_items_in_batch"]
    assert shuffled["num_images"] == [2] * 12


def test_micro_batch_dependence_names_what_grouping_would_change(cpu_args):
    def dependence(aux_loss_enabled: bool = False, **overrides: Any) -> str | None:
        config = VLMGRPOConfig(**cpu_args, **overrides)
        return micro_batch_dependence(config, aux_loss_enabled)

    assert dependence() is None  # TRL's defaults: dapo, steps_per_generation = gradient_accumulation_steps
    assert dependence(gradient_accumulation_steps=4, steps_per_generation=2) is None
    assert "bnpo" in dependence(loss_type="bnpo")
    assert "steps_per_generation=4" in dependence(gradient_accumulation_steps=2, steps_per_generation=4)
    assert "top_entropy_quantile" in dependence(top_entropy_quantile=0.5)
    assert "entropy bonus" in dependence(entropy_coef=0.01)
    assert "router" in dependence(aux_loss_enabled=True)


@pytest.mark.parametrize(
    ("setting", "loss_type", "grouped", "log_level"),
    [
        (None, "dapo", True, None),
        (None, "bnpo", False, logging.INFO),
        (True, "bnpo", True, logging.WARNING),
        (False, "dapo", False, None),
    ],
)
def test_group_clips_setting_and_loss_type_decide_grouping(
    tiny_vlm_dir, clips, tmp_path, caplog, setting, loss_type, grouped, log_level
):
    with caplog.at_level(logging.INFO, logger="vlmrl_trl.trainers.grpo_trainer"):
        trainer = make_trainer(
            VLMGRPOTrainer, tiny_vlm_dir, clips, tmp_path, loss_type=loss_type, group_clips_in_micro_batches=setting
        )
    assert trainer.group_clips is grouped
    records = [r for r in caplog.records if r.name == "vlmrl_trl.trainers.grpo_trainer"]
    if log_level is None:
        assert not records
    else:
        assert [r.levelno for r in records] == [log_level] and "bnpo" in records[0].getMessage()
