"""``vlmrl-trl predict`` (batched generation over a split) and ``vlmrl-trl eval`` (metrics and visual report)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .score import add_skip_option

if TYPE_CHECKING:
    from ..report import FrameSource


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data.formatting import CLIP_INPUTS, PROMPT_MODES

    p = subparsers.add_parser("predict", help="generate a decision for every clip of a split (predictions.jsonl)")
    p.add_argument("--model", required=True, help="hub id, model directory or PEFT adapter directory")
    p.add_argument("--data", required=True, help="root folder of the clips (BDD-OIA layout, or a synthetic set)")
    p.add_argument("--split", default="test", help="split to predict (default: test)")
    p.add_argument("--out", required=True, help="folder for predictions.jsonl")
    p.add_argument("--num-frames", type=int, default=4, help="frames per clip, as in training (default: 4)")
    p.add_argument("--frame-stride", type=int, default=1, help="step between the frames taken (default: 1)")
    p.add_argument(
        "--prompt-mode",
        choices=PROMPT_MODES,
        default="instruction",
        help="the prompt the model was trained with (default: instruction)",
    )
    p.add_argument(
        "--clip-input",
        choices=CLIP_INPUTS,
        default="images",
        help="the frames as images, or as one video through the model's video path, as in training (default: images)",
    )
    p.add_argument("--clip-fps", type=float, default=2.0, help="frame rate of the clips, for video (default: 2.0)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generate call (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="longest answer, in tokens (default: 160)")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --do-sample)")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling (default: 0)")
    p.add_argument("--max-samples", type=int, default=None, help="predict only the first N clips of the split")
    p.add_argument(
        "--skip-invalid", action="store_true", help="skip clips with a missing frame or bad labels (warns with counts)"
    )
    p.add_argument("--dtype", default="auto", help="model dtype: auto, bfloat16, float16 or float32 (default: auto)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    p.set_defaults(handler=run_predict)

    e = subparsers.add_parser("eval", help="score predictions.jsonl and render an HTML report of sampled clips")
    e.add_argument("--predictions", required=True, help="predictions.jsonl written by 'vlmrl-trl predict'")
    e.add_argument("--out", required=True, help="folder for metrics.json, report.html and report/")
    e.add_argument("--data", default=None, help="where the clips' root folder is now, if it moved since predict")
    e.add_argument("--report-samples", type=int, default=48, help="clips shown in the report (default: 48)")
    e.add_argument("--seed", type=int, default=0, help="seed of the clip sample (default: 0)")
    add_skip_option(e)
    e.set_defaults(handler=run_eval)

    c = subparsers.add_parser(
        "compare", help="two runs side by side (e.g. SFT and an RL stage): per-class F1 and the clips that changed"
    )
    c.add_argument("--before", required=True, help="predictions.jsonl of the first run (e.g. the SFT model)")
    c.add_argument("--after", required=True, help="predictions.jsonl of the second run, on the same clips")
    c.add_argument("--out", required=True, help="folder for compare.html and compare/")
    c.add_argument("--names", nargs=2, default=("before", "after"), metavar=("BEFORE", "AFTER"), help="run names")
    c.add_argument("--data", default=None, help="where the clips' root folder is now, if it moved since predict")
    c.add_argument("--max-clips", type=int, default=60, help="changed clips shown, those that got worse first")
    add_skip_option(c)
    c.set_defaults(handler=run_compare)


# What a --data folder must hold, for the errors that find it missing.
DATA_FOLDER = (
    "it must hold BDD-OIA's label files ({split}_25k_images_actions.json and _reasons.json) and the clips' frames "
    "(docs/data.md), or a synthetic set from 'vlmrl-trl data synth --out DIR'"
)


def check_model_option(model: str) -> None:
    """Fail at once, naming ``--model``, when it is meant as a local folder that does not exist."""
    from ..models import check_model_source

    try:
        check_model_source(model)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--model {model}: no such folder; give a trained model folder (e.g. outputs/tiny-vlm-sft, written by "
            "'make sft') or a hub id such as HuggingFaceTB/SmolVLM-256M-Instruct"
        ) from None


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_bddoia
    from ..predict import PREDICTIONS_FILE, GenerationOptions, load_for_inference, predict_dataset, write_predictions

    for name in ("batch_size", "num_frames", "frame_stride", "max_samples"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    options = GenerationOptions(args.max_new_tokens, args.do_sample, args.temperature, args.top_p)
    check_model_option(args.model)
    root = Path(args.data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root}: no such folder; {DATA_FOLDER}")
    root = root.resolve()  # absolute frame paths in the records: eval may run from elsewhere
    # Only check that the frames exist: generation decodes them anyway, and --max-samples may use few.
    clips = load_bddoia(
        root,
        args.split,
        num_frames=args.num_frames,
        frame_stride=args.frame_stride,
        check_images="exists",
        skip_invalid=args.skip_invalid,
    )
    if args.max_samples is not None:
        clips = clips.select(range(min(args.max_samples, len(clips))))
    torch.manual_seed(args.seed)
    model, processor = load_for_inference(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code
    )
    source = {"data_root": str(root), "split": args.split}
    records = predict_dataset(
        model,
        processor,
        clips,
        prompt_mode=args.prompt_mode,
        clip_input=args.clip_input,
        fps=args.clip_fps,
        batch_size=args.batch_size,
        options=options,
        extra=source,
    )
    path = write_predictions(records, Path(args.out) / PREDICTIONS_FILE)
    print(f"wrote {path} ({len(clips)} clips)")
    return 0


def frame_source(data: str | None, missing: list[str]) -> FrameSource:
    """Open a record's frames from the paths predict wrote; with ``data``, the clips' root has moved there.
    Clips whose frames are not all found, not a list of paths or not images are appended to ``missing`` (with why,
    but for a missing file), so the report shows them without frames and counts them."""
    from PIL import Image

    new_root = Path(data) if data is not None else None
    if new_root is not None and not new_root.is_dir():
        raise FileNotFoundError(f"--data {new_root}: no such folder; {DATA_FOLDER}")

    def locate(path: str, old_root: str | None) -> Path:
        if new_root is None or old_root is None:
            return Path(path)
        try:
            return new_root / Path(path).relative_to(old_root)
        except ValueError:  # a frame outside the clips' root did not move with it
            return Path(path)

    def frames(rec: Mapping[str, Any]) -> list[Image.Image] | None:
        paths = rec.get("frames")
        clip = str(rec.get("clip_id"))
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            missing.append(f"{clip} ('frames' is not a list of paths: {paths!r:.60})")
            return None
        files = [locate(p, rec.get("data_root")) for p in paths]
        if not files or not all(f.is_file() for f in files):
            missing.append(clip)
            return None
        images = []
        for f in files:
            try:
                with Image.open(f) as img:
                    images.append(img.convert("RGB"))
            except (OSError, ValueError) as err:  # PIL: not an image, truncated, too large
                missing.append(f"{clip} ({f} is not a readable image: {type(err).__name__})")
                return None
        return images

    return frames


def run_eval(args: argparse.Namespace) -> int:
    from ..report import render_report
    from .score import score_file

    _positive("--report-samples", args.report_samples)
    missing: list[str] = []
    frames = frame_source(args.data, missing)
    records, metrics = score_file(args.predictions, args.out, skip_invalid=args.skip_invalid)
    path = render_report(records, metrics, args.out, frames=frames, samples=args.report_samples, seed=args.seed)
    if missing:
        print(
            f"frames not shown for {len(missing)} reported clips (e.g. {missing[0]}); pass --data ROOT if they moved"
        )
    print(f"wrote {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..metrics import score_records
    from ..report import render_comparison
    from .score import read_checked

    _positive("--max-clips", args.max_clips)
    before, after = (read_checked(path, args.skip_invalid) for path in (args.before, args.after))
    before_metrics, after_metrics = score_records(before), score_records(after)
    missing: list[str] = []
    path = render_comparison(
        before,
        after,
        before_metrics,
        after_metrics,
        args.out,
        labels=tuple(args.names),
        frames=frame_source(args.data, missing),
        max_clips=args.max_clips,
    )
    print(f"wrote {path}")
    return 0
