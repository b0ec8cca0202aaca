"""One GRPO optimizer step: TRL's `GRPOTrainer` against `VLMGRPOTrainer` on a tiny VLM with a heavy vision side.

Both trainers train the same random model of one family (`--family`: idefics3, the SmolVLM architecture, by default;
qwen2_vl, qwen2_5_vl, qwen3_vl, llava, gemma3), built offline by `vlmrl_trl.tiny`, on the same synthetic
BDD-OIA clips with the same seed. One optimizer step is one generation batch of U clips x G completions, split into
U micro-batches of G rows (`per_device_train_batch_size=G`, `gradient_accumulation_steps=U`). Every completion is
sampled to exactly `--max-completion-length` tokens (end-of-sequence suppressed until then) so steps are comparable.

Three variants, each run in its own subprocess (so peak RSS is its own), interleaved across repetitions:

    stock           trl.GRPOTrainer
    ours_ungrouped  VLMGRPOTrainer with TRL's row shuffle (`group_clips_in_micro_batches=False`)
    ours            VLMGRPOTrainer with its defaults (micro-batches shuffled by clip)

Measured per variant: median step time (the first step is a warm-up and is not timed), frames through the vision
encoder per step (forward pre-hook on the vision transformer; rollout = generation and old/reference log-probs,
loss = the loss pass), image-processor calls and frames per step, tokens the language model embeds in generation
(prompt prefill plus decoding; the shared prefill reads each distinct prompt once), and peak RSS of the process. A
separate process computes both trainers' per-token log-probs on the same completions (max absolute difference) and
the vision/LM cost ratio of the model (FLOPs and time of one row's vision forward against its language-model forward).

    python benchmarks/grpo_step.py --quick --json grpo_step_quick.json   # a minute or two on 2 cores
    python benchmarks/grpo_step.py --json grpo_step.json                 # main comparison, 3 repetitions
    python benchmarks/grpo_step.py --sweep --json grpo_sweep.json        # plus G in {2,4,8,16} x M in {1,4,8}
    python benchmarks/grpo_step.py --family qwen2_5_vl --json grpo_step_qwen2_5_vl.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("stock", "ours_ungrouped", "ours")
# Vision towers by class name: the Idefics, CLIP and SigLIP ones take frames, Qwen's take patches with a grid.
VISION_TOWERS = (
    "VisionTransformer",
    "VisionTransformerPretrainedModel",
    "VLVisionModel",
    "CLIPVisionModel",
    "SiglipVisionModel",
)
# Rollout fields the log-prob pass takes besides the token ids (whichever the family's processor returns).
VISUAL_FIELDS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "mm_token_type_ids", "token_type_ids")
FRAMES_ON_DISK = 8  # frames written per synthetic clip: enough for every M of the sweep


def completion_variety(completions: list, **kwargs: Any) -> list[float]:
    """Reward: distinct characters in the completion (cheap, deterministic, varies within a group)."""
    return [float(len(set(completion[0]["content"]))) for completion in completions]


# --------------------------------------------------------------------------------------------------------------------
# Child processes: one training run, or the log-prob / cost-ratio check.
# --------------------------------------------------------------------------------------------------------------------


def make_trainer(variant: str, cfg: dict[str, Any], output_dir: str, callbacks: list | None = None) -> Any:
    """A trainer of `variant` on the benchmark model and clips: U clips x G completions per optimizer step."""
    from trl import GRPOConfig, GRPOTrainer, ModelConfig

    from vlmrl_trl.data import load_bddoia, to_rl_dataset
    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer

    group, clips, length = cfg["group"], cfg["clips_per_step"], cfg["max_completion_length"]
    settings: dict[str, Any] = dict(
        output_dir=output_dir,
        num_generations=group,
        per_device_train_batch_size=group,
        gradient_accumulation_steps=clips,
        max_completion_length=length,
        generation_kwargs={"min_new_tokens": length},
        max_steps=cfg["warmup_steps"] + cfg["steps"],
        learning_rate=1e-5,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=cfg["warmup_steps"] + cfg["steps"],
        disable_tqdm=True,
        seed=cfg["seed"],
    )
    if variant == "stock":
        trainer_cls, args = GRPOTrainer, GRPOConfig(**settings)
    else:
        grouping = None if variant == "ours" else False
        trainer_cls, args = VLMGRPOTrainer, VLMGRPOConfig(**settings, group_clips_in_micro_batches=grouping)
    dataset = to_rl_dataset(load_bddoia(cfg["data_dir"], "train", num_frames=cfg["frames"]))
    return trainer_cls(
        model=load_model(ModelConfig(model_name_or_path=cfg["model_dir"], dtype="float32")),
        reward_funcs=completion_variety,
        args=args,
        train_dataset=dataset,
        processing_class=load_processor(cfg["model_dir"]),
        callbacks=callbacks,
    )


def child_train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train one variant for warm-up + timed steps; return step times, encoder frames, preprocessing and peak RSS."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall and CPU time of each optimizer step, from the end of the previous one (data loading included)."""

        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [(time.perf_counter(), time.process_time())]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append((time.perf_counter(), time.process_time()))

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = make_trainer(cfg["variant"], cfg, output_dir, callbacks=[timer])

        frames = {"rollout": 0, "loss": 0}
        phase = ["loss"]

        def count_frames(module, args, kwargs) -> None:
            if kwargs.get("grid_thw") is not None:  # flattened patches: one grid row per image
                frames[phase[0]] += int(kwargs["grid_thw"][:, 0].sum())
                return
            pixel_values = kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]
            frames[phase[0]] += pixel_values.size(0)

        for module in trainer.model.modules():
            if type(module).__name__.endswith(VISION_TOWERS):
                module.register_forward_pre_hook(count_frames, with_kwargs=True)

        rollout = trainer._generate_and_score_completions

        def rollout_phase(inputs):
            phase[0] = "rollout"
            try:
                return rollout(inputs)
            finally:
                phase[0] = "loss"

        trainer._generate_and_score_completions = rollout_phase

        # Tokens the language model embeds in generation: the prompt prefill (every row's prompt in stock TRL, each
        # distinct prompt once with the shared prefill) plus one token per row and decoding step.
        generation_tokens, generating = [0], [False]
        generate = trainer._generate_single_turn

        def generation_phase(*args, **kwargs):
            generating[0] = True
            try:
                return generate(*args, **kwargs)
            finally:
                generating[0] = False

        def count_tokens(module, args) -> None:
            if generating[0]:
                generation_tokens[0] += args[0].numel()

        trainer._generate_single_turn = generation_phase
        trainer.model.get_input_embeddings().register_forward_pre_hook(count_tokens)

        preprocessing = {"calls": 0, "clips": 0, "frames": 0}
        image_processor_cls = type(trainer.processing_class.image_processor)
        real_call = image_processor_cls.__call__

        def counted_call(self, images=None, *args, **kwargs):
            preprocessing["calls"] += 1
            preprocessing["clips"] += len(images)
            preprocessing["frames"] += sum(len(clip) for clip in images)
            return real_call(self, images, *args, **kwargs)

        image_processor_cls.__call__ = counted_call
        torch.set_num_threads(cfg["threads"])
        trainer.train()

    steps = cfg["warmup_steps"] + cfg["steps"]
    wall = [b[0] - a[0] for a, b in zip(timer.ends, timer.ends[1:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(timer.ends, timer.ends[1:], strict=False)]
    return {
        "variant": cfg["variant"],
        "group": cfg["group"],
        "frames": cfg["frames"],
        "group_clips": bool(getattr(trainer, "group_clips", False)),
        "warmup_s": wall[: cfg["warmup_steps"]],
        "step_s": wall[cfg["warmup_steps"] :],
        "step_cpu_s": cpu[cfg["warmup_steps"] :],
        "encoder_frames_per_step": {
            "rollout": frames["rollout"] / steps,
            "loss": frames["loss"] / steps,
            "total": (frames["rollout"] + frames["loss"]) / steps,
        },
        "preprocess_calls_per_step": preprocessing["calls"] / steps,
        "preprocessed_frames_per_step": preprocessing["frames"] / steps,
        "generation_tokens_per_step": generation_tokens[0] / steps,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_check(cfg: dict[str, Any]) -> dict[str, Any]:
    """Per-token log-probs of both trainers on the same sampled completions, and the model's vision/LM cost ratio."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(cfg["threads"])
    with tempfile.TemporaryDirectory() as output_dir:
        stock = make_trainer("stock", cfg, output_dir)
        ours = make_trainer("ours", cfg, output_dir)
        batch = next(iter(stock.get_train_dataloader()))
        outputs = []
        for trainer in (stock, ours):
            torch.manual_seed(cfg["seed"])
            outputs.append(trainer._generate_and_score_completions(batch))
        rollout = outputs[0]  # the fixed completions both trainers score
        input_ids = torch.cat([rollout["prompt_ids"], rollout["completion_ids"]], dim=1)
        attention_mask = torch.cat([rollout["prompt_mask"], rollout["completion_mask"]], dim=1)
        logps = []
        for trainer in (stock, ours):
            trainer.model.train()
            with torch.no_grad():
                per_token, _, _ = trainer._get_per_token_logps_and_entropies(
                    trainer.model,
                    input_ids,
                    attention_mask,
                    rollout["completion_ids"].size(1),
                    batch_size=cfg["group"],
                    num_images=rollout["num_images"],
                    **{key: rollout[key] for key in VISUAL_FIELDS if key in rollout},
                )
            logps.append(per_token)
        mask = rollout["completion_mask"].bool()
        max_diff = (logps[1] - logps[0]).abs()[mask].max().item()

        # One typical row: its M frames through the vision tower + connector, and its prompt + completion through
        # the language model (LM head on the completion positions, as in the loss pass).
        model = stock.model.eval()
        row_mask = attention_mask[0].bool()
        ids = input_ids[:1, row_mask]
        visual = {key: rollout[key] for key in VISUAL_FIELDS if key in rollout}
        row_visual = ours.adapter.select_rows(visual, rollout["num_images"], [0])
        encoder_inputs = inspect.signature(type(model.model).get_image_features).parameters
        row_visual = {key: value for key, value in row_visual.items() if key in encoder_inputs}
        completion_tokens = rollout["completion_ids"].size(1)

        def vision() -> None:
            type(model.model).get_image_features(model.model, **row_visual)

        embeds = model.model.get_input_embeddings()(ids)
        text_model = getattr(model.model, "language_model", None) or model.model.text_model

        def language() -> None:
            hidden = text_model(inputs_embeds=embeds).last_hidden_state
            model.lm_head(hidden[:, -completion_tokens:])

        cost: dict[str, float] = {}
        with torch.no_grad():
            for name, fn in (("vision", vision), ("lm", language)):
                with FlopCounterMode(display=False) as counter:
                    fn()
                cost[f"{name}_gflops"] = counter.get_total_flops() / 1e9
                times = []
                for _ in range(7):
                    start = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - start)
                cost[f"{name}_ms"] = 1000 * statistics.median(times[2:])
    return {
        "max_logprob_diff": max_diff,
        "same_completions": bool(torch.equal(outputs[0]["completion_ids"], outputs[1]["completion_ids"])),
        "row_tokens": int(ids.size(1)),
        "cost": {
            **cost,
            "flops_ratio": cost["vision_gflops"] / cost["lm_gflops"],
            "time_ratio": cost["vision_ms"] / cost["lm_ms"],
        },
    }


# --------------------------------------------------------------------------------------------------------------------
# Parent: build the model and data, run the children interleaved, aggregate, print, write JSON.
# --------------------------------------------------------------------------------------------------------------------


def run_child(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run `kind` ("train" or "check") with `cfg` in a fresh Python process and return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    command = [sys.executable, __file__, "--child", kind, json.dumps(cfg), result_path]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    try:
        if done.returncode != 0:
            raise RuntimeError(f"{kind} child for {cfg.get('variant', '')} failed:\n{done.stderr[-4000:]}")
        return json.loads(Path(result_path).read_text(encoding="utf-8"))
    finally:
        Path(result_path).unlink(missing_ok=True)


def prepare(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """Build the benchmark model and the synthetic clips under `work` (reused when already there)."""
    from vlmrl_trl.data import generate_synthetic
    from vlmrl_trl.tiny import build_tiny_model

    vision, text = f"v{args.vision_hidden_size}x{args.vision_layers}", f"t{args.text_hidden_size}x{args.text_layers}"
    model_dir = work / f"{args.family}-{args.image_size}px-{vision}-{text}"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(
            model_dir,
            args.family,
            image_size=args.image_size,
            patch_size=args.patch_size,
            vision_hidden_size=args.vision_hidden_size,
            vision_layers=args.vision_layers,
            text_hidden_size=args.text_hidden_size,
            text_layers=args.text_layers,
        )
    data_dir = work / f"clips-{args.image_size}px"
    if not (data_dir / "synthetic_info.json").is_file():
        generate_synthetic(
            data_dir, train=args.dataset_clips, val=0, test=0, num_frames=FRAMES_ON_DISK, image_size=args.image_size
        )
    return str(model_dir), str(data_dir)


def compare(base: dict[str, Any], group: int, frames: int, clips: int, reps: int) -> dict[str, Any]:
    """Run every variant `reps` times, interleaved (the order rotates each repetition), and aggregate."""
    cfg = {**base, "group": group, "frames": frames, "clips_per_step": clips}
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for rep in range(reps):
        order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
        for variant in order:
            result = run_child("train", {**cfg, "variant": variant})
            runs[variant].append(result)
            print(
                f"  G={group} M={frames} rep {rep + 1}/{reps} {variant:<14} "
                f"steps {', '.join(f'{t:.2f}' for t in result['step_s'])} s "
                f"(CPU {', '.join(f'{t:.2f}' for t in result['step_cpu_s'])} s), "
                f"{result['encoder_frames_per_step']['total']:.0f} frames/step, {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    def per_variant(fn) -> dict[str, Any]:
        return {variant: fn(results) for variant, results in runs.items()}

    median_step = per_variant(lambda rs: statistics.median(t for r in rs for t in r["step_s"]))
    median_cpu = per_variant(lambda rs: statistics.median(t for r in rs for t in r["step_cpu_s"]))
    return {
        "group": group,
        "frames": frames,
        "clips_per_step": clips,
        "rows_per_step": clips * group,
        "median_step_s": median_step,
        "speedup": median_step["stock"] / median_step["ours"],
        "speedup_ungrouped": median_step["stock"] / median_step["ours_ungrouped"],
        "median_step_cpu_s": median_cpu,
        "speedup_cpu": median_cpu["stock"] / median_cpu["ours"],
        "speedup_cpu_ungrouped": median_cpu["stock"] / median_cpu["ours_ungrouped"],
        "encoder_frames_per_step": per_variant(
            lambda rs: statistics.mean(r["encoder_frames_per_step"]["total"] for r in rs)
        ),
        "encoder_frames_per_step_by_phase": per_variant(
            lambda rs: {
                phase: statistics.mean(r["encoder_frames_per_step"][phase] for r in rs)
                for phase in ("rollout", "loss")
            }
        ),
        "preprocess_calls_per_step": per_variant(
            lambda rs: statistics.mean(r["preprocess_calls_per_step"] for r in rs)
        ),
        "preprocessed_frames_per_step": per_variant(
            lambda rs: statistics.mean(r["preprocessed_frames_per_step"] for r in rs)
        ),
        "generation_tokens_per_step": per_variant(
            lambda rs: statistics.mean(r["generation_tokens_per_step"] for r in rs)
        ),
        "peak_rss_mb": per_variant(lambda rs: max(r["peak_rss_mb"] for r in rs)),
        "runs": runs,
    }


def print_main(result: dict[str, Any]) -> None:
    print(
        f"\nG = {result['group']}, M = {result['frames']}, {result['clips_per_step']} clips x {result['group']} "
        "completions per optimizer step; speedups are stock / variant"
    )
    print(
        f"{'variant':<15}{'wall s':>8}{'speedup':>9}{'CPU s':>8}{'speedup':>9}{'frames/step':>12}{'rollout':>8}"
        f"{'loss':>6}{'preproc calls':>14}{'preproc frames':>15}{'gen LM tokens':>14}{'peak RSS MB':>12}"
    )
    wall, cpu = result["median_step_s"], result["median_step_cpu_s"]
    for variant in VARIANTS:
        phases = result["encoder_frames_per_step_by_phase"][variant]
        print(
            f"{variant:<15}{wall[variant]:>8.2f}{wall['stock'] / wall[variant]:>8.2f}x{cpu[variant]:>8.2f}"
            f"{cpu['stock'] / cpu[variant]:>8.2f}x{result['encoder_frames_per_step'][variant]:>12.0f}"
            f"{phases['rollout']:>8.0f}{phases['loss']:>6.0f}{result['preprocess_calls_per_step'][variant]:>14.0f}"
            f"{result['preprocessed_frames_per_step'][variant]:>15.0f}"
            f"{result['generation_tokens_per_step'][variant]:>14.0f}{result['peak_rss_mb'][variant]:>12.0f}"
        )


def print_sweep(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'G':>3}{'M':>3}{'rows':>5} | {'wall s: stock':>13}{'ungrp':>7}{'ours':>7}{'speedup':>8} | "
        f"{'CPU s: stock':>12}{'ungrp':>7}{'ours':>7}{'speedup':>8}{'ungrp':>7} | "
        f"{'frames: stock':>13}{'ungrp':>6}{'ours':>5} | {'RSS MB: stock':>13}{'ours':>6}"
    )
    for r in rows:
        s, c, f, m = r["median_step_s"], r["median_step_cpu_s"], r["encoder_frames_per_step"], r["peak_rss_mb"]
        print(
            f"{r['group']:>3}{r['frames']:>3}{r['rows_per_step']:>5} | {s['stock']:>13.2f}{s['ours_ungrouped']:>7.2f}"
            f"{s['ours']:>7.2f}{r['speedup']:>7.2f}x | {c['stock']:>12.2f}{c['ours_ungrouped']:>7.2f}{c['ours']:>7.2f}"
            f"{r['speedup_cpu']:>7.2f}x{r['speedup_cpu_ungrouped']:>6.2f}x | {f['stock']:>13.0f}"
            f"{f['ours_ungrouped']:>6.0f}{f['ours']:>5.0f} | {m['stock']:>13.0f}{m['ours']:>6.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model, 2 clips/step, 1 repetition, no sweep")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--family",
        default="idefics3",
        help="tiny model family: idefics3 (SmolVLM), qwen2_vl, qwen2_5_vl, qwen3_vl, llava, gemma3",
    )
    parser.add_argument("--work-dir", default=None, help="where the model and clips are built (default: a temp dir)")
    parser.add_argument("--group", type=int, default=8, help="G of the main comparison")
    parser.add_argument("--frames", type=int, default=4, help="M, frames per clip, of the main comparison")
    parser.add_argument("--clips-per-step", type=int, default=None, help="U of the main comparison (4; quick 2)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (3; quick 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (after 1 warm-up)")
    parser.add_argument("--sweep", action="store_true", help="also run G in --sweep-groups x M in --sweep-frames")
    parser.add_argument("--sweep-groups", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--sweep-frames", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--sweep-clips-per-step", type=int, default=2, help="U in the sweep")
    parser.add_argument("--sweep-reps", type=int, default=1)
    parser.add_argument("--max-completion-length", type=int, default=24, help="every completion has this length")
    parser.add_argument("--image-size", type=int, default=None, help="frame side in px (256; quick 128)")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--vision-hidden-size", type=int, default=192)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--text-hidden-size", type=int, default=192)
    parser.add_argument("--text-layers", type=int, default=3)
    parser.add_argument("--dataset-clips", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CONFIG", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, cfg, result_path = args.child
        result = (child_train if kind == "train" else child_check)(json.loads(cfg))
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")
        return

    args.image_size = args.image_size or (128 if args.quick else 256)
    args.clips_per_step = args.clips_per_step or (2 if args.quick else 4)
    args.reps = args.reps or (1 if args.quick else 3)
    if args.quick:
        args.steps = min(args.steps, 2)
    if args.sweep and args.quick:
        parser.error("--quick runs the main comparison only; drop --sweep")

    import torch
    import transformers
    import trl

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        model_dir, data_dir = prepare(args, work)
        base = {
            "model_dir": model_dir,
            "data_dir": data_dir,
            "max_completion_length": args.max_completion_length,
            "warmup_steps": 1,
            "steps": args.steps,
            "threads": args.threads,
            "seed": args.seed,
        }
        check_cfg = {**base, "group": args.group, "frames": args.frames, "clips_per_step": args.clips_per_step}
        check = run_child("check", check_cfg)
        cost = check["cost"]
        print(
            f"model {Path(model_dir).name}: one row ({args.frames} frames, {check['row_tokens']} tokens) costs "
            f"vision {cost['vision_gflops']:.2f} GFLOP / {cost['vision_ms']:.0f} ms, language model "
            f"{cost['lm_gflops']:.2f} GFLOP / {cost['lm_ms']:.0f} ms: vision/LM = {cost['flops_ratio']:.2f} (FLOPs), "
            f"{cost['time_ratio']:.2f} (time)"
        )
        print(
            f"log-probs on the same completions: max |ours - stock| = {check['max_logprob_diff']:.2e}; "
            f"same sampled completions: {check['same_completions']}"
        )
        main_result = compare(base, args.group, args.frames, args.clips_per_step, args.reps)
        sweep = []
        if args.sweep:
            for group in args.sweep_groups:
                for frames in args.sweep_frames:
                    sweep.append(compare(base, group, frames, args.sweep_clips_per_step, args.sweep_reps))

    print_main(main_result)
    if sweep:
        print_sweep(sweep)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        report = {
            "family": args.family,
            "speedup": main_result["speedup"],
            "speedup_cpu": main_result["speedup_cpu"],
            "max_logprob_diff": check["max_logprob_diff"],
            "same_completions": check["same_completions"],
            "encoder_frames_per_step": main_result["encoder_frames_per_step"],
            "peak_rss_mb": main_result["peak_rss_mb"],
            "main": main_result,
            "vision_lm_cost": {**cost, "row_frames": args.frames, "row_tokens": check["row_tokens"]},
            "sweep": sweep,
            "settings": {
                **{key: value for key, value in vars(args).items() if key not in ("child", "json", "work_dir")},
                "model": Path(model_dir).name,
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "trl": trl.__version__,
                },
                "cpu_count": os.cpu_count(),
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
