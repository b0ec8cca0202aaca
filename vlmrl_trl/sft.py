"""Supervised fine-tuning of a VLM on labelled clips with TRL's ``SFTTrainer``: the starting policy for RL.

Run with a recipe and optional overrides (every YAML key is a field of the three dataclasses below; an
unknown key is an error)::

    python -m vlmrl_trl.sft --config recipes/tiny/sft/config_synthetic.yaml
    accelerate launch -m vlmrl_trl.sft --config recipes/smolvlm-256m-instruct/sft/config_bddoia.yaml \\
        --learning_rate 5e-5

Each example is a multi-frame user turn (the clip's frames, then the instruction unless ``prompt_mode`` is
``frames_only``) and the target JSON decision; the loss covers only the answer, via the chat template's
generation markers (``assistant_only_loss``) or, without them, the completion mask (``completion_only_loss``).
"""

from __future__ import annotations

from . import quiet  # noqa: F401  (first: it silences the startup noise of the imports below)

# isort: split
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trl import ModelConfig, SFTConfig

from .data.bddoia import SPLITS
from .data.formatting import ClipInput, PromptMode, check_clip_input, check_prompt_mode
from .data.frames import DEFAULT_FPS, check_fps
from .data.loaders import SYNTHETIC, load_clips
from .labels import load_label_set
from .launch import parse_recipe, run_script
from .stage_run import push_if_asked, require_model, train_and_save

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, ProcessorMixin, TrainingArguments
    from trl import SFTTrainer

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "data/synthetic"


@dataclass
class SFTScriptArguments:
    """Where the clips come from and how they become prompts."""

    dataset_name: str = field(
        default=SYNTHETIC,
        metadata={
            "help": f"'{SYNTHETIC}' for the embedded synthetic clips (generated into data_dir when absent), "
            "a clip manifest (.jsonl), a datasets save_to_disk folder, or the root folder of a BDD-OIA copy "
            "(vlmrl_trl.data.loaders)."
        },
    )
    label_set: str | None = field(
        default=None,
        metadata={
            "help": "The actions and reasons: a shipped label set's name or a .json/.yaml file (docs/data.md); "
            "default bddoia."
        },
    )
    data_dir: str = field(
        default=DEFAULT_DATA_DIR,
        metadata={"help": f"Folder of the synthetic clips when dataset_name is '{SYNTHETIC}'."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(
        default="val", metadata={"help": "Split to evaluate on when eval_strategy is not 'no'."}
    )
    num_frames: int = field(default=4, metadata={"help": "Frames per clip fed to the model."})
    frame_stride: int = field(default=1, metadata={"help": "Step between the clip's frames, in source frames."})
    prompt_mode: PromptMode = field(
        default="instruction",
        metadata={"help": "'instruction': frames then the task and JSON format; 'frames_only': frames alone."},
    )
    clip_input: ClipInput = field(
        default="images",
        metadata={
            "help": "'images': each frame is an image; 'video': the clip is one video, through the model's video "
            "path (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: two frames per temporal patch, time in the positions)."
        },
    )
    clip_fps: float = field(
        default=DEFAULT_FPS,
        metadata={"help": "Frame rate of the clips' frames (1/fps s apart), for video time positions."},
    )
    describe_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Also train on frames-only prompts answered by the scene description alone (the Stage 1 task) "
            "for this fraction of the train clips, so that the SFT model can start Stage 1; 0 = decisions only."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most this many train clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most this many eval clips."})
    synthetic_train_clips: int = field(
        default=2000, metadata={"help": "Train clips generated when the synthetic set is absent from data_dir."}
    )
    synthetic_val_clips: int = field(default=200, metadata={"help": "Val clips generated with the synthetic set."})
    synthetic_test_clips: int = field(default=500, metadata={"help": "Test clips generated with the synthetic set."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the generated synthetic set."})
    skip_invalid: bool = field(
        default=False,
        metadata={
            "help": "Skip BDD-OIA entries with a missing or corrupt frame or malformed labels (a warning gives the "
            "counts) instead of stopping with an error that lists them."
        },
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Do not train the vision encoder."})
    image_splitting: bool = field(
        default=False,
        metadata={"help": "Let the processor tile large frames (SmolVLM image mode); off = whole frames."},
    )

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_prompt_mode(self.prompt_mode)
        check_clip_input(self.clip_input)
        check_fps(self.clip_fps, "clip_fps")
        if not 0.0 <= self.describe_ratio <= 1.0:
            raise ValueError(f"describe_ratio must be between 0 and 1, got {self.describe_ratio}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when set, got {value}")
        for name in ("dataset_train_split", "dataset_test_split"):
            if getattr(self, name) not in SPLITS:
                raise ValueError(f"{name} must be one of {', '.join(SPLITS)}, got {getattr(self, name)!r}")
        load_label_set(self.label_set)  # a bad label set file fails when the recipe is read
        if self.dataset_name != SYNTHETIC and self.data_dir != DEFAULT_DATA_DIR:
            raise ValueError(
                f"data_dir={self.data_dir!r} is only read with dataset_name={SYNTHETIC!r}; a BDD-OIA copy is "
                f"given by its root folder as dataset_name (here {self.dataset_name!r})"
            )


def parse_args(argv: Sequence[str] | None = None) -> tuple[SFTScriptArguments, SFTConfig, ModelConfig]:
    """Parse a recipe and overrides (`vlmrl_trl.launch.parse_recipe`); unknown keys, or launched processes that
    would not train together, raise ``ValueError``."""
    script_args, training_args, model_args = parse_recipe((SFTScriptArguments, SFTConfig, ModelConfig), argv)
    return script_args, training_args, model_args


def to_messages(dataset: Dataset) -> Dataset:
    """Join prompt and completion into one ``messages`` conversation, as ``assistant_only_loss`` needs."""

    def join(prompt: list[dict[str, Any]], completion: list[dict[str, Any]]) -> dict[str, Any]:
        return {"messages": prompt + completion}

    # Only the text columns are read, so the frames are not decoded and re-encoded.
    return dataset.map(join, input_columns=["prompt", "completion"], remove_columns=["prompt", "completion"])


def build_sft_dataset(
    script_args: SFTScriptArguments,
    split: str,
    *,
    max_samples: int | None,
    conversation: bool,
    describe_ratio: float = 0.0,
) -> Dataset:
    """Formatted clips of one split: prompt/completion, or ``messages`` when ``conversation`` is set, plus images.
    With ``describe_ratio`` > 0, that fraction of the clips (a seeded sample) also appears as a frames-only
    prompt whose answer is the clip's description (the same sample on every rank and run)."""
    import random

    from datasets import concatenate_datasets

    from .data.formatting import to_sft_dataset

    clips = load_clips(script_args, split)
    if max_samples is not None:
        clips = clips.select(range(min(max_samples, len(clips))))
    labels = load_label_set(script_args.label_set)
    video = dict(clip_input=script_args.clip_input, fps=script_args.clip_fps)
    dataset = to_sft_dataset(clips, prompt_mode=script_args.prompt_mode, labels=labels, **video)
    num_describe = round(describe_ratio * len(clips))
    if num_describe:
        if not all(clips["scene"]):
            raise ValueError(
                f"describe_ratio={describe_ratio} needs a description for every clip, and the {split!r} split of "
                f"{script_args.dataset_name!r} has clips without one (BDD-OIA has none): set describe_ratio to 0"
            )
        picked = sorted(random.Random(0).sample(range(len(clips)), num_describe))
        describe = to_sft_dataset(
            clips.select(picked), prompt_mode="frames_only", target="scene", labels=labels, **video
        )
        dataset = concatenate_datasets([dataset, describe.cast(dataset.features)])
    # Video rows stay prompt/completion: `VideoSFTCollator` masks the prompt itself.
    return to_messages(dataset) if conversation and script_args.clip_input == "images" else dataset


def load_model_and_processor(
    script_args: SFTScriptArguments, training_args: TrainingArguments, model_args: ModelConfig
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The model and processor a stage starts from, as the recipe's model, frame and vision options say."""
    from .models import load_model, load_processor

    processor = load_processor(
        model_args.model_name_or_path,
        image_splitting=script_args.image_splitting,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    model = load_model(
        model_args, freeze_vision=script_args.freeze_vision, trust_remote_code=training_args.trust_remote_code
    )
    return model, processor


def build_trainer(
    script_args: SFTScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    *,
    train_dataset: Dataset | None = None,
    eval_dataset: Dataset | None = None,
) -> SFTTrainer:
    """Model, processor, data and an ``SFTTrainer``; datasets default to the ones ``script_args`` names."""
    from trl import SFTTrainer, get_peft_config

    from .checkpoints import CompleteCheckpoints

    class VLMSFTTrainer(CompleteCheckpoints, SFTTrainer):
        """TRL's ``SFTTrainer`` whose checkpoints are complete or ignored (`vlmrl_trl.checkpoints`)."""

    require_model(model_args, "a hub id or a model folder, e.g. outputs/tiny-vlm")
    # The data first, so that a bad dataset fails before a model is downloaded.
    conversation = training_args.assistant_only_loss
    if train_dataset is None:
        train_dataset = build_sft_dataset(
            script_args,
            script_args.dataset_train_split,
            max_samples=script_args.max_train_samples,
            conversation=conversation,
            describe_ratio=script_args.describe_ratio,
        )
    if eval_dataset is None and training_args.eval_strategy != "no":
        eval_dataset = build_sft_dataset(
            script_args,
            script_args.dataset_test_split,
            max_samples=script_args.max_eval_samples,
            conversation=conversation,
        )
    model, processor = load_model_and_processor(script_args, training_args, model_args)
    if training_args.gradient_checkpointing:
        model.config.use_cache = False
    data_collator = None
    if script_args.clip_input == "video":  # TRL's SFT reads images only: our collator takes the video path
        from .families import adapter_for
        from .trainers.clip_video import VideoSFTCollator

        adapter = adapter_for(model)
        if adapter is None:
            raise ValueError(f"clip_input=video: {type(model).__name__} models have no video path here")
        data_collator = VideoSFTCollator(processor, adapter)
        training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        training_args.remove_unused_columns = False
    return VLMSFTTrainer(
        model=model,
        args=training_args,
        data_collator=data_collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> SFTTrainer:
    """Train, then save the model and its processor to ``output_dir``."""
    trainer = build_trainer(script_args, training_args, model_args)
    train_and_save(trainer, training_args, "the fine-tuned model")
    push_if_asked(trainer, script_args.dataset_name)
    return trainer


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmrl_trl.sft``: a bad recipe or option exits 2 with one readable line."""
    return run_script("vlmrl_trl.sft", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
