"""How far `VLMGRPOTrainer`'s log-probs are from stock TRL's in bf16, against stock TRL's own spread in bf16.

In bf16 the same rows give different log-probs when they are batched differently (other matrix shapes, other
rounding), so "equal to stock" can only mean "no further from stock than stock is from itself". For each family's
tiny model in bf16, one rollout of 4 clips x G completions is scored by stock TRL in three batch layouts (all rows in
one chunk, chunks of 3 rows, the rows in reverse order) and by our trainer (shared features, packed prompts):

    python benchmarks/bf16_layouts.py --json bf16_layouts.json
    python benchmarks/bf16_layouts.py --families idefics3 qwen2_5_vl

It prints one row per family (max |diff| over completion tokens) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from PIL import Image

VISUAL_FIELDS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "mm_token_type_ids", "token_type_ids")


def clips(frame_counts: tuple[int, ...] = (2, 3, 1, 2)) -> Dataset:
    """RL rows of random frames (the `to_rl_dataset` layout)."""
    from vlmrl_trl.data import build_prompt

    rng = np.random.default_rng(0)
    rows = []
    for count in frame_counts:
        images = [Image.fromarray(rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)) for _ in range(count)]
        rows.append({"prompt": build_prompt(count, "frames_only"), "images": images})
    return Dataset.from_list(rows)


def length_reward(completions: list, **kwargs: Any) -> list[float]:
    return [float(len(completion[0]["content"])) for completion in completions]


def trainer_for(trainer_cls: type, model_dir: Path, output_dir: str, group: int) -> Any:
    from trl import GRPOConfig, ModelConfig

    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.trainers import VLMGRPOConfig, VLMGRPOTrainer

    config_cls = VLMGRPOConfig if trainer_cls is VLMGRPOTrainer else GRPOConfig
    args = config_cls(
        output_dir=output_dir,
        per_device_train_batch_size=4 * group,
        num_generations=group,
        max_completion_length=16,
        bf16=False,  # the weights themselves are bf16
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    return trainer_cls(
        model=load_model(ModelConfig(model_name_or_path=str(model_dir), dtype="bfloat16")),
        reward_funcs=length_reward,
        args=args,
        train_dataset=clips(),
        processing_class=load_processor(str(model_dir)),
    )


def score(trainer: Any, rollout: dict[str, Any], order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Completion log-probs of the rollout's rows taken in `order`, in chunks of `batch_size`, back in row order."""
    from vlmrl_trl.families import adapter_for

    num_images = rollout.get("num_images")
    visual = {key: rollout[key] for key in VISUAL_FIELDS if key in rollout}
    visual = adapter_for(trainer.model).select_rows(visual, num_images, order.tolist())
    ids = torch.cat([rollout["prompt_ids"], rollout["completion_ids"]], dim=1)[order]
    mask = torch.cat([rollout["prompt_mask"], rollout["completion_mask"]], dim=1)[order]
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            ids,
            mask,
            rollout["completion_ids"].size(1),
            batch_size=batch_size,
            num_images=None if num_images is None else [num_images[i] for i in order.tolist()],
            **visual,
        )
    return logps[torch.argsort(order)].float()


def measure(family: str, work: Path, group: int) -> dict[str, Any]:
    from trl import GRPOTrainer

    from vlmrl_trl.tiny import build_tiny_model
    from vlmrl_trl.trainers import VLMGRPOTrainer

    model_dir = build_tiny_model(work / family, family)
    with tempfile.TemporaryDirectory() as output_dir:
        stock = trainer_for(GRPOTrainer, model_dir, output_dir, group)
        ours = trainer_for(VLMGRPOTrainer, model_dir, output_dir, group)
        stock.model.eval()
        ours.model.eval()
        torch.manual_seed(0)
        rollout = stock._generate_and_score_completions(next(iter(stock.get_train_dataloader())))
        rows = rollout["prompt_ids"].size(0)
        forward, reverse = torch.arange(rows), torch.arange(rows - 1, -1, -1)
        reference = score(stock, rollout, forward, rows)
        layouts = {
            "stock, chunks of 3": score(stock, rollout, forward, 3),
            "stock, reversed rows": score(stock, rollout, reverse, rows),
            "ours, one chunk": score(ours, rollout, forward, rows),
            "ours, chunks of 3": score(ours, rollout, forward, 3),
        }
    completion = rollout["completion_mask"].bool()
    diffs = {name: (logps - reference).abs()[completion].max().item() for name, logps in layouts.items()}
    stock_spread = max(diffs["stock, chunks of 3"], diffs["stock, reversed rows"])
    ours_diff = max(diffs["ours, one chunk"], diffs["ours, chunks of 3"])
    return {
        "family": family,
        "packs": ours.pack_prompts,
        "diffs_from_stock_one_chunk": diffs,
        "stock_spread": stock_spread,
        "ours_diff": ours_diff,
        "ours_within_stock_spread": ours_diff <= stock_spread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--families", nargs="+", default=["idefics3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "gemma3"]
    )
    parser.add_argument("--group", type=int, default=4, help="completions per clip")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for family in args.families:
            results.append(measure(family, Path(work), args.group))
            r = results[-1]
            print(
                f"{family:<11} stock vs itself (other layouts) {r['stock_spread']:.2e}   ours vs stock "
                f"{r['ours_diff']:.2e}   packed: {r['packs']}   within stock's spread: {r['ours_within_stock_spread']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
