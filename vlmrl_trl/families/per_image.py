"""LLaVA, LLaVA-Next, LLaVA-OneVision and Gemma 3: one `pixel_values` entry per image in dim 0, the images of a row
consecutive (`num_images`), one-dimensional positions.

LLaVA-Next and OneVision cut each image into anyres tiles: `pixel_values` is (images, tiles, C, H, W), tiles padded
to the batch's most, and `image_sizes` (images, 2) says how many of them are real, so an image's entry and size
move together. OneVision's processor tiles only the images of single-image rows and says so in `batch_num_images`
(one count a row), which TRL 1.16 passes to generation but not to its log-prob passes: rows of several images fail
there with stock TRL and here alike, rows of one image are exact. OneVision's video path is not shared: a row's video
is (frames, C, H, W), so clips of different lengths do not stack into one batch."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.models.gemma3.modeling_gemma3 import Gemma3Model
from transformers.models.llava.modeling_llava import LlavaModel
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

from ..trainers.deduplication import group_identical_rows
from ..trainers.prompt_packing import PackedPrompts
from .base import FamilyAdapter

# Inputs of `get_image_features` with one entry per image in dim 0.
PER_IMAGE_ARGUMENTS = ("pixel_values", "image_sizes")
# Processor outputs with one entry per image (Gemma 3's image processor counts the crops of each image).
PER_IMAGE_VALUES = (*PER_IMAGE_ARGUMENTS, "num_crops")


def split_by_counts(values: Any, counts: list[int]) -> list[Any]:
    """Consecutive runs of `counts` entries of a tensor (dim 0) or list."""
    if isinstance(values, torch.Tensor):
        return list(torch.split(values, counts))
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [list(values[start : start + count]) for start, count in zip(starts, counts, strict=True)]


def expand_outputs(outputs: Any, fields: Sequence[str], inverse: torch.Tensor) -> Any:
    """`outputs` of an encoder pass over distinct images, with the per-image `fields` expanded to every image
    (`inverse`), each copy a view of its distinct image's features so gradients sum into one pass. Other fields
    describe only the distinct images and are cleared, so nothing reads them as if they were the batch's."""
    index = inverse.tolist()

    def expand(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value[inverse.to(value.device)]
        if value and isinstance(value[0], (list, tuple)):  # one list of per-image features per layer
            return [expand(layer) for layer in value]
        return [value[i] for i in index]

    for key in list(outputs.keys()):
        outputs[key] = expand(outputs[key]) if key in fields else None
    return outputs


class PerImageAdapter(FamilyAdapter):
    """Rows own consecutive entries of the per-image inputs; `get_image_features` encodes each distinct image once."""

    name: ClassVar[str] = "llava"
    backbones: ClassVar[tuple[type[nn.Module], ...]] = (LlavaModel, LlavaNextModel)
    visual_keys: ClassVar[frozenset[str]] = frozenset({"pixel_values", "image_sizes"})

    def split_rows(self, visual: dict[str, Any], num_images: list[int] | None) -> dict[str, Any]:
        rows = dict(visual)
        for key in PER_IMAGE_VALUES:
            if key in visual:
                if num_images is None:
                    raise ValueError(f"per-image `{key}` needs `num_images` to be split into rows")
                rows[key] = split_by_counts(visual[key], num_images)
        return rows

    def merge_rows(self, rows: dict[str, Any]) -> dict[str, Any]:
        merged = dict(rows)
        for key in PER_IMAGE_VALUES:
            value = rows.get(key)
            if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                merged[key] = torch.cat(value)
            elif isinstance(value, list):
                merged[key] = [item for row in value for item in row]
        return merged

    def shared_get_image_features(self, backbone: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """One vision-tower pass over the distinct images of the call (each image is encoded on its own)."""
        return self._encode_distinct(backbone, named_arguments(backbone, args, kwargs))

    def _encode_distinct(self, backbone: nn.Module, call: dict[str, Any]) -> Any:
        """`get_image_features(**call)` over the distinct images of `call`, expanded to all of them."""
        original = type(backbone).get_image_features
        per_image = {key: call[key] for key in PER_IMAGE_ARGUMENTS if call.get(key) is not None}
        first, inverse = group_identical_rows(*per_image.values())
        if first.numel() == inverse.numel():
            return original(backbone, **call)
        for key, value in per_image.items():
            call[key] = value[first.to(value.device)]
        return expand_outputs(original(backbone, **call), ("pooler_output",), inverse)


def named_arguments(backbone: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A `get_image_features` call's arguments, every one by name: the decorators fill unset options from the config
    by keyword."""
    signature = inspect.signature(type(backbone).get_image_features)
    bound = signature.bind(backbone, *args, **kwargs).arguments
    call: dict[str, Any] = {}
    for name, value in list(bound.items())[1:]:
        kind = signature.parameters[name].kind
        call.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
    return call


class OnevisionImageAdapter(PerImageAdapter):
    """LLaVA-OneVision: LLaVA-Next's tiled images, plus `batch_num_images` (one count a row) in generation, which
    tiles only the images of single-image rows."""

    name: ClassVar[str] = "llava_onevision"
    backbones: ClassVar[tuple[type[nn.Module], ...]] = (LlavaOnevisionModel,)
    visual_keys: ClassVar[frozenset[str]] = frozenset({"pixel_values", "image_sizes", "batch_num_images"})

    def shared_get_image_features(self, backbone: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Distinct images once when every row has one image (the counts then say nothing that `None` does not);
        rows of several images are encoded as they are, since their images' tiling depends on the row."""
        call = named_arguments(backbone, args, kwargs)
        counts = call.get("batch_num_images")
        if counts is not None and any(int(count) != 1 for count in counts):
            return type(backbone).get_image_features(backbone, **call)
        call["batch_num_images"] = None
        return self._encode_distinct(backbone, call)


def image_blocks(token_type_ids: torch.Tensor) -> torch.Tensor:
    """Each token's image: runs of image tokens (`token_type_ids == 1`) numbered from 0 along the row, -1 for text."""
    is_image = token_type_ids == 1
    starts = is_image & ~torch.nn.functional.pad(is_image, (1, 0))[:, :-1]
    return torch.where(is_image, starts.long().cumsum(-1) - 1, -1)


class BidirectionalImageAdapter(PerImageAdapter):
    """Gemma 3: per-image inputs, with `token_type_ids` making the tokens of an image attend to each other
    bidirectionally, and sliding-window attention in some layers."""

    name: ClassVar[str] = "gemma3"
    backbones: ClassVar[tuple[type[nn.Module], ...]] = (Gemma3Model,)
    visual_keys: ClassVar[frozenset[str]] = frozenset({"pixel_values", "token_type_ids"})

    def packed_attention_mask(
        self, model: nn.Module, packed: PackedPrompts, visual: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Gemma 3's two masks on the packed layout, as its forward composes them from `token_type_ids`: full
        attention OR(tree, same image), sliding attention AND(that, key within the window of the query), both at
        the positions the tokens have in their own rows. Images lie in the shared prompt only."""
        tree = packed.attention_mask[:, 0]
        groups, length = packed.input_ids.shape
        blocks = torch.full((groups, length), -1, dtype=torch.long, device=tree.device)
        shared = packed.shared_width  # images lie there: a prompt never ends with an image token
        blocks[:, :shared] = image_blocks(visual["token_type_ids"][:, :shared]).to(tree.device)
        same_image = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
        full = tree | same_image
        positions = packed.position_ids
        window = model.config.get_text_config().sliding_window
        in_window = positions[:, None, :] > positions[:, :, None] - window
        return {"full_attention": full[:, None], "sliding_attention": (full & in_window)[:, None]}
