"""`VLMGRPOTrainer`: TRL's GRPO on multi-frame clips, doing each clip's vision work once per group.

TRL's `GRPOTrainer` repeats every prompt once per completion, so each clip is preprocessed twice per row, encoded by
the vision tower once per completion during generation and again in every log-prob pass (old policy, reference,
loss). This trainer keeps TRL's algorithm and removes that repetition exactly: see `VLMGRPOConfig.deduplicate_vision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.logging import get_logger
from torch import nn
from transformers import ProcessorMixin
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context, profiling_decorator
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, pad, split_tensor_dict

from .. import compat
from ..checkpoints import CheckpointError, CompleteCheckpoints
from ..families import FamilyAdapter, adapter_for
from .clip_video import (
    VIDEO_COLUMN,
    clip_videos,
    has_video_column,
    padded_video_inputs,
    tokenize_video_prompts,
    widen_per_token,
)
from .deduplication import memoized_image_processing
from .prompt_packing import pack_shared_prompts

logger = get_logger(__name__)
compat.check()  # the TRL/transformers internals below are all there, or one line says which is not

# Loss types whose per-micro-batch losses add up to one sum over the rows or tokens of the generation batch, with a
# normalizer that depends neither on which rows share a micro-batch nor on their token counts. Only "bnpo" divides
# by a micro-batch's own token count.
MICRO_BATCH_INDEPENDENT_LOSS_TYPES = frozenset({"grpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"})
# Each process's generation/reuse phase in a checkpoint (`VLMGRPOTrainer._save_resume_state`).
GRPO_PHASE_FILE = "grpo_phase_{}.pt"
# Attention implementations that take an arbitrary 4D mask (the packed prompts' tree mask).
TREE_MASK_ATTENTION = frozenset({"sdpa", "eager"})


def vision_sharing_fallback(args: GRPOConfig, model: nn.Module, processing_class: Any) -> str | None:
    """Why this setup must run TRL's path unchanged, or None when each clip's vision work can be shared."""
    if args.use_vllm:
        return "`use_vllm=True`: vLLM generates the completions (with its own prefix caching)"
    if not isinstance(processing_class, ProcessorMixin):
        return "the processing class is a tokenizer, so the prompts carry no images"
    if adapter_for(model) is None:
        return f"{type(model).__name__} belongs to no family adapter (`vlmrl_trl.families.ADAPTERS`)"
    return None


def prompt_packing_fallback(model: nn.Module) -> str | None:
    """Why the log-prob passes must keep one row per completion, or None when rows can share their prompt."""
    adapter = adapter_for(model)
    if adapter is not None and adapter.packing_fallback is not None:
        return f"{adapter.name}: {adapter.packing_fallback}"
    implementation = getattr(model.config.get_text_config(), "_attn_implementation", None)
    if implementation not in TREE_MASK_ATTENTION:
        return f"attention implementation {implementation!r} takes no custom 4D attention mask"
    return None


def micro_batch_dependence(args: GRPOConfig, aux_loss_enabled: bool = False) -> str | None:
    """Why an optimizer step's gradient depends on how its rows are split into micro-batches, or None when it does
    not, so that shuffling whole clips instead of rows into micro-batches changes nothing but rounding."""
    if args.loss_type not in MICRO_BATCH_INDEPENDENT_LOSS_TYPES:
        return f"`loss_type={args.loss_type!r}` normalizes each micro-batch by its own token count"
    if args.gradient_accumulation_steps % args.steps_per_generation:
        return (
            f"`steps_per_generation={args.steps_per_generation}` does not divide `gradient_accumulation_steps="
            f"{args.gradient_accumulation_steps}`, so a generation batch is split between optimizer steps"
        )
    if args.top_entropy_quantile < 1.0:
        return "`top_entropy_quantile < 1` masks tokens by an entropy quantile taken per micro-batch"
    if args.entropy_coef != 0.0 or args.use_adaptive_entropy:
        return "the entropy bonus averages entropy per micro-batch"
    if aux_loss_enabled:
        return "the router auxiliary loss is averaged per micro-batch"
    return None


def visual_inputs(adapter: FamilyAdapter, batch: dict[str, Any]) -> dict[str, Any]:
    """The visual inputs of `batch` that `adapter` knows, those that are set."""
    return {key: batch[key] for key in adapter.visual_keys if batch.get(key) is not None}


def clip_grouped_permutation(batch: dict[str, Any], adapter: FamilyAdapter) -> torch.Tensor:
    """A random order of the batch's rows that keeps each clip's rows together, clips and rows within a clip shuffled.

    Draws the one `torch.randperm` TRL's row shuffle draws (so the random stream stays TRL's), then orders the clips
    by where their first row landed and keeps the drawn order within each clip. Rows belong to the same clip when
    their prompt tokens and visual inputs are bit-identical.
    """
    columns = [batch[key] for key in ("prompt_ids", "prompt_mask")]
    _, clip = adapter.group_rows(columns, visual_inputs(adapter, batch), batch.get("num_images"))
    clip = clip.cpu()
    permutation = torch.randperm(clip.numel())
    shuffled_clip = clip[permutation]
    first_position = torch.full((int(clip.max()) + 1,), clip.numel(), dtype=torch.long)
    first_position.scatter_reduce_(0, shuffled_clip, torch.arange(clip.numel()), reduce="amin")
    return permutation[torch.sort(first_position[shuffled_clip], stable=True).indices]


def permute_rows(batch: dict[str, Any], permutation: torch.Tensor) -> dict[str, Any]:
    """The batch with every per-row value (tensors with a batch dimension, lists) in `permutation` order."""

    def permute(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[permutation.to(value.device)]
        return [value[i] for i in permutation.tolist()]

    return {key: permute(value) for key, value in batch.items()}


class VLMGRPOTrainer(CompleteCheckpoints, GRPOTrainer):
    """`GRPOTrainer` that preprocesses, encodes and prefills each distinct clip once instead of once per completion.

    Takes exactly `GRPOTrainer`'s arguments (a `VLMGRPOConfig` as `args` for the `deduplicate_vision` switch) and
    trains the same way: on fixed completions, log-probs and gradients equal TRL's up to floating-point rounding.
    Per generation batch it changes these things, each decided on content so shuffled micro-batches, gradient
    accumulation, `num_iterations > 1`, a reference model, PEFT and gradient checkpointing are all unaffected:

    - frames are preprocessed once per distinct clip (TRL: twice per row);
    - the completions of a prompt are sampled from one shared prefill, so the vision tower and the prompt's
      language-model prefill run once per distinct prompt;
    - in each log-prob pass (old policy, reference, loss) the vision tower encodes each distinct clip of a
      micro-batch once and its rows share the features, which still carry gradients to the vision tower;
    - in each log-prob pass the rows of a micro-batch that share a prompt run as one packed sequence, the prompt once
      and each completion as a branch under a tree attention mask (`VLMGRPOConfig.pack_shared_prompts`), so the
      language model also runs over each prompt once;
    - the generation batch is shuffled into micro-batches by whole clips when that leaves the optimizer-step
      gradients unchanged (`VLMGRPOConfig.group_clips_in_micro_batches`), so the loss pass encodes each clip about
      once instead of once per micro-batch its rows were scattered to.

    With `use_vllm=True`, or a model outside the Idefics2/Idefics3/SmolVLM family, it runs TRL's path and says so once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.share_vision = False
        self.group_clips = False
        self.pack_prompts = False
        self.adapter = adapter_for(self.model)
        self._video_rows: list[tuple[list[Any], float]] | None = None  # the clips of the rollout being tokenized
        self._carried_inputs: dict[str, Any] | None = None  # video inputs TRL's code does not pass along
        self.clip_video = has_video_column(self.train_dataset)
        if self.clip_video and (self.adapter is None or not self.adapter.video_keys):
            family = type(self.model).__name__ if self.adapter is None else self.adapter.name
            raise ValueError(
                f"the training rows carry their clips as video (a {VIDEO_COLUMN!r} column), but {family} models "
                "have no video path here; use clip_input=images"
            )
        if not getattr(self.args, "deduplicate_vision", True):
            logger.info("VLMGRPOTrainer: `deduplicate_vision=False`, running TRL's GRPO path.")
            return
        reason = vision_sharing_fallback(self.args, self.model, self.processing_class)
        if reason is not None:
            logger.warning(f"VLMGRPOTrainer runs TRL's GRPO path without sharing vision work: {reason}.")
            return
        self.share_vision = True
        self.adapter.share_features(self.model)
        if self.ref_model is not None:
            self.adapter.share_features(self.ref_model)
        self.group_clips = self._decide_clip_grouping()
        if getattr(self.args, "pack_shared_prompts", True):
            reason = prompt_packing_fallback(self.model)
            if reason is None:
                self.pack_prompts = True
            else:
                logger.warning(f"VLMGRPOTrainer scores each completion with its own copy of the prompt: {reason}.")

    def _micro_batch_dependence(self) -> str | None:
        """Why this trainer's gradient depends on how rows are split into micro-batches, or None (subclasses with
        losses of their own add theirs)."""
        return micro_batch_dependence(self.args, self.aux_loss_enabled)

    def _decide_clip_grouping(self) -> bool:
        """Whether to shuffle generation batches into micro-batches by clip (`group_clips_in_micro_batches`)."""
        setting = getattr(self.args, "group_clips_in_micro_batches", None)
        if setting is False:
            return False
        dependence = self._micro_batch_dependence()
        if dependence is None:
            return True
        if setting is None:
            logger.info(f"VLMGRPOTrainer keeps TRL's row shuffle: {dependence}, so grouping clips would change it.")
            return False
        logger.warning(
            "VLMGRPOTrainer groups clips into micro-batches (`group_clips_in_micro_batches=True`) although "
            f"{dependence}: gradients differ from TRL's row shuffle beyond rounding."
        )
        return True

    def _prepare_inputs(self, generation_batch: dict[str, Any]) -> dict[str, Any]:
        """TRL's buffering of a generation batch into micro-batches, shuffled by clip when `group_clips` is set (and
        split by the family adapter when rows carry video, whose inputs TRL's split does not know)."""
        if not ((self.group_clips or self.clip_video) and self.model.training):
            return super()._prepare_inputs(generation_batch)
        if self._step % (self.args.steps_per_generation * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            if self.group_clips:
                permutation = clip_grouped_permutation(batch, self.adapter)
            else:  # TRL's row shuffle (`shuffle_sequence_dict`), the same draw
                permutation = torch.randperm(batch["prompt_ids"].size(0))
            visual = visual_inputs(self.adapter, batch)
            batch = {**batch, **self.adapter.split_rows(visual, batch.get("num_images"))}
            chunks = split_tensor_dict(permute_rows(batch, permutation), self.args.steps_per_generation)
            self._buffered_inputs = [
                {**chunk, **self.adapter.merge_rows(visual_inputs(self.adapter, chunk))} for chunk in chunks
            ]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def _save_resume_state(self, folder: Path) -> None:
        """Save the generation/reuse phase (`_step`) and the buffered generation batch it reuses, per process, so
        that a resume mid-phase (`num_iterations > 1`, `steps_per_generation > 1`) goes on exactly; at a phase
        boundary the batch is generated afresh anyway, so it is left out."""
        mid_phase = self._step % (self.args.steps_per_generation * self.num_iterations) != 0
        phase = {"step": self._step, "buffered_inputs": self._buffered_inputs if mid_phase else None}
        torch.save(phase, folder / GRPO_PHASE_FILE.format(self.accelerator.process_index))

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        """TRL's sampler, kept so that a resume can put its shuffle at the resumed epoch (`_load_resume_state`)."""
        self._train_sampler = super()._get_train_sampler(dataset)
        return self._train_sampler

    def _load_resume_state(self, checkpoint: str) -> None:
        """Restore what `_save_resume_state` saved; a missing file is an error only when the checkpoint fell
        mid-phase (where regenerating would change the run). TRL's sampler draws one permutation per epoch from a
        generator no checkpoint holds, so the draws of the epochs before the resumed one are replayed."""
        sampler = getattr(self, "_train_sampler", None)
        if isinstance(sampler, RepeatSampler) and sampler.shuffle and sampler.seed is not None:
            sampler.generator.manual_seed(sampler.seed)
            for _ in range(int(self.state.epoch or 0)):
                torch.randperm(sampler.num_samples, generator=sampler.generator)
        file = Path(checkpoint) / GRPO_PHASE_FILE.format(self.accelerator.process_index)
        if not file.is_file():
            generate_every = self.args.steps_per_generation * self.num_iterations
            if self.state.global_step * self.args.gradient_accumulation_steps % generate_every:
                raise CheckpointError(f"{file}: missing, and the checkpoint reuses a buffered generation batch")
            return
        phase = torch.load(file, map_location=self.accelerator.device, weights_only=True)
        self._step, self._buffered_inputs = phase["step"], phase["buffered_inputs"]

    def _packs_prompts(self, compute_aux_loss: bool, inputs: dict[str, Any]) -> bool:
        """Whether this log-prob pass can score the completions of a shared prompt in one packed sequence."""
        if not self.pack_prompts or compute_aux_loss:
            return False
        known = self.adapter.visual_keys | {"num_images"}
        return all(value is None for key, value in inputs.items() if key not in known)

    def _get_per_token_logps_and_entropies(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **inputs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's log-prob pass, in which the rows of a chunk that share their prompt and frames run as one packed
        sequence (`prompt_packing`): the prompt goes through the model once, whatever the number of completions."""
        inputs = self._with_carried_inputs(inputs)
        video = self._has_video(inputs)
        if not self._packs_prompts(compute_aux_loss, inputs):
            args = (model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss)
            if video:
                return self._rowwise_logps_and_entropies(*args, inputs)
            return super()._get_per_token_logps_and_entropies(*args, **inputs)
        num_images = inputs.get("num_images")
        visual = {key: value for key, value in inputs.items() if key != "num_images" and value is not None}
        batch_size = batch_size or input_ids.size(0)
        prompt_width = input_ids.size(1) - logits_to_keep
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            rows = list(range(start, min(start + batch_size, input_ids.size(0))))
            chunk_images = None if num_images is None else [num_images[row] for row in rows]
            chunk = self.adapter.select_rows(visual, num_images, rows)
            chunk_ids, chunk_mask = input_ids[rows], attention_mask[rows]
            first, inverse = self.adapter.group_rows(
                [chunk_ids[:, :prompt_width], chunk_mask[:, :prompt_width]], chunk, chunk_images
            )
            ends_with_image = bool((chunk_ids[:, prompt_width - 1] == self.model.config.image_token_id).any())
            one_row_each = first.numel() == inverse.numel() or ends_with_image
            if one_row_each and video:
                chunk_logps, chunk_entropies, _ = self._rowwise_logps_and_entropies(
                    model, chunk_ids, chunk_mask, logits_to_keep, None, compute_entropy, False, chunk
                )
            elif one_row_each:
                chunk_logps, chunk_entropies, _ = super()._get_per_token_logps_and_entropies(
                    model,
                    chunk_ids,
                    chunk_mask,
                    logits_to_keep,
                    compute_entropy=compute_entropy,
                    num_images=chunk_images,
                    **chunk,
                )
            else:
                chunk_logps, chunk_entropies = self._packed_logps_and_entropies(
                    model, chunk_ids, chunk_mask, logits_to_keep, first, inverse, chunk, chunk_images, compute_entropy
                )
            logps.append(chunk_logps)
            entropies.append(chunk_entropies)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    def _with_carried_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` plus the video inputs of the batch being scored, when TRL's caller could not pass them."""
        carried = self._carried_inputs
        if not carried or any(inputs.get(key) is not None for key in self.adapter.video_keys):
            return inputs
        return {**inputs, **carried}

    def _has_video(self, inputs: dict[str, Any]) -> bool:
        """Whether a log-prob pass's inputs hold video, which TRL's own pass cannot take."""
        return self.adapter is not None and any(inputs.get(key) is not None for key in self.adapter.video_keys)

    def _rowwise_logps_and_entropies(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None,
        compute_entropy: bool,
        compute_aux_loss: bool,
        inputs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's chunked log-prob pass (`GRPOTrainer._get_per_token_logps_and_entropies`, one row per completion)
        for visual inputs its signature does not take (video)."""
        num_images = inputs.get("num_images")
        visual = {key: value for key, value in inputs.items() if key != "num_images" and value is not None}
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux_losses = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            rows = list(range(start, min(start + batch_size, input_ids.size(0))))
            chunk_ids, chunk_mask = input_ids[rows], attention_mask[rows]
            labels = chunk_ids.masked_fill(chunk_mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            chunk = widen_per_token(self.adapter.select_rows(visual, num_images, rows), chunk_ids.size(1))
            if compute_aux_loss:
                chunk["output_router_logits"] = True
            with self.accelerator.autocast():
                outputs = model(
                    input_ids=chunk_ids, attention_mask=chunk_mask, labels=labels, fused_lm_head=True, **chunk
                )
            logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                aux_losses.append(outputs.aux_loss)
        return (
            torch.cat(logps),
            torch.cat(entropies) if compute_entropy else None,
            torch.stack(aux_losses).mean() if compute_aux_loss else None,
        )

    @profiling_decorator
    def _packed_logps_and_entropies(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        first: torch.Tensor,
        inverse: torch.Tensor,
        visual: dict[str, Any],
        num_images: list[int] | None,
        compute_entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Completion log-probs and entropies of rows grouped by prompt, from one forward of the packed prompts."""
        packed = pack_shared_prompts(
            input_ids,
            attention_mask,
            logits_to_keep,
            first,
            inverse,
            self._tokenizer.pad_token_id,
            position_ids=self.adapter.position_ids(model, input_ids, attention_mask, visual),
        )
        packed_visual = self.adapter.select_rows(visual, num_images, packed.first.tolist())
        mask = self.adapter.packed_attention_mask(model, packed, packed_visual)
        if self.model.config.get_text_config()._attn_implementation == "eager":
            dtype = next(self.model.parameters()).dtype

            def additive(allowed: torch.Tensor) -> torch.Tensor:
                blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
                return blocked.masked_fill(~allowed, torch.finfo(dtype).min)

            mask = {key: additive(m) for key, m in mask.items()} if isinstance(mask, dict) else additive(mask)
        with self.accelerator.autocast():
            outputs = model(
                input_ids=packed.input_ids,
                attention_mask=mask,
                position_ids=packed.position_ids,
                shift_labels=packed.shift_labels,
                fused_lm_head=True,
                **self.adapter.packed_inputs(packed_visual),
            )
        return packed.unpack(outputs.log_probs), packed.unpack(outputs.entropy) if compute_entropy else None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's rollout, with the processor preprocessing each distinct clip of the batch once; rows that carry their
        clip as video are tokenized with the processor's video path and keep their video inputs in the output."""
        self._video_rows = clip_videos(inputs)
        try:
            if not self.share_vision:
                output = super()._generate_and_score_completions(inputs)
            else:
                with memoized_image_processing(self.processing_class, self.adapter.select_rows):
                    output = super()._generate_and_score_completions(inputs)
            if self._carried_inputs is not None:
                width = output["prompt_ids"].size(1) + output["completion_ids"].size(1)
                output.update(widen_per_token(self._carried_inputs, width))
            return output
        finally:
            self._video_rows = self._carried_inputs = None

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], list | None, dict[str, Any]]:
        """TRL's prompt tokenization, or for rows that carry video, the processor's video path (TRL has none); the
        video inputs are kept for the rollout's log-prob passes, which TRL's code calls without them."""
        if self._video_rows is None:
            return super()._tokenize_prompts(prompts)
        texts = [
            self.processing_class.apply_chat_template(
                prompt,
                chat_template=self.chat_template,
                add_generation_prompt=True,
                tokenize=False,
                **self.chat_template_kwargs,
            )
            for prompt in prompts
        ]
        prompt_ids, fields = tokenize_video_prompts(
            self.processing_class, self.adapter, texts, self._video_rows, share=self.share_vision
        )
        self._carried_inputs = self._prepare_input(padded_video_inputs(fields, self.pad_to_multiple_of))
        return prompt_ids, None, fields

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL's loss; a micro-batch's video inputs reach the log-prob pass, which TRL calls with image inputs only."""
        if not self._has_video(inputs):
            return super()._compute_loss(model, inputs)
        self._carried_inputs = {key: inputs[key] for key in self.adapter.visual_keys if inputs.get(key) is not None}
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._carried_inputs = None

    def _shares_prefill(self, multimodal_fields: dict[str, Any], has_tool_images: bool) -> bool:
        """Whether generation can start from a shared prefill: transformers' sampling with a dynamic cache, one
        sequence per row, and visual inputs the family adapter lays out. Decided by settings only, the same on every
        process. An unset (None) generation setting means transformers' default: a cache, one beam, one sequence."""
        config = self.generation_config
        return (
            self.share_vision
            and self.adapter.prefill_fallback is None
            and not self.use_transformers_continuous_batching
            and not has_tool_images
            and config.cache_implementation in (None, "dynamic")
            and config.use_cache is not False
            and config.num_beams in (None, 1)
            and config.num_return_sequences in (None, 1)
            and multimodal_fields.keys() <= self.adapter.visual_keys
        )

    def _generate_single_turn(
        self,
        prompt_ids: list[list[int]],
        images: list | None,
        multimodal_fields: dict[str, Any],
        num_generations: int,
        has_tool_images: bool = False,
    ) -> tuple[list[list[int]], list | None]:
        """Sample every row's completion from one prefill per distinct prompt (TRL's path when it can't share)."""
        if not self._shares_prefill(multimodal_fields, has_tool_images):
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if min(len(ids) for ids in prompt_ids) < 2:
            raise ValueError(
                "VLMGRPOTrainer shares a prefill of all but the last prompt token, so every prompt needs at least 2 "
                "tokens; set `deduplicate_vision=False` to generate from one-token prompts."
            )

        rows = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(
            rows,
            padding_value=self._tokenizer.pad_token_id,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        attention_mask = pad(
            [torch.ones_like(row) for row in rows],
            padding_value=0,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        if bool((input_ids[:, -1] == self.model.config.image_token_id).any()):
            raise ValueError(
                "A prompt ends with an image token, which the shared prefill would leave without its features; end "
                "prompts with text (`add_generation_prompt`) or set `deduplicate_vision=False`."
            )
        # Per-token fields come as one list per prompt: left-pad them like the prompts, as TRL does.
        fields = {
            key: value
            if isinstance(value, torch.Tensor)
            else pad(
                [torch.tensor(row) for row in value],
                padding_value=0,
                padding_side="left",
                pad_to_multiple_of=self.pad_to_multiple_of,
            )
            for key, value in multimodal_fields.items()
        }
        num_images = None if images is None else [len(row) if row else 0 for row in images]
        # Every process takes this path whatever its rows hold (even all distinct), so processes that gather
        # parameters per forward (ZeRO-3) run the same forwards.
        first, inverse = self.adapter.group_rows([input_ids, attention_mask], fields, num_images)

        # The shared prefill covers every prompt token but the last; `generate` then feeds the last one, so
        # sampling, logits processors and stopping are exactly transformers' own.
        prefill_inputs = self._prepare_input(
            self.adapter.prefill_inputs(
                input_ids[first, :-1],
                attention_mask[first, :-1],
                self.adapter.select_rows(fields, num_images, first.tolist()),
            )
        )
        generate_inputs = self._prepare_input({"input_ids": input_ids, "attention_mask": attention_mask})
        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            prefix_cache = unwrapped_model(**prefill_inputs, use_cache=True, logits_to_keep=1).past_key_values
            if first.numel() < inverse.numel():
                prefix_cache.reorder_cache(inverse.to(self.accelerator.device))
            self.adapter.after_prefill(unwrapped_model, inverse)
            sequences = unwrapped_model.generate(
                **generate_inputs, past_key_values=prefix_cache, generation_config=self.generation_config
            )

        # Each completion ends at (and keeps) its first end-of-sequence token.
        completions = sequences[:, input_ids.size(1) :].cpu()
        is_eos = torch.isin(completions, torch.tensor(self.eos_token_ids))
        lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, completions.size(1))
        return [row[:length].tolist() for row, length in zip(completions, lengths.tolist(), strict=True)], None
