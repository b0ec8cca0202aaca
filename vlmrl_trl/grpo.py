"""Stages 2 and 3 of the method: GRPO on clips with the decision rewards, using `VLMGRPOTrainer`.

Stage 2 (decide) rewards actions and reasons against the labels (R2, ``action_reasoning``) with a small weight on
the JSON format (R3, ``structure``); stage 3 (structure) rewards the whole JSON object: R3 + R2 + the scene's CLIP
alignment (R1, ``clip_alignment``). Each starts from a given checkpoint (the SFT output by default). Run with a
recipe and optional overrides (every YAML key is a field of the three dataclasses below; an unknown key is an
error)::

    python -m vlmrl_trl.grpo --config recipes/tiny/grpo/config_stage2.yaml
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m vlmrl_trl.grpo \\
        --config recipes/smolvlm-256m-instruct/grpo/config_stage3.yaml --model_name_or_path outputs/my-sft

The final model and its processor are saved to ``output_dir``.
"""

from __future__ import annotations

from . import quiet  # noqa: F401  (first: it silences the startup noise of the imports below)

# isort: split
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trl import ModelConfig

from .labels import load_label_set
from .launch import parse_recipe, run_script
from .rewards import check_reward_config, reward_options
from .sft import SFTScriptArguments, load_clips, load_model_and_processor
from .stage_run import push_if_asked, require_model, train_and_save
from .trainers.grpo_config import VLMGRPOConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from .trainers.grpo_trainer import VLMGRPOTrainer

logger = logging.getLogger(__name__)


@dataclass
class GRPOScriptArguments(SFTScriptArguments):
    """The SFT script's data options (same keys, so the recipes read alike) plus the rewards to optimise.

    The weights of the rewards are `VLMGRPOConfig.reward_weights` (TRL's key), one per name in ``reward_funcs``.
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["action_reasoning", "structure"],
        metadata={
            "help": "Reward names from vlmrl_trl.rewards (clip_alignment, action_reasoning, structure) or import "
            "paths of your own (my_pkg.rewards.fn)."
        },
    )
    reward_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Options of each reward, by name, e.g. {clip_alignment: {model: 'local-dir:outputs/tiny-clip'}} "
            "(a JSON string on the command line)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.reward_kwargs, str):
            try:
                self.reward_kwargs = json.loads(self.reward_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(f"reward_kwargs must be a JSON object, got {self.reward_kwargs!r}: {err}") from None
        if self.reward_kwargs is not None and not isinstance(self.reward_kwargs, dict):
            raise ValueError(f"reward_kwargs must map reward names to options, got {self.reward_kwargs!r}")
        check_reward_config(self.reward_funcs, self.reward_kwargs)

    def resolved_reward_options(self) -> dict[str, dict[str, Any]]:
        """``reward_kwargs``, with the recipe's ``label_set`` (and, for video clips, the frames' column) given to each
        reward that takes one and names none."""
        options = {name: dict(values) for name, values in (self.reward_kwargs or {}).items()}
        if self.label_set is not None:
            for name in self.reward_funcs:
                if "label_set" in reward_options(name):
                    options.setdefault(name, {}).setdefault("label_set", self.label_set)
        if self.clip_input == "video":  # the frames are in the `video` column
            for name in self.reward_funcs:
                if "images_column" in reward_options(name):
                    options.setdefault(name, {}).setdefault("images_column", "video")
        return options


def parse_args(argv: Sequence[str] | None = None) -> tuple[GRPOScriptArguments, VLMGRPOConfig, ModelConfig]:
    """Parse a recipe and overrides (`vlmrl_trl.launch.parse_recipe`); unknown keys, launched processes that would
    not train together, or reward weights that don't match the rewards raise ``ValueError``."""
    script_args, training_args, model_args = parse_recipe((GRPOScriptArguments, VLMGRPOConfig, ModelConfig), argv)
    check_reward_weights(script_args, training_args)
    return script_args, training_args, model_args


def check_reward_weights(script_args: GRPOScriptArguments, training_args: VLMGRPOConfig) -> None:
    """``reward_weights`` must give one weight per reward in ``reward_funcs`` (TRL only checks this later)."""
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(script_args.reward_funcs):
        raise ValueError(
            f"reward_weights {weights} must give one weight per reward in reward_funcs {script_args.reward_funcs}"
        )


def build_rl_dataset(script_args: GRPOScriptArguments, split: str, *, max_samples: int | None) -> Dataset:
    """Prompt-only rows of one split (prompt, images and the label columns the rewards read)."""
    from .data import to_rl_dataset

    clips = load_clips(script_args, split)
    if max_samples is not None:
        clips = clips.select(range(min(max_samples, len(clips))))
    return to_rl_dataset(
        clips,
        prompt_mode=script_args.prompt_mode,
        labels=load_label_set(script_args.label_set),
        clip_input=script_args.clip_input,
        fps=script_args.clip_fps,
    )


def build_trainer(
    script_args: GRPOScriptArguments,
    training_args: VLMGRPOConfig,
    model_args: ModelConfig,
    *,
    train_dataset: Dataset | None = None,
    eval_dataset: Dataset | None = None,
    trainer_cls: type[VLMGRPOTrainer] | None = None,
) -> VLMGRPOTrainer:
    """Model, processor, rewards, data and a trainer (`VLMGRPOTrainer` unless ``trainer_cls`` names a subclass, as
    the PPO script does); datasets default to the ones ``script_args`` names."""
    from trl import get_peft_config

    from .rewards import get_reward_funcs
    from .trainers.grpo_trainer import VLMGRPOTrainer

    require_model(model_args, "the checkpoint to start from, e.g. outputs/tiny-vlm-sft")
    # The data first, so that a bad dataset fails before a model is downloaded.
    if train_dataset is None:
        train_dataset = build_rl_dataset(
            script_args, script_args.dataset_train_split, max_samples=script_args.max_train_samples
        )
    if eval_dataset is None and training_args.eval_strategy != "no":
        eval_dataset = build_rl_dataset(
            script_args, script_args.dataset_test_split, max_samples=script_args.max_eval_samples
        )
    reward_funcs = get_reward_funcs(script_args.reward_funcs, script_args.resolved_reward_options())
    model, processor = load_model_and_processor(script_args, training_args, model_args)
    return (trainer_cls or VLMGRPOTrainer)(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )


def main(script_args: GRPOScriptArguments, training_args: VLMGRPOConfig, model_args: ModelConfig) -> VLMGRPOTrainer:
    """Train, then save the model and its processor to ``output_dir``."""
    trainer = build_trainer(script_args, training_args, model_args)
    train_and_save(trainer, training_args, "the GRPO-trained model")
    push_if_asked(trainer, script_args.dataset_name)
    return trainer


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmrl_trl.grpo``: a bad recipe or option exits 2 with one readable line."""
    return run_script("vlmrl_trl.grpo", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
