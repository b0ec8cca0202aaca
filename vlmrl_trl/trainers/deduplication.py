"""Deduplication of identical clips (`VLMGRPOConfig.deduplicate_vision`): exact sharing of vision work between rows.

GRPO repeats every prompt once per completion, so a batch holds each clip many times over. The helpers here let a
trainer preprocess and encode each distinct clip once and hand the result to all of its rows. Every merge is decided
on content (bit-identical tensors, or identical frame bytes), never on bookkeeping, so rows can arrive in any order
and a false merge is impossible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

# The family adapter's `select_rows(visual_inputs, num_images, index)`: the inputs of rows `index`, laid out as the
# model takes them.
SelectRows = Callable[[dict[str, Any], list[int], Sequence[int]], dict[str, Any]]


def group_identical_rows(*columns: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the rows that are bit-identical across all `columns`: tensors with one row per item of dim 0, or lists
    with one tensor per row (rows of different shapes, such as one sample's flattened image patches).

    Returns `(first, inverse)`: `first[k]` is the index of the first row of group `k`, in order of appearance, and
    `inverse[i]` is the group of row `i`, so `t[first][inverse]` equals `t` for every input tensor. Shapes and a
    per-row sum pick the candidates and `torch.equal` confirms them, so equal rows are always merged and different
    rows never.
    """
    if not columns:
        raise ValueError("group_identical_rows needs at least one column.")
    num_rows = len(columns[0])
    if any(len(c) != num_rows for c in columns):
        raise ValueError(f"All columns must have the same number of rows; got {[len(c) for c in columns]}.")
    device = next((c.device for c in columns if isinstance(c, torch.Tensor)), torch.device("cpu"))
    rows = [c.reshape(num_rows, -1) if isinstance(c, torch.Tensor) else list(c) for c in columns]
    sums = [
        r.sum(dim=1, dtype=torch.float32).tolist()
        if isinstance(r, torch.Tensor)
        else [(tuple(t.shape), float(t.sum(dtype=torch.float32))) for t in r]
        for r in rows
    ]
    buckets: dict[tuple[Any, ...], list[int]] = {}
    first: list[int] = []
    inverse: list[int] = []
    for row in range(num_rows):
        candidates = buckets.setdefault(tuple(s[row] for s in sums), [])
        for group in candidates:
            if all(torch.equal(r[row], r[first[group]]) for r in rows):
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


def frame_digest(image: Any) -> tuple[Any, ...]:
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


def share_image_features(model: torch.nn.Module) -> int:
    """Make every vision backbone of a known family inside `model` encode each distinct image or clip once per
    forward (see `FamilyAdapter.share_features`); returns how many backbones share, 0 for an unknown family."""
    from ..families import adapter_for

    adapter = adapter_for(model)
    return 0 if adapter is None else adapter.share_features(model)


class MemoizedImageProcessor:
    """Stand-in for a processor's image processor that preprocesses each distinct clip once.

    A call with a batch of clips runs the real image processor on the distinct clips only and expands its per-row
    outputs back to the batch (arrays as torch tensors); a later call with the same clips and settings is answered
    from the cache, whatever its `return_tensors`. Padding (frames per row, height, width) is the maximum over the
    same set of clips, so the result equals the real one. `select_rows(outputs, num_images, index)` (the family
    adapter's) lays the distinct clips' outputs out for the batch's rows. Everything else is delegated to the wrapped
    processor.
    """

    def __init__(self, image_processor: Any, select_rows: SelectRows) -> None:
        self.wrapped = image_processor
        self.select_rows = select_rows
        self.cache: dict[tuple[Any, ...], BatchFeature] = {}
        self.clips_processed = 0

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (copy/unpickle): don't recurse
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __call__(self, images: Any = None, **kwargs: Any) -> BatchFeature:
        if not _is_clip_batch(images):
            return self.wrapped(images, **kwargs)
        keys = [tuple(frame_digest(frame) for frame in clip) for clip in images]
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
        return BatchFeature(self.select_rows(dict(processed), [len(key) for key in distinct], inverse))


@contextmanager
def memoized_image_processing(processor: ProcessorMixin, select_rows: SelectRows) -> Iterator[MemoizedImageProcessor]:
    """Within the block, `processor` preprocesses each distinct clip once, however often it is asked to."""
    original = processor.image_processor
    memo = MemoizedImageProcessor(original, select_rows)
    processor.image_processor = memo
    try:
        yield memo
    finally:
        processor.image_processor = original
