"""The critic of actor-critic RL on a VLM: an MLP value head on the policy's own last hidden states.

The head is registered as a submodule (``value_head``) of the policy model, so the optimizer, DDP and DeepSpeed
ZeRO see its parameters like the model's own and a LoRA wrap does not freeze it. :func:`attach_value_head` wraps
the model's forward so that, while a :class:`ValueTap` collects, the head reads the last hidden state of the same
forward pass that computes the policy's log-probabilities: the body runs once for both. The head is saved apart
from the model, as ``value_head.safetensors`` beside it, so the model directory still loads with
``from_pretrained`` and :meth:`ValueHead.from_pretrained` restores the head.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from trl.trainer.utils import FusedCausalLMOutput

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_HEAD_ATTR = "value_head"
OUTPUT_KEY = "critic_values"  # the field of ValueHeadOutput
_HEAD_KEY = re.compile(rf"(?:^|\.){VALUE_HEAD_ATTR}\.(.+)$")


class ValueHead(nn.Module):
    """MLP from a hidden state to a scalar value: ``num_layers`` linear layers (``width`` wide, GELU between).

    The output layer starts at zero, so a fresh critic predicts V = 0 everywhere and the first advantages are the
    plain returns.
    """

    def __init__(self, hidden_size: int, width: int | None = None, num_layers: int = 2) -> None:
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"value head hidden_size must be a positive integer, got {hidden_size!r}")
        width = hidden_size if width is None else width
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"value head width (value_head_hidden_size) must be a positive integer, got {width!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"value head num_layers (value_head_num_layers) must be >= 1, got {num_layers!r}")
        self.hidden_size, self.width, self.num_layers = hidden_size, width, num_layers
        layers: list[nn.Module] = []
        in_features = hidden_size
        for _ in range(num_layers - 1):
            layers += [nn.Linear(in_features, width), nn.GELU()]
            in_features = width
        layers.append(nn.Linear(in_features, 1))
        self.mlp = nn.Sequential(*layers)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Values of shape ``hidden_states.shape[:-1]``, in float32 whatever the body's dtype."""
        weight = self.mlp[0].weight
        return self.mlp(hidden_states.to(weight.dtype)).squeeze(-1).float()

    @property
    def config(self) -> dict[str, int]:
        """What rebuilds this head's architecture (stored in the saved file's metadata)."""
        return {"hidden_size": self.hidden_size, "width": self.width, "num_layers": self.num_layers}

    def save_pretrained(
        self, save_directory: str | Path, state_dict: Mapping[str, torch.Tensor] | None = None
    ) -> Path:
        """Write ``value_head.safetensors`` (weights and architecture) into ``save_directory``; returns the file."""
        return save_value_head(self.config, self.state_dict() if state_dict is None else state_dict, save_directory)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> ValueHead:
        """A head restored bit for bit from a ``value_head.safetensors`` file or a directory holding one."""
        file = Path(path)
        if file.is_dir():
            file = file / VALUE_HEAD_FILE
        if not file.is_file():
            raise FileNotFoundError(
                f"no value head at {path} (expected a directory with {VALUE_HEAD_FILE} or the file)"
            )
        with safe_open(str(file), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
        try:
            config = json.loads(metadata["value_head_config"])
        except (KeyError, json.JSONDecodeError):
            raise ValueError(f"{file} has no value head architecture in its metadata ('value_head_config')") from None
        head = cls(**config)
        head.to(next(iter(state.values())).dtype)
        head.load_state_dict(state)
        return head if device is None else head.to(device)


def save_value_head(
    config: Mapping[str, int], state_dict: Mapping[str, torch.Tensor], save_directory: str | Path
) -> Path:
    """Write a value head's ``state_dict`` and architecture ``config`` to ``save_directory/value_head.safetensors``."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    metadata = {"format": "pt", "value_head_config": json.dumps(dict(config), sort_keys=True)}
    save_file(tensors, str(out / VALUE_HEAD_FILE), metadata=metadata)
    return out / VALUE_HEAD_FILE


def split_value_head_state(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a model's state dict (any wrapper prefix) into the value head's own state dict and the rest."""
    head, rest = {}, {}
    for key, value in state_dict.items():
        match = _HEAD_KEY.search(key)
        if match:
            head[match.group(1)] = value
        else:
            rest[key] = value
    return head, rest


@dataclass
class ValueHeadOutput(FusedCausalLMOutput):
    """TRL's fused-head output plus the value head's ``critic_values`` (not ``values``, which would shadow the
    output's dict method); a declared field, so DDP can rebuild the output after its forward."""

    critic_values: torch.Tensor | None = None


class ValueTap:
    """Switch for the value head inside the policy's forward: while :meth:`collect` is open, each forward also runs
    the head on the body's last hidden states and appends the values to the collected list."""

    def __init__(self) -> None:
        self.values: list[torch.Tensor] | None = None
        self.detach_hidden = False

    @contextmanager
    def collect(self, detach_hidden: bool = False) -> Iterator[list[torch.Tensor]]:
        """Collect the values of the forwards run inside the block; ``detach_hidden`` keeps the value loss's
        gradient out of the shared body (critic-only training)."""
        self.values, self.detach_hidden = [], detach_hidden
        try:
            yield self.values
        finally:
            self.values, self.detach_hidden = None, False


def attach_value_head(model: nn.Module, head: ValueHead) -> ValueTap:
    """Register ``head`` as ``model.value_head`` and wrap ``model.forward`` to feed it; returns the tap that turns
    it on. Call it on the transformers model itself (under any PEFT wrapper), after TRL has patched its forward.

    A collected values tensor has shape (batch, seq_len - 1): entry t is V of the state whose next token is
    token t + 1, aligned with the log-probabilities of TRL's fused LM head.
    """
    backbone = getattr(model, "base_model", model)
    if backbone is model:
        raise ValueError(
            f"{type(model).__name__} exposes no backbone (`base_model`) whose hidden states a value head can read"
        )
    model.add_module(VALUE_HEAD_ATTR, head)
    tap = ValueTap()
    inner_forward = model.forward

    # Keep the original signature: `generate` validates its model kwargs against it.
    @functools.wraps(type(model).forward)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if tap.values is None:
            return inner_forward(*args, **kwargs)
        captured: list[torch.Tensor] = []

        def keep_hidden(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

        # The backbone is looked up on each call, as TRL's fused head does, since FSDP and PEFT may replace it.
        handle = self.base_model.register_forward_hook(keep_hidden)
        try:
            output = inner_forward(*args, **kwargs)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"expected one backbone forward per policy forward, saw {len(captured)}")
        hidden = captured[0][:, :-1]
        values = getattr(self, VALUE_HEAD_ATTR)(hidden.detach() if tap.detach_hidden else hidden)
        tap.values.append(values)
        if not isinstance(output, FusedCausalLMOutput):
            raise TypeError(f"the value head runs on TRL's fused log-prob forward, got a {type(output).__name__}")
        # Part of the output so that DDP sees the head's parameters take part in the forward.
        return ValueHeadOutput(**output, critic_values=values)

    model.forward = forward.__get__(model)
    return tap
