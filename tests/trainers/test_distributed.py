"""GRPO under `accelerate launch` with 2 CPU processes, with each shipped config (plain DDP, DeepSpeed ZeRO-2 and
ZeRO-3): a few steps of the tiny stage-2 recipe, after which both ranks hold the same weights as the saved model.

Each run launches `grpo_ranks.py` (the `vlmrl_trl.grpo` script plus a per-rank weight digest) as the user would:
`accelerate launch --config_file recipes/accelerate_configs/<mode>.yaml ...`, with ``ACCELERATE_USE_CPU=true`` for
DDP only. The reward is R1 from the untrained tiny CLIP, which already varies across a random model's completions,
so every step has non-zero advantages and moves the weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from transformers import AutoModelForImageTextToText

from vlmrl_trl.data import generate_synthetic
from vlmrl_trl.tiny import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("grpo_ranks.py")
RECIPE = REPO_ROOT / "recipes" / "tiny" / "grpo" / "config_stage2.yaml"
# mode -> (accelerate's distributed type in the processes, ZeRO stage)
MODES = {"ddp": ("MULTI_CPU", None), "zero2": ("DEEPSPEED", 2), "zero3": ("DEEPSPEED", 3)}


def load_launcher() -> ModuleType:
    """`grpo_ranks.py` as a module, for its `weight_digests`."""
    spec = importlib.util.spec_from_file_location("grpo_ranks", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(use_cpu: bool = False) -> dict[str, str]:
    """The environment of a launched run: offline, one thread a process, no ACCELERATE_* from the caller."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def launch_command(
    config: str, launch_args: list[str], model_dir: Path, synthetic_dir: Path, output_dir: Path
) -> list[str]:
    """``accelerate launch`` of two processes (in all) running two steps of the tiny stage-2 recipe under the shipped
    accelerate config ``config``, with ``launch_args`` for accelerate."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO_ROOT / "recipes" / "accelerate_configs" / f"{config}.yaml"),
        "--num_processes", "2",
        *launch_args,
        str(LAUNCHER),
        "--config", str(RECIPE),
        "--model_name_or_path", str(model_dir),
        "--data_dir", str(synthetic_dir),
        "--output_dir", str(output_dir),
        "--reward_funcs", "clip_alignment",
        "--reward_weights", "1.0",
        "--max_steps", "2",
        "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1",
        "--num_generations", "2",
        "--max_completion_length", "8",
        "--logging_steps", "1",
        "--disable_tqdm", "true",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "clips", train=4, val=2, test=2)


@pytest.mark.parametrize("mode", list(MODES))
def test_configs_run_on_gpus_and_leave_precision_to_the_recipe(mode: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "recipes" / "accelerate_configs" / f"{mode}.yaml"))
    assert config.distributed_type.value == ("MULTI_GPU" if mode == "ddp" else "DEEPSPEED")
    assert config.mixed_precision == "no" and not config.use_cpu and config.num_processes == 2
    if mode != "ddp":
        deepspeed = config.deepspeed_config
        assert deepspeed["zero_stage"] == MODES[mode][1]
        assert deepspeed["offload_optimizer_device"] == deepspeed["offload_param_device"] == "none"
        # ZeRO-3 gathers the sharded weights into one loadable model at save time.
        assert deepspeed.get("zero3_save_16bit_model", False) == (mode == "zero3")


# (accelerate config, tiny model family): every config on the default model, ZeRO-2 on a Qwen family too (its
# flattened patches and 3-D positions through the shared prefill and packed passes on each rank).
RUNS = [*((mode, "idefics3") for mode in MODES), ("zero2", "qwen2_5_vl")]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "family"), RUNS, ids=[f"{mode}-{family}" for mode, family in RUNS])
def test_two_processes_end_with_identical_weights(
    mode: str, family: str, tiny_vlm_dir: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    if mode.startswith("zero"):
        pytest.importorskip("deepspeed")
    if family != "idefics3":
        tiny_vlm_dir = build_tiny_model(tmp_path / family, family)
    output_dir = tmp_path / "out"
    env = launch_env(use_cpu=mode == "ddp")  # DeepSpeed must not get ACCELERATE_USE_CPU: it finds the CPU by itself
    command = launch_command(mode, ["--main_process_port", str(free_port())], tiny_vlm_dir, synthetic_dir, output_dir)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{mode} run failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"

    ranks = [json.loads((output_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    distributed_type, zero_stage = MODES[mode]
    for report in ranks:
        assert report["num_processes"] == 2
        assert (report["distributed_type"], report["zero_stage"]) == (distributed_type, zero_stage)
    assert ranks[0]["weights"] == ranks[1]["weights"]

    digests = load_launcher().weight_digests
    saved = digests(AutoModelForImageTextToText.from_pretrained(output_dir, dtype="float32"))
    assert saved == ranks[0]["weights"]
    initial = digests(AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir, dtype="float32"))
    assert initial.keys() == saved.keys()
    assert any(initial[name] != saved[name] for name in saved), "training left every weight unchanged"


def test_the_multi_node_config_is_zero3_started_once_per_machine() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "recipes" / "accelerate_configs" / "zero3_multinode.yaml"))
    single = load_config_from_file(str(REPO_ROOT / "recipes" / "accelerate_configs" / "zero3.yaml"))
    assert config.distributed_type.value == "DEEPSPEED" and config.deepspeed_config == single.deepspeed_config
    assert config.num_machines > 1 and config.num_processes % config.num_machines == 0
    # torchrun on each machine, meeting at the main machine's address (static rendezvous needs same_network).
    assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"
    assert config.rdzv_backend == "static" and config.same_network
    assert config.mixed_precision == "no" and not config.use_cpu


@pytest.mark.slow
def test_two_machines_on_one_host_end_with_identical_weights(
    tiny_vlm_dir: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    """The multi-node config as documented, one launch per machine (rank 0 and 1, one process each) on this host."""
    pytest.importorskip("deepspeed")
    output_dir = tmp_path / "out"
    main = ["--num_machines", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    launches = [
        subprocess.Popen(
            launch_command(
                "zero3_multinode", [*main, "--machine_rank", str(rank)], tiny_vlm_dir, synthetic_dir, output_dir
            ),
            cwd=REPO_ROOT,
            env=launch_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    logs = [launch.communicate(timeout=600)[0] for launch in launches]
    for rank, (launch, log) in enumerate(zip(launches, logs, strict=True)):
        assert launch.returncode == 0, f"machine {rank} failed:\n{log[-6000:]}"
    ranks = [json.loads((output_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["num_processes"] == 2 and report["zero_stage"] == 3 for report in ranks)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    saved = load_launcher().weight_digests(AutoModelForImageTextToText.from_pretrained(output_dir, dtype="float32"))
    assert saved == ranks[0]["weights"]
