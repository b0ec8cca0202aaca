"""Exact sharing of a prompt's language-model work between the completions that continue it.

In a log-prob pass the rows of a clip repeat the same prompt (its image tokens and instruction) before their
completions, so the language model runs over that prompt once per completion. `pack_shared_prompts` lays each
distinct prompt out once and puts its rows' completions after it as branches of one sequence, with a tree attention
mask: a branch sees the prompt and itself, never another branch, at the positions it has in its own row. Every
completion token's log-prob is then the row layout's up to floating-point rounding, and the prompt runs through the
model once per micro-batch instead of once per completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedPrompts:
    """One packed sequence per distinct prompt, and where each original row's completion tokens landed in it."""

    input_ids: torch.Tensor  # (groups, length): the prompt once, then one branch per row of the group
    attention_mask: torch.Tensor  # (groups, 1, length, length): True where a query position may attend a key
    position_ids: torch.Tensor  # (..., groups, length): each token's position in its own row (M-RoPE: 3 components)
    shift_labels: torch.Tensor  # (groups, length): the token each position predicts, -100 where none is scored
    first: torch.Tensor  # (groups,): the first row of each group, to pick per-row inputs such as frames
    index: torch.Tensor  # (rows, completion_length): flat index into (groups * length) of each scored position
    shared_width: int  # the shared prompt's positions at the start of each packed sequence (its last token aside)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """Per-position values of the packed sequences (groups, length) back in the rows' completion layout."""
        return packed.reshape(-1)[self.index.to(packed.device)]


def pack_shared_prompts(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_length: int,
    first: torch.Tensor,
    inverse: torch.Tensor,
    pad_token_id: int,
    position_ids: torch.Tensor | None = None,
) -> PackedPrompts:
    """Pack rows that share their prompt (`first`/`inverse` from `group_identical_rows` on the prompt columns).

    Rows are `prompt + completion` with left-padded prompts of width `T - completion_length`. Each group becomes the
    prompt without its last token, then, per row, a branch holding that last prompt token and the row's completion:
    the branch's first position predicts the completion's first token, exactly as the prompt's last position does
    in the row layout. Every token keeps the position it has in its own row (`position_ids`, shaped `(rows, width)`
    or `(components, rows, width)`; default the index in the row, left padding included), so rotary embeddings,
    multi-dimensional ones included, match too.
    """
    num_rows, width = input_ids.shape
    prompt_width = width - completion_length
    if completion_length < 1 or prompt_width < 1:
        raise ValueError(f"rows of width {width} hold no prompt and completion of length {completion_length}")
    shared = prompt_width - 1  # the prompt tokens laid out once per group
    branch_width = completion_length + 1
    device = input_ids.device
    rows_of_group = [torch.nonzero(inverse == group).flatten().tolist() for group in range(first.numel())]
    length = shared + max(len(rows) for rows in rows_of_group) * branch_width

    ids = torch.full((len(rows_of_group), length), pad_token_id, dtype=input_ids.dtype, device=device)
    is_key = torch.zeros((len(rows_of_group), length), dtype=torch.bool, device=device)
    if position_ids is None:
        position_ids = torch.arange(width, device=device).expand(num_rows, width)
    positions = position_ids.new_zeros((*position_ids.shape[:-2], len(rows_of_group), length))
    labels = torch.full((len(rows_of_group), length), -100, dtype=torch.long, device=device)
    branch = torch.full((len(rows_of_group), length), -1, dtype=torch.long, device=device)  # -1: the shared prompt
    index = torch.empty((num_rows, completion_length), dtype=torch.long, device=device)
    mask = attention_mask.bool()
    for group, rows in enumerate(rows_of_group):
        head = int(first[group])
        ids[group, :shared] = input_ids[head, :shared]
        is_key[group, :shared] = mask[head, :shared]
        positions[..., group, :shared] = position_ids[..., head, :shared]
        for k, row in enumerate(rows):
            start = shared + k * branch_width
            span = slice(start, start + branch_width)
            ids[group, span] = input_ids[row, shared:]
            is_key[group, span] = mask[row, shared:]
            positions[..., group, span] = position_ids[..., row, shared:]
            labels[group, start : start + completion_length] = input_ids[row, prompt_width:].masked_fill(
                ~mask[row, prompt_width:], -100
            )
            branch[group, span] = k
            index[row] = group * length + start + torch.arange(completion_length, device=device)

    order = torch.arange(length, device=device)
    causal = order[None, :, None] >= order[None, None, :]  # (1, query, key)
    same_branch = (branch[:, None, :] == -1) | (branch[:, None, :] == branch[:, :, None])
    visible = causal & same_branch & is_key[:, None, :]
    visible |= torch.eye(length, dtype=torch.bool, device=device)  # padding attends to itself: no empty softmax row
    return PackedPrompts(
        input_ids=ids,
        attention_mask=visible[:, None],
        position_ids=positions,
        shift_labels=labels,
        first=first,
        index=index,
        shared_width=shared,
    )
