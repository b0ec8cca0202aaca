"""VLMPPOTrainer in 2 processes on CPU (DDP over gloo, DeepSpeed ZeRO-2 and ZeRO-3): the ranks see different
completions but end with identical weights, value head included, and a save writes the whole value head."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from vlmrl_trl.trainers.value_head import VALUE_HEAD_FILE

RANK_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys

    import numpy as np
    import torch
    from datasets import Dataset
    from PIL import Image
    from trl import ModelConfig

    from vlmrl_trl.clip import load_clip
    from vlmrl_trl.data import build_prompt
    from vlmrl_trl.models import load_model, load_processor
    from vlmrl_trl.rewards import ClipAlignmentReward
    from vlmrl_trl.trainers.ppo_config import VLMPPOConfig
    from vlmrl_trl.trainers.ppo_trainer import VLMPPOTrainer

    model_dir, out, deepspeed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])


    def frame(seed):
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))


    clips = Dataset.from_list(
        [{"prompt": build_prompt(2, "frames_only"), "images": [frame(10 * r + i) for i in range(2)]} for r in range(8)]
    )
    model = load_model(ModelConfig(model_name_or_path=model_dir, dtype="float32"))
    args = VLMPPOConfig(
        output_dir=out, per_device_train_batch_size=2, max_completion_length=6, max_steps=2, learning_rate=1e-3,
        report_to="none", save_strategy="no", use_cpu=True, bf16=False, activation_checkpointing=False,
        dense_clip_reward=True, dense_reward_every_k=2, seed=0, deepspeed=deepspeed,
    )
    trainer = VLMPPOTrainer(
        model, reward_funcs=[ClipAlignmentReward(encoder=load_clip(device="cpu"))], args=args,
        train_dataset=clips, processing_class=load_processor(model_dir),
    )
    head_before = trainer._value_head.mlp[-1].weight.detach().clone()
    completions = []
    rollout = trainer._generate_and_score_completions

    def recording_rollout(inputs):
        batch = rollout(inputs)
        completions.append(batch["completion_ids"].tolist())
        return batch

    trainer._generate_and_score_completions = recording_rollout
    trainer.train()
    trainer.save_model(os.path.join(out, "saved"))  # a collective under ZeRO-3: every rank takes part
    digest = hashlib.sha256()
    for name, tensor in sorted(trainer.accelerator.unwrap_model(trainer.model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().numpy().tobytes())
    rank = trainer.accelerator.process_index
    report = {
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "digest": digest.hexdigest(),
        "head_trained": not torch.equal(head_before, trainer._value_head.mlp[-1].weight),
        "completions": completions,
    }
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    """
)

ZERO2 = {
    "zero_optimization": {"stage": 2},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
}
# The shipped zero3.yaml's saving, with every parameter partitioned: the tiny value head (192 x 192) is below
# DeepSpeed's default persistence threshold, which would keep it whole on every rank.
ZERO3 = {
    **ZERO2,
    "zero_optimization": {
        "stage": 3,
        "stage3_gather_16bit_weights_on_model_save": True,
        "stage3_param_persistence_threshold": 0,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def saved_head(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / VALUE_HEAD_FILE))


def run_two_ranks(tmp_path: Path, model_dir: Path, deepspeed: dict | None) -> list[dict]:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
        str(model_dir),
        str(tmp_path),
        json.dumps(deepspeed),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("deepspeed", "distributed_type"),
    [(None, "DistributedType.MULTI_CPU"), (ZERO2, "DistributedType.DEEPSPEED")],
    ids=["ddp", "zero2"],
)
def test_two_ranks_stay_identical(tmp_path, tiny_vlm_dir, deepspeed, distributed_type):
    if deepspeed is not None:
        pytest.importorskip("deepspeed")
    ranks = run_two_ranks(tmp_path, tiny_vlm_dir, deepspeed)
    assert all(r["world_size"] == 2 and r["distributed_type"] == distributed_type for r in ranks)
    assert ranks[0]["completions"] != ranks[1]["completions"], "each rank trains on its own completions"
    assert all(r["head_trained"] for r in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert saved_head(tmp_path / "saved")["mlp.2.weight"].any(), "the saved value head is the trained one"


@pytest.mark.slow
def test_zero3_saves_the_whole_value_head_from_every_rank(tmp_path, tiny_vlm_dir):
    """Under ZeRO-3 rank 0 gets the gathered weights and the other ranks none: a save must not wait on them."""
    pytest.importorskip("deepspeed")
    ranks = run_two_ranks(tmp_path, tiny_vlm_dir, ZERO3)
    assert all(r["distributed_type"] == "DistributedType.DEEPSPEED" for r in ranks)
    head = saved_head(tmp_path / "saved")
    hidden = AutoConfig.from_pretrained(tiny_vlm_dir).text_config.hidden_size
    assert head["mlp.0.weight"].shape == (hidden, hidden) and head["mlp.2.weight"].shape == (1, hidden)
    assert head["mlp.2.weight"].any(), "the output layer starts at zero: the saved head is the trained one"
    assert (tmp_path / "saved" / "model.safetensors").is_file()
