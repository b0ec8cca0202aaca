"""Clips as video in GRPO: TRL 1.16's `GRPOTrainer` takes no video input (TRL issue #4144), so the trainers carry it.

A row whose `video` column holds the clip's frames (one video a row, oldest frame first, `fps` column or
`DEFAULT_FPS`) and whose prompt has one `{"type": "video"}` entry is tokenized here with the processor's video path:
the family's video processor reads every frame as it is, at the clip's frame rate, so time positions are right.
`VLMGRPOTrainer` hands the resulting video inputs to generation and to every log-prob pass itself, since TRL's code
passes only image inputs along.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from trl.trainer.utils import pad

from ..data.frames import DEFAULT_FPS
from ..families import FamilyAdapter
from ..families.base import PER_TOKEN_KEYS
from .deduplication import frame_digest

VIDEO_COLUMN = "video"
FPS_COLUMN = "fps"


def has_video_column(dataset: Any) -> bool:
    """Whether a training dataset's rows carry their clip as a video (a `video` column)."""
    names = getattr(dataset, "column_names", None)
    if names is None:  # an IterableDataset without resolved features
        features = getattr(dataset, "features", None)
        names = list(features) if features is not None else []
    return VIDEO_COLUMN in names


def clip_videos(inputs: Sequence[dict[str, Any]]) -> list[tuple[list[Any], float]] | None:
    """Each row's (frames, fps), or None when the rows carry no `video` column."""
    if not inputs or VIDEO_COLUMN not in inputs[0]:
        return None
    videos = []
    for row, example in enumerate(inputs):
        frames = example[VIDEO_COLUMN]
        if not isinstance(frames, (list, tuple)) or not frames:
            raise ValueError(f"row {row} of column {VIDEO_COLUMN!r} holds no frames (a list of images)")
        videos.append((list(frames), float(example.get(FPS_COLUMN) or DEFAULT_FPS)))
    return videos


def process_videos(
    processor: Any,
    adapter: FamilyAdapter,
    texts: Sequence[str],
    clips: Sequence[tuple[list[Any], float]],
    **kwargs: Any,
) -> Any:
    """The processor's tensors for rendered prompts with one video each: every frame of each clip kept, at its frame
    rate (`adapter.video_processor_kwargs`); `kwargs` go to the processor (padding, special tokens)."""
    return processor(
        text=list(texts),
        videos=[frames for frames, _ in clips],
        return_tensors="pt",
        **adapter.video_processor_kwargs([(fps, len(frames)) for frames, fps in clips]),
        **kwargs,
    )


def _row_key(text: str, frames: list[Any], fps: float) -> tuple[Any, ...]:
    """Content key of one row's prompt: its text, every frame's pixels and the frame rate."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    return (digest, fps, tuple(frame_digest(frame) for frame in frames))


def tokenize_video_prompts(
    processor: Any,
    adapter: FamilyAdapter,
    texts: Sequence[str],
    videos: Sequence[tuple[list[Any], float]],
    *,
    share: bool,
) -> tuple[list[list[int]], dict[str, Any]]:
    """Prompt token ids and video inputs of rendered prompts `texts` with their clips, as TRL's `_tokenize_prompts`
    returns them (per-token inputs as one list a row). With `share`, each distinct (text, clip) is processed once
    and its outputs given to every row that has it; each is processed alone either way, so both give equal inputs."""
    keys = [_row_key(text, frames, fps) for text, (frames, fps) in zip(texts, videos, strict=True)]
    first: dict[tuple[Any, ...], int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    rows = list(first.values()) if share else list(range(len(texts)))
    processed = [process_videos(processor, adapter, [texts[row]], [videos[row]]) for row in rows]
    position = {row: index for index, row in enumerate(rows)}
    source = [position[first[key]] if share else row for row, key in enumerate(keys)]
    prompt_ids = [processed[i]["input_ids"][0].tolist() for i in source]
    fields: dict[str, Any] = {}
    for key in processed[0].keys() - {"input_ids", "attention_mask"}:
        if key in PER_TOKEN_KEYS:
            fields[key] = [processed[i][key][0].tolist() for i in source]
        else:
            fields[key] = torch.cat([processed[i][key] for i in source])
    unknown = fields.keys() - adapter.visual_keys
    if unknown:
        raise ValueError(f"{adapter.name}: the video processor returned inputs this trainer cannot pass on: {unknown}")
    return prompt_ids, fields


def padded_video_inputs(fields: dict[str, Any], pad_to_multiple_of: int | None) -> dict[str, Any]:
    """`tokenize_video_prompts` inputs laid out like TRL's padded `prompt_ids`: per-token lists left-padded."""
    return {
        key: pad(
            [torch.tensor(row) for row in value],
            padding_value=0,
            padding_side="left",
            pad_to_multiple_of=pad_to_multiple_of,
        )
        if key in PER_TOKEN_KEYS
        else value
        for key, value in fields.items()
    }


def widen_per_token(inputs: dict[str, Any], width: int) -> dict[str, Any]:
    """Per-token inputs narrower than `width` (prompt-only) extended with zeros (text) for the completion."""
    widened = dict(inputs)
    for key in PER_TOKEN_KEYS & inputs.keys():
        value = inputs[key]
        if isinstance(value, torch.Tensor) and value.size(1) < width:
            widened[key] = torch.cat([value, value.new_zeros(value.size(0), width - value.size(1))], dim=1)
    return widened


class VideoSFTCollator:
    """SFT batches of conversational prompt/completion rows that carry their clip as video (TRL's vision collator
    reads images only): each row's prompt and answer rendered by the chat template and processed with its video,
    the loss on the answer alone (the prompt's tokens, a prefix of the row's, labelled -100)."""

    def __init__(self, processor: Any, adapter: FamilyAdapter, chat_template: str | None = None) -> None:
        if not adapter.video_keys:
            raise ValueError(f"{adapter.name} models have no video path here; use clip_input=images")
        self.processor, self.adapter, self.chat_template = processor, adapter, chat_template
        self.pad_token_id = getattr(processor, "tokenizer", processor).pad_token_id

    def _process(self, text: str, frames: list[Any], fps: float) -> Any:
        return process_videos(self.processor, self.adapter, [text], [(frames, fps)], add_special_tokens=False)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = []
        for row, (frames, fps) in enumerate(clip_videos(examples) or []):
            example = examples[row]
            render = dict(chat_template=self.chat_template, tokenize=False)
            prompt = self.processor.apply_chat_template(example["prompt"], add_generation_prompt=True, **render)
            full = self.processor.apply_chat_template(example["prompt"] + example["completion"], **render)
            processed, prompt_ids = self._process(full, frames, fps), self._process(prompt, frames, fps)["input_ids"]
            ids = processed["input_ids"][0]
            width = prompt_ids.size(1)
            if not torch.equal(ids[:width], prompt_ids[0]):
                raise ValueError(f"row {row}: the chat template does not render the prompt as a prefix of the row")
            labels = ids.clone()
            labels[:width] = -100
            rows.append((processed, labels))
        if not rows:
            raise ValueError(f"VideoSFTCollator needs rows with a {VIDEO_COLUMN!r} column")
        batch: dict[str, Any] = {
            "input_ids": pad([p["input_ids"][0] for p, _ in rows], padding_value=self.pad_token_id),
            "attention_mask": pad([p["attention_mask"][0] for p, _ in rows], padding_value=0),
            "labels": pad([labels for _, labels in rows], padding_value=-100),
        }
        for key in rows[0][0].keys() - {"input_ids", "attention_mask"}:
            values = [p[key] for p, _ in rows]
            batch[key] = pad([v[0] for v in values], padding_value=0) if key in PER_TOKEN_KEYS else torch.cat(values)
        return batch
