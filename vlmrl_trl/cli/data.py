"""``vlmrl-trl data``: generate synthetic clips, extract video frames for BDD-OIA, check a data folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="synthetic clips, BDD-OIA frame extraction and checks")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    synth = sub.add_parser("synth", help="write synthetic driving clips in the BDD-OIA layout")
    synth.add_argument("--out", required=True, help="output folder (must be empty or hold an earlier synthetic set)")
    synth.add_argument("--train", type=int, default=2000, help="clips in the train split")
    synth.add_argument("--val", type=int, default=200, help="clips in the val split")
    synth.add_argument("--test", type=int, default=500, help="clips in the test split")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same clips")
    synth.add_argument("--num-frames", type=int, default=4, help="frames per clip")
    synth.add_argument("--image-size", type=int, default=128, help="frame side in pixels")
    synth.add_argument(
        "--scale",
        choices=("near", "far"),
        default="near",
        help="world scale: near (cues span several image tokens; from-scratch models) or far (small cues; harder)",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic set in --out")
    synth.set_defaults(handler=run_synth)

    ext = sub.add_parser("extract-frames", help="cut frames/<clip>/<i>.jpg out of BDD100K / BDD-OIA videos")
    ext.add_argument("--videos", required=True, help="folder searched recursively for <video>.mov/.mp4 files")
    ext.add_argument("--root", required=True, help="BDD-OIA folder with the {split}_25k_images_*.json files")
    ext.add_argument("--out", default=None, help="frames folder to write (default: ROOT/frames)")
    ext.add_argument("--split", action="append", choices=("train", "val", "test"), help="split(s); default all")
    ext.add_argument("--num-frames", type=int, default=4, help="frames the loader will take per clip")
    ext.add_argument("--frame-stride", type=int, default=1, help="stride the loader will use between them")
    ext.add_argument("--fps", type=float, default=2.0, help="rate of the extracted frames (2.0: 0.5 s apart)")
    ext.add_argument("--clip-seconds", type=float, default=5.0, help="length of a BDD-OIA clip segment")
    ext.add_argument(
        "--end-time", type=float, default=None, help="time (s) of the annotated frame in full-length videos"
    )
    ext.add_argument("--max-side", type=int, default=None, help="shrink frames to at most this many pixels")
    ext.add_argument("--overwrite", action="store_true", help="re-extract clips that already have frames")
    ext.set_defaults(handler=run_extract)

    check = sub.add_parser("check", help="load a BDD-OIA-layout folder and print what it holds")
    check.add_argument("--root", required=True, help="folder with the label files, data/ and optional frames/")
    check.add_argument("--split", action="append", choices=("train", "val", "test"), help="split(s); default all")
    check.add_argument("--num-frames", type=int, default=4, help="frames per clip to look for")
    check.add_argument("--frame-stride", type=int, default=1, help="stride between the frames taken")
    check.add_argument("--check-images", choices=("decode", "exists"), default="decode", help="how to check images")
    check.add_argument("--skip-invalid", action="store_true", help="skip invalid entries with a warning")
    check.set_defaults(handler=run_check)


def run_synth(args: argparse.Namespace) -> int:
    import json
    import time

    from ..data.synthetic import INFO_FILE, generate_synthetic

    start = time.perf_counter()
    try:
        out = generate_synthetic(
            args.out,
            train=args.train,
            val=args.val,
            test=args.test,
            seed=args.seed,
            num_frames=args.num_frames,
            image_size=args.image_size,
            scale=args.scale,
            overwrite=args.overwrite,
        )
    except FileExistsError as err:
        raise ValueError(str(err)) from err
    seconds = time.perf_counter() - start
    info = json.loads((out / INFO_FILE).read_text())
    total = sum(s["clips"] for s in info["splits"].values())
    print(f"wrote {total} clips to {out} in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} clips/s)")
    print(f"  scale: {info['scale']} ({info['scale_note']})")
    for split, stats in info["splits"].items():
        print(f"  {split}: {stats['clips']} clips, action counts {stats['action_counts']}")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from ..data.frames import VIDEO_EXTENSIONS, check_fps, extract_frames

    check_fps(args.fps, "--fps")
    report = extract_frames(
        args.videos,
        args.root,
        args.out,
        splits=args.split or ("train", "val", "test"),
        num_frames=args.num_frames,
        frame_stride=args.frame_stride,
        fps=args.fps,
        clip_seconds=args.clip_seconds,
        end_time=args.end_time,
        max_side=args.max_side,
        overwrite=args.overwrite,
    )
    print(report.summary())
    for clip, error in list(report.failed.items())[:10]:
        print(f"  failed {clip}: {error}")
    if report.nothing_extracted:
        problems = []
        if report.missing_video:
            example = report.missing_video[0].rsplit("/", 1)[-1]
            problems.append(
                f"{len(report.missing_video)} without a video under --videos {args.videos} "
                f"(looked for e.g. {example}{'/'.join(VIDEO_EXTENSIONS)})"
            )
        if report.failed:
            problems.append(f"{len(report.failed)} failed (see above)")
        raise ValueError(f"no clip could be extracted: {', '.join(problems)}")
    return 1 if report.failed else 0


def run_check(args: argparse.Namespace) -> int:
    from collections import Counter

    from ..data.bddoia import load_bddoia
    from ..schema import ACTION_IDS, REASON_IDS

    for split in args.split or ("train", "val", "test"):
        ds = load_bddoia(
            args.root,
            split,
            num_frames=args.num_frames,
            frame_stride=args.frame_stride,
            check_images=args.check_images,
            skip_invalid=args.skip_invalid,
        )
        frames = dict(sorted(Counter(ds["num_frames"]).items()))
        described = sum(s is not None for s in ds["scene"])
        actions = [sum(col) for col in zip(*ds["actions"], strict=True)] if len(ds) else [0] * len(ACTION_IDS)
        reasons = [sum(col) for col in zip(*ds["reasons"], strict=True)] if len(ds) else [0] * len(REASON_IDS)
        print(f"{split}: {len(ds)} clips, frames per clip {frames}, {described} with a scene description")
        print("  actions: " + ", ".join(f"{n} {c}" for n, c in zip(ACTION_IDS, actions, strict=True)))
        print("  reasons: " + ", ".join(f"{n} {c}" for n, c in zip(REASON_IDS, reasons, strict=True)))
    return 0
