"""What the SFT, GRPO and PPO stage scripts do alike around their trainers: refuse a recipe without a model, and
train, save and push the result."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments
    from trl import ModelConfig


def require_model(model_args: ModelConfig, what: str) -> None:
    """Raise ``ValueError`` when the recipe names no model to start from; ``what`` says what it should be."""
    if not model_args.model_name_or_path:
        raise ValueError(f"model_name_or_path is required ({what})")


def train_and_save(trainer: Trainer, training_args: TrainingArguments, what: str) -> None:
    """Train (resuming as the recipe says), then save the model and its processor to ``output_dir``."""
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)  # the processor (with its chat template) is saved beside it
    trainer.accelerator.print(f"saved {what} to {training_args.output_dir}")


def push_if_asked(trainer: Trainer, dataset_name: str) -> None:
    """Push the saved model to the Hub when the recipe sets ``push_to_hub``, naming the dataset it trained on."""
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
