"""Configuration of `VLMPPOTrainer`: `VLMGRPOConfig` plus the critic, GAE and per-token reward options."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from .grpo_config import VLMGRPOConfig

# GRPOConfig options that only shape group-relative advantages, with their defaults.
_GROUP_ADVANTAGE_OPTIONS = {"scale_rewards": "group", "multi_objective_aggregation": "sum_then_normalize"}


class _SingleGeneration(int):
    """The value 1 as `GRPOConfig.__post_init__` sees it while validating a PPO config: it passes GRPO's "at least 2
    generations" check, which only group-relative advantages need, and is a plain 1 for every other check."""

    def __lt__(self, other: object) -> bool:
        return False


@dataclass
class VLMPPOConfig(VLMGRPOConfig):
    r"""
    Configuration class for [`VLMPPOTrainer`]: every [`VLMGRPOConfig`] parameter (TRL's `GRPOConfig` ones included)
    plus the actor-critic options below. `num_generations` defaults to 1 here (PPO needs no groups); `beta` is the
    KL coefficient to the reference policy, as in GRPO.

    Parameters:
        gamma (`float`, *optional*, defaults to `1.0`):
            Discount factor over completion tokens. With `1.0` the dense CLIP increments sum to the final R1.
        lam (`float`, *optional*, defaults to `0.95`):
            GAE lambda. The critic regresses the lambda-returns (advantages + values): `1.0` makes them the
            Monte-Carlo returns sum_{k>=t} gamma^(k-t) r_{k+1}, the method's critic target; `0.0` gives one-step TD.
        whiten_advantages (`bool`, *optional*, defaults to `True`):
            Whether to whiten the advantages over the generation batch's completion tokens (all processes).
        vf_coef (`float`, *optional*, defaults to `0.1`):
            Weight of the value loss in the total loss.
        cliprange_value (`float` or `None`, *optional*, defaults to `0.2`):
            Clip range of the new values around the rollout's values in the value loss; `None` turns clipping off.
        value_head_hidden_size (`int` or `None`, *optional*, defaults to `None`):
            Width of the value head's hidden layers; `None` uses the language model's hidden size.
        value_head_num_layers (`int`, *optional*, defaults to `2`):
            Number of linear layers of the value head (`1` is a linear head).
        value_head_path (`str` or `None`, *optional*, defaults to `None`):
            A `value_head.safetensors` file, or a directory holding one, to start the critic from. When `None`, the
            model directory's own `value_head.safetensors` is used if it has one, else the head starts fresh.
        critic_warmup_steps (`int`, *optional*, defaults to `0`):
            Number of first optimizer steps that train the critic only: the policy loss is dropped and the value
            loss does not reach the shared body, so the policy does not move (with `weight_decay=0`). The learning
            rate schedule runs during them, so a warm-up schedule should span more steps than these.
        dense_clip_reward (`bool`, *optional*, defaults to `False`):
            Whether the CLIP alignment reward (`clip_alignment`, which must be among the reward functions) is paid
            per token as r_{k+1} = R1(I, T_{k+1}) - R1(I, T_k) instead of once at the end. Its weight applies to the
            increments, which telescope to R1 of the whole completion.
        dense_reward_every_k (`int`, *optional*, defaults to `4`):
            Prefix scoring interval of the dense CLIP reward: R1 is computed every `k` tokens (and at the last token),
            so it costs about `completion_length / k` text encodings per completion.
        kl_in_reward (`bool`, *optional*, defaults to `True`):
            With `beta > 0`, whether the KL penalty to the reference policy is folded into the per-token reward
            (r_t -= beta * (log pi_old - log pi_ref), classic RLHF PPO) instead of added to the loss (GRPO's way).
    """

    num_generations: int | None = field(
        default=1,
        metadata={"help": "Number of completions sampled per prompt. PPO needs no groups, so 1 is allowed."},
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount factor over completion tokens."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda (1.0: Monte-Carlo, 0.0: one-step TD)."})
    whiten_advantages: bool = field(
        default=True, metadata={"help": "Whether to whiten the advantages over the generation batch's tokens."}
    )
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss in the total loss."})
    cliprange_value: float | None = field(
        default=0.2,
        metadata={"help": "Clip range of the values around the rollout's values in the value loss (None: unclipped)."},
    )
    value_head_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Width of the value head's hidden layers; None: the language model's hidden size."},
    )
    value_head_num_layers: int = field(
        default=2, metadata={"help": "Number of linear layers of the value head (1: a linear head)."}
    )
    value_head_path: str | None = field(
        default=None,
        metadata={
            "help": "value_head.safetensors (or a directory holding it) to start the critic from; None: the model "
            "directory's own if it has one, else a fresh head."
        },
    )
    critic_warmup_steps: int = field(
        default=0,
        metadata={"help": "Number of first optimizer steps that train the critic only (the policy does not move)."},
    )
    dense_clip_reward: bool = field(
        default=False,
        metadata={
            "help": "Whether to pay the clip_alignment reward per token as R1(I, T_{k+1}) - R1(I, T_k) (telescoping "
            "to the final R1) instead of once at the last token."
        },
    )
    dense_reward_every_k: int = field(
        default=4,
        metadata={"help": "Score R1 on completion prefixes every k tokens (and at the end) for the dense reward."},
    )
    kl_in_reward: bool = field(
        default=True,
        metadata={
            "help": "With beta > 0, fold the KL penalty to the reference policy into the per-token reward instead of "
            "adding it to the loss."
        },
    )

    def __post_init__(self) -> None:
        if not isinstance(self.num_generations, int) or self.num_generations < 1:
            raise ValueError(f"num_generations must be a positive integer, got {self.num_generations!r}")
        single = self.num_generations == 1
        if single:
            self.num_generations = _SingleGeneration(1)
        try:
            super().__post_init__()
        finally:
            if single:
                self.num_generations = 1
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.vf_coef < 0.0:
            raise ValueError(f"vf_coef must be >= 0, got {self.vf_coef}")
        if self.cliprange_value is not None and self.cliprange_value <= 0.0:
            raise ValueError(f"cliprange_value must be > 0 (or None for no clipping), got {self.cliprange_value}")
        if self.value_head_hidden_size is not None and self.value_head_hidden_size < 1:
            raise ValueError(f"value_head_hidden_size must be >= 1 (or None), got {self.value_head_hidden_size}")
        if self.value_head_num_layers < 1:
            raise ValueError(f"value_head_num_layers must be >= 1, got {self.value_head_num_layers}")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"critic_warmup_steps must be >= 0, got {self.critic_warmup_steps}")
        if self.dense_reward_every_k < 1:
            raise ValueError(f"dense_reward_every_k must be >= 1, got {self.dense_reward_every_k}")
        ignored = [
            f"{key}={getattr(self, key)!r}"
            for key, default in _GROUP_ADVANTAGE_OPTIONS.items()
            if getattr(self, key) != default
        ]
        if ignored:
            warnings.warn(
                f"VLMPPOConfig ignores {', '.join(ignored)}: PPO's advantages come from GAE over the weighted reward "
                "sum, not from GRPO's group-relative advantages these options shape.",
                UserWarning,
                stacklevel=2,
            )
