"""The vlmrl-trl rewards in a stock ``trl.GRPOTrainer``: nothing of vlmrl-trl's trainers, only its reward functions.

Runs offline in about a minute on CPU: it writes a few synthetic clips, builds the tiny random SmolVLM-architecture
model, and trains it for a couple of GRPO steps with R1 (CLIP alignment), R2 (action-reasoning) and R3
(structure). TRL logs each reward's mean as ``rewards/<name>/mean``.

    python examples/stock_grpo_trainer.py --output-dir runs/stock-grpo
    python examples/stock_grpo_trainer.py --output-dir runs/stock-grpo --clip local-dir:runs/clip --max-steps 20

In your own project, the only lines you need are the reward construction::

    from vlmrl_trl.rewards import get_reward_funcs
    reward_funcs = get_reward_funcs(["clip_alignment", "action_reasoning", "structure"],
                                    {"clip_alignment": {"model": "local-dir:runs/clip"}})
    trainer = GRPOTrainer(model=..., reward_funcs=reward_funcs, args=GRPOConfig(...), train_dataset=...)

with a dataset whose rows carry ``prompt``, ``images`` (the clip's frames), ``actions`` and ``reasons`` (label bits).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, help="where the data, the tiny model and the run go")
    parser.add_argument("--model", default=None, help="model folder or hub id (default: build the tiny VLM)")
    parser.add_argument("--data", default=None, help="BDD-OIA-layout folder (default: write synthetic clips)")
    parser.add_argument("--clip", default="vlmrl-tiny", help="CLIP of R1, e.g. local-dir:runs/clip")
    parser.add_argument("--max-steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--num-generations", type=int, default=2, help="completions per prompt (G)")
    parser.add_argument("--max-completion-length", type=int, default=24, help="tokens per completion")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Train and return the trainer's log history."""
    from trl import GRPOConfig, GRPOTrainer

    from vlmrl_trl.data import generate_synthetic, load_bddoia, to_rl_dataset
    from vlmrl_trl.models import build_tiny_vlm
    from vlmrl_trl.rewards import get_reward_funcs

    args = parse_args(argv)
    out = Path(args.output_dir)
    data = args.data or generate_synthetic(out / "data", train=8, val=0, test=0, overwrite=True)
    model = args.model or str(build_tiny_vlm(out / "tiny-vlm"))
    train_dataset = to_rl_dataset(load_bddoia(data, "train", num_frames=2))

    reward_funcs = get_reward_funcs(
        ["clip_alignment", "action_reasoning", "structure"], {"clip_alignment": {"model": args.clip}}
    )
    config = GRPOConfig(
        output_dir=str(out / "run"),
        max_steps=args.max_steps,
        per_device_train_batch_size=2 * args.num_generations,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        reward_weights=[0.5, 1.0, 1.0],
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=train_dataset)
    trainer.train()
    return trainer.state.log_history


if __name__ == "__main__":
    for entry in main():
        print({k: v for k, v in entry.items() if k.startswith("rewards/") or k in ("step", "reward", "loss")})
