"""Trainers: TRL trainers extended for multi-frame vision-language prompts.

Names are imported on first use, so importing one submodule does not pull in TRL's trainers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .advantages import compute_gae
    from .deduplication import group_identical_rows, memoized_image_processing, share_image_features
    from .grpo_config import VLMGRPOConfig
    from .grpo_trainer import VLMGRPOTrainer, vision_sharing_fallback
    from .ppo_config import VLMPPOConfig
    from .ppo_trainer import VLMPPOTrainer
    from .value_head import ValueHead

_EXPORTS = {
    "VLMGRPOConfig": "grpo_config",
    "VLMGRPOTrainer": "grpo_trainer",
    "vision_sharing_fallback": "grpo_trainer",
    "group_identical_rows": "deduplication",
    "memoized_image_processing": "deduplication",
    "share_image_features": "deduplication",
    "VLMPPOConfig": "ppo_config",
    "VLMPPOTrainer": "ppo_trainer",
    "ValueHead": "value_head",
    "compute_gae": "advantages",
}

__all__ = [
    "VLMGRPOConfig",
    "VLMGRPOTrainer",
    "VLMPPOConfig",
    "VLMPPOTrainer",
    "ValueHead",
    "compute_gae",
    "group_identical_rows",
    "memoized_image_processing",
    "share_image_features",
    "vision_sharing_fallback",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
