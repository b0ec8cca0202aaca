"""Clips as images against clips as video (`clip_input`) on the tiny Qwen families.

Two measurements, printed as tables and written to `--json`:

    tokens  visual tokens of one M-frame clip per family and frame size, the frames as M images and as one video
            (Qwen-VL merges two consecutive frames per temporal patch of a video), with each family's default
            image and video preprocessing
    step    `VLMGRPOTrainer` optimizer-step time on the same synthetic clips, images against video (G completions of
            U clips per step, every completion `--max-completion-length` tokens; median after one warm-up step)
    sft     (with `--sft`) the tiny-video SFT recipe on a tiny Qwen2.5-VL, once with images and once with video, the
            same budget and seed; action F1_all on the test split and F1 of the motion-only reasons (a front car
            pulling out of the lane, a pedestrian stepping off the curb), through the stage script, predict and eval

    python benchmarks/clip_video.py --json clip_video.json
    python benchmarks/clip_video.py --skip-step              # tokens only, seconds
    python benchmarks/clip_video.py --skip-step --sft --work-dir outputs/clip-video   # + SFT, ~20 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
SIZES = ((128, 128), (640, 360), (1280, 720))  # synthetic default, a downscaled and a full BDD-OIA frame


def visual_tokens(processor: Any, frames: list[Image.Image], clip_input: str) -> int:
    """Placeholder tokens the processor gives one clip: M images or one video (all frames kept, 2 fps)."""
    from vlmrl_trl.data.formatting import build_prompt
    from vlmrl_trl.families.flat_patches import FlatPatchesAdapter

    prompt = build_prompt(len(frames), "frames_only", clip_input=clip_input)
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    tokenizer = processor.tokenizer
    if clip_input == "video":
        kwargs = FlatPatchesAdapter().video_processor_kwargs([(2.0, len(frames))])
        ids = processor(text=[text], videos=[frames], **kwargs)["input_ids"][0]
        token = "<|video_pad|>"
    else:
        ids = processor(text=[text], images=[frames])["input_ids"][0]
        token = "<|image_pad|>"
    return sum(1 for i in ids if i == tokenizer.convert_tokens_to_ids(token))


def measure_tokens(work: Path, frames: int) -> list[dict[str, Any]]:
    from vlmrl_trl.models import load_processor
    from vlmrl_trl.tiny import build_tiny_model

    rows = []
    rng = np.random.default_rng(0)
    for family in FAMILIES:
        processor = load_processor(str(build_tiny_model(work / family, family)))
        # transformers' default image and video preprocessing of the family at its vision patch size, not the tiny's.
        processor.video_processor = type(processor.video_processor)()
        processor.image_processor = type(processor.image_processor)(patch_size=processor.video_processor.patch_size)
        for width, height in SIZES:
            clip = [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(frames)]
            images, video = visual_tokens(processor, clip, "images"), visual_tokens(processor, clip, "video")
            rows.append({"family": family, "frame": f"{width}x{height}", "images": images, "video": video})
    return rows


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def completion_variety(completions: list, **kwargs: Any) -> list[float]:
    """Reward: distinct characters in the completion (cheap, deterministic, varies within a group)."""
    return [float(len(set(completion[0]["content"]))) for completion in completions]


def measure_step(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from trl import ModelConfig

    from vlmrl_trl.data import generate_synthetic, load_bddoia, to_rl_dataset
    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.tiny import build_tiny_model
    from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer

    torch.set_num_threads(args.threads)
    model_dir = str(build_tiny_model(work / "step-model", args.step_family))
    root = generate_synthetic(work / "clips", train=args.clips_per_step * (args.steps + 1), val=1, test=1, seed=0)
    clips = load_bddoia(root, "train", num_frames=args.frames)
    processor = load_processor(model_dir)
    # A random model samples any token; one that is an image or video placeholder would break the log-prob pass.
    placeholders = [
        processor.tokenizer.convert_tokens_to_ids(t) for t in (processor.image_token, processor.video_token)
    ]
    rows = []
    for clip_input in ("images", "video"):
        timer = StepTimer()
        length = args.max_completion_length
        config = VLMGRPOConfig(
            output_dir=str(work / f"run-{clip_input}"),
            num_generations=args.group,
            per_device_train_batch_size=args.group,
            gradient_accumulation_steps=args.clips_per_step,
            max_completion_length=length,
            generation_kwargs={"min_new_tokens": length, "suppress_tokens": placeholders},
            max_steps=1 + args.steps,
            learning_rate=1e-5,
            bf16=False,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = VLMGRPOTrainer(
            model=load_model(ModelConfig(model_name_or_path=model_dir, dtype="float32")),
            reward_funcs=completion_variety,
            args=config,
            train_dataset=to_rl_dataset(clips, clip_input=clip_input),
            processing_class=processor,
            callbacks=[timer],
        )
        trainer.train()
        rows.append(
            {
                "family": args.step_family,
                "clip_input": clip_input,
                "step_s": statistics.median(timer.times[1:]),
                "steps_timed": len(timer.times) - 1,
            }
        )
    return rows


# The reasons only motion tells apart (docs/data.md): BDD-OIA ids of a front car pulling out and of a pedestrian
# stepping off the curb.
MOTION_REASONS = ("front_car_turning_left", "front_car_turning_right", "obstacle_person")


def measure_sft(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train, predict and score the tiny-video SFT recipe with each clip input; the figures eval writes."""
    from vlmrl_trl.tiny import build_tiny_model

    model_dir = work / "tiny-qwen2.5-vl"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(model_dir, "qwen2_5_vl")
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny-video" / "sft" / "config_synthetic.yaml"
    data = work / "synthetic"
    rows = []
    for clip_input in ("images", "video"):
        out = work / f"sft-{clip_input}"
        overrides = ["--model_name_or_path", str(model_dir), "--data_dir", str(data), "--clip_input", clip_input]
        overrides += ["--output_dir", str(out), "--save_strategy", "no", *args.sft_args]
        subprocess.run([sys.executable, "-m", "vlmrl_trl.sft", "--config", str(recipe), *overrides], check=True)
        cli = [sys.executable, "-m", "vlmrl_trl.cli"]
        predicted = work / f"predict-{clip_input}"
        subprocess.run(
            [*cli, "predict", "--model", str(out), "--data", str(data), "--out", str(predicted), "--clip-input",
             clip_input, "--batch-size", "16"],
            check=True,
        )  # fmt: skip
        scored = work / f"eval-{clip_input}"
        subprocess.run(
            [*cli, "eval", "--predictions", str(predicted / "predictions.jsonl"), "--out", str(scored)], check=True
        )
        metrics = json.loads((scored / "metrics.json").read_text(encoding="utf-8"))
        rows.append({"clip_input": clip_input, "metrics": metrics})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--frames", type=int, default=4, help="M, frames per clip")
    parser.add_argument("--group", type=int, default=8, help="G, completions per clip")
    parser.add_argument("--clips-per-step", type=int, default=2, help="U, clips per optimizer step")
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps (after 1 warm-up)")
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--step-family", default="qwen2_5_vl", choices=FAMILIES)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--skip-step", action="store_true", help="skip the GRPO step timing")
    parser.add_argument("--sft", action="store_true", help="also train and score SFT with images and with video")
    parser.add_argument("--sft-args", nargs="*", default=[], help="overrides for both SFT runs (e.g. --max_steps 50)")
    parser.add_argument("--work-dir", default=None, help="where models and runs go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"frames": args.frames, "tokens": measure_tokens(work, args.frames)}
        print(f"visual tokens of one {args.frames}-frame clip")
        print(f"{'family':<12} {'frame':>9} {'images':>7} {'video':>6}")
        for row in result["tokens"]:
            print(f"{row['family']:<12} {row['frame']:>9} {row['images']:>7} {row['video']:>6}")
        if not args.skip_step:
            result["step"] = measure_step(work, args)
            result["step_settings"] = {k: getattr(args, k) for k in ("group", "clips_per_step", "steps", "threads")}
            print(f"\nGRPO step, G={args.group}, M={args.frames}, U={args.clips_per_step}")
            for row in result["step"]:
                print(f"{row['family']:<12} {row['clip_input']:<7} {row['step_s']:7.2f} s")
        if args.sft:
            result["sft"] = measure_sft(work, args)
            print("\nSFT (tiny-video recipe, tiny Qwen2.5-VL), test split")
            for row in result["sft"]:
                print(f"{row['clip_input']:<7} {json.dumps(row['metrics'])[:300]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
