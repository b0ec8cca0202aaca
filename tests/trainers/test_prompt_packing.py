"""Packing rows that share a prompt: the layout, by hand, and the tree mask each completion token sees."""

from __future__ import annotations

import pytest
import torch

from vlmrl_trl.trainers.deduplication import group_identical_rows
from vlmrl_trl.trainers.prompt_packing import pack_shared_prompts

PAD = 0


def rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of a 3-token prompt + 2-token completion: rows 0 and 2 share prompt (pad, 5, 6); row 2's
    completion ends early (its last token is padding)."""
    input_ids = torch.tensor([[PAD, 5, 6, 7, 8], [4, 5, 9, 10, 11], [PAD, 5, 6, 12, PAD]])
    attention_mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]])
    return input_ids, attention_mask


def test_layout_puts_each_prompt_once_then_one_branch_per_row():
    input_ids, attention_mask = rows()
    first, inverse = group_identical_rows(input_ids[:, :3], attention_mask[:, :3])
    packed = pack_shared_prompts(input_ids, attention_mask, 2, first, inverse, PAD)
    # Group 0: prompt without its last token (PAD, 5), then branches (6, 7, 8) and (6, 12, PAD).
    # Group 1: (4, 5), branch (9, 10, 11), then padding to the longer group's length.
    assert packed.input_ids.tolist() == [[PAD, 5, 6, 7, 8, 6, 12, PAD], [4, 5, 9, 10, 11, PAD, PAD, PAD]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4], [0, 1, 2, 3, 4, 0, 0, 0]]
    # Each branch's first position predicts the completion's first token; padding and branch ends predict nothing.
    skip = -100
    assert packed.shift_labels.tolist() == [
        [skip, skip, 7, 8, skip, 12, skip, skip],
        [skip, skip, 10, 11] + [skip] * 4,
    ]
    scored = torch.arange(16).reshape(2, 8)
    assert packed.unpack(scored).tolist() == [[2, 3], [10, 11], [5, 6]]
    assert packed.first.tolist() == [0, 1]


def test_a_branch_sees_the_prompt_and_itself_only():
    input_ids, attention_mask = rows()
    first, inverse = group_identical_rows(input_ids[:, :3], attention_mask[:, :3])
    visible = pack_shared_prompts(input_ids, attention_mask, 2, first, inverse, PAD).attention_mask[0, 0]
    # Second branch's token 12 (position 6): the prompt's real token 5 (not its padding), its own 6, itself.
    assert torch.nonzero(visible[6]).flatten().tolist() == [1, 5, 6]
    # First branch's last token (position 4): token 5, then 6, 7, 8 of its own branch; nothing of the other branch.
    assert torch.nonzero(visible[4]).flatten().tolist() == [1, 2, 3, 4]
    # Left padding sees no real token before it: it attends to itself, so no softmax row is empty.
    assert torch.nonzero(visible[0]).flatten().tolist() == [0]


def test_rows_without_a_completion_are_rejected():
    input_ids, attention_mask = rows()
    first, inverse = group_identical_rows(input_ids, attention_mask)
    with pytest.raises(ValueError, match="no prompt and completion"):
        pack_shared_prompts(input_ids, attention_mask, 0, first, inverse, PAD)
