"""What the GRPO trainer tests share: rows of random frames, fixed completions, and the records that compare a
stock `trl.GRPOTrainer` run with a `VLMGRPOTrainer` run on the same model (any family's tiny model directory)."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer, ModelConfig

from vlmrl_trl.data import build_prompt
from vlmrl_trl.models import load_model, load_processor
from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer

FRAME_COUNTS = (2, 3, 1, 2)


def frame(seed: int) -> Image.Image:
    """A random RGB frame; the same seed gives the same pixels."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8))


def completion_length(completions: list, **kwargs: Any) -> list[float]:
    """Reward: the completion's length in characters (any deterministic reward does)."""
    return [float(len(completion[0]["content"])) for completion in completions]


def fixed_completions(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
    """Stand-in for sampling: the k-th copy of a prompt gets completion k, of 3 to 6 tokens, some ending in EOS."""
    seen: dict[tuple[int, ...], int] = {}
    completions = []
    for ids in prompt_ids:
        k = seen.setdefault(tuple(ids), 0)
        seen[tuple(ids)] += 1
        length = 3 + (sum(ids) + k) % 4
        tokens = [40 + (sum(ids) * 7 + 13 * k + 5 * j) % 80 for j in range(length)]
        completions.append(tokens + ([self.eos_token_ids[0]] if k % 2 == 0 else []))
    return completions, None


class GradientRecorder(TrainerCallback):
    """Keeps the gradients of the trainable parameters at every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append(
            {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        )


# Vision towers by class name: the Idefics, CLIP and SigLIP ones take frames, Qwen's take patches with a grid.
VISION_TOWERS = (
    "VisionTransformer",
    "VisionTransformerPretrainedModel",
    "VLVisionModel",
    "CLIPVisionModel",
    "SiglipVisionModel",
)


class FrameCounter:
    """Counts the frames the vision towers of the models encode (a forward pre-hook on each)."""

    def __init__(self, *models: torch.nn.Module) -> None:
        self.frames = 0
        for model in models:
            for module in model.modules():
                if type(module).__name__.endswith(VISION_TOWERS):
                    module.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        if kwargs.get("grid_thw") is not None:  # flattened patches: one grid row per image
            self.frames += int(kwargs["grid_thw"][:, 0].sum())
            return
        pixel_values = kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]
        self.frames += pixel_values.size(0)


def make_trainer(
    trainer_cls: type[GRPOTrainer],
    model_dir,
    dataset: Dataset,
    output_dir,
    *,
    lora: bool = False,
    fixed: bool = True,
    attn_implementation: str | None = None,
    callbacks: list | None = None,
    **overrides: Any,
) -> GRPOTrainer:
    """A trainer of `trainer_cls` on the tiny model; `fixed=True` replaces sampling with `fixed_completions`."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        max_steps=2,
        optim="sgd",
        learning_rate=0.05,
        max_grad_norm=0.0,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    settings.update(overrides)
    config_cls = VLMGRPOConfig if trainer_cls is VLMGRPOTrainer else GRPOConfig
    peft_config = None
    if lora:
        from peft import LoraConfig

        # Adapters on both towers and on the connector, so the vision side is trained through shared features.
        peft_config = LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "fc1", "proj"]
        )
    trainer = trainer_cls(
        model=load_model(
            ModelConfig(model_name_or_path=str(model_dir), dtype="float32", attn_implementation=attn_implementation)
        ),
        reward_funcs=completion_length,
        args=config_cls(**settings),
        train_dataset=dataset,
        processing_class=load_processor(str(model_dir)),
        callbacks=callbacks,
        peft_config=peft_config,
    )
    if fixed:
        trainer._generate_single_turn = types.MethodType(fixed_completions, trainer)
    return trainer


def assert_gradients_close(stock: dict[str, torch.Tensor], shared: dict[str, torch.Tensor]) -> None:
    """Every parameter's gradient within 1e-5 relative (scale floored at 1e-4 of the total norm, see below)."""
    assert shared.keys() == stock.keys()
    total = torch.sqrt(sum(g.pow(2).sum() for g in stock.values()))
    assert total > 0
    for name, grad in stock.items():
        # Key-projection biases have an analytically zero gradient (softmax ignores a shift shared by all keys);
        # their ~1e-9 values are rounding noise, so a relative error on them alone would mean nothing.
        scale = torch.maximum(grad.norm(), 1e-4 * total)
        assert (shared[name] - grad).norm() <= 1e-5 * scale, name


def log_prob_pass(
    trainer: GRPOTrainer, output: dict[str, Any], keys: Iterable[str]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Loss-pass log-probs and entropies of a rollout (its fields `keys` passed on) in chunks of 3 rows, cutting
    through the groups, and the gradients of their masked sum."""
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model,
        torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
        torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
        output["completion_ids"].size(1),
        batch_size=3,
        compute_entropy=True,
        **{key: output[key] for key in keys if key in output},
    )
    (logps * output["completion_mask"]).sum().backward()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def train_recording(
    trainer_cls: type[GRPOTrainer], model_dir, dataset: Dataset, output_dir, **settings: Any
) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Train a `make_trainer` trainer: each optimizer step's gradients and the frames its vision towers encoded."""
    recorder = GradientRecorder()
    trainer = make_trainer(trainer_cls, model_dir, dataset, output_dir, callbacks=[recorder], **settings)
    counter = FrameCounter(trainer.model)
    trainer.train()
    return recorder.steps, counter.frames


def assert_same_training(reference: tuple[list, int], shared: tuple[list, int]) -> None:
    """Two `train_recording` runs: the same gradients at each of their 2 steps, fewer frames encoded by the second."""
    (reference_steps, reference_frames), (shared_steps, shared_frames) = reference, shared
    assert len(shared_steps) == len(reference_steps) == 2
    for expected, got in zip(reference_steps, shared_steps, strict=True):
        assert_gradients_close(expected, got)
    assert shared_frames < reference_frames


def record_sampled_training(trainer: GRPOTrainer) -> dict[str, Any]:
    """Train for real; record completions, frames encoded (in all and in generation), tokens the language model
    reads in generation (prefill and decoding) and clips preprocessed."""
    counter = FrameCounter(trainer.model)
    image_processor_cls = type(trainer.processing_class.image_processor)
    record: dict[str, Any] = {
        "completions": [],
        "generation_frames": 0,
        "generation_tokens": 0,
        "preprocessed_clips": 0,
    }
    in_generation = [False]

    def count_tokens(module, args) -> None:
        if in_generation[0]:
            record["generation_tokens"] += args[0].numel()

    trainer.model.get_input_embeddings().register_forward_pre_hook(count_tokens)
    real_call, real_generate = image_processor_cls.__call__, trainer._generate_single_turn
    real_rollout = trainer._generate_and_score_completions

    def count_clips(self, images, **kwargs):
        record["preprocessed_clips"] += len(images)
        return real_call(self, images, **kwargs)

    def count_generation_frames(*args, **kwargs):
        before = counter.frames
        in_generation[0] = True
        try:
            result = real_generate(*args, **kwargs)
        finally:
            in_generation[0] = False
        record["generation_frames"] += counter.frames - before
        return result

    def keep_completions(inputs):
        output = real_rollout(inputs)
        record["completions"].append(output["completion_ids"].tolist())
        return output

    trainer._generate_single_turn = count_generation_frames
    trainer._generate_and_score_completions = keep_completions
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_processor_cls, "__call__", count_clips)
        trainer.train()
    record["frames"] = counter.frames
    return record


def clip_rows(frame_counts: tuple[int, ...] = FRAME_COUNTS) -> Dataset:
    """RL rows (the `to_rl_dataset` layout: conversational prompt with one image entry per frame + `images`)."""
    return Dataset.from_list(
        [
            {"prompt": build_prompt(count, "frames_only"), "images": [frame(10 * row + i) for i in range(count)]}
            for row, count in enumerate(frame_counts)
        ]
    )
