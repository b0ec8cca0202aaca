"""``vlmrl-trl model``: build the tiny offline models (one per supported family) used by recipes, tests and
benchmarks."""

from __future__ import annotations

import argparse

# Size options: (help, attribute of `TinySizes`/`build_tiny_vlm`); unset ones keep the family's defaults.
SIZE_OPTIONS = {
    "--image-size": "frame side in pixels the model sees",
    "--patch-size": "vision patch side in pixels",
    "--vision-hidden-size": "vision encoder width",
    "--vision-layers": "vision encoder depth",
    "--text-hidden-size": "language model width",
    "--text-layers": "language model depth",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..tiny import FAMILIES

    p = subparsers.add_parser("model", help="build models offline")
    sub = p.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    tiny = sub.add_parser("tiny", help="save a tiny random model of one VLM family, with its processor")
    tiny.add_argument("--out", required=True, help="model directory to write (e.g. outputs/tiny-vlm)")
    tiny.add_argument(
        "--family",
        default="idefics3",
        choices=["idefics3", *FAMILIES],
        help="architecture: idefics3 (SmolVLM, the default recipes' model), Qwen2-VL/2.5-VL/3-VL, LLaVA, LLaVA-Next, "
        "LLaVA-OneVision, Gemma 3",
    )
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    for option, text in SIZE_OPTIONS.items():
        tiny.add_argument(option, type=int, default=argparse.SUPPRESS, help=f"{text} (default: the family's)")
    tiny.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..tiny import build_tiny_model

    sizes = {
        name: getattr(args, name)
        for name in (option[2:].replace("-", "_") for option in SIZE_OPTIONS)
        if hasattr(args, name)
    }
    out = build_tiny_model(args.out, args.family, seed=args.seed, **sizes)
    print(f"wrote {out} ({args.family})")
    return 0
