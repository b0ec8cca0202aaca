"""The stages connect: make says which model an RL stage starts from, and does not silently replace it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmrl_trl import stages

REPO = Path(__file__).resolve().parents[1]
SFT_RECIPE = "recipes/tiny/sft/config_synthetic.yaml"
GRPO_RECIPE = "recipes/tiny/grpo/config_stage2.yaml"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with the repository's recipes and a trained tiny SFT model where the recipes put it."""
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    sft = tmp_path / "outputs" / "tiny-vlm-sft"
    sft.mkdir(parents=True)
    (sft / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_tiny_recipes_chain_sft_into_every_rl_stage():
    sft_out = stages.recipe_value(REPO / SFT_RECIPE, "output_dir")
    for target in ("grpo-stage2", "grpo-stage3", "ppo-stage1"):
        assert stages.recipe_value(REPO / stages.DEFAULT_RECIPES[target], "model_name_or_path") == sft_out


def test_a_changed_sft_run_does_not_replace_the_model_rl_starts_from(project, capsys):
    argv = ["replace", "--target", "sft", "--recipe", SFT_RECIPE, "--", "--max_steps", "5"]
    assert stages.main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to replace outputs/tiny-vlm-sft" in err and "make grpo-stage2" in err and "OVERWRITE=1" in err
    assert stages.main([*argv[:5], "--overwrite", *argv[5:]]) == 0
    assert "note: replacing outputs/tiny-vlm-sft" in capsys.readouterr().out
    assert stages.main([*argv, "--output_dir", "outputs/my-sft"]) == 0  # written elsewhere: nothing to say
    assert capsys.readouterr().out == ""
    assert stages.main(argv[:5]) == 0  # the recipe as it is: replaced, with a note
    assert "note: replacing" in capsys.readouterr().out


def test_an_rl_stage_says_which_model_it_starts_from(project, capsys):
    assert stages.main(["start", "--target", "grpo-stage2", "--recipe", GRPO_RECIPE, "--trains-first"]) == 0
    assert "grpo-stage2 starts from outputs/tiny-vlm-sft, written by make sft" in capsys.readouterr().out
    shutil.rmtree(project / "outputs" / "tiny-vlm-sft")
    assert stages.main(["start", "--target", "grpo-stage2", "--recipe", GRPO_RECIPE, "--trains-first"]) == 0
    assert "does not exist yet: training it first with make sft" in capsys.readouterr().out
    assert stages.main(["start", "--target", "grpo-stage2", "--recipe", GRPO_RECIPE, "--checkpoint", "nope"]) == 2
    assert "CHECKPOINT=nope" in capsys.readouterr().err


def test_make_sft_with_args_refuses_before_training(project):
    """`make sft ARGS="--max_steps 5"` stops at the check, before anything is built or trained."""
    shutil.copy(REPO / "Makefile", project / "Makefile")
    for name in ("pyproject.toml", "constraints.txt"):
        (project / name).write_text("")
    stamp = project / "installed"
    stamp.write_text("")
    os.utime(stamp, (2e9, 2e9))  # newer than the files it depends on: nothing to install
    venv = Path(sys.executable).parent.parent
    done = subprocess.run(
        ["make", "sft", "ARGS=--max_steps 5", f"VENV={venv}", f"STAMP={stamp}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode != 0
    assert "refusing to replace outputs/tiny-vlm-sft" in done.stderr
    assert "vlmrl_trl.sft" not in done.stdout  # the training command never ran


def test_a_replaced_output_starts_afresh_instead_of_resuming_the_old_run():
    """With OVERWRITE=1 the stage ignores the old run's checkpoints (they hold its options); without, it resumes."""

    def command(*overwrite: str) -> str:
        done = subprocess.run(
            ["make", "-n", "grpo-stage2", "ARGS=--max_steps 2", *overwrite],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        return next(line for line in done.stdout.splitlines() if "-m vlmrl_trl.grpo" in line)

    assert command("OVERWRITE=1").endswith("--max_steps 2 --resume_from_checkpoint false")
    assert "--resume_from_checkpoint" not in command()
