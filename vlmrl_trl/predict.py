"""Batched generation over a split: one JSON decision per clip, written to ``predictions.jsonl``.

The prompt is the one the model was trained on (``vlmrl_trl.data.formatting.to_rl_dataset``), rendered
by the processor's chat template and left-padded; decoding is greedy unless sampling is asked for. Each
output line holds the raw text, its parsed decision or the parse error, and the clip's label bits, so
``vlmrl-trl score``/``eval`` need nothing else; the frame paths let the report show the clips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data.frames import DEFAULT_FPS
from .schema import Decision, parse_decision

if TYPE_CHECKING:
    from datasets import Dataset
    from PIL import Image
    from transformers import PreTrainedModel, ProcessorMixin


PREDICTIONS_FILE = "predictions.jsonl"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class GenerationOptions:
    """How outputs are decoded: greedy by default; ``temperature``/``top_p`` apply only when sampling."""

    max_new_tokens: int = 160
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def _has_processor_files(path: Path) -> bool:
    return any((path / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def load_for_inference(
    model_name_or_path: str, *, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The model and processor of a hub id, a model directory or a PEFT adapter directory, in eval mode.

    An adapter directory (one with ``adapter_config.json``) is loaded on top of the base model it names and
    merged, so generation costs what it costs for a plain model; its processor is used when saved with it.
    """
    import torch
    from trl import ModelConfig

    from .models import load_model, load_processor

    path = Path(model_name_or_path)
    adapter = path / ADAPTER_CONFIG
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{adapter}: no 'base_model_name_or_path'; cannot tell which model the adapter is for")
        from peft import PeftModel

        model = load_model(ModelConfig(model_name_or_path=base, dtype=dtype), trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        processor_path = str(path) if _has_processor_files(path) else base
    else:
        if path.exists() and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: neither a model directory (config.json) nor an adapter ({ADAPTER_CONFIG})"
            )
        model = load_model(
            ModelConfig(model_name_or_path=model_name_or_path, dtype=dtype), trust_remote_code=trust_remote_code
        )
        processor_path = model_name_or_path
    processor = load_processor(processor_path, trust_remote_code=trust_remote_code)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if getattr(model, "hf_device_map", None) is None:  # quantized models are already placed
        model.to(device)
    return model.eval(), processor


def _stop_token_ids(model: PreTrainedModel, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generate(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: Sequence[list[dict[str, Any]]],
    images: Sequence[Sequence[Image.Image]],
    options: GenerationOptions | None = None,
    *,
    video_fps: Sequence[float] | None = None,
) -> list[str]:
    """Answer one batch of conversational prompts, each with its frames; returns only the new text. With
    `video_fps` (one rate a clip) the frames go as one video each, through the model's video path, as in training
    with ``clip_input=video``."""
    import torch
    from trl.data_utils import prepare_multimodal_messages

    options = options or GenerationOptions()
    tokenizer = getattr(processor, "tokenizer", processor)
    if video_fps is not None:
        inputs = _video_inputs(model, processor, prompts, images, video_fps).to(model.device)
    else:
        conversations = [
            prepare_multimodal_messages(p, images=list(im)) for p, im in zip(prompts, images, strict=True)
        ]
        inputs = processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"},
        ).to(model.device)
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs and inputs[key].is_floating_point():
            inputs[key] = inputs[key].to(model.dtype)
    sampling = {"temperature": options.temperature, "top_p": options.top_p} if options.do_sample else {}
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=options.max_new_tokens,
            do_sample=options.do_sample,
            eos_token_id=_stop_token_ids(model, tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _video_inputs(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: Sequence[list[dict[str, Any]]],
    videos: Sequence[Sequence[Image.Image]],
    fps: Sequence[float],
) -> Any:
    """Model inputs of prompts with one video placeholder each and their clips as videos (left-padded)."""
    from .families import adapter_for
    from .trainers.clip_video import process_videos

    adapter = adapter_for(model)
    if adapter is None or not adapter.video_keys:
        raise ValueError(f"clip_input=video: {type(model).__name__} models have no video path here")
    texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    clips = [(list(frames), rate) for frames, rate in zip(videos, fps, strict=True)]
    return process_videos(processor, adapter, texts, clips, padding=True, padding_side="left")


def prediction_record(text: str, example: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """One line of ``predictions.jsonl``: the clip id, the raw output, its decision (or None) and parse error
    (or None), the label bits and the number of frames the model saw; ``extra`` adds fields as they are."""
    parsed = parse_decision(text)
    ok = isinstance(parsed, Decision)
    return {
        "clip_id": example["clip_id"],
        "text": text,
        "prediction": parsed.to_dict() if ok else None,
        "error": None if ok else str(parsed),
        "actions": [int(b) for b in example["actions"]],
        "reasons": [int(b) for b in example["reasons"]],
        "num_frames": int(example["num_frames"]),
        **extra,
    }


def _frame_paths(clips: Dataset) -> list[list[str | None]]:
    """Where each clip's frames are on disk (None for frames held as bytes), read without decoding them."""
    import datasets

    undecoded = clips.select_columns(["images"]).cast_column("images", datasets.List(datasets.Image(decode=False)))
    return [[frame["path"] for frame in frames] for frames in undecoded["images"]]


def predict_dataset(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    clips: Dataset,
    *,
    prompt_mode: str = "instruction",
    clip_input: str = "images",
    fps: float = DEFAULT_FPS,
    batch_size: int = 8,
    options: GenerationOptions | None = None,
    progress: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Prediction records for every clip of a :func:`vlmrl_trl.data.load_bddoia` dataset, in order, generated
    ``batch_size`` clips at a time; each names its frame files (``frames``) so a report can show them, and the
    clip's true scene description (``true_scene``, None when the data set has none) to set beside the predicted."""
    from tqdm.auto import tqdm

    from .data.formatting import to_rl_dataset

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    prompts = to_rl_dataset(clips, prompt_mode=prompt_mode, clip_input=clip_input, fps=fps)
    frames_column = "video" if clip_input == "video" else "images"
    paths = _frame_paths(clips)
    scenes = clips["scene"] if "scene" in clips.column_names else [None] * len(clips)  # the true descriptions
    with tqdm(total=len(prompts), desc="predict", unit="clip", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            video_fps = batch["fps"] if clip_input == "video" else None
            texts = generate(model, processor, batch["prompt"], batch[frames_column], options, video_fps=video_fps)
            for k, text in enumerate(texts):
                example = {key: batch[key][k] for key in ("clip_id", "actions", "reasons", "num_frames")}
                yield prediction_record(
                    text, example, frames=paths[start + k], true_scene=scenes[start + k], **(extra or {})
                )
            bar.update(len(texts))


def write_predictions(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write records as JSON lines, each flushed as soon as it exists (a long run can be watched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
    return path
