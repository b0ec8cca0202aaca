"""Configuration of `VLMGRPOTrainer`: TRL's `GRPOConfig` plus the switches for sharing a group's vision and prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


@dataclass
class VLMGRPOConfig(GRPOConfig):
    r"""
    Configuration class for [`VLMGRPOTrainer`]: every [`~trl.GRPOConfig`] parameter, with the same defaults, plus:

    Parameters:
        deduplicate_vision (`bool`, *optional*, defaults to `True`):
            Whether to do each distinct clip's vision work once per group instead of once per completion: its frames
            are preprocessed once per generation batch, its completions are sampled from one shared prefill, and each
            log-prob pass (old policy, reference, loss) encodes it once per micro-batch. The results are those of
            TRL's path (log-probs and gradients equal up to floating-point rounding). Set to `False` to run TRL's
            path unchanged. Ignored (TRL's path is used) with `use_vllm=True`.
        group_clips_in_micro_batches (`bool` or `None`, *optional*, defaults to `None`):
            How a generation batch is shuffled into micro-batches when vision work is shared. TRL shuffles rows, which
            scatters a clip's completions over the micro-batches, so the loss pass encodes each clip in several of
            them; grouping shuffles whole clips (and the rows within each clip), so a clip's rows share micro-batches
            and the loss pass encodes it about once. `None` groups only when that leaves every optimizer step's
            gradient unchanged: a `loss_type` whose loss is a sum over rows or tokens with a normalizer that does not
            depend on the micro-batch (all but `"bnpo"`), `gradient_accumulation_steps` a multiple of
            `steps_per_generation` (true by default), and no entropy mask (`top_entropy_quantile < 1`), entropy bonus
            or router auxiliary loss; otherwise it keeps TRL's row shuffle and says why. `True` groups in every case
            (with a warning when it changes the loss), `False` always keeps TRL's row shuffle.
        pack_shared_prompts (`bool`, *optional*, defaults to `True`):
            Whether the log-prob passes score the rows of a micro-batch that share a prompt (the same clip and text)
            in one packed sequence: the prompt once, then each completion as a branch that attends to the prompt and
            to itself only, at its own positions, so the language model runs over each prompt once instead of once
            per completion. Exact like the rest (log-probs and gradients equal up to rounding). Needs an attention
            implementation that takes a 4D mask (`"sdpa"` or `"eager"`; others keep one row per completion, with
            a warning), and applies with `deduplicate_vision`.
    """

    deduplicate_vision: bool = field(
        default=True,
        metadata={
            "help": "Whether to preprocess, encode and prefill each distinct clip once per group instead of once per "
            "completion. Exact: log-probs and gradients equal TRL's path up to floating-point rounding. Ignored with "
            "`use_vllm=True`."
        },
    )
    group_clips_in_micro_batches: bool | None = field(
        default=None,
        metadata={
            "help": "Whether to shuffle a generation batch into micro-batches by whole clips (keeping each clip's "
            "completions together, so the loss pass encodes it about once) instead of by rows. `None`: only when the "
            "optimizer-step gradients stay those of TRL's row shuffle (every `loss_type` but 'bnpo', "
            "`gradient_accumulation_steps` a multiple of `steps_per_generation`, no entropy mask, entropy bonus or "
            "router auxiliary loss). `True`: always. `False`: never."
        },
    )
    pack_shared_prompts: bool = field(
        default=True,
        metadata={
            "help": "Whether the log-prob passes run each prompt shared by several completions once, with the "
            "completions as branches of one packed sequence under a tree attention mask. Exact; needs 'sdpa' or "
            "'eager' attention."
        },
    )
