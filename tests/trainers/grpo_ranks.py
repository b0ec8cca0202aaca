"""Run `python -m vlmrl_trl.grpo` under `accelerate launch`, then write each rank's view of the trained weights.

Used by test_distributed.py: every process writes ``output_dir/rank<i>.json`` mapping each parameter name to the
SHA-256 of its full value (ZeRO-3 shards are gathered first), so the test can check that all ranks hold the same
model. Arguments are the script's own (a recipe and overrides).
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from vlmrl_trl.grpo import main, parse_args
from vlmrl_trl.launch import end_distributed


def weight_digests(model: torch.nn.Module) -> dict[str, str]:
    """SHA-256 of every parameter's full value, gathering ZeRO-3 partitions first (a collective: call on all ranks)."""
    params = dict(model.named_parameters())
    gather = nullcontext()
    if any(hasattr(p, "ds_id") for p in params.values()):
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None)
    with gather:
        return {
            name: hashlib.sha256(p.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
            for name, p in params.items()
        }


def run(argv: list[str]) -> None:
    """Train and save like the script, then write this rank's launch facts and weight digests."""
    script_args, training_args, model_args = parse_args(argv)
    trainer = main(script_args, training_args, model_args)
    accelerator = trainer.accelerator
    digests = weight_digests(accelerator.unwrap_model(trainer.model_wrapped))
    plugin = accelerator.state.deepspeed_plugin
    report = {
        "num_processes": accelerator.num_processes,
        "distributed_type": accelerator.distributed_type.value,
        "zero_stage": plugin.zero_stage if plugin is not None else None,
        "weights": digests,
    }
    (Path(training_args.output_dir) / f"rank{accelerator.process_index}.json").write_text(
        json.dumps(report, indent=1), encoding="utf-8"
    )
    end_distributed()


if __name__ == "__main__":
    run(sys.argv[1:])
