"""``vlmrl-trl model``: build the tiny offline SmolVLM used by the default recipes, tests and benchmarks."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="build models offline")
    sub = p.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    tiny = sub.add_parser("tiny", help="save a tiny random SmolVLM-architecture (Idefics3) model and processor")
    tiny.add_argument("--out", required=True, help="model directory to write (e.g. outputs/tiny-vlm)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.add_argument("--image-size", type=int, default=128, help="frame side in pixels the model sees")
    tiny.add_argument("--patch-size", type=int, default=16, help="vision patch side in pixels")
    tiny.add_argument("--vision-hidden-size", type=int, default=128, help="vision encoder width")
    tiny.add_argument("--vision-layers", type=int, default=3, help="vision encoder depth")
    tiny.add_argument("--text-hidden-size", type=int, default=192, help="language model width")
    tiny.add_argument("--text-layers", type=int, default=3, help="language model depth")
    tiny.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..models import build_tiny_vlm

    out = build_tiny_vlm(
        args.out,
        seed=args.seed,
        image_size=args.image_size,
        patch_size=args.patch_size,
        vision_hidden_size=args.vision_hidden_size,
        vision_layers=args.vision_layers,
        text_hidden_size=args.text_hidden_size,
        text_layers=args.text_layers,
    )
    print(f"wrote {out}")
    return 0
