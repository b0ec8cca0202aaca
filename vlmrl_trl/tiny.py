"""Tiny offline models of every supported VLM family: random weights, a local tokenizer with the family's special
tokens and chat template, saved as an ordinary model directory that `models.load_model`/`load_processor` read
exactly as they read a hub checkpoint.

They exist for tests, benchmarks and the demo, which cannot reach a model hub. Vision towers are kept free of parts
the family's forward never uses (SigLIP heads: `vision_use_head=False`), so "every parameter is trained" holds,
except LLaVA's and LLaVA-Next's last vision layer (their features come from layer -2 by design) and OneVision's
SigLIP final layer norm (it reads the last hidden state before it). The anyres families (LLaVA-Next, OneVision) cut
frames into half-size tiles on three small grids, so a frame is two or three tiny tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import build_tiny_tokenizer, build_tiny_vlm


@dataclass(frozen=True)
class TinySizes:
    """Widths and depths of a tiny model; each family maps them onto its own config fields."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vocab_size: int = 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError(
                f"vision_hidden_size={self.vision_hidden_size} must be divisible by vision_heads={self.vision_heads}"
            )
        if self.text_hidden_size % (2 * self.text_heads):
            raise ValueError(
                f"text_hidden_size={self.text_hidden_size} must be divisible by 2 * text_heads={2 * self.text_heads} "
                "(an even head size for rotary embeddings)"
            )
        if self.image_size % (2 * self.patch_size):
            raise ValueError(
                f"image_size={self.image_size} must be a multiple of 2 * patch_size={2 * self.patch_size} (the patch "
                "grid is merged 2x2)"
            )


def _text_fields(sizes: TinySizes, tokenizer: Any) -> dict[str, Any]:
    """The language-model config fields every family shares."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=sizes.text_hidden_size,
        intermediate_size=4 * sizes.text_hidden_size,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _mrope_section(sizes: TinySizes) -> list[int]:
    """Qwen's M-RoPE split of the rotary half-dimension into temporal, height and width parts."""
    half = sizes.text_hidden_size // sizes.text_heads // 2
    height = width = half * 3 // 8
    return [half - height - width, height, width]


_QWEN_TOKENS = ("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _qwen_processor(processor_cls: type, sizes: TinySizes, tokenizer: Any, chat_template: str, video_cls: type) -> Any:
    from transformers import Qwen2VLImageProcessor

    pixels = sizes.image_size**2
    kwargs = dict(
        patch_size=sizes.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": pixels // 4, "longest_edge": pixels},
    )
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(**kwargs),
        video_processor=video_cls(**kwargs),
        tokenizer=tokenizer,
        chat_template=chat_template,
    )


def _qwen_tokenizer(sizes: TinySizes) -> Any:
    return build_tiny_tokenizer(
        sizes.vocab_size,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=_QWEN_TOKENS,
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        # TRL left-pads prompts; a processor padding on the right would misalign `mm_token_type_ids` with them.
        padding_side="left",
    )


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _build_qwen2_vl(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, Qwen2VLVideoProcessor
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    tokenizer = _qwen_tokenizer(sizes)
    vision = dict(
        depth=sizes.vision_layers,
        embed_dim=sizes.vision_hidden_size,
        hidden_size=sizes.text_hidden_size,
        num_heads=sizes.vision_heads,
        patch_size=sizes.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    text = dict(
        _text_fields(sizes, tokenizer),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(sizes)},
    )
    config = Qwen2VLConfig(vision_config=vision, text_config=text, **_qwen_ids(tokenizer), tie_word_embeddings=False)
    processor = _qwen_processor(Qwen2VLProcessor, sizes, tokenizer, qwen2_5_vl_chat_template, Qwen2VLVideoProcessor)
    return Qwen2VLForConditionalGeneration(config), processor


def _build_qwen2_5_vl(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
    )
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    tokenizer = _qwen_tokenizer(sizes)
    vision = dict(
        depth=sizes.vision_layers,
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=4 * sizes.vision_hidden_size,
        out_hidden_size=sizes.text_hidden_size,
        num_heads=sizes.vision_heads,
        patch_size=sizes.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        # Window attention on all layers but the last, as in the real models (windows of 2x2 merged tokens).
        window_size=4 * sizes.patch_size,
        fullatt_block_indexes=[sizes.vision_layers - 1],
    )
    text = dict(
        _text_fields(sizes, tokenizer),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(sizes)},
    )
    config = Qwen2_5_VLConfig(
        vision_config=vision, text_config=text, **_qwen_ids(tokenizer), tie_word_embeddings=False
    )
    processor = _qwen_processor(Qwen2_5_VLProcessor, sizes, tokenizer, qwen2_5_vl_chat_template, Qwen2VLVideoProcessor)
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _build_qwen3_vl(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor
    from trl.chat_template_utils import qwen3_vl_chat_template

    tokenizer = _qwen_tokenizer(sizes)
    vision = dict(
        depth=sizes.vision_layers,
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=4 * sizes.vision_hidden_size,
        out_hidden_size=sizes.text_hidden_size,
        num_heads=sizes.vision_heads,
        patch_size=sizes.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=(sizes.image_size // sizes.patch_size) ** 2,
        deepstack_visual_indexes=[0],
    )
    text = dict(
        _text_fields(sizes, tokenizer),
        head_dim=sizes.text_hidden_size // sizes.text_heads,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": _mrope_section(sizes),
            "mrope_interleaved": True,
        },
    )
    config = Qwen3VLConfig(vision_config=vision, text_config=text, **_qwen_ids(tokenizer), tie_word_embeddings=False)
    processor = _qwen_processor(Qwen3VLProcessor, sizes, tokenizer, qwen3_vl_chat_template, Qwen3VLVideoProcessor)
    return Qwen3VLForConditionalGeneration(config), processor


def _llava_tokenizer(sizes: TinySizes) -> Any:
    """The Llama-style tokenizer of the tiny LLaVA families, with their `<image>` token."""
    return build_tiny_tokenizer(
        sizes.vocab_size,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=("<image>",),
        image_token="<image>",
        padding_side="left",
    )


def _llava_vision(sizes: TinySizes, image_size: int) -> dict[str, Any]:
    """The CLIP tower of the tiny LLaVA families, one layer more than asked: they read features from layer -2, so
    the last layer is never used."""
    return dict(
        model_type="clip_vision_model",
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=4 * sizes.vision_hidden_size,
        num_hidden_layers=sizes.vision_layers + 1,
        num_attention_heads=sizes.vision_heads,
        image_size=image_size,
        patch_size=sizes.patch_size,
        projection_dim=sizes.vision_hidden_size,
    )


def _build_llava(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from trl.chat_template_utils import llava_next_chat_template

    tokenizer = _llava_tokenizer(sizes)
    vision = _llava_vision(sizes, sizes.image_size)
    config = LlavaConfig(
        vision_config=vision,
        text_config=dict(_text_fields(sizes, tokenizer), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    side = {"height": sizes.image_size, "width": sizes.image_size}
    image_processor = CLIPImageProcessor(size={"shortest_edge": sizes.image_size}, crop_size=side)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=sizes.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=llava_next_chat_template,
    )
    return LlavaForConditionalGeneration(config), processor


def _anyres_grid(sizes: TinySizes) -> tuple[int, list[list[int]]]:
    """Tile side and grid pinpoints of the tiny anyres families: half-size tiles and three small grids, so a frame
    becomes a base tile plus one or two grid tiles and the vision work stays tiny."""
    tile = sizes.image_size // 2
    return tile, [[tile, tile], [tile, 2 * tile], [2 * tile, tile]]


def _build_llava_next(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )
    from trl.chat_template_utils import llava_next_chat_template

    tokenizer = _llava_tokenizer(sizes)
    tile, pinpoints = _anyres_grid(sizes)
    vision = _llava_vision(sizes, tile)
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=dict(_text_fields(sizes, tokenizer), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=sizes.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=llava_next_chat_template,
    )
    return LlavaNextForConditionalGeneration(config), processor


# LLaVA-OneVision's ChatML template (Qwen2 text model), with the assistant turn inside generation markers.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{% set content = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for item in content | selectattr('type', 'equalto', 'text') %}{{ item['text'] }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endgeneration %}"
    "{% else %}{% for item in content %}{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'video' %}{{ '<video>' }}{% endif %}{% endfor %}"
    "{% for item in content | selectattr('type', 'equalto', 'text') %}{{ '\\n' + item['text'] }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _build_llava_onevision(sizes: TinySizes) -> tuple[Any, Any]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = build_tiny_tokenizer(
        sizes.vocab_size,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=("<|im_start|>", "<image>", "<video>"),
        image_token="<image>",
        video_token="<video>",
        padding_side="left",
    )
    tile, pinpoints = _anyres_grid(sizes)
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=4 * sizes.vision_hidden_size,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.vision_heads,
        image_size=tile,
        patch_size=sizes.patch_size,
        vision_use_head=False,  # OneVision reads the last hidden state: a head would never be trained
    )
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=dict(_text_fields(sizes, tokenizer), model_type="qwen2"),
        image_token_id=ids("<image>"),
        video_token_id=ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        tie_word_embeddings=False,
    )
    side = {"height": tile, "width": tile}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=side, image_grid_pinpoints=pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size=side),
        tokenizer=tokenizer,
        num_image_tokens=(tile // sizes.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _build_gemma3(sizes: TinySizes) -> tuple[Any, Any]:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor
    from trl.chat_template_utils import gemma3_chat_template

    tokenizer = build_tiny_tokenizer(
        sizes.vocab_size,
        bos_token="<bos>",
        eos_token="<end_of_turn>",
        pad_token="<pad>",
        extra_special_tokens=("<start_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
        padding_side="left",
    )
    tokens_per_image = (sizes.image_size // sizes.patch_size // 2) ** 2  # the projector pools 2x2 patches
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=4 * sizes.vision_hidden_size,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.vision_heads,
        image_size=sizes.image_size,
        patch_size=sizes.patch_size,
        vision_use_head=False,  # Gemma 3 reads the last hidden state: a head would never be trained
    )
    text = dict(
        _text_fields(sizes, tokenizer),
        head_dim=sizes.text_hidden_size // sizes.text_heads,
        # A window shorter than a prompt and both layer types, so the tiny model exercises sliding attention.
        sliding_window=8,
        layer_types=[("sliding_attention", "full_attention")[i % 2] for i in range(sizes.text_layers)],
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        vision_config=vision,
        text_config=text,
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        tie_word_embeddings=False,
    )
    image_processor = Gemma3ImageProcessor(size={"height": sizes.image_size, "width": sizes.image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=gemma3_chat_template,
        image_seq_length=tokens_per_image,
    )
    model = Gemma3ForConditionalGeneration(config)
    # Gemma 3 initialises the image projection to zeros, which would keep every gradient from the vision tower.
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.02)
    return model, processor


FAMILIES: dict[str, Callable[[TinySizes], tuple[Any, Any]]] = {
    "llava": _build_llava,
    "llava_next": _build_llava_next,
    "llava_onevision": _build_llava_onevision,
    "gemma3": _build_gemma3,
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": _build_qwen2_5_vl,
    "qwen3_vl": _build_qwen3_vl,
}


def build_tiny_model(out_dir: str | Path, family: str = "idefics3", *, seed: int = 0, **sizes: int) -> Path:
    """Save a tiny random model of `family` (see `FAMILIES`, plus `idefics3`, the SmolVLM architecture) and its
    processor to `out_dir`, loadable by `models.load_model` like a hub checkpoint."""
    if family == "idefics3":
        return build_tiny_vlm(out_dir, seed=seed, **sizes)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: choose one of {', '.join(['idefics3', *FAMILIES])}")
    import torch

    torch.manual_seed(seed)
    model, processor = FAMILIES[family](TinySizes(**sizes))
    tokenizer = processor.tokenizer
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
