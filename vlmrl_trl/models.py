"""Load image-text-to-text models and processors the way TRL scripts do, and build a tiny SmolVLM offline.

Every model, real checkpoint or the tiny one, goes through :func:`load_processor` and :func:`load_model`:
frames are fed whole (no image splitting, like SmolVLM2's video mode), the chat template gets
``{% generation %}`` markers so TRL's ``assistant_only_loss`` can mask everything but the answer, and
the :class:`trl.ModelConfig` options (dtype, attention, LoRA, 4-bit) mean what they mean in TRL.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import ACTION_IDS, ACTIONS, REASON_IDS, REASONS, describe_format

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, ProcessorMixin
    from trl import ModelConfig

logger = logging.getLogger(__name__)

BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<end_of_utterance>"
PAD_TOKEN = "<|pad|>"
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
# Idefics3Processor looks up one tag per tile of a split image, up to a 6x6 grid.
ROW_COL_TOKENS: tuple[str, ...] = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))

# SmolVLM's turn layout ("User:<image>...text<end_of_utterance>\nAssistant: answer<end_of_utterance>\n"),
# with the whole assistant turn, end-of-utterance included, inside the generation markers.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'assistant' %}Assistant:{% generation %}"
    "{% for part in parts %}{% if part['type'] == 'text' %} {{ part['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endgeneration %}"
    "{% else %}{{ message['role'] | capitalize }}:"
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %} {{ part['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

# Words a dashcam scene description uses; the tiny tokenizer learns them as whole tokens.
_SCENE_WORDS = (
    "a an the and or with of on in at to from near ahead left right front behind side lane lanes road street "
    "intersection crosswalk highway city urban residential day night dusk rain rainy snow fog clear sunny cloudy "
    "car cars truck bus van vehicle vehicles motorcycle bicycle bike rider riders person people pedestrian "
    "pedestrians crossing walking parked stopped moving turning slowing traffic light lights red green yellow "
    "amber arrow sign signs stop yield speed limit line lines solid dashed white double marking markings "
    "obstacle obstacles cone cones barrier construction open empty busy heavy light wet dry curve straight "
    "scene frame frames clip video dashcam camera shows there is are no one two three several many small large "
    "ego driving drive go wait keep slow down turn change forward back clear blocked"
)

# Weight of each corpus line when training the tiny BPE: the answer vocabulary must merge into few tokens.
_ID_REPEATS = 40
_NUM_SCENE_DESCRIPTIONS = 400


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the decision vocabulary, its JSON form, the instruction prompt
    and scene descriptions (synthetic ones, drawn with a fixed seed, plus common driving words)."""
    import numpy as np

    from .data.formatting import INSTRUCTION
    from .data.synthetic import describe_scene, sample_scene

    rng = np.random.default_rng(0)
    scenes = [describe_scene(sample_scene(rng), rng) for _ in range(_NUM_SCENE_DESCRIPTIONS)]
    ids = [*ACTION_IDS, *REASON_IDS]
    decision_lines = [
        json.dumps({"scene": "", "actions": [a], "reasons": [r.id]}, separators=(",", ":"))
        for a in ACTION_IDS
        for r in REASONS
    ]
    labels = [a.label for a in ACTIONS] + [r.label for r in REASONS]
    lines = [INSTRUCTION, describe_format(), "User: Assistant:", _SCENE_WORDS, *labels, *decision_lines]
    return lines * 4 + scenes + [" ".join(ids)] * _ID_REPEATS + [_SCENE_WORDS] * _ID_REPEATS


def build_tiny_tokenizer(
    vocab_size: int = 1024,
    *,
    bos_token: str = BOS_TOKEN,
    eos_token: str = EOS_TOKEN,
    pad_token: str = PAD_TOKEN,
    extra_special_tokens: tuple[str, ...] = (FAKE_IMAGE_TOKEN, IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN, *ROW_COL_TOKENS),
    **attributes: str,
) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on a built-in corpus, with a family's special tokens
    (Idefics3's by default); ``attributes`` become named special tokens (``image_token="<|image_pad|>"``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Keep snake_case ids in one piece so BPE can learn "obstacle_person" as a single token.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?[A-Za-z_]+| ?[0-9]+| ?[^\sA-Za-z0-9_]+|\s+(?!\S)|\s+"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys([pad_token, bos_token, eos_token, *extra_special_tokens])),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens=[token for token in extra_special_tokens if token not in (bos_token, eos_token)],
        add_bos_token=False,
        model_max_length=2048,
        **attributes,
    )


def build_tiny_vlm(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 128,
    patch_size: int = 16,
    vision_hidden_size: int = 128,
    vision_layers: int = 3,
    vision_heads: int = 4,
    text_hidden_size: int = 192,
    text_layers: int = 3,
    text_heads: int = 4,
    vocab_size: int = 1024,
    scale_factor: int = 2,
) -> Path:
    """Save a randomly initialised SmolVLM-architecture (Idefics3) model, tokenizer and processor to ``out_dir``.

    The result is an ordinary model directory: :func:`load_model` and :func:`load_processor` read it exactly as
    they read a hub checkpoint. Widen or deepen the vision side (``vision_*``, ``image_size``) for benchmarks
    that need the vision encoder to cost as much as the language model.
    """
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        LlamaConfig,
    )
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    sizes = dict(
        image_size=image_size,
        patch_size=patch_size,
        vision_hidden_size=vision_hidden_size,
        vision_layers=vision_layers,
        vision_heads=vision_heads,
        text_hidden_size=text_hidden_size,
        text_layers=text_layers,
        text_heads=text_heads,
        vocab_size=vocab_size,
        scale_factor=scale_factor,
    )
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if vision_hidden_size % vision_heads:
        raise ValueError(f"vision_hidden_size={vision_hidden_size} must be divisible by vision_heads={vision_heads}")
    if text_hidden_size % (2 * text_heads):
        raise ValueError(
            f"text_hidden_size={text_hidden_size} must be divisible by 2 * text_heads={2 * text_heads} (an even "
            "head size for rotary embeddings)"
        )
    patches_per_side = image_size // patch_size
    if image_size % patch_size or patches_per_side % scale_factor:
        raise ValueError(
            f"image_size={image_size} must be a multiple of patch_size={patch_size} and give a patch grid "
            f"divisible by scale_factor={scale_factor}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab_size)
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        resample=3,  # bicubic: cheaper than Lanczos and as good at these sizes
    )
    image_seq_len = patches_per_side**2 // scale_factor**2
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=TINY_CHAT_TEMPLATE,
    )
    vision = Idefics3VisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=4 * vision_hidden_size,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        intermediate_size=4 * text_hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=text_heads,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = Idefics3Config(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def training_chat_template(processor: Any) -> str:
    """The training variant of `processor`'s chat template, with ``{% generation %}`` around the assistant turn.

    A template that already has markers comes back unchanged; otherwise TRL's `get_training_chat_template` gives
    its training variant. An unknown template raises `ValueError`, since guessing would mask the wrong tokens.
    """
    from trl.chat_template_utils import get_training_chat_template

    try:
        patched = get_training_chat_template(processor)
    except ValueError:
        raise ValueError(
            "the chat template has no {% generation %} markers and TRL has no training variant of it; "
            "add {% generation %}...{% endgeneration %} around the assistant content yourself"
        ) from None
    return processor.chat_template if patched is None else patched


def check_model_source(model_name_or_path: str) -> None:
    """Fail at once, naming it, when ``model_name_or_path`` is meant as a local folder that does not exist, instead
    of letting ``from_pretrained`` take it for a hub id and retry the hub for minutes.

    A name is taken as local when it is absolute, starts with ``.`` or ``~``, has more than one ``/``, or its first
    component is a folder here (``outputs/tiny-vlm-sft`` where ``outputs/`` exists); ``org/name`` is a hub id.
    """
    path = Path(model_name_or_path).expanduser()
    parts = Path(model_name_or_path).parts
    local = (
        path.is_absolute()
        or model_name_or_path.startswith((".", "~"))
        or len(parts) > 2
        or (len(parts) == 2 and Path(parts[0]).is_dir())
    )
    if local and not path.is_dir():
        raise FileNotFoundError(
            f"model_name_or_path={model_name_or_path!r} is not a folder: give an existing model folder (run the stage "
            "that writes it first) or a hub id such as HuggingFaceTB/SmolVLM-256M-Instruct"
        )


def load_processor(
    model_name_or_path: str,
    *,
    image_splitting: bool = False,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> ProcessorMixin:
    """Load the processor of a hub id or local directory, set up for multi-frame clips and answer-only loss."""
    from transformers import AutoProcessor

    check_model_source(model_name_or_path)
    processor = AutoProcessor.from_pretrained(
        model_name_or_path, revision=revision, trust_remote_code=trust_remote_code
    )
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None and hasattr(image_processor, "do_image_splitting"):
        image_processor.do_image_splitting = image_splitting
    if isinstance(getattr(processor, "chat_template", None), str):
        try:
            processor.chat_template = training_chat_template(processor)
        except ValueError as err:
            logger.warning("%s: %s", model_name_or_path, err)
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def _resolve_dtype(dtype: str | None) -> str | torch.dtype:
    """``ModelConfig.dtype`` ("auto", None or a torch dtype name) as ``from_pretrained`` takes it."""
    import torch

    if dtype in (None, "auto"):
        return "auto"
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"ModelConfig.dtype={dtype!r} is not a torch dtype (e.g. bfloat16, float16, float32, auto)")
    return resolved


def _kbit_device_map() -> dict[str, Any]:
    """Whole-model placement for a bitsandbytes model: this process's accelerator, or the CPU."""
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available():
        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def disable_avx512bf16_kernels(model: torch.nn.Module) -> int:
    """Turn off bitsandbytes' AVX512-BF16 CPU path on every 4-bit linear; returns how many were changed.

    That path caches a repacked weight on the first inference-mode forward (e.g. an eval) and later
    training forwards then fail, so QLoRA on such CPUs must not use it.
    """
    import bitsandbytes as bnb

    modules = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for module in modules:
        module.support_avx512bf16_for_cpu = False
    return len(modules)


def freeze_vision_tower(model: PreTrainedModel) -> int:
    """Stop gradients through the vision encoder; returns the number of frozen parameters."""
    tower = model.get_encoder(modality="image")
    if tower is model or tower is getattr(model, "base_model", None):
        raise ValueError(f"{type(model).__name__} has no vision encoder to freeze")
    params = list(tower.parameters())
    for param in params:
        param.requires_grad_(False)
    return sum(p.numel() for p in params)


def load_model(
    model_args: ModelConfig, *, freeze_vision: bool = False, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load an image-text-to-text model as ``model_args`` says (dtype, attention, 4/8-bit).

    LoRA is not applied here: pass ``trl.get_peft_config(model_args)`` to the trainer, which wraps the model.
    """
    from transformers import AutoModelForImageTextToText
    from trl import get_quantization_config

    if not model_args.model_name_or_path:
        raise ValueError("ModelConfig.model_name_or_path is required")
    check_model_source(model_args.model_name_or_path)
    quantization_config = get_quantization_config(model_args)
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "trust_remote_code": trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": _resolve_dtype(model_args.dtype),
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = _kbit_device_map()
    model = AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path, **kwargs)
    if model_args.load_in_4bit:
        disable_avx512bf16_kernels(model)
    if freeze_vision:
        freeze_vision_tower(model)
    return model
