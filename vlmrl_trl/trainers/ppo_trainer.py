"""`VLMPPOTrainer`: actor-critic RL (PPO) on a VLM, the critic an MLP head on the policy's own body.

The VLM is the actor; the critic V(s_t) = MLP(h_t) reads the last hidden state h_t of the same forward pass that
computes the policy's log-probabilities (see :mod:`.value_head`), so it costs no extra pass of the body. Built on
`VLMGRPOTrainer`, it keeps its multi-frame prompts, shared vision work, generation and clipped policy loss, and
replaces GRPO's group-relative advantages with per-token GAE over a per-token reward: the weighted reward functions
at the last token, the dense CLIP increments R1(I, T_{k+1}) - R1(I, T_k) when enabled, and optionally the KL penalty
to the reference policy.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from safetensors.torch import load_file
from torch import nn
from trl.models.utils import disable_gradient_checkpointing

from ..checkpoints import CheckpointError
from ..rewards.base import DenseReward
from .advantages import (
    clipped_value_loss,
    compute_gae,
    explained_variance,
    masked_mean,
    masked_var,
    masked_whiten,
    token_rewards,
)
from .grpo_trainer import VLMGRPOTrainer
from .ppo_config import VLMPPOConfig
from .value_head import (
    VALUE_HEAD_FILE,
    ValueHead,
    attach_value_head,
    save_value_head,
    split_value_head_state,
)

logger = logging.getLogger(__name__)

# The batch fields `GRPOTrainer._compute_loss` hands to the policy forward besides the token ids.
_MULTIMODAL_FIELDS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


class VLMPPOTrainer(VLMGRPOTrainer):
    """PPO for VLMs with a value head on the shared body, GAE and per-token (dense CLIP) rewards.

    Takes `VLMGRPOTrainer`'s (so `trl.GRPOTrainer`'s) arguments with a [`VLMPPOConfig`] as `args`. Per generation
    batch it samples completions (`num_generations=1` is allowed), scores them with the reward functions, reads the
    critic's values from the rollout's policy forward, and forms per-token advantages by GAE(gamma, lambda), whitened;
    the returns (advantages + values) are the critic's targets. The loss is the parent's clipped policy loss plus
    `vf_coef` times the clipped value loss; the first `critic_warmup_steps` train the critic only.

    The value head is a submodule (`value_head`) of the policy model, so it is in the optimizer, stays trainable
    under LoRA, and is synchronised by DDP and sharded by DeepSpeed like the model. Every save writes it to
    `value_head.safetensors` beside the model (never inside the model's own weights); resuming restores it, and
    `VLMPPOConfig.value_head_path` (or a model directory holding the file) starts from a saved one.
    """

    _tag_names = ["trl", "ppo", "vlmrl-trl"]
    _name = "PPO"
    _paper = {
        "title": "Proximal Policy Optimization Algorithms",
        "id": "1707.06347",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{schulman2017proximal,
                title        = {{Proximal Policy Optimization Algorithms}},
                author       = {John Schulman and Filip Wolski and Prafulla Dhariwal and Alec Radford and Oleg Klimov},
                year         = 2017,
                eprint       = {arXiv:1707.06347},
            }"""),
    }

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: VLMPPOConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = VLMPPOConfig(f"{Path(str(name)).name or 'model'}-PPO")
        if not isinstance(args, VLMPPOConfig):
            raise TypeError(f"VLMPPOTrainer needs a VLMPPOConfig as `args`, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)

        self._dense_reward_index = self._find_dense_reward() if args.dense_clip_reward else None
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        self._value_head = self._build_value_head(policy, model if isinstance(model, str) else None)
        self._value_tap = attach_value_head(policy, self._value_head)
        if self.optimizer is not None and not _optimizes(self.optimizer, self._value_head):
            raise ValueError(
                "the optimizer passed in `optimizers` does not hold the value head's parameters; let VLMPPOTrainer "
                "create the optimizer, or build it after the trainer from `trainer.model.parameters()`"
            )
        self._collect_values = False
        self._detach_critic_input = False
        self._collected_values: torch.Tensor | None = None
        self._rollout_rewards_per_func: torch.Tensor | None = None
        self._rollout_dense_rewards: list[list[float]] | None = None

    # ---- construction -------------------------------------------------------------------------------------------

    def _find_dense_reward(self) -> int:
        """Index of the first reward with per-token rewards (`DenseReward`, e.g. CLIP alignment) that
        `dense_clip_reward` pays per token."""
        for i, func in enumerate(self.reward_funcs):
            if isinstance(func, DenseReward):
                return i
        raise ValueError(
            "dense_clip_reward=True needs the clip_alignment reward, or another with a per_token_rewards method "
            f"(vlmrl_trl.rewards.DenseReward), among the reward functions; got {self.reward_func_names}"
        )

    def _build_value_head(self, policy: nn.Module, model_path: str | None) -> ValueHead:
        """A fresh value head sized to the language model, or the saved one `value_head_path` (or the model
        directory) points to."""
        hidden_size = policy.config.get_text_config().hidden_size
        source = self.args.value_head_path
        if source is None:
            model_dir = Path(model_path or policy.config._name_or_path or ".")
            if (model_dir / VALUE_HEAD_FILE).is_file():
                source = str(model_dir)
        if source is not None:
            head = ValueHead.from_pretrained(source)
            if head.hidden_size != hidden_size:
                raise ValueError(
                    f"the value head at {source} reads hidden states of size {head.hidden_size}, but the model's are "
                    f"{hidden_size}"
                )
            asked = (self.args.value_head_hidden_size or hidden_size, self.args.value_head_num_layers)
            if asked != (head.width, head.num_layers):
                logger.warning(
                    "VLMPPOTrainer: the value head restored from %s has width %d and %d layers; "
                    "value_head_hidden_size/value_head_num_layers (%d, %d) apply to fresh heads only",
                    source, head.width, head.num_layers, *asked,
                )  # fmt: skip
            else:
                logger.info("VLMPPOTrainer: value head restored from %s", source)
        else:
            head = ValueHead(hidden_size, self.args.value_head_hidden_size, self.args.value_head_num_layers)
        return head.to(next(policy.parameters()).device)

    # ---- forward passes -----------------------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(
        self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The parent's log-prob pass; when values were requested for this pass, the value head also reads its
        hidden states and the completion positions' values are kept in `_collected_values`."""
        if not self._collect_values:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, **kwargs
            )
        self._collect_values = False  # only this pass: the next one may be the reference policy's
        with self._value_tap.collect(detach_hidden=self._detach_critic_input) as chunks:
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, **kwargs
            )
        if not chunks:
            raise RuntimeError("the value head saw no policy forward pass; was the model's forward replaced?")
        self._collected_values = torch.cat(chunks)[:, -logits_to_keep:]
        return result

    def _packs_prompts(self, compute_aux_loss: bool, inputs: dict[str, Any]) -> bool:
        """Not while the value head collects: it reads the hidden states in the rows' layout."""
        return self._value_tap.values is None and super()._packs_prompts(compute_aux_loss, inputs)

    def _take_values(self) -> torch.Tensor:
        values, self._collected_values = self._collected_values, None
        if values is None:
            raise RuntimeError("no values were collected from the policy forward pass")
        return values

    def _rollout_computes_old_logps(self) -> bool:
        """Whether `GRPOTrainer._generate_and_score_completions` runs the old-policy log-prob pass (it does when the
        batch is reused across optimizer steps, or for vLLM's importance sampling); that pass comes first."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self.args.gradient_accumulation_steps % generate_every != 0 or (
            self.use_vllm and self.vllm_importance_sampling_correction
        )

    def _rollout_policy_pass(self, batch: dict[str, Any], batch_size: int) -> torch.Tensor:
        """Old-policy log-probs of a rollout batch, collecting the values from the same (no-grad) forward."""
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        video_keys = self.adapter.video_keys if self.adapter is not None else frozenset()
        fields = {key: batch[key] for key in (*_MULTIMODAL_FIELDS, *video_keys) if key in batch}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            self._collect_values = True
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, batch["completion_ids"].size(1), batch_size=batch_size, **fields
            )
        return logps

    # ---- rollout: rewards, values, GAE --------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """The parent's per-function rewards (all processes), kept for the per-token rewards together with the
        per-token rewards of this process's completions (the dense CLIP increments by default)."""
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rollout_rewards_per_func = rewards_per_func
        if self._dense_reward_index is not None:
            func = self.reward_funcs[self._dense_reward_index]
            self._rollout_dense_rewards = func.per_token_rewards(
                inputs, completion_ids_list, self._tokenizer, every_k=self.args.dense_reward_every_k
            )
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The parent's rollout, with per-token advantages by GAE and the critic's values and returns added."""
        mode = "train" if self.model.training else "eval"
        self._collect_values = self._rollout_computes_old_logps()
        try:
            batch = super()._generate_and_score_completions(inputs)
        finally:
            self._collect_values = False
        self._metrics[mode].pop("frac_reward_zero_std", None)  # GRPO's group statistic: PPO forms no groups
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        old_logps = batch.get("old_per_token_logps")
        if self._collected_values is None:
            old_logps = self._rollout_policy_pass(batch, batch_size)
        values = self._take_values()

        device = values.device
        mask = batch["completion_mask"] if "tool_mask" not in batch else batch["completion_mask"] * batch["tool_mask"]
        mask = mask.to(values.dtype)
        num_rows = mask.size(0)
        rows = slice(self.accelerator.process_index * num_rows, (self.accelerator.process_index + 1) * num_rows)
        rewards_per_func, self._rollout_rewards_per_func = self._rollout_rewards_per_func[rows], None
        weights = self.reward_weights.to(device)

        dense = None
        if self._dense_reward_index is not None:
            weights = weights.clone()
            dense_weight = float(weights[self._dense_reward_index])
            weights[self._dense_reward_index] = 0.0  # paid per token below instead of at the end
            dense = torch.zeros_like(mask)
            for i, row in enumerate(self._rollout_dense_rewards):
                dense[i, : len(row)] = torch.tensor(row, dtype=dense.dtype, device=device)
            dense = dense_weight * dense
            self._rollout_dense_rewards = None
        terminal = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)

        kl = None
        if self.beta != 0.0 and self.args.kl_in_reward:
            kl = (old_logps - batch["ref_per_token_logps"]) * mask
        rewards = token_rewards(terminal, mask, dense=dense, kl=kl, kl_coef=self.beta)
        advantages, returns = compute_gae(rewards, values, mask, self.args.gamma, self.args.lam)
        raw_advantages = advantages
        if self.args.whiten_advantages:
            advantages = masked_whiten(advantages, mask, reduce=self._sum_over_processes)

        batch["advantages"] = advantages
        batch["old_values"] = values
        batch["returns"] = returns
        self._log_rollout(mode, mask, values, returns, raw_advantages, advantages, terminal, dense, kl)
        return batch

    def _sum_over_processes(self, stats: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(stats, reduction="sum")

    def _log_rollout(
        self,
        mode: str,
        mask: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
        raw_advantages: torch.Tensor,
        advantages: torch.Tensor,
        terminal: torch.Tensor,
        dense: torch.Tensor | None,
        kl: torch.Tensor | None,
    ) -> None:
        """Critic and reward metrics of a rollout, over all processes; the completions table gets each
        completion's mean advantage in place of GRPO's group advantage."""
        reduce = self._sum_over_processes
        metrics = self._metrics[mode]
        metrics["value/mean"].append(masked_mean(values, mask, reduce).item())
        metrics["value/explained_variance"].append(explained_variance(values, returns, mask, reduce))
        metrics["returns/mean"].append(masked_mean(returns, mask, reduce).item())
        metrics["advantages/mean"].append(masked_mean(raw_advantages, mask, reduce).item())
        metrics["advantages/std"].append(masked_var(raw_advantages, mask, reduce).sqrt().item())
        metrics["rewards/terminal/mean"].append(self.accelerator.gather(terminal).mean().item())
        if dense is not None:
            metrics["rewards/dense_clip/mean"].append(self.accelerator.gather((dense * mask).sum(1)).mean().item())
        if kl is not None:
            metrics["kl"].append(masked_mean(kl, mask, reduce).item())
            metrics["rewards/kl_penalty/mean"].append(self.accelerator.gather(self.beta * kl.sum(1)).mean().item())

        per_completion = self.accelerator.gather((advantages * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        logged = self._logs["advantages"]
        for _ in range(min(per_completion.numel(), len(logged))):
            logged.pop()
        logged.extend(per_completion.tolist())

    # ---- loss ---------------------------------------------------------------------------------------------------

    def _micro_batch_dependence(self) -> str | None:
        """The parent's reasons, plus the value loss: a token mean within each micro-batch. With one completion per
        clip grouping by clip is TRL's row shuffle itself, so only several completions per clip depend on it."""
        if self.num_generations > 1:
            return "the value loss averages over each micro-batch's own tokens"
        return super()._micro_batch_dependence()

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The parent's clipped policy loss on the per-token advantages plus `vf_coef` times the clipped value loss;
        critic only (no policy loss, body detached from the value loss) during the warm-up steps."""
        mode = "train" if self.model.training else "eval"
        warmup = mode == "train" and self.state.global_step < self.args.critic_warmup_steps
        beta = self.beta
        if self.args.kl_in_reward:
            self.beta = 0.0  # the KL penalty is already in the rewards
        self._collect_values, self._detach_critic_input = True, warmup
        try:
            policy_loss = super()._compute_loss(model, inputs)
        finally:
            self.beta = beta
            self._collect_values, self._detach_critic_input = False, False
        values = self._take_values()

        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        mask = mask.to(values.dtype)
        per_token, clipped = clipped_value_loss(
            values, inputs["old_values"], inputs["returns"], self.args.cliprange_value
        )
        value_loss = masked_mean(per_token, mask)
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        # Scaled by 0, not dropped, so every policy parameter still takes part in the backward (DDP, ZeRO).
        loss = (0.0 if warmup else 1.0) * policy_loss + self.args.vf_coef * value_loss / normalizer

        reduce = self._sum_over_processes
        metrics = self._metrics[mode]
        metrics["value/loss"].append(masked_mean(per_token.detach(), mask, reduce).item())
        metrics["value/clip_frac"].append(masked_mean(clipped.to(mask.dtype), mask, reduce).item())
        metrics["value/pred_mean"].append(masked_mean(values.detach(), mask, reduce).item())
        if mode == "train":
            metrics["critic_warmup"].append(float(warmup))
        return loss

    # ---- checkpoints --------------------------------------------------------------------------------------------

    def _zero3(self) -> bool:
        """Whether DeepSpeed ZeRO-3 partitions the parameters (the value head's included) across the ranks."""
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        return plugin is not None and plugin.zero_stage == 3

    @contextmanager
    def _full_value_head(self) -> Iterator[None]:
        """Gather the value head's parameters where DeepSpeed ZeRO-3 partitions them (a collective: every rank)."""
        if not self._zero3():
            yield
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self._value_head.parameters())):
            yield

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model as the parent does, but with the value head in its own `value_head.safetensors`."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        head_state: dict[str, torch.Tensor] = {}
        if state_dict:  # a gathered full state dict (DeepSpeed, FSDP): the head's entries move to their own file
            head_state, state_dict = split_value_head_state(state_dict)
        # Under ZeRO-3 the gather below is a collective, so only the path every rank takes may use it: the dummy `{}`
        # of a save without 16-bit gathering. With it, rank 0 gets the full state dict above and the others `None`.
        if not head_state and not (self._zero3() and state_dict is None):
            with self._full_value_head():
                head_state = {
                    key: value.detach().cpu().clone() for key, value in self._value_head.state_dict().items()
                }
        policy = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if state_dict is None and self.args.should_save and not is_peft_model(policy):
            _, state_dict = split_value_head_state(policy.state_dict())
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_value_head(self._value_head.config, head_state, output_dir)

    def _load_value_head_from(self, checkpoint_dir: str) -> None:
        file = Path(checkpoint_dir) / VALUE_HEAD_FILE
        if not file.is_file():
            raise CheckpointError(f"{file}: missing, so the critic cannot resume (a fresh head would train silently)")
        self._value_head.load_state_dict(load_file(str(file), device="cpu"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Restore the model as the parent does, then the value head from the checkpoint's own file."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_value_head_from(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        """Restore the best model as the parent does, and its value head (DeepSpeed's checkpoint already holds it)."""
        super()._load_best_model()
        if not self.is_deepspeed_enabled:
            self._load_value_head_from(self.state.best_model_checkpoint)


def _optimizes(optimizer: torch.optim.Optimizer, module: nn.Module) -> bool:
    """Whether every parameter of ``module`` is in one of ``optimizer``'s parameter groups."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return all(id(p) in held for p in module.parameters())
