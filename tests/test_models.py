"""The model loader and the tiny offline SmolVLM: what SFT, GRPO and evaluation rely on."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM
from trl import ModelConfig, get_peft_config
from trl.chat_template_utils import has_generation_markers, smolvlm_chat_template, smolvlm_training_chat_template

from vlmrl_trl.models import (
    EOS_TOKEN,
    build_tiny_vlm,
    check_model_source,
    freeze_vision_tower,
    load_model,
    load_processor,
    training_chat_template,
)
from vlmrl_trl.schema import ACTION_IDS, REASON_IDS

ANSWER = '{"scene":"a red light ahead","actions":["stop"],"reasons":["red_light"]}'


def frames(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (160, 96), (40 * i, 200 - 40 * i, 30)) for i in range(n)]


def clip_messages(n: int, answer: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": [{"type": "image"}] * n + [{"type": "text", "text": "What now?"}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir: Path):
    return load_processor(str(tiny_vlm_dir))


@pytest.fixture(scope="module")
def model(tiny_vlm_dir: Path):
    return load_model(ModelConfig(model_name_or_path=str(tiny_vlm_dir), dtype="float32"))


@pytest.mark.parametrize("num_frames", [2, 4])
def test_round_trip_forward_and_generate(processor, model, num_frames: int) -> None:
    text = processor.apply_chat_template(clip_messages(num_frames), add_generation_prompt=True)
    assert text.endswith("Assistant:")
    inputs = processor(text=[text], images=[frames(num_frames)], return_tensors="pt")
    # One unsplit 128x128 frame = 8x8 patches, pixel-shuffled by 2 into 16 image tokens.
    assert inputs["pixel_values"].shape == (1, num_frames, 3, 128, 128)
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 16 * num_frames
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_frames_are_not_split_unless_asked(tiny_vlm_dir: Path) -> None:
    assert load_processor(str(tiny_vlm_dir)).image_processor.do_image_splitting is False
    assert load_processor(str(tiny_vlm_dir), image_splitting=True).image_processor.do_image_splitting is True


def test_decision_ids_are_single_tokens(processor) -> None:
    for name in (*ACTION_IDS, *REASON_IDS):
        assert len(processor.tokenizer(name, add_special_tokens=False)["input_ids"]) == 1, name
    assert processor.tokenizer.eos_token == EOS_TOKEN


def test_build_is_deterministic_and_checks_geometry(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    again = build_tiny_vlm(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny_vlm_dir / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="image_size=120"):
        build_tiny_vlm(tmp_path / "bad", image_size=120)
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        build_tiny_vlm(tmp_path / "bad", image_size=0)
    with pytest.raises(ValueError, match="text_hidden_size=100 must be divisible by 2 \\* text_heads=8"):
        build_tiny_vlm(tmp_path / "bad", text_hidden_size=100)
    assert not (tmp_path / "bad").exists(), "nothing is written for a bad geometry"


def test_heavier_vision_variant(tmp_path: Path) -> None:
    path = build_tiny_vlm(tmp_path / "wide", image_size=64, vision_hidden_size=64, vision_layers=4, text_layers=1)
    heavy = load_model(ModelConfig(model_name_or_path=str(path)))
    assert heavy.config.vision_config.num_hidden_layers == 4
    assert heavy.config.vision_config.image_size == 64
    assert load_processor(str(path)).image_seq_len == 4


def test_lora_trains_adapters_only(tiny_vlm_dir: Path) -> None:
    from peft import get_peft_model

    args = ModelConfig(model_name_or_path=str(tiny_vlm_dir), use_peft=True, lora_target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(load_model(args), get_peft_config(args))
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_freeze_vision_keeps_the_rest_trainable(tiny_vlm_dir: Path) -> None:
    frozen = load_model(ModelConfig(model_name_or_path=str(tiny_vlm_dir)), freeze_vision=True)
    for name, param in frozen.named_parameters():
        assert param.requires_grad == ("vision_model" not in name), name
    text_only = LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(ValueError, match="LlamaForCausalLM has no vision encoder"):
        freeze_vision_tower(text_only)


def test_4bit_loading_and_training_on_cpu(tiny_vlm_dir: Path, processor) -> None:
    bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install bitsandbytes)")
    from peft import get_peft_model

    args = ModelConfig(
        model_name_or_path=str(tiny_vlm_dir),
        dtype="bfloat16",
        load_in_4bit=True,
        use_peft=True,
        lora_target_modules=["q_proj", "v_proj"],
    )
    try:
        quantized = load_model(args)
    except (RuntimeError, ImportError, ValueError) as err:
        pytest.skip(f"bitsandbytes cannot load 4-bit models on this machine: {err}")
    linears = [m for m in quantized.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears and all(m.support_avx512bf16_for_cpu is False for m in linears)
    peft_model = get_peft_model(quantized, get_peft_config(args))
    text = processor.apply_chat_template(clip_messages(2, ANSWER))
    inputs = processor(text=[text], images=[frames(2)], return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    with torch.inference_mode():  # an eval before training must not break the training forward
        peft_model(**inputs)
    loss = peft_model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)


def marker_count(template: str) -> int:
    """Generation markers in the template's code (Jinja comments may mention them too)."""
    return re.sub(r"\{#.*?#\}", "", template, flags=re.S).count("{% generation %}")


def test_generation_markers_added_exactly_once(processor) -> None:
    processor = copy.copy(processor)  # the fixture's template stays as loaded
    processor.chat_template = smolvlm_chat_template
    patched = training_chat_template(processor)
    assert patched == smolvlm_training_chat_template
    assert marker_count(patched) == 1
    processor.chat_template = patched
    assert training_chat_template(processor) == patched
    processor.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="generation"):
        training_chat_template(processor)


def test_load_processor_patches_a_template_without_markers(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_vlm_dir, tmp_path / "plain"))
    (copy / "chat_template.jinja").write_text(smolvlm_chat_template, encoding="utf-8")
    patched = load_processor(str(copy)).chat_template
    assert has_generation_markers(patched)
    assert marker_count(patched) == 1


def test_assistant_mask_covers_only_the_answer(processor) -> None:
    out = processor.apply_chat_template(
        [clip_messages(3, ANSWER)],
        images=[frames(3)],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        return_tensors="pt",
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    assert processor.tokenizer.decode(ids[mask]) == f" {ANSWER}{EOS_TOKEN}\n"
    # The masked span is one contiguous block at the end: no prompt or image token is trained on.
    first = int(mask.nonzero()[0])
    assert mask[first:].all() and not mask[:first].any()


@pytest.mark.parametrize("name", ["outputs/never-trained", "./model", "/abs/missing", "a/b/c"])
def test_a_missing_local_model_folder_is_named_at_once(name: str, tmp_path: Path, monkeypatch) -> None:
    """A local path that does not exist fails before `from_pretrained` would take it for a hub id and retry."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(FileNotFoundError, match=f"model_name_or_path={name!r} is not a folder"):
        load_processor(name)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_model(ModelConfig(model_name_or_path=name))


def test_hub_ids_and_existing_folders_pass_the_source_check(tiny_vlm_dir: Path) -> None:
    check_model_source("HuggingFaceTB/SmolVLM-256M-Instruct")
    check_model_source(str(tiny_vlm_dir))
