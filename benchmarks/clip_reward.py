"""Cost of the CLIP alignment reward (R1) per completion as the group size G and the frames per clip M grow.

One call scores B prompts x G completions, as in a GRPO step; each call starts with an empty frame cache (every
training batch brings new clips). With the cache the image encoder sees B*M frames whatever G is, so the cost
per completion falls as G grows; the "uncached" column encodes all B*G*M frames, as a naive reward would.

    python benchmarks/clip_reward.py                       # the untrained vlmrl-tiny CLIP
    python benchmarks/clip_reward.py --model ViT-B-32      # a real-size architecture (random weights, offline)
    python benchmarks/clip_reward.py --model local-dir:runs/clip --out clip_reward.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlmrl_trl.clip import TINY_CLIP, ClipEncoder, load_clip
from vlmrl_trl.rewards import ClipAlignmentReward

DESCRIPTION = (
    "Driving in the middle lane of a three-lane road at dusk. The traffic light is red, a silver van is close "
    "ahead and a pedestrian is at the curb, a dashed line on the left and a solid line on the right."
)


def make_batch(prompts: int, group: int, frames: int, size: int, seed: int) -> tuple[list, list[str]]:
    """B*G rows as TRL passes them: each prompt's frames repeated G times as new image objects, G texts each."""
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(prompts)]
    clips = [[Image.fromarray(frame) for frame in pixels[b]] for b in range(prompts) for _ in range(group)]
    texts = [f"{DESCRIPTION} ({b}, {g})" for b in range(prompts) for g in range(group)]
    return clips, texts


def time_call(encoder: ClipEncoder, clips: list, texts: list[str], repeats: int) -> tuple[float, float]:
    """Median seconds of one reward call with a cold cache, and of encoding every frame and text without one."""
    cached, uncached = [], []
    for _ in range(repeats):
        reward = ClipAlignmentReward(encoder=encoder)
        start = time.perf_counter()
        reward.score(clips, texts)
        cached.append(time.perf_counter() - start)
        start = time.perf_counter()
        encoder.encode_images([frame for clip in clips for frame in clip])
        encoder.encode_texts(texts)
        uncached.append(time.perf_counter() - start)
    return statistics.median(cached), statistics.median(uncached)


def run(args: argparse.Namespace) -> list[dict]:
    encoder = load_clip(args.model, args.pretrained, args.device)
    rows = []
    print(f"CLIP {args.model} on {encoder.device}, B = {args.prompts} prompts, {args.image_size} px frames")
    print(f"{'M':>3} {'G':>4} {'completions':>11} {'ms/call':>9} {'ms/completion':>14} {'uncached ms/completion':>23}")
    for frames in args.frames:
        for group in args.groups:
            clips, texts = make_batch(args.prompts, group, frames, args.image_size, seed=frames * 1000 + group)
            time_call(encoder, clips[:1], texts[:1], 1)  # warm-up
            cached, uncached = time_call(encoder, clips, texts, args.repeats)
            n = len(texts)
            rows.append(
                {
                    "frames": frames,
                    "group": group,
                    "completions": n,
                    "ms_per_call": 1000 * cached,
                    "ms_per_completion": 1000 * cached / n,
                    "uncached_ms_per_completion": 1000 * uncached / n,
                }
            )
            r = rows[-1]
            print(
                f"{frames:>3} {group:>4} {n:>11} {r['ms_per_call']:>9.1f} {r['ms_per_completion']:>14.2f} "
                f"{r['uncached_ms_per_completion']:>23.2f}"
            )
        per_completion = [r["ms_per_completion"] for r in rows if r["frames"] == frames]
        falls = all(later < earlier for earlier, later in zip(per_completion, per_completion[1:], strict=False))
        print(f"    M = {frames}: cost per completion {'falls' if falls else 'does NOT fall'} as G grows")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=TINY_CLIP, help="CLIP: vlmrl-tiny, an open_clip name, local-dir:PATH")
    parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    parser.add_argument("--device", default=None, help="torch device (default: accelerate's)")
    parser.add_argument("--prompts", type=int, default=4, help="B, distinct clips per call")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="G values")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 4, 8], help="M values")
    parser.add_argument("--image-size", type=int, default=128, help="frame side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per setting (median reported)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
