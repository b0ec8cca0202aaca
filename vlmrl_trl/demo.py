"""``make demo``: the whole pipeline on the embedded synthetic clips, offline, on a CPU.

Each stage runs the command a user would type (printed before it runs): SFT of the tiny VLM, prediction and
evaluation on the held-out test split (metrics + visual report), a short GRPO Stage 2 from the SFT model scored
before/after on the reward it optimises (R2) and the reason metrics, and a short PPO Stage 1 from the SFT model scored
by mean R1 before/after. Everything is seeded. The models go where the make stage targets read them
(``outputs/tiny-vlm-sft``, ...), the evaluation into ``<out>``: metrics, reports, the SFT-vs-GRPO before/after page
(``compare.html``) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import COMPARE_FILE
from .stages import recipe_value, replacement_check

SFT_RECIPE = "recipes/tiny/sft/config_synthetic.yaml"
GRPO_RECIPE = "recipes/tiny/grpo/config_stage2.yaml"
PPO_RECIPE = "recipes/tiny/ppo/config_stage1.yaml"


def stage_dir(models: Path, recipe: str) -> Path:
    """Where the demo trains a stage's model: its recipe's ``output_dir`` name under ``models``, so that with
    ``outputs`` the make targets find it where their recipes point."""
    output_dir = recipe_value(recipe, "output_dir")
    if output_dir is None:
        raise ValueError(f"{recipe}: no output_dir")
    return models / Path(output_dir).name


def run(command: Sequence[str], timings: dict[str, float], stage: str) -> None:
    """Run one pipeline command in a child process, echoing it, and record its wall time."""
    print(f"\n$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlmrl_trl.cli", *args]


def predict_and_eval(model: Path, data: Path, out: Path, args: argparse.Namespace, timings: dict, stage: str) -> dict:
    """Predict the test split with ``model``, then score it and render the report into ``out``."""
    run(
        cli_command("predict", "--model", str(model), "--data", str(data), "--split", "test", "--out", str(out),
                    "--batch-size", "32", "--max-new-tokens", "96", "--dtype", "float32",
                    *(["--max-samples", str(args.test_clips)] if args.test_clips else [])),
        timings, stage,
    )  # fmt: skip
    run(cli_command("eval", "--predictions", str(out / "predictions.jsonl"), "--out", str(out)), timings, stage)
    return json.loads((out / "metrics.json").read_text())


def r2_by_clip(predictions: Path) -> dict[str, float]:
    """R2 (the action-reasoning reward GRPO Stage 2 optimises) of each greedy prediction in a file, by clip id."""
    from .metrics import read_predictions
    from .rewards import build_reward

    records = read_predictions(predictions)
    reward = build_reward("action_reasoning")
    scores = reward(
        prompts=[None] * len(records),
        completions=[r["text"] for r in records],
        actions=[r["actions"] for r in records],
        reasons=[r["reasons"] for r in records],
    )
    return {r["clip_id"]: float(score) for r, score in zip(records, scores, strict=True)}


def paired_change(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The mean per-clip score before and after, and the mean change with its standard error over the same clips:
    a gain smaller than about two standard errors is noise."""
    if before.keys() != after.keys() or len(before) < 2:
        raise ValueError("before/after predictions must cover the same clips, at least two")
    diffs = [after[clip] - before[clip] for clip in before]
    n = len(diffs)
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return {
        "before": sum(before.values()) / n,
        "after": sum(after.values()) / n,
        "change": mean,
        "std_error": math.sqrt(variance / n),
        "clips": n,
    }


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    facts = metrics.get("facts")
    return {
        "action_f1_all": metrics["actions"]["f1_all"],
        "action_mf1": metrics["actions"]["mf1"],
        "reason_f1_all": metrics["reasons"]["f1_all"],
        "reason_mf1": metrics["reasons"]["mf1"],
        "json_validity": metrics["json_validity"],
        "strict_json_validity": metrics["strict_json_validity"],
        **({"fact_agreement": facts["mean_agreement"], "fact_base_rate": facts["mean_base_rate"]} if facts else {}),
    }


def description_facts(model: Path, data: Path, out: Path, clips: int, timings: dict, stage: str) -> dict | None:
    """Fact agreement of ``model``'s frames-only descriptions (Stage 1's task) of the first ``clips`` test clips."""
    run(
        cli_command("predict", "--model", str(model), "--data", str(data), "--split", "test", "--out", str(out),
                    "--prompt-mode", "frames_only", "--batch-size", "32", "--max-new-tokens", "96",
                    "--dtype", "float32", "--max-samples", str(clips)),
        timings, stage,
    )  # fmt: skip
    run(cli_command("score", "--predictions", str(out / "predictions.jsonl"), "--out", str(out)), timings, stage)
    return json.loads((out / "metrics.json").read_text()).get("facts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the evaluation results go")
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("outputs"),
        help="where the trained models go, each in its recipe's output_dir name (outputs: where make's stage "
        "targets read and write them)",
    )
    parser.add_argument(
        "--data", type=Path, default=Path("data/synthetic"), help="the synthetic clips (trained on and evaluated)"
    )
    parser.add_argument("--test-clips", type=int, default=None, help="evaluate only the first N test clips")
    parser.add_argument("--skip-rl", action="store_true", help="stop after SFT and its evaluation")
    args = parser.parse_args(argv)
    out: Path = args.out
    timings: dict[str, float] = {}
    start = time.perf_counter()

    sft_dir, grpo_dir, ppo_dir = (stage_dir(args.models, recipe) for recipe in (SFT_RECIPE, GRPO_RECIPE, PPO_RECIPE))
    out.mkdir(parents=True, exist_ok=True)
    for model_dir in (sft_dir, grpo_dir, ppo_dir):
        if note := replacement_check(model_dir, [], overwrite=True):
            print(note, flush=True)
    data = ["--data_dir", str(args.data)]  # the recipes' data_dir, so that training and evaluation read one set
    run(
        [sys.executable, "-m", "vlmrl_trl.sft", "--config", SFT_RECIPE, *data, "--output_dir", str(sft_dir)],
        timings, "sft",
    )  # fmt: skip
    sft_metrics = predict_and_eval(sft_dir, args.data, out, args, timings, "sft_eval")
    summary: dict[str, Any] = {"sft": headline(sft_metrics), "report": str(out / "report.html")}

    if not args.skip_rl:
        run(
            [sys.executable, "-m", "vlmrl_trl.grpo", "--config", GRPO_RECIPE, *data,
             "--model_name_or_path", str(sft_dir), "--output_dir", str(grpo_dir)],
            timings, "grpo_stage2",
        )  # fmt: skip
        grpo_eval = out / "grpo-stage2"
        grpo_metrics = predict_and_eval(grpo_dir, args.data, grpo_eval, args, timings, "grpo_eval")
        run(
            cli_command("compare", "--before", str(out / "predictions.jsonl"), "--after",
                        str(grpo_eval / "predictions.jsonl"), "--names", "SFT", "GRPO Stage 2", "--out", str(out)),
            timings, "grpo_eval",
        )  # fmt: skip
        summary["compare"] = str(out / COMPARE_FILE)
        r2 = paired_change(r2_by_clip(out / "predictions.jsonl"), r2_by_clip(grpo_eval / "predictions.jsonl"))
        summary["grpo_stage2"] = {
            "before": {**headline(sft_metrics), "mean_r2": r2["before"]},
            "after": {**headline(grpo_metrics), "mean_r2": r2["after"]},
            "r2_change": r2,
        }
        run(
            [sys.executable, "-m", "vlmrl_trl.ppo", "--config", PPO_RECIPE, *data,
             "--model_name_or_path", str(sft_dir), "--output_dir", str(ppo_dir)],
            timings, "ppo_stage1",
        )  # fmt: skip
        r1 = json.loads((ppo_dir / "r1_eval.json").read_text())
        r1_change = paired_change(r1["before"]["by_clip"], r1["after"]["by_clip"])
        clips = r1_change["clips"]  # the R1 clips: a Stage 1 gain counts only if fact agreement does not fall
        facts = {
            when: description_facts(model, args.data, out / "ppo-stage1" / f"facts-{when}", clips, timings, "ppo_eval")
            for when, model in (("before", sft_dir), ("after", ppo_dir))
        }
        summary["ppo_stage1"] = {
            "r1_change": r1_change,
            "fact_agreement": facts,
            "examples": {"before": r1["before"]["examples"], "after": r1["after"]["examples"]},
        }

    summary["seconds"] = {**{k: round(v, 1) for k, v in timings.items()}, "total": round(time.perf_counter() - start)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, out)
    return 0


def print_summary(summary: dict[str, Any], out: Path) -> None:
    print("\n=== demo summary (synthetic test split) ===")
    print("after SFT: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["sft"].items()))
    if "grpo_stage2" in summary:
        before, after = summary["grpo_stage2"]["before"], summary["grpo_stage2"]["after"]
        print(f"\nGRPO Stage 2 (reward R2){'':14}before    after")
        for key in ("mean_r2", "action_f1_all", "reason_f1_all", "reason_mf1", "json_validity"):
            print(f"  {key:36}{before[key]:8.3f} {after[key]:8.3f}")
        change = summary["grpo_stage2"]["r2_change"]
        print(
            f"  mean R2 change per clip {change['change']:+.3f} +- {change['std_error']:.3f} "
            f"(paired standard error, {change['clips']} clips)"
        )
    if "ppo_stage1" in summary:
        change = summary["ppo_stage1"]["r1_change"]
        print(
            f"\nPPO Stage 1 (reward R1, from the SFT model): mean R1 on {change['clips']} held-out clips "
            f"{change['before']:.3f} -> {change['after']:.3f}, {change['change']:+.3f} +- {change['std_error']:.3f} "
            "(paired standard error)"
        )
        facts = summary["ppo_stage1"].get("fact_agreement") or {}
        if facts.get("before") and facts.get("after"):
            print(f"  {'description facts':36}{'before':>8} {'after':>8}  (base rate)")
            for name, before in facts["before"]["per_fact"].items():
                after = facts["after"]["per_fact"][name]
                print(f"  {name:36}{before['agreement']:8.3f} {after['agreement']:8.3f}  ({before['base_rate']:.3f})")
            print(f"  {'mean':36}{facts['before']['mean_agreement']:8.3f} {facts['after']['mean_agreement']:8.3f}")
    print(f"\ntimings (s): {summary['seconds']}")
    print(f"metrics: {out / 'metrics.json'}\nreport:  {summary['report']}\nsummary: {out / 'summary.json'}")
    if "compare" in summary:
        print(f"SFT vs GRPO Stage 2: {summary['compare']}")


if __name__ == "__main__":
    sys.exit(main())
