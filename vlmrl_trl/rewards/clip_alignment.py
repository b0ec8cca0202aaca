"""R1, CLIP semantic alignment between a clip's frames and the generated scene description.

For frames I_1..I_M and a description T: v = (1/M) sum_i CLIP_img(I_i) with each frame embedding L2-normalised,
t = CLIP_txt(T) L2-normalised, and R1 = v . t (in [-1, 1]). Options: ``renormalize`` divides v by its norm
(R1 becomes a cosine); ``clipscore_weight`` w turns R1 into CLIPScore's w * max(R1, 0).

The description is the ``scene`` string of the first JSON object in the completion when it has one (the decision
format), else the whole completion. A description without a letter or digit (empty, blank, punctuation, junk)
scores ``floor`` and never reaches CLIP.

Frame embeddings are cached (bounded LRU keyed by the frame's pixels), so a batch of B clips x G completions x
M frames runs the image encoder on B*M frames, and not at all for clips already seen; the texts of a call are
encoded in one batch.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from ..clip import TINY_CLIP, ClipEncoder, load_clip, to_pil
from ..schema import ParseFailure, extract_json_object
from .base import RewardFunction, check_weight, completion_text

logger = logging.getLogger(__name__)
_WORD = re.compile(r"\w")


def description_text(text: str) -> str | None:
    """The text R1 scores for a completion: its decision's ``scene``, else all of it; None when it has no word."""
    found = extract_json_object(text)
    if not isinstance(found, ParseFailure) and isinstance(found.obj.get("scene"), str):
        text = found.obj["scene"]
    return text if _WORD.search(text) else None


def frame_key(image: Image.Image) -> bytes:
    """A content key of a frame: a digest of its mode, size and pixels."""
    digest = hashlib.blake2b(f"{image.mode}:{image.size}".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.digest()


def prefix_positions(length: int, every_k: int) -> list[int]:
    """Token counts at which a completion of ``length`` tokens is scored: every ``every_k`` tokens and the end."""
    if every_k < 1:
        raise ValueError(f"every_k must be >= 1, got {every_k}")
    return [*range(every_k, length, every_k), length] if length > 0 else []


class ClipAlignmentReward(RewardFunction):
    """R1 of each completion against the frames in the ``images`` dataset column; see the module docstring."""

    name = "clip_alignment"

    def __init__(
        self,
        *,
        model: str = TINY_CLIP,
        pretrained: str | None = None,
        device: str | None = None,
        renormalize: bool = False,
        clipscore_weight: float | None = None,
        floor: float = 0.0,
        cache_size: int = 4096,
        image_batch_size: int = 64,
        images_column: str = "images",
        encoder: ClipEncoder | None = None,
    ) -> None:
        super().__init__()
        self.renormalize = bool(renormalize)
        self.clipscore_weight = (
            None if clipscore_weight is None else check_weight("clipscore_weight", clipscore_weight)
        )
        try:
            self.floor = float(floor)
        except (TypeError, ValueError):
            raise ValueError(f"option 'floor' must be a number, got {floor!r}") from None
        if not abs(self.floor) < float("inf"):
            raise ValueError(f"option 'floor' must be finite, got {floor!r}")
        for option, value in (("cache_size", cache_size), ("image_batch_size", image_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"option {option!r} must be a positive integer, got {value!r}")
        self.cache_size = cache_size
        self.image_batch_size = image_batch_size
        self.images_column = images_column
        if encoder is None and model == TINY_CLIP and pretrained is None:
            logger.warning(
                "clip_alignment uses the untrained %s CLIP, whose R1 ignores the frames; fit one with "
                "`vlmrl-trl clip fit` and pass model='local-dir:PATH'",
                TINY_CLIP,
            )
        self.encoder = encoder if encoder is not None else load_clip(model, pretrained, device)
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def clip_vectors(self, clips: Sequence[Any]) -> torch.Tensor:
        """(N, D) clip embeddings v, encoding only frames neither cached nor repeated within the call."""
        frames_per_clip = []
        for i, clip in enumerate(clips):
            frames = list(clip) if isinstance(clip, list | tuple) else [clip]
            if not frames:
                raise ValueError(f"reward {self.name!r}: row {i} of column {self.images_column!r} has no frames")
            try:
                frames_per_clip.append([to_pil(frame) for frame in frames])
            except ValueError as err:
                raise ValueError(f"reward {self.name!r}: row {i} of column {self.images_column!r}: {err}") from None
        keys_per_clip = [[frame_key(frame) for frame in frames] for frames in frames_per_clip]
        known: dict[bytes, torch.Tensor] = {}
        missing: dict[bytes, Image.Image] = {}
        for frames, keys in zip(frames_per_clip, keys_per_clip, strict=True):
            for frame, key in zip(frames, keys, strict=True):
                if key in self._cache:
                    known[key] = self._cache[key]
                    self._cache.move_to_end(key)
                elif key not in missing:
                    missing[key] = frame
        if missing:
            embeddings = self.encoder.encode_images(list(missing.values()), self.image_batch_size)
            for key, embedding in zip(missing, embeddings, strict=True):
                known[key] = embedding
                self._cache[key] = embedding
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        vectors = torch.stack([torch.stack([known[k] for k in keys]).mean(0) for keys in keys_per_clip])
        return torch.nn.functional.normalize(vectors, dim=-1) if self.renormalize else vectors

    def _scores(self, vectors: torch.Tensor, rows: Sequence[int], texts: Sequence[str]) -> list[float]:
        """R1 of ``texts[j]`` against clip ``vectors[rows[j]]``; all usable texts go through CLIP in one batch."""
        described = [description_text(text) for text in texts]
        unique = list(dict.fromkeys(d for d in described if d is not None))
        if not unique:
            return [self.floor] * len(texts)
        text_vectors = self.encoder.encode_texts(unique)
        position = {text: i for i, text in enumerate(unique)}
        usable = [j for j, d in enumerate(described) if d is not None]
        cosines = (vectors[[rows[j] for j in usable]] * text_vectors[[position[described[j]] for j in usable]]).sum(-1)
        if self.clipscore_weight is not None:
            cosines = self.clipscore_weight * cosines.clamp(min=0)
        scores = [self.floor] * len(texts)
        for j, value in zip(usable, cosines.tolist(), strict=True):
            scores[j] = value
        return scores

    def score(self, clips: Sequence[Any], texts: Sequence[str]) -> list[float]:
        """R1 of each completion text against its clip (a list of frames)."""
        if len(clips) != len(texts):
            raise ValueError(f"reward {self.name!r}: {len(texts)} completions but {len(clips)} clips")
        if not texts:
            return []
        return self._scores(self.clip_vectors(clips), range(len(texts)), texts)

    def score_prefixes(self, clips: Sequence[Any], prefix_texts: Sequence[Sequence[str]]) -> list[list[float]]:
        """R1 of every prefix text of each completion against its clip, all prefixes in one batched call."""
        if len(clips) != len(prefix_texts):
            raise ValueError(f"reward {self.name!r}: {len(prefix_texts)} completions but {len(clips)} clips")
        rows = [i for i, texts in enumerate(prefix_texts) for _ in texts]
        flat = [text for texts in prefix_texts for text in texts]
        if not flat:
            return [[] for _ in prefix_texts]
        scores = iter(self._scores(self.clip_vectors(clips), rows, flat))
        return [[next(scores) for _ in texts] for texts in prefix_texts]

    def dense_rewards(
        self, clips: Sequence[Any], completion_ids: Sequence[Sequence[int]], tokenizer: Any, every_k: int = 1
    ) -> list[list[float]]:
        """Per-token rewards r_{k+1} = R1(I, T_{k+1}) - R1(I, T_k) for PPO, one list per completion, one value per
        token. Prefixes T_p = ``tokenizer.decode(ids[:p], skip_special_tokens=True)`` are scored at the token counts
        p of ``prefix_positions`` (every ``every_k`` tokens and the last token); the increment since the previous
        scored prefix (the empty prefix scores ``floor``) sits on token p - 1, the last token of T_p, and every
        other token gets 0. A completion's rewards sum to R1(full completion) - ``floor``."""
        token_lists = [ids.tolist() if hasattr(ids, "tolist") else list(ids) for ids in completion_ids]
        positions = [prefix_positions(len(ids), every_k) for ids in token_lists]
        prefix_texts = [
            [tokenizer.decode(ids[:p], skip_special_tokens=True) for p in points]
            for ids, points in zip(token_lists, positions, strict=True)
        ]
        rewards = []
        for ids, points, scores in zip(token_lists, positions, self.score_prefixes(clips, prefix_texts), strict=True):
            per_token = [0.0] * len(ids)
            previous = self.floor
            for p, value in zip(points, scores, strict=True):
                per_token[p - 1] = value - previous
                previous = value
            rewards.append(per_token)
        return rewards

    def per_token_rewards(
        self,
        inputs: Sequence[Mapping[str, Any]],
        completion_ids: Sequence[Sequence[int]],
        tokenizer: Any,
        *,
        every_k: int = 1,
    ) -> list[list[float]]:
        """`DenseReward` for PPO: :meth:`dense_rewards` of each row's frames (its ``images_column``)."""
        return self.dense_rewards([row[self.images_column] for row in inputs], completion_ids, tokenizer, every_k)

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Any] | None = None, **kwargs
    ) -> list[float]:
        if self.images_column not in kwargs:
            raise ValueError(
                f"reward {self.name!r} needs the dataset column {self.images_column!r} (the frames of each clip); "
                f"got columns {sorted(k for k in kwargs if not k.startswith('log_'))}"
            )
        return self.score(kwargs[self.images_column], [completion_text(c) for c in completions])
