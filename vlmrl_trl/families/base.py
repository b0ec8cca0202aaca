"""What generic trainer code asks of a VLM family: where a row's visual inputs lie in a batch, how its vision features
are shared between identical images or clips, and which positions each token of a row has.

Each layout of visual inputs is one subclass in a module of its own (`per_row`, `flat_patches`, `per_image`);
`families.adapter_for(model)` picks the adapter of a model, and trainers call only the methods below.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..trainers.deduplication import group_identical_rows
from ..trainers.prompt_packing import PackedPrompts

# Per-token inputs: one value per prompt (or prompt + completion) token, laid out like `input_ids`.
PER_TOKEN_KEYS = frozenset({"token_type_ids", "mm_token_type_ids"})


def _keeping_signature(original: Any, sharing: Any) -> Any:
    """`sharing` as a function with `original`'s signature and name: `generate` reads it to pick the encoder's
    inputs."""

    @functools.wraps(original)
    def shared(backbone: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return sharing(backbone, *args, **kwargs)

    return shared


def take(values: Any, index: Sequence[int]) -> Any:
    """Items `index` of a per-row value: a tensor's rows or a list's items."""
    if isinstance(values, torch.Tensor):
        return values[torch.as_tensor(list(index), dtype=torch.long, device=values.device)]
    return [values[i] for i in index]


class FamilyAdapter:
    """The family-specific part of sharing vision work; subclasses set the class attributes and override what differs.

    `visual_keys` are the per-sample visual inputs the layout knows (processor outputs other than `input_ids` and
    `attention_mask`); a log-prob pass with any other input runs TRL's path. `video_keys` are those of a clip fed as
    one video per row (empty: the family has no video path here). `packing_fallback` and `prefill_fallback` say why
    a family cannot take that saving, or are None when it can.
    """

    name: ClassVar[str]
    backbones: ClassVar[tuple[type[nn.Module], ...]]
    visual_keys: ClassVar[frozenset[str]]
    video_keys: ClassVar[frozenset[str]] = frozenset()
    packing_fallback: ClassVar[str | None] = None
    prefill_fallback: ClassVar[str | None] = None

    def matches(self, model: nn.Module) -> bool:
        """Whether `model` (or the model wrapped inside it) holds one of this family's backbones."""
        return any(isinstance(module, self.backbones) for module in model.modules())

    def backbone(self, model: nn.Module) -> nn.Module:
        """The first backbone module inside `model` (under PEFT or other wrappers)."""
        return next(module for module in model.modules() if isinstance(module, self.backbones))

    # Batch layout ---------------------------------------------------------------------------------------------

    def split_rows(self, visual: dict[str, Any], num_images: list[int] | None) -> dict[str, Any]:
        """`visual` with every value indexable by row: a tensor with rows in dim 0, or a list with one item a row."""
        raise NotImplementedError

    def merge_rows(self, rows: dict[str, Any]) -> dict[str, Any]:
        """The model inputs of `split_rows`-style per-row values (the inverse of `split_rows`)."""
        raise NotImplementedError

    def select_rows(
        self, visual: dict[str, Any], num_images: list[int] | None, index: Sequence[int]
    ) -> dict[str, Any]:
        """The visual inputs of rows `index`, in that order, laid out as the model takes them."""
        rows = self.split_rows(visual, num_images)
        return self.merge_rows({key: take(value, index) for key, value in rows.items()})

    def group_rows(
        self, columns: Sequence[torch.Tensor], visual: dict[str, Any], num_images: list[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(first, inverse)` of the rows whose `columns` (per-row tensors such as prompt ids) and visual inputs are
        bit-identical (see `group_identical_rows`)."""
        rows = self.split_rows(visual, num_images)
        return group_identical_rows(*columns, *rows.values())

    # Features --------------------------------------------------------------------------------------------------

    def shared_get_image_features(self, backbone: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """The backbone's `get_image_features`, encoding each distinct image (or clip) of the call once."""
        raise NotImplementedError

    def shared_get_video_features(self, backbone: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """The backbone's `get_video_features`, encoding each distinct video of the call once (families with
        `video_keys`)."""
        raise NotImplementedError

    def share_features(self, model: nn.Module) -> int:
        """Bind the sharing `get_image_features` (and `get_video_features`, for a family with a video path) on every
        backbone instance inside `model` (not on its class, so it holds under PEFT, DDP and DeepSpeed wrappers and
        survives `copy.deepcopy`); idempotent; returns how many backbones share."""
        methods = {"get_image_features": self.shared_get_image_features}
        if self.video_keys:
            methods["get_video_features"] = self.shared_get_video_features
        count = 0
        for module in model.modules():
            if isinstance(module, self.backbones):
                for name, sharing in methods.items():
                    shared = _keeping_signature(getattr(type(module), name), sharing)
                    setattr(module, name, types.MethodType(shared, module))
                count += 1
        return count

    # Video -----------------------------------------------------------------------------------------------------

    def video_processor_kwargs(self, clips: Sequence[tuple[float, int]]) -> dict[str, Any]:
        """What the processor takes besides `videos` to read clips of (fps, frames) as they are: every frame kept
        (no resampling) and each clip's frame rate known, so time positions are right."""
        raise ValueError(f"{self.name} models have no video path here; use clip_input=images")

    # Positions -------------------------------------------------------------------------------------------------

    def position_ids(
        self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        """Each token's position in its own row, as the model computes it without `position_ids`: `(rows, width)`,
        or `(components, rows, width)` for multi-dimensional rotary positions. Default: the index in the row."""
        width = input_ids.size(1)
        return torch.arange(width, device=input_ids.device).expand(input_ids.size(0), width)

    def prefill_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual: dict[str, Any]
    ) -> dict[str, Any]:
        """The forward inputs of a generation prefill over `input_ids` (all prompt tokens but the last)."""
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0),
            **visual,
        }

    def after_prefill(self, model: nn.Module, inverse: torch.Tensor) -> None:
        """Expand whatever the prefill of the distinct prompts left on the model to all rows (`inverse`)."""

    def packed_attention_mask(
        self, model: nn.Module, packed: PackedPrompts, visual: dict[str, Any]
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The attention mask of a packed forward (`visual`: the packed groups' inputs): the tree mask as it is, or
        one per attention layer type where the family's attention differs from causal."""
        return packed.attention_mask

    def packed_inputs(self, visual: dict[str, Any]) -> dict[str, Any]:
        """The visual inputs a packed forward takes (per-token inputs are replaced by explicit positions)."""
        return {key: value for key, value in visual.items() if key not in PER_TOKEN_KEYS}
