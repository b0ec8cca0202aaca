"""Per-token rewards, GAE advantages, whitening and the clipped value loss for actor-critic RL on completions.

Every function takes ``(batch, completion_length)`` tensors and a ``mask`` of the same shape that is 1 on a
completion's tokens and 0 on the right padding after it (a completion that stops early at EOS is shorter). A
completion's last token ends the episode: nothing is bootstrapped past it, also when it was cut at
``max_completion_length``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Sums a tensor of statistics over processes (e.g. ``lambda t: accelerator.reduce(t, "sum")``); None means local.
Reduce = Callable[[torch.Tensor], torch.Tensor]


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last unmasked token (0 for an empty row)."""
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=1)


def token_rewards(
    terminal: torch.Tensor,
    mask: torch.Tensor,
    dense: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """Per-token rewards: ``terminal`` (one per row) on the row's last token, plus the ``dense`` per-token rewards,
    minus ``kl_coef * kl`` (the per-token KL estimate to the reference policy); 0 on padding."""
    if terminal.dim() != 1 or terminal.size(0) != mask.size(0):
        raise ValueError(f"terminal rewards must have shape ({mask.size(0)},), got {tuple(terminal.shape)}")
    mask = mask.to(terminal.dtype)
    rewards = torch.zeros_like(mask)
    rewards.scatter_(1, last_token_index(mask).unsqueeze(1), terminal.unsqueeze(1))
    if dense is not None:
        rewards = rewards + dense.to(rewards.dtype)
    if kl is not None and kl_coef != 0.0:
        rewards = rewards - kl_coef * kl.to(rewards.dtype)
    return rewards * mask


@torch.no_grad()
def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages and returns (advantages + values) over each completion's tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t with V = 0 after a completion's last token, and
    A_t = delta_t + gamma * lam * A_{t+1}; both are 0 on padding.
    """
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(
            f"rewards, values and mask must have one shape, got {tuple(rewards.shape)}, {tuple(values.shape)} "
            f"and {tuple(mask.shape)}"
        )
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards.to(values.dtype) * mask
    advantages = torch.zeros_like(values)
    next_advantage = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor, reduce: Reduce | None = None) -> torch.Tensor:
    """Mean of ``x`` over the unmasked entries (of all processes when ``reduce`` is given); 0 when there are none."""
    mask = mask.to(x.dtype)
    stats = torch.stack([(x * mask).sum(), mask.sum()])
    if reduce is not None:
        stats = reduce(stats)
    return stats[0] / stats[1].clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, reduce: Reduce | None = None) -> torch.Tensor:
    """Unbiased variance of ``x`` over the unmasked entries (of all processes when ``reduce`` is given)."""
    mask = mask.to(x.dtype)
    stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()])
    if reduce is not None:
        stats = reduce(stats)
    total, total_sq, count = stats
    if count < 2:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    mean = total / count
    return ((total_sq - count * mean * mean) / (count - 1)).clamp(min=0.0)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, reduce: Reduce | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """``x`` scaled to unit variance (and zero mean when ``shift_mean``) over the unmasked entries; 0 on padding."""
    mean = masked_mean(x, mask, reduce)
    var = masked_var(x, mask, reduce)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, reduce: Reduce | None = None
) -> float:
    """1 - Var[returns - values] / Var[returns] over the unmasked tokens: 1 for a perfect critic, 0 for one no
    better than a constant, negative for a worse one; NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask, reduce)
    if var_returns <= 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, reduce) / var_returns)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    cliprange_value: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO value loss 0.5 * max((V - R)^2, (V_clip - R)^2) with V_clip = V_old + clip(V - V_old, -c, c),
    and where the clipped term was the larger one (the value clip fraction). ``cliprange_value=None`` leaves V
    unclipped."""
    unclipped = (values - returns) ** 2
    if cliprange_value is None:
        return 0.5 * unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), clipped > unclipped
