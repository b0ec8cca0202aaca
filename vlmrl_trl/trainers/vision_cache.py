"""Exact sharing of vision work between rows that carry the same clip.

GRPO repeats every prompt once per completion, so a batch holds each clip many times over. The helpers here let a
trainer preprocess and encode each distinct clip once and hand the result to all of its rows. Every merge is decided
on content (bit-identical tensors, or identical frame bytes), never on bookkeeping, so rows can arrive in any order
and a false merge is impossible.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature, ProcessorMixin
from transformers.models.idefics2.modeling_idefics2 import Idefics2Model
from transformers.models.idefics3.modeling_idefics3 import Idefics3Model
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMModel

# Backbones whose `get_image_features(pixel_values, pixel_attention_mask)` takes one padded row of frames per sample
# (batch, max_frames, channels, height, width) and returns `pooler_output` as one feature tensor per row.
SUPPORTED_VISION_BACKBONES: tuple[type[nn.Module], ...] = (Idefics2Model, Idefics3Model, SmolVLMModel)


def group_identical_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the rows (dim 0) that are bit-identical across all `tensors`.

    Returns `(first, inverse)`: `first[k]` is the index of the first row of group `k`, in order of appearance, and
    `inverse[i]` is the group of row `i`, so `t[first][inverse]` equals `t` for every input tensor. A per-row sum
    picks the candidates and `torch.equal` confirms them, so equal rows are always merged and different rows never.
    """
    if not tensors:
        raise ValueError("group_identical_rows needs at least one tensor.")
    num_rows = tensors[0].size(0)
    if any(t.size(0) != num_rows for t in tensors):
        raise ValueError(f"All tensors must have the same number of rows; got {[t.size(0) for t in tensors]}.")
    device = tensors[0].device
    flat = [t.reshape(num_rows, -1) for t in tensors]
    signature = torch.stack([f.sum(dim=1, dtype=torch.float32) for f in flat], dim=1).tolist()
    buckets: dict[tuple[float, ...], list[int]] = {}
    first: list[int] = []
    inverse: list[int] = []
    for row, key in enumerate(map(tuple, signature)):
        candidates = buckets.setdefault(key, [])
        for group in candidates:
            if all(torch.equal(f[row], f[first[group]]) for f in flat):
                inverse.append(group)
                break
        else:
            candidates.append(len(first))
            inverse.append(len(first))
            first.append(row)
    return (
        torch.tensor(first, dtype=torch.long, device=device),
        torch.tensor(inverse, dtype=torch.long, device=device),
    )


def _shared_get_image_features(
    self: nn.Module, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor | None = None, **kwargs: Any
) -> Any:
    """The backbone's own `get_image_features`, run once per distinct row of frames; a clip's rows share it."""
    original = type(self).get_image_features
    rows = (pixel_values,) if pixel_attention_mask is None else (pixel_values, pixel_attention_mask)
    first, inverse = group_identical_rows(*rows)
    # With no real frame at all, SmolVLM keeps one blank frame for the first row only: leave that case alone.
    if first.numel() == pixel_values.size(0) or not torch.any(pixel_values):
        return original(self, pixel_values, pixel_attention_mask, **kwargs)
    outputs = original(
        self, pixel_values[first], None if pixel_attention_mask is None else pixel_attention_mask[first], **kwargs
    )
    # Each row points at its clip's feature tensor: the backbone concatenates them in row order, and autograd sums
    # the rows' gradients into the single vision-tower pass.
    outputs.pooler_output = [outputs.pooler_output[group] for group in inverse.tolist()]
    return outputs


def share_image_features(model: nn.Module) -> int:
    """Make every supported vision backbone inside `model` encode each distinct row of frames once per forward.

    Binds a method on the backbone instances (not their classes), like TRL's fused LM head, so it holds under PEFT,
    DDP and DeepSpeed wrappers, survives `copy.deepcopy`, and serves every caller of the forward (generation
    prefill, log-prob passes). Idempotent; returns how many backbones share.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, SUPPORTED_VISION_BACKBONES):
            module.get_image_features = types.MethodType(_shared_get_image_features, module)
            count += 1
    return count


def has_supported_vision_backbone(model: nn.Module) -> bool:
    """Whether `model` contains a vision backbone whose image features can be shared between rows."""
    return any(isinstance(module, SUPPORTED_VISION_BACKBONES) for module in model.modules())


def _image_digest(image: Any) -> tuple[Any, ...]:
    """Content key of one frame: its pixel bytes plus what gives them meaning (mode, size, palette, dtype, shape)."""
    if isinstance(image, Image.Image):
        palette = image.getpalette() if image.mode == "P" else None
        data = image.tobytes()
        meta: tuple[Any, ...] = ("pil", image.mode, image.size, None if palette is None else bytes(palette))
    else:
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        array = np.ascontiguousarray(np.asarray(image))
        data = array.tobytes()
        meta = ("array", str(array.dtype), array.shape)
    return (*meta, hashlib.blake2b(data, digest_size=16).digest())


def _is_clip_batch(images: Any) -> bool:
    """Whether `images` is a batch of clips: a list with one list of frames per sample."""
    return isinstance(images, (list, tuple)) and bool(images) and all(isinstance(row, (list, tuple)) for row in images)


def _take_rows(value: Any, index: Sequence[int]) -> Any:
    """Rows `index` of a per-sample processor output (tensor, array or list); other values pass through."""
    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(index, dtype=torch.long, device=value.device)]
    if isinstance(value, np.ndarray):
        return value[np.asarray(index, dtype=np.int64)]
    if isinstance(value, (list, tuple)):
        return [value[i] for i in index]
    return value


class MemoizedImageProcessor:
    """Stand-in for a processor's image processor that preprocesses each distinct clip once.

    A call with a batch of clips runs the real image processor on the distinct clips only and expands its per-row
    outputs back to the batch (arrays as torch tensors); a later call with the same clips and settings is answered
    from the cache, whatever its `return_tensors`. Padding (frames per row, height, width) is the maximum over the
    same set of clips, so the result equals the real one. Everything else is delegated to the wrapped processor.
    """

    def __init__(self, image_processor: Any) -> None:
        self.wrapped = image_processor
        self.cache: dict[tuple[Any, ...], BatchFeature] = {}
        self.clips_processed = 0

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (copy/unpickle): don't recurse
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __call__(self, images: Any = None, **kwargs: Any) -> BatchFeature:
        if not _is_clip_batch(images):
            return self.wrapped(images, **kwargs)
        keys = [tuple(_image_digest(frame) for frame in clip) for clip in images]
        first: dict[tuple[Any, ...], int] = {}
        for row, key in enumerate(keys):
            first.setdefault(key, row)
        distinct = list(first)
        settings = tuple(sorted((name, repr(value)) for name, value in kwargs.items() if name != "return_tensors"))
        cache_key = (tuple(distinct), settings)
        if cache_key not in self.cache:
            clips = [images[row] for row in first.values()]
            self.cache[cache_key] = self.wrapped(clips, **{**kwargs, "return_tensors": "pt"})
            self.clips_processed += len(clips)
        processed = self.cache[cache_key]
        group = {key: index for index, key in enumerate(distinct)}
        inverse = [group[key] for key in keys]
        return BatchFeature({name: _take_rows(value, inverse) for name, value in processed.items()})


@contextmanager
def memoized_image_processing(processor: ProcessorMixin) -> Iterator[MemoizedImageProcessor]:
    """Within the block, `processor` preprocesses each distinct clip once, however often it is asked to."""
    original = processor.image_processor
    memo = MemoizedImageProcessor(original)
    processor.image_processor = memo
    try:
        yield memo
    finally:
        processor.image_processor = original
