"""Idefics2, Idefics3 and SmolVLM: one padded row of frames per sample (`pixel_values` of shape
(rows, max_frames, channels, height, width) with `pixel_attention_mask`), one-dimensional positions."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers.models.idefics2.modeling_idefics2 import Idefics2Model
from transformers.models.idefics3.modeling_idefics3 import Idefics3Model
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMModel

from ..trainers.deduplication import group_identical_rows
from .base import FamilyAdapter


class PerRowAdapter(FamilyAdapter):
    """Frames already lie one row per sample, so rows are selected and compared along dim 0 as they are."""

    name: ClassVar[str] = "idefics"
    backbones: ClassVar[tuple[type[nn.Module], ...]] = (Idefics2Model, Idefics3Model, SmolVLMModel)
    visual_keys: ClassVar[frozenset[str]] = frozenset({"pixel_values", "pixel_attention_mask"})

    def split_rows(self, visual: dict[str, Any], num_images: list[int] | None) -> dict[str, Any]:
        return dict(visual)

    def merge_rows(self, rows: dict[str, Any]) -> dict[str, Any]:
        return dict(rows)

    def shared_get_image_features(
        self,
        backbone: nn.Module,
        pixel_values: torch.Tensor,
        pixel_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """One vision-tower pass per distinct row of frames; each row points at its clip's feature tensor."""
        original = type(backbone).get_image_features
        rows = (pixel_values,) if pixel_attention_mask is None else (pixel_values, pixel_attention_mask)
        first, inverse = group_identical_rows(*rows)
        # With no real frame at all, SmolVLM keeps one blank frame for the first row only: leave that case alone.
        if first.numel() == pixel_values.size(0) or not torch.any(pixel_values):
            return original(backbone, pixel_values, pixel_attention_mask, **kwargs)
        outputs = original(
            backbone,
            pixel_values[first],
            None if pixel_attention_mask is None else pixel_attention_mask[first],
            **kwargs,
        )
        # The backbone concatenates the rows' features in row order; autograd sums the rows' gradients into the
        # single vision-tower pass.
        outputs.pooler_output = [outputs.pooler_output[group] for group in inverse.tolist()]
        return outputs
