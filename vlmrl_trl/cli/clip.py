"""``vlmrl-trl clip``: fit the tiny CLIP behind the offline R1 reward on described clips, and evaluate a CLIP."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("clip", help="fit or evaluate the CLIP of the semantic-alignment reward (R1)")
    sub = p.add_subparsers(dest="clip_command", required=True, metavar="SUBCOMMAND")

    fit = sub.add_parser("fit", help="train the tiny CLIP on described clips (vlmrl-trl data synth) on CPU")
    fit.add_argument("--data", required=True, help="folder in the BDD-OIA layout whose clips have descriptions")
    fit.add_argument("--out", required=True, help="output folder, in open_clip's local-dir layout")
    fit.add_argument("--train-split", default="train", help="split to train on")
    fit.add_argument("--val-split", default="val", help="held-out split for the pairwise accuracy")
    fit.add_argument("--num-frames", type=int, default=4, help="frames per clip")
    fit.add_argument("--steps", type=int, default=200, help="optimizer steps")
    fit.add_argument("--batch-size", type=int, default=32, help="clips per step")
    fit.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the initial weights and batch order")
    fit.set_defaults(handler=run_fit)

    ev = sub.add_parser("eval", help="pairwise accuracy of a CLIP on described clips")
    ev.add_argument("--model", required=True, help="'local-dir:PATH', vlmrl-tiny, or an open_clip model name")
    ev.add_argument("--pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    ev.add_argument("--data", required=True, help="folder in the BDD-OIA layout whose clips have descriptions")
    ev.add_argument("--split", default="test", help="split to evaluate")
    ev.add_argument("--num-frames", type=int, default=4, help="frames per clip")
    ev.set_defaults(handler=run_eval)


def run_fit(args: argparse.Namespace) -> int:
    from ..clip import fit_clip
    from ..data import load_bddoia

    train = load_bddoia(args.data, args.train_split, args.num_frames)
    val = load_bddoia(args.data, args.val_split, args.num_frames)
    fit_clip(train, val, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, log=print)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..clip import described_clips, load_clip, pairwise_accuracy
    from ..data import load_bddoia

    clips, texts = described_clips(load_bddoia(args.data, args.split, args.num_frames), args.split)
    accuracy = pairwise_accuracy(load_clip(args.model, args.pretrained), clips, texts)
    print(f"{args.split}: {len(clips)} clips, pairwise accuracy {accuracy:.4f}")
    return 0
