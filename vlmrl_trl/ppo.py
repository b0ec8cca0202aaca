"""Stage 1 of the method: actor-critic RL (PPO) that teaches a VLM to describe a clip from its frames alone.

The prompt is the clip's frames with no text; the policy writes a scene description and is rewarded by the CLIP
alignment R1 (per token, as its dense increments, by default). Run with a recipe and optional overrides (every YAML
key is a field of the three dataclasses below; an unknown key is an error)::

    python -m vlmrl_trl.ppo --config recipes/tiny/ppo/config_stage1.yaml
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m vlmrl_trl.ppo \\
        --config recipes/smolvlm-256m-instruct/ppo/config_stage1.yaml --learning_rate 5e-6

With ``r1_eval_samples`` set, the mean R1 of greedy descriptions of that many held-out clips is measured before
and after training and written to ``output_dir/r1_eval.json``.
"""

from __future__ import annotations

from . import quiet  # noqa: F401  (first: it silences the startup noise of the imports below)

# isort: split
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trl import ModelConfig

from . import grpo
from .data.formatting import PromptMode
from .grpo import GRPOScriptArguments, build_rl_dataset, check_reward_weights
from .launch import parse_recipe, run_script
from .stage_run import push_if_asked, train_and_save
from .trainers.ppo_config import VLMPPOConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from .rewards import ClipAlignmentReward
    from .trainers.ppo_trainer import VLMPPOTrainer

logger = logging.getLogger(__name__)

R1_EVAL_FILE = "r1_eval.json"


@dataclass
class PPOScriptArguments(GRPOScriptArguments):
    """The GRPO script's data and reward options (same keys, so the recipes read alike), with Stage 1's defaults
    (frames-only prompts, R1), plus the held-out R1 measurement."""

    prompt_mode: PromptMode = field(
        default="frames_only",
        metadata={"help": "'frames_only' (Stage 1): the frames alone; 'instruction': frames then the task."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["clip_alignment"],
        metadata={
            "help": "Reward names from vlmrl_trl.rewards (clip_alignment, action_reasoning, structure) or import "
            "paths of your own (my_pkg.rewards.fn)."
        },
    )
    r1_eval_samples: int = field(
        default=0,
        metadata={
            "help": "Held-out clips (dataset_test_split) whose greedy descriptions are scored by R1 before and after "
            "training; 0 skips the measurement."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r1_eval_samples < 0:
            raise ValueError(f"r1_eval_samples must be >= 0, got {self.r1_eval_samples}")


def parse_args(argv: Sequence[str] | None = None) -> tuple[PPOScriptArguments, VLMPPOConfig, ModelConfig]:
    """Parse a recipe and overrides (`vlmrl_trl.launch.parse_recipe`); unknown keys, launched processes that would
    not train together, or reward weights that don't match the rewards raise ``ValueError``."""
    script_args, training_args, model_args = parse_recipe((PPOScriptArguments, VLMPPOConfig, ModelConfig), argv)
    check_reward_weights(script_args, training_args)
    return script_args, training_args, model_args


def build_trainer(
    script_args: PPOScriptArguments,
    training_args: VLMPPOConfig,
    model_args: ModelConfig,
    *,
    train_dataset: Dataset | None = None,
    eval_dataset: Dataset | None = None,
) -> VLMPPOTrainer:
    """Model, processor, rewards, data and a ``VLMPPOTrainer`` (as the GRPO script builds them)."""
    from .trainers.ppo_trainer import VLMPPOTrainer

    return grpo.build_trainer(
        script_args,
        training_args,
        model_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        trainer_cls=VLMPPOTrainer,
    )


def clip_reward(trainer: VLMPPOTrainer) -> ClipAlignmentReward:
    """The trainer's R1 reward function."""
    from .rewards import ClipAlignmentReward

    for func in trainer.reward_funcs:
        if isinstance(func, ClipAlignmentReward):
            return func
    raise ValueError(f"r1_eval_samples needs clip_alignment among reward_funcs, got {trainer.reward_func_names}")


def mean_r1(trainer: VLMPPOTrainer, rows: Dataset, batch_size: int) -> dict[str, Any]:
    """Mean R1 of the policy's greedy descriptions of the prompts in ``rows``, each clip's R1 (so a change can be
    paired clip by clip) and a few of the descriptions."""
    from tqdm.auto import tqdm
    from trl.models import unwrap_model_for_generation

    from .predict import GenerationOptions, generate

    reward = clip_reward(trainer)
    options = GenerationOptions(max_new_tokens=trainer.args.max_completion_length)
    texts: list[str] = []
    with unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
    ) as model:
        progress = tqdm(
            total=len(rows), desc="mean R1 check", unit="clip", disable=not trainer.is_world_process_zero()
        )
        with progress:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                video_fps = batch.get("fps")  # clips as video (clip_input=video) carry their frame rate
                frames = batch["video" if video_fps is not None else "images"]
                texts += generate(
                    model, trainer.processing_class, batch["prompt"], frames, options, video_fps=video_fps
                )
                progress.update(len(batch["prompt"]))
    scores = reward.score(rows["video" if "video" in rows.column_names else "images"], texts)
    return {
        "mean_r1": sum(scores) / len(scores),
        "clips": len(scores),
        "examples": texts[:4],
        "by_clip": dict(zip(rows["clip_id"], map(float, scores), strict=True)),
    }


def main(script_args: PPOScriptArguments, training_args: VLMPPOConfig, model_args: ModelConfig) -> VLMPPOTrainer:
    """Train, then save the model, its value head and processor to ``output_dir`` (and the R1 measurement)."""
    trainer = build_trainer(script_args, training_args, model_args)
    warmup = training_args.critic_warmup_steps
    critic_only = 0 < training_args.max_steps <= warmup
    if critic_only:
        trainer.accelerator.print(
            f"note: max_steps {training_args.max_steps} <= critic_warmup_steps {warmup}: this run trains only the "
            f"value head, the policy stays as it is (R1 will not change); give --max_steps above {warmup} or "
            "--critic_warmup_steps 0 to train the policy"
        )
    held_out = None
    report: dict[str, Any] = {}
    batch_size = training_args.per_device_eval_batch_size
    if script_args.r1_eval_samples:
        held_out = build_rl_dataset(
            script_args, script_args.dataset_test_split, max_samples=script_args.r1_eval_samples
        )
        report["before"] = mean_r1(trainer, held_out, batch_size)
        trainer.accelerator.print(
            f"mean R1 on {len(held_out)} held-out clips before training: {report['before']['mean_r1']:.4f}"
        )
    train_and_save(trainer, training_args, "the policy and its value head")
    if held_out is not None:
        report["after"] = mean_r1(trainer, held_out, batch_size)
        before, after = report["before"]["mean_r1"], report["after"]["mean_r1"]
        trainer.accelerator.print(
            f"mean R1 on {len(held_out)} held-out clips: {before:.4f} before, {after:.4f} after "
            f"({after - before:+.4f}{'; only the value head trained, see the note above' if critic_only else ''})"
        )
        if trainer.accelerator.is_main_process:
            path = Path(training_args.output_dir) / R1_EVAL_FILE
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    push_if_asked(trainer, script_args.dataset_name)
    return trainer


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmrl_trl.ppo``: a bad recipe or option exits 2 with one readable line."""
    return run_script("vlmrl_trl.ppo", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
