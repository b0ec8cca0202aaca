"""Every TRL and transformers internal our trainers and family adapters override or read, in one list, checked.

Our trainers subclass `trl.GRPOTrainer` and call its private methods; the family adapters wrap transformers'
`get_image_features` and read Qwen's M-RoPE bookkeeping. None of that is public API, so each internal is listed
here with the version and source line it mirrors, and `check()` (run when `vlmrl_trl.trainers` loads a trainer)
verifies that the installed TRL and transformers still have it with the parameters we pass. A mismatch fails at
once with one line naming the internal and the supported range, instead of a wrong result deep inside training.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass

SUPPORTED = "trl >=1.16,<1.17 and transformers >=5,<6"


@dataclass(frozen=True)
class Internal:
    """One internal: `owner.name` (a class attribute or module function) and the parameters we rely on."""

    owner: str  # "module:Class" or "module"
    name: str
    parameters: tuple[str, ...]  # the names we pass or override with, in any order (self excluded)
    source: str  # what it mirrors: library version and file:line
    use: str  # what we do with it


TRL_GRPO = "trl.trainer.grpo_trainer:GRPOTrainer"
GRPO_FILE = "TRL 1.16.0 trl/trainer/grpo_trainer.py"
TRAINER = "transformers.trainer:Trainer"
TRAINER_FILE = "transformers 5.23.0 transformers/trainer.py"

INTERNALS: tuple[Internal, ...] = (
    Internal(
        TRL_GRPO,
        "_generate_single_turn",
        ("prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"),
        f"{GRPO_FILE}:1763",
        "overridden: one shared prefill per distinct prompt, TRL's path otherwise",
    ),
    Internal(
        TRL_GRPO,
        "_get_per_token_logps_and_entropies",
        (
            "model",
            "input_ids",
            "attention_mask",
            "logits_to_keep",
            "batch_size",
            "compute_entropy",
            "compute_aux_loss",
            "pixel_values",
            "image_grid_thw",
            "num_images",
            "pixel_attention_mask",
            "image_sizes",
            "token_type_ids",
            "mm_token_type_ids",
        ),
        f"{GRPO_FILE}:1419",
        "overridden: packed prompts; its chunking of per-row visual inputs is what the family adapters reproduce",
    ),
    Internal(
        TRL_GRPO,
        "_tokenize_prompts",
        ("prompts",),
        f"{GRPO_FILE}:1684",
        "overridden for rows that carry their clip as video: returns (prompt_ids, images, multimodal_fields) as TRL's",
    ),
    Internal(
        TRL_GRPO,
        "_prepare_inputs",
        ("generation_batch",),
        f"{GRPO_FILE}:1522",
        "overridden: clip-grouped shuffle; mirrors its `_step`/`_buffered_inputs` buffering and generate_every rule",
    ),
    Internal(
        TRL_GRPO,
        "_generate_and_score_completions",
        ("inputs",),
        f"{GRPO_FILE}:2324",
        "wrapped: memoized preprocessing (GRPO); PPO adds values, GAE and dense rewards",
    ),
    Internal(
        TRL_GRPO,
        "_calculate_rewards",
        ("inputs", "prompts", "completions", "completion_ids_list"),
        f"{GRPO_FILE}:1579",
        "wrapped by PPO to keep each reward's per-function scores",
    ),
    Internal(TRL_GRPO, "_compute_loss", ("model", "inputs"), f"{GRPO_FILE}:3020", "PPO adds the value loss"),
    Internal(
        "trl.trainer.utils",
        "pad",
        ("tensors", "padding_value", "padding_side", "pad_to_multiple_of"),
        "TRL 1.16.0 trl/trainer/utils.py",
        "left-pads prompts exactly as TRL's generation does",
    ),
    Internal(
        "trl.trainer.utils",
        "split_tensor_dict",
        ("tensor_dict", "num_chunks"),
        "TRL 1.16.0 trl/trainer/utils.py:1057",
        "splits a clip-grouped generation batch into micro-batches",
    ),
    Internal(
        "trl.trainer.utils",
        "FusedCausalLMOutput",
        ("log_probs", "entropy"),
        "TRL 1.16.0 trl/trainer/utils.py:1510",
        "subclassed by the value head's output; its per-token fields align with the hidden states the critic reads",
    ),
    Internal(
        "trl.extras.profiling",
        "profiling_context",
        ("trainer", "name"),
        "TRL 1.16.0 trl/extras/profiling.py:134",
        "times the shared prefill and generation under TRL's profiling names",
    ),
    Internal(
        "trl.models",
        "unwrap_model_for_generation",
        ("model", "accelerator", "gather_deepspeed3_params", "generation_kwargs", "gradient_checkpointing_kwargs"),
        "TRL 1.16.0 trl/models/utils.py",
        "the generation context of the shared prefill, as in `_generate_single_turn`",
    ),
    Internal(
        "trl.models.utils",
        "disable_gradient_checkpointing",
        ("model",),
        "TRL 1.16.0 trl/models/utils.py",
        "PPO's critic pass",
    ),
    Internal(TRAINER, "_save", ("output_dir", "state_dict"), f"{TRAINER_FILE}:4131", "PPO saves the value head"),
    Internal(
        TRAINER,
        "_load_from_checkpoint",
        ("resume_from_checkpoint", "model"),
        f"{TRAINER_FILE}:3602",
        "PPO restores the value head",
    ),
    Internal(TRAINER, "_load_best_model", (), f"{TRAINER_FILE}:3735", "PPO restores the best value head"),
    Internal(
        TRAINER,
        "_save_checkpoint",
        ("model", "trial"),
        f"{TRAINER_FILE}:3355",
        "wrapped (`checkpoints.CompleteCheckpoints`): resume state, manifest, then our rotation",
    ),
    Internal(
        TRL_GRPO,
        "_get_train_sampler",
        ("dataset",),
        f"{GRPO_FILE}:1280",
        "wrapped: the sampler is kept so that a resume replays its shuffles of the epochs before",
    ),
    Internal(
        TRAINER,
        "get_batch_samples",
        ("epoch_iterator", "num_batches", "device"),
        f"{TRAINER_FILE}:2281",
        "wrapped: no batch once max_steps is reached (a run resumed from its last checkpoint trains no extra step)",
    ),
    Internal(
        TRAINER,
        "_load_optimizer_and_scheduler",
        ("checkpoint",),
        f"{TRAINER_FILE}:3886",
        "wrapped: a missing scheduler.pt is an error; GRPO restores its generation/reuse phase after it",
    ),
    # transformers: what the family adapters wrap or read.
    *(
        Internal(
            f"transformers.models.{module}:{cls}",
            "get_image_features",
            parameters,
            f"transformers 5.23.0 models/{module.split('.')[0]}",
            "wrapped per instance to encode each distinct image or clip once (signature kept for `generate`)",
        )
        for module, cls, parameters in (
            ("idefics3.modeling_idefics3", "Idefics3Model", ("pixel_values", "pixel_attention_mask")),
            ("smolvlm.modeling_smolvlm", "SmolVLMModel", ("pixel_values", "pixel_attention_mask")),
            ("qwen2_vl.modeling_qwen2_vl", "Qwen2VLModel", ("pixel_values", "image_grid_thw")),
            ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLModel", ("pixel_values", "image_grid_thw")),
            ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLModel", ("pixel_values", "image_grid_thw")),
            ("llava.modeling_llava", "LlavaModel", ("pixel_values", "image_sizes")),
            ("llava_next.modeling_llava_next", "LlavaNextModel", ("pixel_values", "image_sizes")),
            (
                "llava_onevision.modeling_llava_onevision",
                "LlavaOnevisionModel",
                ("pixel_values", "image_sizes", "batch_num_images"),
            ),
            ("gemma3.modeling_gemma3", "Gemma3Model", ("pixel_values",)),
        )
    ),
    *(
        Internal(
            f"transformers.models.{module}:{cls}",
            "get_rope_index",
            ("input_ids", "mm_token_type_ids", "image_grid_thw", "attention_mask"),
            f"transformers 5.23.0 models/{module.split('.')[0]}",
            "the 3-D M-RoPE positions each packed token keeps; `rope_deltas` is expanded after the shared prefill",
        )
        for module, cls in (
            ("qwen2_vl.modeling_qwen2_vl", "Qwen2VLModel"),
            ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLModel"),
            ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLModel"),
        )
    ),
    Internal(
        "transformers.cache_utils:DynamicCache",
        "reorder_cache",
        ("beam_idx",),
        "transformers 5.23.0 cache_utils.py",
        "expands the distinct prompts' prefill cache to every row",
    ),
)


@dataclass(frozen=True)
class Mirrored:
    """A condition of TRL's we copy or get around: `owner.name`'s source must still contain each snippet (compared
    with whitespace collapsed), so that a change of meaning fails here instead of silently in training."""

    owner: str
    name: str
    snippets: tuple[str, ...]
    source: str
    use: str


MIRRORED: tuple[Mirrored, ...] = (
    Mirrored(
        TRL_GRPO,
        "_generate_and_score_completions",
        (
            "generate_every = self.args.steps_per_generation * self.num_iterations",
            "if self.args.gradient_accumulation_steps % generate_every != 0 or (",
        ),
        f"{GRPO_FILE}:2642",
        "PPO's `_rollout_computes_old_logps` copies when the rollout runs an old-policy log-prob pass",
    ),
    Mirrored(
        TRL_GRPO,
        "_prepare_inputs",
        (
            "if self._step % generate_every == 0 or self._buffered_inputs is None:",
            "inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]",
        ),
        f"{GRPO_FILE}:1539",
        "our `_prepare_inputs` buffers clip-grouped generation batches by the same rule",
    ),
    Mirrored(
        "trl.trainer.utils:RepeatSampler",
        "__iter__",
        ("indexes = torch.randperm(self.num_samples, generator=self.generator).tolist()",),
        "TRL 1.16.0 trl/trainer/utils.py:933",
        "a GRPO resume replays the sampler's per-epoch draws from `self.generator.manual_seed(seed)`",
    ),
    Mirrored(
        TRAINER,
        "_save_checkpoint",
        ("save_total_limit=self.args.save_total_limit,",),
        f"{TRAINER_FILE}:3419",
        "`CompleteCheckpoints` unsets save_total_limit around it to rotate only once the manifest is written",
    ),
    Mirrored(
        "trl.trainer.grpo_config:GRPOConfig",
        "__post_init__",
        ("if self.num_generations < 2:",),
        "TRL 1.16.0 trl/trainer/grpo_config.py:1137",
        "PPO's `_SingleGeneration` (num_generations=1) passes GRPO's group-size check by comparing as not < 2",
    ),
)

# The loss types TRL 1.16's `GRPOTrainer._compute_loss` aggregates, which `MICRO_BATCH_INDEPENDENT_LOSS_TYPES`
# (grpo_trainer.py) sorts into those that may and may not shuffle whole clips into micro-batches.
CLASSIFIED_LOSS_TYPES = frozenset({"grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"})


class IncompatibleVersionError(ImportError):
    """The installed TRL or transformers lacks an internal we rely on."""


def _resolve(owner: str) -> object:
    module_name, _, attribute = owner.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def problem(internal: Internal) -> str | None:
    """What is wrong with `internal` in the installed libraries, or None."""
    try:
        target = getattr(_resolve(internal.owner), internal.name)
    except (ImportError, AttributeError):
        return "is missing"
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return "has no inspectable signature"
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [name for name in internal.parameters if name not in parameters]
    if missing and not takes_any:
        return f"no longer takes {', '.join(missing)}"
    return None


def _source(owner: str, name: str) -> str | None:
    try:
        return " ".join(inspect.getsource(getattr(_resolve(owner), name)).split())
    except (ImportError, AttributeError, OSError, TypeError):
        return None


def mirrored_problem(mirrored: Mirrored) -> str | None:
    """What is wrong with a mirrored condition in the installed libraries, or None."""
    source = _source(mirrored.owner, mirrored.name)
    if source is None:
        return "is missing or has no source"
    for snippet in mirrored.snippets:
        if " ".join(snippet.split()) not in source:
            return f"no longer contains `{snippet}`"
    return None


def loss_types_problem() -> str | None:
    """Whether `GRPOTrainer._compute_loss` aggregates a loss type we have not sorted by micro-batch dependence."""
    source = _source(TRL_GRPO, "_compute_loss") or ""
    named = set()
    for test in re.findall(r"self\.loss_type (?:==|in) (\[[^\]]*\]|\"\w+\")", source):
        named.update(re.findall(r"\"(\w+)\"", test))
    unknown = sorted(named - CLASSIFIED_LOSS_TYPES)
    return f"aggregates loss types we have not classified: {', '.join(unknown)}" if unknown else None


def problems() -> list[tuple[str, str, str]]:
    """Every (internal, source it mirrors, what is wrong) in the installed libraries."""
    found = []
    for item in (*INTERNALS, *MIRRORED):
        reason = problem(item) if isinstance(item, Internal) else mirrored_problem(item)
        if reason is not None:
            found.append((f"{item.owner.partition(':')[2] or item.owner}.{item.name}", item.source, reason))
    reason = loss_types_problem()
    if reason is not None:
        found.append(("GRPOTrainer._compute_loss", f"{GRPO_FILE}:3152", reason))
    return found


def check() -> None:
    """Raise `IncompatibleVersionError` naming the first internal the installed libraries changed."""
    for where, source, reason in problems()[:1]:
        raise IncompatibleVersionError(
            f"vlmrl-trl needs {where} ({source}), which {reason} in the installed version; supported: {SUPPORTED}"
        )
