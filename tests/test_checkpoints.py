"""Checkpoints are complete or ignored: manifests, verification, choice of the checkpoint to resume, rotation, and a
real GRPO run killed during a save that resumes to bit-identical weights."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from vlmrl_trl import checkpoints
from vlmrl_trl.checkpoints import (
    MANIFEST,
    CheckpointError,
    CompleteCheckpoints,
    newest_complete,
    remove_checkpoint,
    rotate,
    verify,
    write_manifest,
)
from vlmrl_trl.launch import checkpoint_to_resume

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    """A small ``checkpoint-<step>`` folder (a file at the top, one in a subfolder), with its manifest if complete."""
    folder = output_dir / f"checkpoint-{step}"
    (folder / "global_step").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "global_step" / "shard.pt").write_bytes(b"shard" * 10)
    if complete:
        write_manifest(folder)
    return folder


def resume_args(output_dir: Path, value: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=value)


def test_a_complete_checkpoint_verifies(tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path, 2)
    verify(folder)
    assert not list(folder.glob("*.tmp")), "the manifest's temporary file is renamed away"


@pytest.mark.parametrize("name", ["model.safetensors", "global_step/shard.pt"])
@pytest.mark.parametrize("kind", ["flip", "truncate", "delete"])
def test_each_single_file_corruption_is_named(tmp_path: Path, name: str, kind: str) -> None:
    folder = make_checkpoint(tmp_path, 2)
    path = folder / name
    data = bytearray(path.read_bytes())
    if kind == "delete":
        path.unlink()
    else:
        data[7] ^= 0x01
        path.write_bytes(bytes(data if kind == "flip" else data[:-1]))
    with pytest.raises(CheckpointError, match=f"^{path}: ") as caught:
        verify(folder)
    assert "\n" not in str(caught.value)


def test_an_unreadable_manifest_is_named(tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path, 2)
    (folder / MANIFEST).write_bytes(b'{"version": 1, "fil')
    with pytest.raises(CheckpointError, match=f"^{folder / MANIFEST}: unreadable"):
        verify(folder)


def test_resume_takes_the_newest_complete_checkpoint_and_names_each_skipped_one(tmp_path: Path, caplog) -> None:
    make_checkpoint(tmp_path, 2)
    chosen = make_checkpoint(tmp_path, 4)
    skipped = [make_checkpoint(tmp_path, step, complete=False) for step in (6, 10)]
    (tmp_path / "checkpoint-12").mkdir()  # an empty folder: a kill right after the Trainer created it
    skipped.append(tmp_path / "checkpoint-12")
    assert newest_complete(tmp_path) == (chosen, skipped)
    with caplog.at_level(logging.WARNING, logger="vlmrl_trl.launch"):
        assert checkpoint_to_resume(resume_args(tmp_path)) == str(chosen)
    lines = [record.getMessage() for record in caplog.records]
    assert [line for line in lines if line.startswith("skipping")] == [
        f"skipping {folder}: its save did not finish (no {MANIFEST})" for folder in skipped
    ]
    assert any(line.endswith("resuming from it (--resume_from_checkpoint false starts afresh)") for line in lines)


def test_resume_refuses_a_corrupt_newest_checkpoint_instead_of_falling_back(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 2)
    newest = make_checkpoint(tmp_path, 4)
    (newest / "model.safetensors").write_bytes(b"\0" * 1024)  # same size, other bytes
    with pytest.raises(CheckpointError, match=f"{newest / 'model.safetensors'}: corrupt"):
        checkpoint_to_resume(resume_args(tmp_path))
    assert isinstance(CheckpointError("x"), ValueError), "run_script turns it into one line and exit 2"


def test_only_incomplete_checkpoints_start_afresh_and_an_incomplete_named_one_is_refused(tmp_path: Path) -> None:
    incomplete = make_checkpoint(tmp_path, 2, complete=False)
    assert checkpoint_to_resume(resume_args(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        checkpoint_to_resume(resume_args(tmp_path, "true"))
    with pytest.raises(FileNotFoundError, match=f"has no {MANIFEST}: its save did not finish"):
        checkpoint_to_resume(resume_args(tmp_path, str(incomplete)))
    assert checkpoint_to_resume(resume_args(tmp_path, "false")) is None


def test_rotation_keeps_the_newest_complete_and_leaves_newer_folders(tmp_path: Path) -> None:
    old, best, previous, current = (make_checkpoint(tmp_path, step) for step in (1, 2, 3, 4))
    half_deleted = make_checkpoint(tmp_path, 0, complete=False)
    leftover = make_checkpoint(tmp_path, 9, complete=False)  # from an earlier run killed during its save
    rotate(tmp_path, current, limit=2, keep=best)
    assert checkpoints.checkpoints(tmp_path) == [best, previous, current, leftover]
    assert not old.exists() and not half_deleted.exists()


def test_a_checkpoint_being_deleted_is_incomplete_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_checkpoint(tmp_path, 2)
    monkeypatch.setattr(checkpoints.shutil, "rmtree", lambda *args, **kwargs: None)  # killed before rmtree ran
    remove_checkpoint(folder)
    assert folder.is_dir() and not checkpoints.is_complete(folder)


def test_a_missing_scheduler_stops_the_resume(tmp_path: Path) -> None:
    loaded = []

    class Trainer:
        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            loaded.append(checkpoint)

    class Resuming(CompleteCheckpoints, Trainer):
        def _load_resume_state(self, checkpoint: str) -> None:
            loaded.append(f"state of {checkpoint}")

    folder = make_checkpoint(tmp_path, 2)
    with pytest.raises(CheckpointError, match=f"{folder / 'scheduler.pt'}: missing"):
        Resuming()._load_optimizer_and_scheduler(str(folder))
    (folder / "scheduler.pt").write_bytes(b"")
    Resuming()._load_optimizer_and_scheduler(str(folder))
    Resuming()._load_optimizer_and_scheduler(None)  # a fresh start loads nothing
    assert loaded == [str(folder), f"state of {folder}", None]


def test_a_run_resumed_at_max_steps_trains_no_further_step() -> None:
    class Trainer:
        def get_batch_samples(self, epoch_iterator, num_batches, device):
            return ["batch"], 1

    class Resumed(CompleteCheckpoints, Trainer):
        pass

    trainer = Resumed()
    trainer.state, trainer.control = SimpleNamespace(max_steps=6, global_step=5), SimpleNamespace()
    trainer.control.should_training_stop = False
    assert trainer.get_batch_samples(iter([]), 2, "cpu") == (["batch"], 1)
    trainer.state.global_step = 6  # resumed from the run's last checkpoint (killed during its final save)
    assert trainer.get_batch_samples(iter([]), 2, "cpu") == ([], None) and trainer.control.should_training_stop


def test_a_missing_value_head_or_mid_phase_grpo_state_stops_the_resume(tmp_path: Path) -> None:
    from vlmrl_trl.trainers.grpo_trainer import VLMGRPOTrainer
    from vlmrl_trl.trainers.ppo_trainer import VLMPPOTrainer

    with pytest.raises(CheckpointError, match="value_head.safetensors: missing"):
        VLMPPOTrainer._load_value_head_from(SimpleNamespace(), str(tmp_path))

    def trainer(global_step: int) -> SimpleNamespace:  # a generation batch serves 2 x 2 micro-batches = 2 steps
        args = SimpleNamespace(steps_per_generation=2, gradient_accumulation_steps=2)
        return SimpleNamespace(
            args=args, num_iterations=2, state=SimpleNamespace(global_step=global_step),
            accelerator=SimpleNamespace(process_index=0), _step=0, _buffered_inputs=None,
        )  # fmt: skip

    with pytest.raises(CheckpointError, match="grpo_phase_0.pt: missing, and the checkpoint reuses"):
        VLMGRPOTrainer._load_resume_state(trainer(3), str(tmp_path))
    VLMGRPOTrainer._load_resume_state(trainer(4), str(tmp_path))  # at a phase boundary: generated afresh anyway


# The GRPO run: 8 optimizer steps of 2 micro-batches, each generation batch used twice (num_iterations=2), 4 steps
# an epoch, a checkpoint after every step. Killed during the save of checkpoint-6, it resumes from checkpoint-5:
# mid-phase (step 6 reuses its buffered batch) in the second epoch, whose second batch (steps 7-8) comes from the
# sampler's second shuffle.
GRPO_ARGS = (
    "--num_frames", "1", "--per_device_train_batch_size", "2", "--num_generations", "2",
    "--max_completion_length", "4", "--num_iterations", "2", "--max_steps", "8", "--learning_rate", "1e-3",
    "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "1", "--disable_tqdm", "true",
)  # fmt: skip
# Runs the stage script, killing it with SIGKILL when checkpoint-6's files are all written but not its manifest.
KILLED_DURING_SAVE = """
import os, signal, sys
from vlmrl_trl import checkpoints
write_manifest = checkpoints.write_manifest
def killed(folder):
    if folder.name == "checkpoint-6":
        os.kill(os.getpid(), signal.SIGKILL)
    return write_manifest(folder)
checkpoints.write_manifest = killed
from vlmrl_trl.grpo import cli
sys.exit(cli(sys.argv[1:]))
"""


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "model.safetensors")


@pytest.mark.slow
def test_a_grpo_run_killed_during_a_save_resumes_mid_phase_to_identical_weights(
    tmp_path: Path, tiny_vlm_dir: Path, caplog
) -> None:
    from vlmrl_trl.data.synthetic import generate_synthetic
    from vlmrl_trl.grpo import cli

    data = generate_synthetic(tmp_path / "clips", train=4, val=1, test=1, num_frames=1)
    common = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "grpo" / "config_stage2.yaml"),
        "--model_name_or_path", str(tiny_vlm_dir), "--data_dir", str(data), *GRPO_ARGS,
    ]  # fmt: skip
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli([*common, "--output_dir", str(reference)]) == 0

    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [*common, "--output_dir", str(killed)]
    run = subprocess.run([sys.executable, "-c", KILLED_DURING_SAVE, *argv], env=env, capture_output=True, check=False)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    assert not checkpoints.is_complete(killed / "checkpoint-6") and checkpoints.is_complete(killed / "checkpoint-5")
    assert (killed / "checkpoint-5" / "grpo_phase_0.pt").is_file()

    with caplog.at_level(logging.WARNING, logger="vlmrl_trl.launch"):
        assert cli(argv) == 0  # the same command again
    assert f"skipping {killed / 'checkpoint-6'}" in caplog.text
    assert "resuming from it" in caplog.text and str(killed / "checkpoint-5") in caplog.text
    expected, resumed = final_weights(reference), final_weights(killed)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[key], resumed[key]) for key in expected), "resumed weights differ"
    assert checkpoints.checkpoints(killed) == [killed / "checkpoint-8"] and checkpoints.is_complete(
        killed / "checkpoint-8"
    )
