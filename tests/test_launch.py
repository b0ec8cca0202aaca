"""Launch helpers: gloo by default for launched CPU processes, clear errors for launches that would not train
together, the checkpoint an interrupted run resumes from, and a clean end of the process group."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from accelerate.utils import DistributedType
from transformers import HfArgumentParser, TrainingArguments

from vlmrl_trl.checkpoints import write_manifest
from vlmrl_trl.launch import check_launch, checkpoint_to_resume, end_distributed, set_launch_defaults


def launched_args(distributed_type: DistributedType) -> SimpleNamespace:
    """Training arguments as far as `check_launch` reads them."""
    return SimpleNamespace(distributed_state=SimpleNamespace(distributed_type=distributed_type))


@pytest.fixture
def launch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("world_size", "accelerator", "expected"), [("2", False, "gloo"), ("2", True, None), (None, False, None)]
)
def test_gloo_is_the_default_only_for_launched_processes_without_accelerator(
    launch_env: pytest.MonkeyPatch, world_size: str | None, accelerator: bool, expected: str | None
) -> None:
    if world_size is not None:
        launch_env.setenv("WORLD_SIZE", world_size)
    launch_env.setattr(torch.accelerator, "is_available", lambda: accelerator)
    parser = HfArgumentParser(TrainingArguments)
    set_launch_defaults(parser)
    assert parser.get_default("ddp_backend") == expected


def test_a_recipe_still_overrides_the_default_backend(launch_env: pytest.MonkeyPatch) -> None:
    launch_env.setenv("WORLD_SIZE", "2")
    launch_env.setattr(torch.accelerator, "is_available", lambda: False)
    parser = HfArgumentParser(TrainingArguments)
    set_launch_defaults(parser)
    namespace, _ = parser.parse_known_args(["--output_dir", "out", "--ddp_backend", "mpi"])
    assert namespace.ddp_backend == "mpi"


def test_processes_that_would_train_alone_are_an_error(launch_env: pytest.MonkeyPatch) -> None:
    check_launch(launched_args(DistributedType.NO))  # a plain python run
    launch_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="ACCELERATE_USE_CPU=true"):
        check_launch(launched_args(DistributedType.NO))
    check_launch(launched_args(DistributedType.MULTI_CPU))


def test_deepspeed_turned_off_by_use_cpu_is_an_error(launch_env: pytest.MonkeyPatch) -> None:
    launch_env.setenv("WORLD_SIZE", "2")
    launch_env.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="DeepSpeed"):
        check_launch(launched_args(DistributedType.MULTI_CPU))
    check_launch(launched_args(DistributedType.DEEPSPEED))


def test_end_distributed_closes_the_process_group(tmp_path) -> None:
    end_distributed()  # nothing to close: no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    end_distributed()
    assert not dist.is_initialized()


def resume_args(output_dir: Path, value: str | bool | None) -> SimpleNamespace:
    return SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=value)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path, caplog) -> None:
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        write_manifest(tmp_path / f"checkpoint-{step}")
    with caplog.at_level("WARNING"):
        assert checkpoint_to_resume(resume_args(tmp_path, None)) == str(tmp_path / "checkpoint-10")
    assert "resuming from" in caplog.text and "--resume_from_checkpoint false" in caplog.text
    assert checkpoint_to_resume(resume_args(tmp_path, "true")) == str(tmp_path / "checkpoint-10")
    assert checkpoint_to_resume(resume_args(tmp_path, "false")) is None
    named = str(tmp_path / "checkpoint-2")
    assert checkpoint_to_resume(resume_args(tmp_path, named)) == named


def test_a_fresh_output_dir_starts_afresh_and_bad_resume_requests_name_the_option(tmp_path: Path) -> None:
    assert checkpoint_to_resume(resume_args(tmp_path / "new", None)) is None
    with pytest.raises(FileNotFoundError, match="output_dir=.* holds no complete checkpoint"):
        checkpoint_to_resume(resume_args(tmp_path, "true"))
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint='.*missing' is not a checkpoint folder"):
        checkpoint_to_resume(resume_args(tmp_path, str(tmp_path / "missing")))


def test_a_mistyped_key_is_named_with_the_closest_valid_one(tmp_path: Path) -> None:
    from vlmrl_trl.sft import parse_args

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"
    with pytest.raises(ValueError) as typed:
        parse_args(["--config", str(recipe), "--learnin_rate", "1"])
    assert str(typed.value).startswith("unknown key --learnin_rate (did you mean --learning_rate?) on the command")
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text() + "\nnum_frame: 2\n")
    with pytest.raises(ValueError) as written:
        parse_args(["--config", str(bad)])
    message = str(written.value)
    assert "num_frame (did you mean num_frames?)" in message and str(bad) in message and "\n" not in message


def test_a_bad_value_on_the_command_line_is_one_line_naming_the_option(capsys) -> None:
    from vlmrl_trl.sft import cli

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"
    assert cli(["--config", str(recipe), "--max_steps", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vlmrl_trl.sft: error: argument --max_steps/--max-steps: invalid int value: '1.5'"
