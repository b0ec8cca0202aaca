"""``report_to`` with TensorBoard and trackio works offline: a tiny SFT run's losses are read back from the event
files and from trackio's local SQLite store (docs/training.md). Each tracker's test skips where it is not installed:
TensorBoard comes with the ``dev`` extra (``make install``), trackio only with ``trackers``, for the pin below."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
TRACKIO_SKIP = (
    "trackio is not installed: it is in the 'trackers' extra only, not in 'dev' (make install), because trackio 0.43 "
    "pins pillow<13 and the stack runs pillow 13; pip install -e '.[trackers]' would downgrade pillow"
)


def train_tiny_sft(tmp_path: Path, tiny_vlm_dir: Path, trackers: list[str]) -> Path:
    """Run the tiny SFT recipe for a few steps in a fresh process, offline, reporting to ``trackers`` (set in the
    recipe: the command line takes one tracker); trackio's store goes to ``tmp_path/trackio``. Returns output_dir."""
    recipe = (REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml").read_text()
    assert "\nreport_to: none\n" in recipe
    config = tmp_path / "sft.yaml"
    config.write_text(recipe.replace("\nreport_to: none\n", f"\nreport_to: {json.dumps(trackers)}\n"))
    out = tmp_path / "out"
    argv = [
        "--config", str(config),
        "--model_name_or_path", str(tiny_vlm_dir),
        "--data_dir", str(tmp_path / "synthetic"),
        "--synthetic_train_clips", "4", "--synthetic_val_clips", "1", "--synthetic_test_clips", "1",
        "--num_frames", "2", "--per_device_train_batch_size", "2", "--describe_ratio", "0",
        "--max_steps", str(STEPS), "--logging_steps", "1", "--save_strategy", "no",
        "--project", "vlmrl-trackers", "--run_name", "tiny-sft",
        "--output_dir", str(out),
    ]  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRACKIO_DIR": str(tmp_path / "trackio"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "vlmrl_trl.sft", *argv], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def tensorboard_losses(out: Path) -> dict[int, float]:
    """``train/loss`` by step, from the event files the TensorBoard callback wrote under ``output_dir/runs``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (logdir,) = {path.parent for path in (out / "runs").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {event.step: event.value for event in events.Scalars("train/loss")}


def trackio_losses(store: Path, project: str, run: str) -> dict[int, float]:
    """``train/loss`` by global step, from the run's rows of trackio's local project database."""
    (database,) = store.glob(f"{project}.db")
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT metrics FROM metrics WHERE run_name = ? ORDER BY id", (run,)).fetchall()
    logged = [json.loads(metrics) for (metrics,) in rows]
    return {int(entry["train/global_step"]): entry["train/loss"] for entry in logged if "train/loss" in entry}


def assert_a_loss_per_step(losses: dict[int, float]) -> None:
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert all(math.isfinite(loss) and loss > 0 for loss in losses.values())


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_losses(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed; the 'dev' extra has it (make install)")
    out = train_tiny_sft(tmp_path, tiny_vlm_dir, ["tensorboard"])
    assert_a_loss_per_step(tensorboard_losses(out))


@pytest.mark.slow
def test_trackio_local_store_holds_the_losses(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    pytest.importorskip("trackio", reason=TRACKIO_SKIP)
    train_tiny_sft(tmp_path, tiny_vlm_dir, ["trackio"])
    assert_a_loss_per_step(trackio_losses(tmp_path / "trackio", "vlmrl-trackers", "tiny-sft"))
