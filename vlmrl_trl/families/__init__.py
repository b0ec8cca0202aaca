"""Family adapters: everything that differs between VLM families when a trainer shares vision work between rows.

`adapter_for(model)` returns the adapter of the family whose backbone `model` holds, or None for a family whose
visual inputs we do not know how to share (the trainers then run TRL's path and say why).
"""

from __future__ import annotations

from torch import nn

from .base import FamilyAdapter
from .flat_patches import FlatPatchesAdapter
from .per_image import BidirectionalImageAdapter, OnevisionImageAdapter, PerImageAdapter
from .per_row import PerRowAdapter

ADAPTERS: tuple[FamilyAdapter, ...] = (
    PerRowAdapter(),
    FlatPatchesAdapter(),
    PerImageAdapter(),
    OnevisionImageAdapter(),
    BidirectionalImageAdapter(),
)


def adapter_for(model: nn.Module) -> FamilyAdapter | None:
    """The adapter of the family `model` belongs to, or None when no adapter knows its backbone."""
    return next((adapter for adapter in ADAPTERS if adapter.matches(model)), None)


__all__ = ["ADAPTERS", "FamilyAdapter", "adapter_for"]
