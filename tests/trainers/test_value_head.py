"""The value head: architecture, persistence, and its place in the policy's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from trl.trainer.utils import add_fused_lm_head

from vlmrl_trl.trainers.value_head import (
    OUTPUT_KEY,
    VALUE_HEAD_FILE,
    ValueHead,
    attach_value_head,
    split_value_head_state,
)


def test_width_and_depth_are_configurable():
    head = ValueHead(hidden_size=16, width=8, num_layers=3)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 8), (8, 8), (8, 1)]
    assert [
        (m.in_features, m.out_features) for m in ValueHead(16, num_layers=1).modules() if hasattr(m, "in_features")
    ] == [(16, 1)]
    assert ValueHead(16).width == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"hidden_size": 8, "width": 0}, "value_head_hidden_size"),
        ({"hidden_size": 8, "num_layers": 0}, "value_head_num_layers"),
    ],
)
def test_bad_sizes_are_rejected_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ValueHead(**kwargs)


def test_a_fresh_head_predicts_zero_in_float32_for_any_body_dtype():
    head = ValueHead(hidden_size=12, width=6)
    hidden = torch.randn(2, 5, 12, dtype=torch.bfloat16)
    values = head(hidden)
    assert values.shape == (2, 5) and values.dtype == torch.float32
    assert values.eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_and_load_round_trip_bit_for_bit(tmp_path, dtype):
    torch.manual_seed(0)
    head = ValueHead(hidden_size=10, width=7, num_layers=3).to(dtype)
    for param in head.parameters():
        param.data.normal_()
    file = head.save_pretrained(tmp_path)
    assert file == tmp_path / VALUE_HEAD_FILE
    for source in (tmp_path, file):
        restored = ValueHead.from_pretrained(source)
        assert restored.config == {"hidden_size": 10, "width": 7, "num_layers": 3}
        for (name, a), (_, b) in zip(head.state_dict().items(), restored.state_dict().items(), strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), name


def test_loading_a_missing_head_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ValueHead.from_pretrained(tmp_path)


def test_split_value_head_state_strips_any_wrapper_prefix():
    state = {
        "model.text_model.norm.weight": torch.ones(1),
        "base_model.model.value_head.mlp.0.weight": torch.zeros(1),
        "value_head.mlp.2.bias": torch.zeros(1),
    }
    head, rest = split_value_head_state(state)
    assert set(head) == {"mlp.0.weight", "mlp.2.bias"}
    assert set(rest) == {"model.text_model.norm.weight"}


@pytest.fixture
def policy_and_batch(load_tiny_model, tiny_processor):
    """The tiny VLM with TRL's fused LM head, and a two-frame prompt plus a 4-token completion, labelled like TRL."""
    model = load_tiny_model()
    add_fused_lm_head(model, outputs=("log_probs",))
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]
    text = tiny_processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = tiny_processor(text=[text], images=[frames], return_tensors="pt")
    completion = torch.tensor([[40, 41, 42, 43]])
    batch["input_ids"] = torch.cat([batch["input_ids"], completion], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(completion)], dim=1)
    labels = batch["input_ids"].clone()
    labels[:, : -completion.size(1)] = -100
    return model, dict(batch), labels


def test_values_come_from_the_same_forward_as_the_log_probs(policy_and_batch):
    model, batch, labels = policy_and_batch
    head = ValueHead(model.config.get_text_config().hidden_size, width=16)
    for param in head.parameters():
        param.data.normal_(std=0.1)
    tap = attach_value_head(model, head)
    assert model.value_head is head and any(name.startswith("value_head.") for name, _ in model.named_parameters())

    calls = []
    model.base_model.register_forward_hook(lambda *_: calls.append(1))
    plain = model(**batch, labels=labels, fused_lm_head=True)
    assert OUTPUT_KEY not in plain and len(calls) == 1
    with tap.collect() as collected:
        out = model(**batch, labels=labels, fused_lm_head=True)
    assert len(calls) == 2, "the value head must not run the body a second time"
    torch.testing.assert_close(out.log_probs, plain.log_probs)
    assert len(collected) == 1 and collected[0] is out[OUTPUT_KEY]

    # V(s_t) reads the hidden state that predicts token t + 1, the same position as log_probs[:, t].
    hidden = model.model(**batch).last_hidden_state
    torch.testing.assert_close(out[OUTPUT_KEY], head(hidden[:, :-1]))
    assert out[OUTPUT_KEY].shape == out.log_probs.shape


def test_the_value_loss_reaches_the_body_unless_the_hidden_states_are_detached(policy_and_batch):
    model, batch, labels = policy_and_batch
    head = ValueHead(model.config.get_text_config().hidden_size, width=16)
    for param in head.parameters():
        param.data.normal_(std=0.1)
    tap = attach_value_head(model, head)
    body_param = model.model.text_model.layers[0].mlp.up_proj.weight
    for detach in (False, True):
        model.zero_grad(set_to_none=True)
        with tap.collect(detach_hidden=detach):
            values = model(**batch, labels=labels, fused_lm_head=True)[OUTPUT_KEY]
        values.square().sum().backward()
        assert head.mlp[0].weight.grad is not None
        assert (body_param.grad is None) == detach


def test_generation_is_untouched(policy_and_batch):
    model, batch, _ = policy_and_batch
    prompt = {k: v[:, :-4] if k in ("input_ids", "attention_mask") else v for k, v in batch.items()}
    before = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    attach_value_head(model, ValueHead(model.config.get_text_config().hidden_size))
    assert torch.equal(model.generate(**prompt, max_new_tokens=5, do_sample=False), before)


def test_saved_file_holds_only_the_head(tmp_path):
    head = ValueHead(hidden_size=4, width=3)
    head.save_pretrained(tmp_path)
    assert set(load_file(str(tmp_path / VALUE_HEAD_FILE))) == set(head.state_dict())
