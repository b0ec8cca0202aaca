"""Tiny offline models of every family: ordinary model folders that load like hub checkpoints, whose chat
template masks everything but the answer, and whose every used parameter learns."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from trl import ModelConfig

from vlmrl_trl.models import load_model, load_processor
from vlmrl_trl.tiny import FAMILIES, build_tiny_model

# Parameters the family's forward never uses by design: LLaVA and LLaVA-Next read their features from vision layer
# -2, LLaVA-OneVision reads the last layer's hidden state before SigLIP's final layer norm.
_CLIP_LAST_LAYER = ("vision_tower.encoder.layers.2.", "vision_tower.post_layernorm.")
UNUSED_BY_DESIGN = {
    "llava": _CLIP_LAST_LAYER,
    "llava_next": _CLIP_LAST_LAYER,
    "llava_onevision": ("vision_tower.post_layernorm.",),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_dir(request, tmp_path_factory):
    return request.param, build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", request.param)


def conversation(answer: str) -> list[dict]:
    frames = [Image.fromarray(np.full((40, 56, 3), 60 * i, dtype=np.uint8)) for i in range(2)]
    return [
        {
            "role": "user",
            "content": [*({"type": "image", "image": f} for f in frames), {"type": "text", "text": "Go?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def test_chat_template_marks_only_the_answer_for_the_loss(family_dir):
    _, model_dir = family_dir
    processor = load_processor(str(model_dir))
    answer = '{"actions":["stop"]}'
    encoded = processor.apply_chat_template(
        [conversation(answer)], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = torch.tensor(encoded["input_ids"][0])
    trained = torch.tensor(encoded["assistant_masks"][0]).bool()
    text = processor.tokenizer.decode(ids[trained])
    assert answer in text
    assert "Go?" not in text and trained.sum() < len(ids) / 2


def test_every_parameter_the_forward_uses_gets_a_gradient(family_dir):
    family, model_dir = family_dir
    processor = load_processor(str(model_dir))
    model = load_model(ModelConfig(model_name_or_path=str(model_dir), dtype="float32"))
    inputs = processor.apply_chat_template(
        [conversation('{"actions":["stop"]}')], tokenize=True, return_dict=True, return_tensors="pt"
    )
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    unused = UNUSED_BY_DESIGN.get(family, ())
    missing = [
        name
        for name, p in model.named_parameters()
        if (p.grad is None or not p.grad.any()) and not any(part in name for part in unused)
    ]
    assert missing == []


def test_cli_builds_any_family(tmp_path):
    out = tmp_path / "qwen"
    result = subprocess.run(
        [sys.executable, "-m", "vlmrl_trl.cli", "model", "tiny", "--out", str(out), "--family", "qwen3_vl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert type(load_model(ModelConfig(model_name_or_path=str(out)))).__name__ == "Qwen3VLForConditionalGeneration"


def test_unknown_family_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown family 'qwen9'.*qwen2_5_vl"):
        build_tiny_model(tmp_path, "qwen9")
