"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: every image's patches flattened into one `pixel_values` of shape
(total_patches, patch_dim), with `image_grid_thw` (images, 3) giving each image's patch grid, and 3-D M-RoPE
positions (temporal, height, width) that `get_rope_index` computes from `mm_token_type_ids`.

A clip fed as video lies the same way in `pixel_values_videos` / `video_grid_thw` (one video per row, two frames per
temporal patch), with `second_per_grid_ts` (Qwen2.5-VL) or timestamps in the text (Qwen3-VL) carrying time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

from ..trainers.deduplication import group_identical_rows
from .base import PER_TOKEN_KEYS, FamilyAdapter, take
from .per_image import expand_outputs


class FlatPatchesAdapter(FamilyAdapter):
    """Rows own consecutive images (`num_images`), images own consecutive patch rows (`image_grid_thw.prod(-1)`)."""

    name: ClassVar[str] = "qwen_vl"
    backbones: ClassVar[tuple[type[nn.Module], ...]] = (Qwen2VLModel, Qwen2_5_VLModel, Qwen3VLModel)
    video_keys: ClassVar[frozenset[str]] = frozenset({"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"})
    visual_keys: ClassVar[frozenset[str]] = (
        frozenset({"pixel_values", "image_grid_thw", "mm_token_type_ids"}) | video_keys
    )
    # What `get_image_features` returns per image: the merged features and, in Qwen3-VL, the deepstack layers'.
    feature_outputs: ClassVar[tuple[str, ...]] = ("pooler_output", "deepstack_features")

    def split_rows(self, visual: dict[str, Any], num_images: list[int] | None) -> dict[str, Any]:
        rows = dict(visual)
        if "pixel_values" in visual:
            if num_images is None:
                raise ValueError("flattened image patches need `num_images` to be split into rows")
            grid = visual["image_grid_thw"]
            images = list(torch.split(grid, num_images))
            patches = [int(g.prod(-1).sum()) for g in images]
            rows["pixel_values"] = list(torch.split(visual["pixel_values"], patches))
            rows["image_grid_thw"] = images
        if "pixel_values_videos" in visual:  # one video a row: grid rows are rows
            grid = visual["video_grid_thw"]
            rows["pixel_values_videos"] = list(torch.split(visual["pixel_values_videos"], grid.prod(-1).tolist()))
            rows["video_grid_thw"] = list(grid.split(1))
        return rows

    def merge_rows(self, rows: dict[str, Any]) -> dict[str, Any]:
        merged = dict(rows)
        for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            if isinstance(rows.get(key), list):
                merged[key] = torch.cat(rows[key])
        return merged

    def _shared_features(self, method: str, backbone: nn.Module, pixels: torch.Tensor, grid: torch.Tensor, **kwargs):
        """One vision-tower pass of `method` over the distinct images or videos of the call (the tower attends within
        each one only, so its features do not depend on which others share the pass)."""
        original = getattr(type(backbone), method)
        items = list(torch.split(pixels, grid.prod(-1).tolist()))
        first, inverse = group_identical_rows(list(grid), items)
        if first.numel() == len(items):
            return original(backbone, pixels, grid, **kwargs)
        outputs = original(backbone, torch.cat([items[i] for i in first.tolist()]), grid[first], **kwargs)
        return expand_outputs(outputs, self.feature_outputs, inverse)

    def shared_get_image_features(
        self, backbone: nn.Module, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, **kwargs: Any
    ) -> Any:
        return self._shared_features("get_image_features", backbone, pixel_values, image_grid_thw, **kwargs)

    def shared_get_video_features(
        self, backbone: nn.Module, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs: Any
    ) -> Any:
        return self._shared_features("get_video_features", backbone, pixel_values_videos, video_grid_thw, **kwargs)

    def video_processor_kwargs(self, clips: Sequence[tuple[float, int]]) -> dict[str, Any]:
        metadata = [{"fps": fps, "total_num_frames": n, "frames_indices": list(range(n))} for fps, n in clips]
        # The per-frame pixel cap is the reference (qwen-vl-utils) behaviour, and transformers' future default.
        return {"do_sample_frames": False, "video_metadata": metadata, "cap_pixels_per_frame": True}

    def position_ids(
        self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        """The (3, rows, width) M-RoPE positions `get_rope_index` gives the rows, as the model's own forward does."""
        if inputs.get("image_grid_thw") is None and inputs.get("video_grid_thw") is None:
            return super().position_ids(model, input_ids, attention_mask, inputs).expand(3, -1, -1)
        types = inputs["mm_token_type_ids"]
        if types.size(1) < input_ids.size(1):  # prompt-only types: the completion is text
            types = torch.cat([types, types.new_zeros(types.size(0), input_ids.size(1) - types.size(1))], dim=1)
        grids = {
            key: inputs[key] for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if key in inputs
        }
        positions, _ = self.backbone(model).get_rope_index(
            input_ids, mm_token_type_ids=types, attention_mask=attention_mask, **grids
        )
        return positions

    def prefill_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual: dict[str, Any]
    ) -> dict[str, Any]:
        """The model computes the prefill's M-RoPE positions and `rope_deltas` itself (past length 0)."""
        visual = dict(visual)
        for key in PER_TOKEN_KEYS & visual.keys():
            visual[key] = visual[key][:, : input_ids.size(1)]
        return {"input_ids": input_ids, "attention_mask": attention_mask, **visual}

    def after_prefill(self, model: nn.Module, inverse: torch.Tensor) -> None:
        """Decoding positions are `rope_deltas` (one per prefilled prompt) plus the text position: give every row
        its prompt's delta."""
        backbone = self.backbone(model)
        if backbone.rope_deltas is not None:
            backbone.rope_deltas = take(backbone.rope_deltas, inverse.tolist())
