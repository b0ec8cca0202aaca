"""R1 CLIP alignment: the formula, the description rule, the frame cache, and prefix scoring for PPO."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlmrl_trl.clip import ClipEncoder
from vlmrl_trl.rewards.clip_alignment import ClipAlignmentReward, description_text, prefix_positions


def manual_r1(encoder: ClipEncoder, frames, text: str, renormalize: bool = False) -> float:
    """R1 straight from the open_clip model, one frame and one text at a time."""
    with torch.no_grad():
        frame_vectors = [F.normalize(encoder.model.encode_image(encoder.preprocess(f)[None]), dim=-1) for f in frames]
        v = torch.cat(frame_vectors).mean(0)
        if renormalize:
            v = F.normalize(v, dim=-1)
        t = F.normalize(encoder.model.encode_text(encoder.tokenizer([text])), dim=-1)[0]
    return float(v @ t)


def call(reward: ClipAlignmentReward, clips, completions) -> list[float]:
    return reward(prompts=[None] * len(completions), completions=completions, completion_ids=None, images=clips)


def test_r1_is_the_mean_frame_embedding_dotted_with_the_text_embedding(tiny_clip, make_clip):
    clip = make_clip(0)
    reward = ClipAlignmentReward(encoder=tiny_clip)
    (got,) = call(reward, [clip], ["a truck stops at a red light"])
    assert got == pytest.approx(manual_r1(tiny_clip, clip, "a truck stops at a red light"), abs=1e-5)
    renormalized = ClipAlignmentReward(encoder=tiny_clip, renormalize=True)
    (got,) = call(renormalized, [clip], ["a truck stops at a red light"])
    assert got == pytest.approx(manual_r1(tiny_clip, clip, "a truck stops at a red light", True), abs=1e-5)


def test_clipscore_rescale(tiny_clip, make_clip):
    clips, texts = [make_clip(1)] * 4, ["a car", "a bus", "a person crossing", "green light"]
    raw = call(ClipAlignmentReward(encoder=tiny_clip), clips, texts)
    scaled = call(ClipAlignmentReward(encoder=tiny_clip, clipscore_weight=2.5), clips, texts)
    assert scaled == pytest.approx([2.5 * max(r, 0.0) for r in raw], abs=1e-6)


def test_the_scene_of_a_decision_is_scored_and_wordless_text_gets_the_floor(tiny_clip, make_clip):
    clip = make_clip(2)
    reward = ClipAlignmentReward(encoder=tiny_clip, floor=-0.5)
    as_json = json.dumps({"scene": "a cyclist on the right", "actions": ["stop"], "reasons": []})
    conversational = [{"role": "assistant", "content": "a cyclist on the right"}]
    got = call(reward, [clip] * 6, [as_json, "a cyclist on the right", conversational, "", " \n", "{}"])
    assert got[0] == pytest.approx(got[1], abs=1e-6) and got[1] == pytest.approx(got[2], abs=1e-6)
    assert got[3:] == [-0.5, -0.5, -0.5]
    assert description_text('{"scene": "", "actions": []}') is None
    assert description_text("not json { at all") == "not json { at all"


def test_image_encoder_sees_each_distinct_frame_once(tiny_clip, make_clip, monkeypatch):
    batch, group, frames = 2, 3, 4
    encoded, text_calls = [], []
    encode_image, encode_text = tiny_clip.model.encode_image, tiny_clip.model.encode_text
    monkeypatch.setattr(tiny_clip.model, "encode_image", lambda x: encoded.append(len(x)) or encode_image(x))
    monkeypatch.setattr(tiny_clip.model, "encode_text", lambda x: text_calls.append(len(x)) or encode_text(x))
    reward = ClipAlignmentReward(encoder=tiny_clip)

    # TRL repeats each prompt's row G times; every row decodes its own image objects
    clips = [make_clip(seed, frames) for seed in range(batch) for _ in range(group)]
    texts = [f"completion {i}" for i in range(batch * group)]
    first = call(reward, clips, texts)
    assert sum(encoded) == batch * frames
    assert text_calls == [batch * group]

    again = call(reward, [make_clip(seed, frames) for seed in range(batch) for _ in range(group)], texts)
    assert sum(encoded) == batch * frames  # all frames came from the cache
    assert again == pytest.approx(first)


def test_cache_is_bounded_and_never_changes_results(tiny_clip, make_clip):
    clips = [make_clip(seed) for seed in range(3)]
    texts = ["a", "b", "c"]
    small = ClipAlignmentReward(encoder=tiny_clip, cache_size=2)
    got = call(small, clips, texts)
    assert len(small._cache) == 2
    assert got == pytest.approx(call(ClipAlignmentReward(encoder=tiny_clip), clips, texts), abs=1e-6)


def test_score_prefixes_matches_scoring_each_prefix_alone(tiny_clip, make_clip, monkeypatch):
    reward = ClipAlignmentReward(encoder=tiny_clip)
    clips = [make_clip(3), make_clip(4)]
    prefixes = [["a", "a red", "a red light"], ["", "the road"]]
    text_calls = []
    encode_text = tiny_clip.model.encode_text
    monkeypatch.setattr(tiny_clip.model, "encode_text", lambda x: text_calls.append(len(x)) or encode_text(x))
    got = reward.score_prefixes(clips, prefixes)
    assert text_calls == [4]  # one batch, the empty prefix skipped
    expected = [[reward.score([clip], [t])[0] for t in texts] for clip, texts in zip(clips, prefixes, strict=True)]
    assert got == [pytest.approx(row, abs=1e-6) for row in expected]


class WordTokenizer:
    """Token i is the word ``w{i}``; 0 is a special (end) token skipped when decoding."""

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return " ".join(f"w{i}" for i in ids if not (skip_special_tokens and i == 0))


def test_prefix_positions():
    assert prefix_positions(7, 3) == [3, 6, 7]
    assert prefix_positions(6, 3) == [3, 6]
    assert prefix_positions(0, 3) == []
    with pytest.raises(ValueError, match="every_k"):
        prefix_positions(5, 0)


def test_dense_rewards_place_increments_on_scored_tokens_and_telescope(tiny_clip, make_clip):
    reward = ClipAlignmentReward(encoder=tiny_clip, floor=0.1)
    clips = [make_clip(5), make_clip(6)]
    ids = [[5, 6, 7, 8, 9, 10, 11], torch.tensor([3, 4, 0])]
    dense = reward.dense_rewards(clips, ids, WordTokenizer(), every_k=3)
    assert [len(r) for r in dense] == [7, 3]
    assert [i for i, r in enumerate(dense[0]) if r != 0] == [2, 5, 6]
    full = reward.score(clips, ["w5 w6 w7 w8 w9 w10 w11", "w3 w4"])
    assert sum(dense[0]) == pytest.approx(full[0] - 0.1, abs=1e-6)
    assert sum(dense[1]) == pytest.approx(full[1] - 0.1, abs=1e-6)
    assert dense[0][2] == pytest.approx(reward.score([clips[0]], ["w5 w6 w7"])[0] - 0.1, abs=1e-6)


def test_missing_images_column_and_bad_options_are_clear_errors(tiny_clip):
    reward = ClipAlignmentReward(encoder=tiny_clip)
    with pytest.raises(ValueError, match="dataset column 'images'"):
        reward(prompts=[None], completions=["x"], actions=[[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="no frames"):
        reward(prompts=[None], completions=["x"], images=[[]])
    with pytest.raises(ValueError, match="row 1 of column 'images': expected a frame array of uint8 pixels"):
        ok, bad = np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((8, 8, 3), dtype=np.float64)
        reward(prompts=[None, None], completions=["x", "y"], images=[[ok], [bad]])
    with pytest.raises(ValueError, match="'cache_size'"):
        ClipAlignmentReward(encoder=tiny_clip, cache_size=0)
    with pytest.raises(ValueError, match="'floor'"):
        ClipAlignmentReward(encoder=tiny_clip, floor=float("nan"))
