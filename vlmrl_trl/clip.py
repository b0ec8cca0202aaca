"""CLIP for the semantic-alignment reward: load an open_clip model, embed frames and texts, fit a tiny one offline.

``load_clip`` takes an open_clip model name with a pretrained tag or checkpoint file, an open_clip ``local-dir:``
folder, or ``vlmrl-tiny``: a small architecture built from a config in this module (random weights unless a
checkpoint is given), which ``fit_clip`` trains on the synthetic clips so the offline demo's R1 measures something.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

logger = logging.getLogger(__name__)

TINY_CLIP = "vlmrl-tiny"
# A small CLIP that trains on CPU in minutes: a ResNet image tower (a CNN learns far faster from a few hundred
# clips than a ViT) on 64 px frames, and a 2-layer text transformer on open_clip's bundled BPE vocabulary.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CONFIG_FILE = "open_clip_config.json"  # open_clip's local-dir layout: this config and the weights beside it
WEIGHTS_FILE = "open_clip_model.safetensors"
FIT_REPORT_FILE = "fit_report.json"
# Longer than any BPE token of open_clip's vocabulary, so a cut there keeps every token of the context.
TEXT_CHARS_PER_TOKEN = 32


def to_pil(image: Any) -> Image.Image:
    """A frame as a PIL image: a PIL image, an HxWxC uint8 array, or a path to an image file."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"expected a frame array of uint8 pixels shaped HxW or HxWxC, got {image.dtype} of shape {image.shape}"
            )
        return Image.fromarray(image)
    if isinstance(image, str | Path):
        with Image.open(image) as opened:
            return opened.convert("RGB")
    raise ValueError(f"expected a frame as a PIL image, an array or an image path, got {type(image).__name__}")


def tokenizable_prefix(text: str, context_length: int) -> str:
    """The part of ``text`` that can reach CLIP's ``context_length`` tokens, so that a huge text is not tokenized
    whole (seconds for megabytes) only to be cut: whitespace runs collapse to one space, as the tokenizer does, and
    the text is cut at ``TEXT_CHARS_PER_TOKEN`` characters per token; a text within that is returned as it is."""
    limit = TEXT_CHARS_PER_TOKEN * context_length
    if len(text) <= limit:
        return text
    return " ".join(text.split(None, limit)[:limit])[:limit]


@dataclass
class ClipEncoder:
    """An open_clip model with its image preprocessing and tokenizer; embeddings come out L2-normalised."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
        """(N, D) unit-norm embeddings of frames, ``batch_size`` frames per forward pass."""
        chunks = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images[start : start + batch_size]])
            chunks.append(F.normalize(self.model.encode_image(pixels.to(self.device)).float(), dim=-1))
        return torch.cat(chunks)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """(N, D) unit-norm embeddings of texts (truncated to the model's context length), ``batch_size`` texts per
        forward pass (dense R1 scores many prefixes at once)."""
        context_length = getattr(self.tokenizer, "context_length", 77)
        texts = [tokenizable_prefix(text, context_length) for text in texts]
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(chunks)

    @torch.no_grad()
    def clip_embeddings(self, clips: Sequence[Sequence[Image.Image]], batch_size: int = 64) -> torch.Tensor:
        """(N, D) clip embeddings v = mean of each clip's unit-norm frame embeddings (not re-normalised)."""
        frames = [frame for clip in clips for frame in clip]
        index = torch.tensor([i for i, clip in enumerate(clips) for _ in clip], device=self.device)
        embeddings = self.encode_images(frames, batch_size)
        sums = torch.zeros(len(clips), embeddings.shape[1], device=self.device).index_add_(0, index, embeddings)
        return sums / torch.bincount(index, minlength=len(clips)).clamp(min=1).unsqueeze(1)


def _tiny_clip_model(config: Mapping[str, Any], seed: int = 0) -> torch.nn.Module:
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the untrained tiny model is the same in every process and test
        return open_clip.CLIP(**config)


def load_clip(
    model: str = TINY_CLIP, pretrained: str | None = None, device: str | torch.device | None = None
) -> ClipEncoder:
    """Load a CLIP for inference (eval mode, no gradients) on ``device`` (default: accelerate's device).

    ``model``: ``vlmrl-tiny``, an open_clip name (``open_clip.list_models()``), a hub model (``hf-hub:ORG/NAME``),
    or an open_clip local-dir folder (``local-dir:PATH``, or a PATH holding ``open_clip_config.json``).
    ``pretrained``: an open_clip tag or a ``.safetensors``/``.pt`` checkpoint file; not used with a hub model or a
    local-dir folder, which hold their own weights. An open_clip name without it is a random CLIP (a warning).
    """
    import open_clip

    if device is None:
        from accelerate import PartialState

        device = PartialState().device
    device = torch.device(device)
    folder = model.removeprefix("local-dir:")
    if model.startswith("local-dir:") or Path(folder).is_dir():
        if pretrained is not None:
            raise ValueError(
                f"option 'pretrained' is not used with a local-dir CLIP folder ({folder}), which holds its weights"
            )
        if not (Path(folder) / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{Path(folder) / CONFIG_FILE} not found: not an open_clip local-dir folder")
        name = f"local-dir:{folder}"
        clip, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    else:
        looks_like_file = pretrained is not None and Path(pretrained).suffix in (".safetensors", ".pt", ".pth", ".bin")
        if looks_like_file and not Path(pretrained).is_file():
            raise FileNotFoundError(f"CLIP checkpoint {pretrained} not found")
        if model == TINY_CLIP:
            clip = _tiny_clip_model(TINY_CLIP_CONFIG)
            if pretrained is not None:
                if not looks_like_file:
                    raise ValueError(f"{TINY_CLIP} has no pretrained tags; pass a checkpoint file, got {pretrained!r}")
                open_clip.load_checkpoint(clip, pretrained)
            clip.to(device)
            preprocess = open_clip.image_transform(TINY_CLIP_CONFIG["vision_cfg"]["image_size"], is_train=False)
            tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CLIP_CONFIG["text_cfg"]["context_length"])
        elif model.startswith("hf-hub:"):
            if pretrained is not None:
                raise ValueError(f"option 'pretrained' is not used with a hub CLIP ({model}), which holds its weights")
            clip, _, preprocess = open_clip.create_model_and_transforms(model, device=device)
            tokenizer = open_clip.get_tokenizer(model)
        elif model in open_clip.list_models():
            if pretrained is None:
                logger.warning(
                    "CLIP %s has no 'pretrained' weights named (e.g. pretrained: openai): it is randomly initialised, "
                    "so R1 scores nothing meaningful",
                    model,
                )
            clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained, device=device)
            tokenizer = open_clip.get_tokenizer(model)
        else:
            raise ValueError(
                f"unknown CLIP model {model!r}: expected {TINY_CLIP!r}, an open_clip local-dir folder "
                f"('local-dir:PATH'), a hub model ('hf-hub:ORG/NAME'), or an open_clip model name such as ViT-B-32 "
                "(see open_clip.list_models())"
            )
    clip.eval().requires_grad_(False)
    return ClipEncoder(clip, preprocess, tokenizer, device)


def save_clip(model: torch.nn.Module, model_cfg: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Save a CLIP in open_clip's local-dir layout, which ``load_clip("local-dir:OUT")`` and open_clip read."""
    import open_clip
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    preprocess_cfg = {
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    config = {"model_cfg": dict(model_cfg), "preprocess_cfg": preprocess_cfg}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def described_clips(rows: Iterable[Mapping[str, Any]], where: str) -> tuple[list[list[Image.Image]], list[str]]:
    """The frames and description of each row (columns ``images`` and ``scene``); errors name ``where`` and the row."""
    clips, texts = [], []
    for i, row in enumerate(rows):
        if "images" not in row or not isinstance(row.get("scene"), str):
            raise ValueError(
                f"{where} row {i}: needs the columns 'images' (frames) and 'scene' (a description; "
                "BDD-OIA has none, the synthetic clips do)"
            )
        frames = row["images"] if isinstance(row["images"], list | tuple) else [row["images"]]
        if not frames:
            raise ValueError(f"{where} row {i}: no frames in 'images'")
        clips.append([to_pil(frame) for frame in frames])
        texts.append(row["scene"])
    if not clips:
        raise ValueError(f"{where}: no clips")
    return clips, texts


def pairwise_accuracy(encoder: ClipEncoder, clips: Sequence[Sequence[Image.Image]], texts: Sequence[str]) -> float:
    """Fraction of pairs (clip i, other clip j with a different description) where R1(clip i, own description)
    is higher than R1(clip i, description of j): how well the CLIP tells matching descriptions apart."""
    v = encoder.clip_embeddings(clips)
    t = encoder.encode_texts(texts)
    scores = v @ t.T
    codes = {text: i for i, text in enumerate(dict.fromkeys(texts))}
    ids = torch.tensor([codes[text] for text in texts], device=scores.device)
    differ = ids.unsqueeze(0) != ids.unsqueeze(1)
    if not differ.any():
        raise ValueError("pairwise accuracy needs clips with at least two different descriptions")
    wins = (scores.diagonal().unsqueeze(1) > scores) & differ
    return float(wins.sum() / differ.sum())


def fit_clip(
    train: Iterable[Mapping[str, Any]],
    val: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``vlmrl-tiny`` contrastively on clips and their ``scene`` descriptions for ``steps`` batches on CPU,
    and save it in open_clip's local-dir layout with ``fit_report.json`` (held-out pairwise accuracy, timings).

    The loss is the symmetric InfoNCE between re-normalised clip embeddings (mean of unit-norm frame embeddings)
    and text embeddings; clips sharing a description are all positives of each other.
    """
    import open_clip

    if steps < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"need steps >= 1, batch_size >= 2, lr > 0; got {steps}, {batch_size}, {lr}")
    start_time = time.monotonic()
    generator = torch.Generator().manual_seed(seed)
    train_clips, train_texts = described_clips(train, "train")
    val_clips, val_texts = described_clips(val, "val")
    model = _tiny_clip_model(TINY_CLIP_CONFIG, seed)
    preprocess = open_clip.image_transform(TINY_CLIP_CONFIG["vision_cfg"]["image_size"], is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CLIP_CONFIG["text_cfg"]["context_length"])
    encoder = ClipEncoder(model, preprocess, tokenizer, torch.device("cpu"))

    pixels = [torch.stack([preprocess(frame.convert("RGB")) for frame in clip]) for clip in train_clips]
    tokens = tokenizer(train_texts)
    codes = {text: i for i, text in enumerate(dict.fromkeys(train_texts))}
    text_ids = torch.tensor([codes[text] for text in train_texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    log(f"fitting {TINY_CLIP} on {len(train_clips)} clips ({len(codes)} distinct descriptions) for {steps} steps")

    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        for batch in torch.randperm(len(train_clips), generator=generator).split(batch_size):
            if len(losses) == steps:
                break
            frames = torch.cat([pixels[i] for i in batch])
            index = torch.cat([torch.full((len(pixels[i]),), j) for j, i in enumerate(batch.tolist())])
            frame_emb = F.normalize(model.encode_image(frames), dim=-1)
            clip_emb = torch.zeros(len(batch), frame_emb.shape[1]).index_add(0, index, frame_emb)
            clip_emb = F.normalize(clip_emb, dim=-1)
            text_emb = F.normalize(model.encode_text(tokens[batch]), dim=-1)
            logits = model.logit_scale.exp() * clip_emb @ text_emb.T
            targets = (text_ids[batch].unsqueeze(0) == text_ids[batch].unsqueeze(1)).float()
            targets = targets / targets.sum(1, keepdim=True)
            loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            if len(losses) % 25 == 0 or len(losses) == steps:
                recent = sum(losses[-25:]) / len(losses[-25:])
                log(f"step {len(losses)}/{steps}: loss {recent:.4f} ({time.monotonic() - start_time:.0f}s)")
    model.eval()
    train_seconds = time.monotonic() - start_time
    accuracy = pairwise_accuracy(encoder, val_clips, val_texts)
    out = save_clip(model, TINY_CLIP_CONFIG, out_dir)
    report = {
        "model": TINY_CLIP,
        "train_clips": len(train_clips),
        "val_clips": len(val_clips),
        "steps": steps,
        "batch_size": batch_size,
        "final_loss": losses[-1],
        "val_pairwise_accuracy": accuracy,
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    (out / FIT_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(f"held-out pairwise accuracy {accuracy:.4f}; saved local-dir:{out}")
    return report
