"""Silence the startup messages of our dependencies that a user cannot act on, and nothing else.

Each entry names the logger (or warning) and the start of the message, so that any other warning still shows.
Importing this module installs the filters: the stage scripts and the ``vlmrl-trl`` command import it before
their heavy imports. ``VLMRL_VERBOSE=1`` keeps everything.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# (logger, message start, why it is noise)
LOG_NOISE: tuple[tuple[str, str, str], ...] = (
    (
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community",
        "an optional CPU kernel fetched from the model hub; bitsandbytes falls back to its own",
    ),
    (
        "DeepSpeed",
        "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it",
        "printed on every machine without a GPU (kept where torch sees one: there it is a real problem)",
    ),
    (
        "accelerate.accelerator",
        "Gradient accumulation steps mismatch: GradientAccumulationPlugin has 1,",
        "transformers' Trainer sets accelerate's plugin to 1 on purpose and accumulates with the recipe's value",
    ),
)

# (warning category, message start, why it is noise)
WARNING_NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    (
        UserWarning,
        "'pin_memory' argument is set as true but no accelerator is found",
        "on a CPU there is no pinned memory to use; the data loader works the same",
    ),
    (
        FutureWarning,
        "`is_gradient_checkpointing` is deprecated",
        "TRL's own call into transformers, not ours or the user's",
    ),
)


def _gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``starts``; the DeepSpeed one only when there is no GPU."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.starts):
            return True
        return record.name == "DeepSpeed" and _gpu_present()


def quiet_startup() -> None:
    """Install the filters (idempotent); a no-op with ``VLMRL_VERBOSE=1``."""
    if os.environ.get("VLMRL_VERBOSE", "") not in ("", "0"):
        return
    for name in {name for name, _, _ in LOG_NOISE}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(tuple(start for n, start, _ in LOG_NOISE if n == name)))
    for category, start, _ in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category)


quiet_startup()
