"""CLIP loading (tiny config, checkpoint files, open_clip local-dir folders), pairwise accuracy and fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrl_trl.clip import (
    FIT_REPORT_FILE,
    TINY_CLIP,
    TINY_CLIP_CONFIG,
    WEIGHTS_FILE,
    fit_clip,
    load_clip,
    pairwise_accuracy,
    save_clip,
    to_pil,
    tokenizable_prefix,
)

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def colour_rows(repeats: int) -> list[dict]:
    """Clips of two solid frames, described by their colour."""
    return [
        {"images": [Image.new("RGB", (48, 48), rgb)] * 2, "scene": f"a {name} scene"}
        for _ in range(repeats)
        for name, rgb in COLORS.items()
    ]


def test_tiny_clip_is_deterministic_and_embeds_to_unit_vectors():
    a, b = load_clip(TINY_CLIP, device="cpu"), load_clip(TINY_CLIP, device="cpu")
    frames = [Image.new("RGB", (40, 30), (10, 20, 30)), Image.new("RGB", (64, 64), (200, 0, 0))]
    assert torch.equal(a.encode_images(frames), b.encode_images(frames))
    texts = a.encode_texts(["a car", ""])
    assert texts.shape == (2, TINY_CLIP_CONFIG["embed_dim"])
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2))
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())


def test_saved_clip_loads_from_local_dir_and_from_its_checkpoint_file(tmp_path):
    import open_clip

    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    out = save_clip(model, TINY_CLIP_CONFIG, tmp_path / "clip")
    frames = [Image.new("RGB", (64, 64), (0, 120, 200))]
    expected = load_clip(f"local-dir:{out}", device="cpu").encode_images(frames)
    assert not torch.allclose(expected, load_clip(device="cpu").encode_images(frames))
    for encoder in (load_clip(str(out), device="cpu"), load_clip(TINY_CLIP, pretrained=str(out / WEIGHTS_FILE))):
        assert torch.allclose(encoder.encode_images(frames), expected, atol=1e-6)
    reloaded = open_clip.create_model(f"local-dir:{out}")  # open_clip reads the folder by itself
    assert torch.equal(reloaded.visual.conv1.weight, model.visual.conv1.weight)


def test_load_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-Nope'"):
        load_clip("ViT-Nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_clip(TINY_CLIP, pretrained=str(tmp_path / "missing.safetensors"), device="cpu")
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        load_clip(f"local-dir:{tmp_path}", device="cpu")
    with pytest.raises(ValueError, match="no pretrained tags"):
        load_clip(TINY_CLIP, pretrained="laion2b", device="cpu")
    with pytest.raises(ValueError, match="'pretrained' is not used with a hub CLIP"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", pretrained="openai", device="cpu")


def test_hub_clips_are_loaded_by_open_clip_and_unweighted_names_warn(monkeypatch, caplog):
    """`hf-hub:` names go to open_clip as they are; an open_clip name without weights is random, and says so."""
    import open_clip

    asked = []

    def create(name, **kwargs):
        asked.append((name, kwargs.get("pretrained")))
        raise RuntimeError("stop before any download")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)
    for name in ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "ViT-B-32"):
        with caplog.at_level("WARNING"), pytest.raises(RuntimeError, match="stop before"):
            load_clip(name, device="cpu")
    assert asked == [("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None), ("ViT-B-32", None)]
    assert "CLIP ViT-B-32 has no 'pretrained' weights named" in caplog.text
    assert "hf-hub" not in caplog.text


def test_texts_are_encoded_in_batches_with_the_same_result():
    encoder = load_clip(TINY_CLIP, device="cpu")
    texts = [f"a car {i} metres ahead" for i in range(7)]
    assert torch.allclose(encoder.encode_texts(texts, batch_size=3), encoder.encode_texts(texts), atol=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "the light is red  and\n\na van is close " * 2000,
        " " * 100_000 + "a pedestrian at the curb",
        "x" * 100_000,
        "a short description",
    ],
)
def test_a_long_text_is_cut_before_tokenizing_to_the_same_tokens(text):
    tokenizer = load_clip(TINY_CLIP, device="cpu").tokenizer
    prefix = tokenizable_prefix(text, tokenizer.context_length)
    assert len(prefix) <= 32 * tokenizer.context_length
    assert torch.equal(tokenizer([prefix]), tokenizer([text]))


def test_pairwise_accuracy_ignores_pairs_with_the_same_description():
    encoder = load_clip(device="cpu")
    rows = colour_rows(2)
    accuracy = pairwise_accuracy(encoder, [r["images"] for r in rows], [r["scene"] for r in rows])
    assert 0.0 <= accuracy <= 1.0
    with pytest.raises(ValueError, match="two different descriptions"):
        pairwise_accuracy(encoder, [rows[0]["images"]] * 2, ["same", "same"])


def test_fit_saves_a_local_dir_clip_with_its_report(tmp_path):
    logs = []
    report = fit_clip(colour_rows(4), colour_rows(1), tmp_path / "clip", steps=4, batch_size=8, log=logs.append)
    saved = json.loads((tmp_path / "clip" / FIT_REPORT_FILE).read_text())
    assert saved == report and report["steps"] == 4 and report["val_clips"] == 4
    assert 0.0 <= report["val_pairwise_accuracy"] <= 1.0
    encoder = load_clip(f"local-dir:{tmp_path / 'clip'}", device="cpu")
    assert encoder.encode_texts(["a red scene"]).shape == (1, TINY_CLIP_CONFIG["embed_dim"])
    assert any("held-out pairwise accuracy" in line for line in logs)


@pytest.mark.slow
def test_clip_fit_command_learns_to_match_synthetic_descriptions(tmp_path, capsys):
    """The offline demo's R1 measures something: on held-out synthetic clips, the clip's own description beats
    another clip's in >= 90% of pairs after a short CPU fit."""
    from vlmrl_trl.cli import main
    from vlmrl_trl.data import generate_synthetic

    data = generate_synthetic(tmp_path / "synth", train=300, val=100, test=0)
    assert main(["clip", "fit", "--data", str(data), "--out", str(tmp_path / "clip"), "--steps", "100"]) == 0
    report = json.loads((tmp_path / "clip" / FIT_REPORT_FILE).read_text())
    assert report["val_pairwise_accuracy"] >= 0.9
    model = f"local-dir:{tmp_path / 'clip'}"
    assert main(["clip", "eval", "--model", model, "--data", str(data), "--split", "val"]) == 0
    assert f"val: 100 clips, pairwise accuracy {report['val_pairwise_accuracy']:.4f}" in capsys.readouterr().out


def test_fit_rejects_rows_without_descriptions(tmp_path):
    with pytest.raises(ValueError, match="train row 0: needs the columns 'images'"):
        fit_clip([{"images": [], "scene": None}], colour_rows(1), tmp_path)


def test_frames_come_as_images_uint8_arrays_or_paths(tmp_path):
    pixels = np.zeros((8, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "f.png")
    assert to_pil(pixels).size == to_pil(tmp_path / "f.png").size == (6, 8)
    with pytest.raises(ValueError, match=r"uint8 pixels shaped HxW or HxWxC, got float32 of shape \(8, 6, 3\)"):
        to_pil(pixels.astype(np.float32))
