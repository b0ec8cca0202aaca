"""GAE, per-token rewards, whitening, explained variance and the clipped value loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrl_trl.trainers.advantages import (
    clipped_value_loss,
    compute_gae,
    explained_variance,
    masked_mean,
    masked_var,
    masked_whiten,
    token_rewards,
)


def reference_gae(rewards, values, length, gamma, lam):
    """GAE of one completion of ``length`` tokens from the definition A_t = sum_j (gamma lam)^j delta_{t+j}."""
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < length else 0.0) - values[t] for t in range(length)]
    return [sum((gamma * lam) ** j * deltas[t + j] for j in range(length - t)) for t in range(length)]


def test_gae_matches_hand_computed_values_with_padding_and_early_eos():
    # Row 0 runs the full 3 tokens; row 1 stops at EOS after 2 tokens, its padding carries junk that must not count.
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.1], [1.0, 0.5, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0: deltas 0.9*0.2-0.5=-0.32, 0.9*0.1-0.2=-0.11, 1-0.1=0.9; A2=0.9, A1=-0.11+0.72*0.9, A0=-0.32+0.72*A1.
    # Row 1: deltas 0.9*0.5-1=-0.55, 2-0.5=1.5; A1=1.5, A0=-0.55+0.72*1.5=0.53.
    expected = torch.tensor([[0.06736, 0.538, 0.9], [0.53, 1.5, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, torch.tensor([[0.56736, 0.738, 1.0], [1.53, 2.0, 0.0]]))


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0), (0.5, 0.3)])
def test_gae_matches_the_definition_on_random_padded_batches(gamma, lam):
    generator = torch.Generator().manual_seed(0)
    lengths = [7, 3, 1, 5, 0]
    rewards = torch.randn(len(lengths), 7, generator=generator, dtype=torch.float64)
    values = torch.randn(len(lengths), 7, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in lengths])
    advantages, returns = compute_gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        expected = reference_gae(rewards[i].tolist(), values[i].tolist(), n, gamma, lam)
        torch.testing.assert_close(advantages[i, :n], torch.tensor(expected, dtype=torch.float64))
        torch.testing.assert_close(returns[i, :n], advantages[i, :n] + values[i, :n])
        assert advantages[i, n:].eq(0).all() and returns[i, n:].eq(0).all()


def test_without_the_critic_advantages_are_the_plain_return():
    # gamma = lambda = 1 and V = 0: A_t = sum_{k >= t} r_k, the Monte-Carlo return from token t.
    rewards = torch.tensor([[0.1, -0.2, 0.3, 0.4], [1.0, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    advantages, returns = compute_gae(rewards, torch.zeros_like(rewards), mask, gamma=1.0, lam=1.0)
    plain_return = (rewards * mask).flip(1).cumsum(1).flip(1) * mask
    torch.testing.assert_close(advantages, plain_return)
    torch.testing.assert_close(returns, plain_return)


def test_token_rewards_put_the_terminal_reward_on_each_completions_last_token():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    dense = torch.tensor([[0.1, 0.0, 0.2, 0.0], [0.5, 0.5, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    kl = torch.full((3, 4), 0.5)
    rewards = token_rewards(torch.tensor([2.0, 3.0, 4.0]), mask, dense=dense, kl=kl, kl_coef=0.1)
    expected = torch.tensor([[0.05, -0.05, 0.15, 1.95], [0.45, 3.45, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)


def test_token_rewards_reject_a_terminal_reward_per_token():
    with pytest.raises(ValueError, match="terminal rewards must have shape"):
        token_rewards(torch.zeros(2, 3), torch.ones(2, 3))


def test_dense_clip_increments_telescope_to_the_final_r1(tiny_processor, tiny_clip):
    # r_{k+1} = R1(T_{k+1}) - R1(T_k): with gamma = 1 and no critic, the first token's advantage is R1(T_N) - R1(T_0).
    from vlmrl_trl.rewards import ClipAlignmentReward

    tokenizer = tiny_processor.tokenizer
    reward = ClipAlignmentReward(encoder=tiny_clip)
    texts = ["a car stops at the red light", "the road is clear ahead", "go"]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    rng = np.random.default_rng(0)
    clips = [[Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)] for _ in texts]
    for every_k in (1, 3):
        dense_lists = reward.dense_rewards(clips, ids, tokenizer, every_k=every_k)
        length = max(map(len, ids))
        mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in ids])
        dense = torch.tensor([row + [0.0] * (length - len(row)) for row in dense_lists], dtype=torch.float64)
        rewards = token_rewards(torch.zeros(len(ids), dtype=torch.float64), mask, dense=dense)
        advantages, _ = compute_gae(rewards, torch.zeros_like(rewards), mask, gamma=1.0, lam=1.0)
        final = torch.tensor(reward.score(clips, texts), dtype=torch.float64)
        torch.testing.assert_close(advantages[:, 0], final - reward.floor)


def test_masked_whiten_uses_only_unmasked_tokens():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    whitened = masked_whiten(x, mask)
    assert whitened[~mask.bool()].eq(0).all()
    valid = whitened[mask.bool()]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(valid.var(), torch.tensor(1.0), atol=1e-5, rtol=0)
    unshifted = masked_whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(unshifted[mask.bool()].mean(), torch.tensor(3.0))


def test_whitening_statistics_can_span_processes():
    # Two "processes" holding halves of a batch, summing their statistics, whiten as one process holding it all.
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    mask = (torch.rand(6, 5, generator=torch.Generator().manual_seed(2)) > 0.3).int()
    halves = [(x[:3], mask[:3]), (x[3:], mask[3:])]

    def stats(part, part_mask, n):
        # What masked_mean (n = 2: sum, count) and masked_var (n = 3: sum, sum of squares, count) reduce.
        m = part_mask.to(part.dtype)
        moments = [(part * m).sum(), (part * part * m).sum(), m.sum()]
        return torch.stack(moments if n == 3 else [moments[0], moments[2]])

    whitened = []
    for i, (part, part_mask) in enumerate(halves):
        other = halves[1 - i]

        def reduce(local, other=other):
            return local + stats(*other, local.numel())

        whitened.append(masked_whiten(part, part_mask, reduce=reduce))
    torch.testing.assert_close(torch.cat(whitened), masked_whiten(x, mask))


def test_masked_mean_and_var_of_an_empty_mask_are_zero():
    x = torch.ones(2, 3)
    empty = torch.zeros(2, 3)
    assert masked_mean(x, empty).item() == 0.0
    assert masked_var(x, empty).item() == 0.0


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 3.0), returns, mask) == pytest.approx(0.0, abs=1e-6)
    assert explained_variance(-returns, returns, mask) < 0
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask))


def test_clipped_value_loss_takes_the_larger_error_outside_the_clip_range():
    old = torch.tensor([0.0, 0.0, 0.0, 0.0])
    new = torch.tensor([0.1, 1.0, -1.0, 1.0])
    returns = torch.tensor([0.0, 2.0, 0.0, 0.0])
    loss, clipped = clipped_value_loss(new, old, returns, cliprange_value=0.2)
    # In range: unclipped. Towards the return beyond the range: the clipped error (2 - 0.2)^2 is larger.
    # Away from the return beyond the range: the unclipped error is larger.
    torch.testing.assert_close(loss, 0.5 * torch.tensor([0.01, 1.8**2, 1.0, 1.0]))
    assert clipped.tolist() == [False, True, False, False]
    unclipped, none_clipped = clipped_value_loss(new, old, returns, cliprange_value=None)
    torch.testing.assert_close(unclipped, 0.5 * (new - returns) ** 2)
    assert not none_clipped.any()
