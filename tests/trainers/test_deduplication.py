"""Row grouping, shared image features and memoised preprocessing: the building blocks of exact vision sharing."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from grpo_helpers import FrameCounter

from vlmrl_trl.families.per_row import PerRowAdapter
from vlmrl_trl.trainers.deduplication import (
    MemoizedImageProcessor,
    group_identical_rows,
    memoized_image_processing,
    share_image_features,
)


@pytest.fixture(scope="module")
def clip_batch(tiny_processor, random_frame):
    """Six rows holding three distinct clips of 2, 3 and 1 frames, repeated and interleaved like a shuffled batch."""
    clips = {
        "a": [random_frame(1, 48, 36), random_frame(2, 36, 48)],
        "b": [random_frame(3, 48, 36), random_frame(4, 48, 36), random_frame(5, 64, 20)],
        "c": [random_frame(6, 48, 36)],
    }
    order = ["a", "b", "a", "c", "b", "a"]
    images = [clips[name] for name in order]
    prompts = [
        [{"role": "user", "content": [{"type": "image"}] * len(clip) + [{"type": "text", "text": "What now?"}]}]
        for clip in images
    ]
    texts = [tiny_processor.apply_chat_template(prompt, add_generation_prompt=True) for prompt in prompts]
    return order, images, texts


def test_group_identical_rows_groups_equal_rows_in_order_of_appearance():
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0], [3.0, 4.0]])
    first, inverse = group_identical_rows(rows)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1]
    assert torch.equal(rows[first][inverse], rows)


def test_group_identical_rows_never_merges_different_rows_with_equal_sums():
    # Permuted rows have the same sum (the candidate key) but different content.
    rows = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    first, inverse = group_identical_rows(rows)
    assert first.tolist() == [0, 1, 2]
    assert inverse.tolist() == [0, 1, 2, 0]


def test_group_identical_rows_requires_every_tensor_to_match():
    pixels = torch.ones(3, 2, 4)
    masks = torch.tensor([[1, 1], [1, 0], [1, 1]]).bool()
    first, inverse = group_identical_rows(pixels, masks)
    assert inverse.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="same number of rows"):
        group_identical_rows(pixels, masks[:2])


def test_shared_image_features_give_stock_log_probs_and_gradients_with_fewer_frames(
    load_tiny_model, tiny_processor, clip_batch
):
    _, images, texts = clip_batch
    inputs = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    stock, shared = load_tiny_model(), load_tiny_model()
    assert share_image_features(shared) == 1
    stock_frames, shared_frames = FrameCounter(stock), FrameCounter(shared)

    stock_logps = torch.log_softmax(stock(**inputs).logits, dim=-1)
    shared_logps = torch.log_softmax(shared(**inputs).logits, dim=-1)
    torch.testing.assert_close(shared_logps, stock_logps, rtol=0, atol=1e-5)
    # 2+3+2+1+3+2 frames over six rows; the three distinct clips hold 2+3+1.
    assert (stock_frames.frames, shared_frames.frames) == (13, 6)

    stock_logps.sum().backward()
    shared_logps.sum().backward()
    stock_grads = {name: p.grad for name, p in stock.named_parameters()}
    total = torch.sqrt(sum(g.pow(2).sum() for g in stock_grads.values()))
    for name, p in shared.named_parameters():
        # Floor the scale for gradients that are zero analytically (key biases under softmax) and pure rounding here.
        scale = torch.maximum(stock_grads[name].norm(), 1e-4 * total)
        assert (p.grad - stock_grads[name]).norm() <= 1e-5 * scale, name
    assert any(name.startswith("model.vision_model") and p.grad.norm() > 0 for name, p in shared.named_parameters())


def test_share_image_features_is_idempotent_and_survives_deepcopy(load_tiny_model, tiny_processor, clip_batch):
    _, images, texts = clip_batch
    inputs = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    model = load_tiny_model()
    expected = model(**inputs).logits
    assert share_image_features(model) == 1
    assert share_image_features(model) == 1
    assert share_image_features(torch.nn.Linear(2, 2)) == 0
    copy = deepcopy(model)
    assert copy.model.get_image_features.__self__ is copy.model
    counter = FrameCounter(copy)
    torch.testing.assert_close(copy(**inputs).logits, expected, rtol=0, atol=1e-5)
    assert counter.frames == 6


def test_memoized_processing_equals_the_processor_and_preprocesses_each_clip_once(tiny_processor, clip_batch):
    _, images, texts = clip_batch
    expected = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    real_image_processor = tiny_processor.image_processor
    with memoized_image_processing(tiny_processor, PerRowAdapter().select_rows) as memo:
        assert isinstance(tiny_processor.image_processor, MemoizedImageProcessor)
        first = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
        assert memo.clips_processed == 3
        # Asked again (as GRPO does within one generation batch), the clips come from the cache.
        again = tiny_processor(images=images, text=texts, padding=True)
        assert memo.clips_processed == 3
    assert tiny_processor.image_processor is real_image_processor
    for outputs in (first, again):
        assert outputs.keys() == expected.keys()
        for key in expected:
            assert torch.equal(torch.as_tensor(outputs[key]), expected[key]), key


def test_memoized_image_processor_passes_flat_image_lists_through(tiny_processor, random_frame):
    frames = [random_frame(1, 48, 36), random_frame(2, 48, 36)]
    memo = MemoizedImageProcessor(tiny_processor.image_processor, PerRowAdapter().select_rows)
    out = memo(frames, return_tensors="pt")
    expected = tiny_processor.image_processor(frames, return_tensors="pt")
    assert torch.equal(out["pixel_values"], expected["pixel_values"])
    assert memo.clips_processed == 0
    assert memo.do_image_splitting == tiny_processor.image_processor.do_image_splitting
