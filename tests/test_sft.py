"""SFT: recipes parse strictly, the loss covers only the answer, and training lowers it."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from PIL import Image
from trl import ModelConfig, SFTConfig

from vlmrl_trl.models import EOS_TOKEN
from vlmrl_trl.sft import SFTScriptArguments, build_trainer, cli, parse_args, to_messages

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*/sft/*.yaml"))
ANSWERS = (
    '{"scene":"red light","actions":["stop"],"reasons":["red_light"]}',
    '{"scene":"clear road","actions":["move_forward"],"reasons":["road_clear"]}',
)


def clips_dataset() -> Dataset:
    """Two 2-frame clips (red and green frames) and their answers, in the prompt/completion form."""
    colours = ((220, 30, 30), (30, 200, 60))
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Decide."}]}]
    return Dataset.from_dict(
        {
            "prompt": [prompt, prompt],
            "completion": [[{"role": "assistant", "content": [{"type": "text", "text": a}]}] for a in ANSWERS],
            "images": [[Image.new("RGB", (64, 64), c)] * 2 for c in colours],
        }
    )


def sft_config(tmp_path: Path, **overrides) -> SFTConfig:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "learning_rate": 3e-3,
        "max_steps": 8,
        "logging_steps": 1,
        "bf16": False,
        "activation_checkpointing": False,
        "assistant_only_loss": True,
        "max_length": None,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "seed": 0,
    }
    return SFTConfig(**(settings | overrides))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO_ROOT / "recipes")))
def test_recipes_parse(recipe: Path) -> None:
    # bf16 is off here only because the test machine has no GPU.
    script_args, training_args, model_args = parse_args(["--config", str(recipe), "--bf16", "false"])
    assert model_args.model_name_or_path
    assert training_args.assistant_only_loss
    assert script_args.num_frames >= 1


def test_reference_recipes_use_the_reference_setting() -> None:
    for name in ("smolvlm-256m-instruct", "smolvlm-instruct"):
        recipe = REPO_ROOT / "recipes" / name / "sft" / "config_bddoia.yaml"
        _, args, model_args = parse_args(["--config", str(recipe), "--bf16", "false"])
        assert model_args.model_name_or_path.startswith("HuggingFaceTB/SmolVLM")
        assert (args.num_train_epochs, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (6, 4, 4)
        assert args.learning_rate == pytest.approx(1e-4)
        assert args.lr_scheduler_type == "cosine" and args.warmup_steps > 0
        assert args.gradient_checkpointing


def test_command_line_overrides_the_recipe() -> None:
    recipe = REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"
    script_args, args, _ = parse_args(["--config", str(recipe), "--learning_rate", "0.5", "--num_frames", "2"])
    assert args.learning_rate == 0.5 and script_args.num_frames == 2


def test_the_deprecated_checkpointing_flag_overrides_the_recipe_like_any_flag() -> None:
    """transformers 5 ignores `gradient_checkpointing` when `activation_checkpointing` is set, as every recipe does;
    given on the command line it must still win."""
    recipe = REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"
    _, args, _ = parse_args(["--config", str(recipe), "--gradient_checkpointing", "true"])
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True
    _, args, _ = parse_args(["--config", str(recipe), '--gradient_checkpointing_kwargs={"use_reentrant": true}'])
    assert args.activation_checkpointing_kwargs == {"use_reentrant": True}


def test_unknown_recipe_key_is_rejected_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: some/model\nbf16: false\nlerning_rate: 0.1\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        parse_args(["--config", str(recipe)])
    assert cli(["--config", str(recipe)]) == 2
    assert "lerning_rate" in capsys.readouterr().err


def test_bad_script_argument_is_rejected() -> None:
    with pytest.raises(ValueError, match="prompt_mode"):
        SFTScriptArguments(prompt_mode="chatty")
    with pytest.raises(ValueError, match="num_frames"):
        SFTScriptArguments(num_frames=0)
    with pytest.raises(ValueError, match="describe_ratio"):
        SFTScriptArguments(describe_ratio=1.5)
    with pytest.raises(ValueError, match="dataset_train_split must be one of train, val, test, got 'training'"):
        SFTScriptArguments(dataset_train_split="training")


def test_data_dir_with_a_bddoia_dataset_is_an_error_pointing_at_dataset_name() -> None:
    """`data_dir` only places the synthetic clips: given with a BDD-OIA root it would be silently ignored."""
    with pytest.raises(ValueError, match="data_dir='/data/bddoia' is only read with dataset_name='synthetic'"):
        SFTScriptArguments(dataset_name="data/bddoia", data_dir="/data/bddoia")
    assert SFTScriptArguments(dataset_name="/data/bddoia").dataset_name == "/data/bddoia"


def test_a_missing_dataset_fails_before_the_model_is_loaded(tmp_path: Path) -> None:
    """The data is read first, so a wrong dataset folder is reported without waiting on a model download."""
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(FileNotFoundError, match="dataset_name=.*no such folder.*_25k_images_actions.json"):
        build_trainer(
            SFTScriptArguments(dataset_name=str(tmp_path / "no-such-copy")),
            args,
            ModelConfig(model_name_or_path="HuggingFaceTB/not-downloaded"),
        )


def test_assistant_only_mask_covers_only_the_answer(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    trainer = build_trainer(
        SFTScriptArguments(),
        sft_config(tmp_path),
        ModelConfig(model_name_or_path=str(tiny_vlm_dir)),
        train_dataset=to_messages(clips_dataset()),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    tokenizer = trainer.processing_class.tokenizer
    for ids, labels, answer in zip(batch["input_ids"], batch["labels"], ANSWERS, strict=True):
        trained = labels != -100
        assert tokenizer.decode(ids[trained]) == f" {answer}{EOS_TOKEN}\n"
        assert (labels[trained] == ids[trained]).all()


def test_describe_ratio_adds_frames_only_description_examples(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    from vlmrl_trl.data import load_bddoia

    script_args = SFTScriptArguments(
        data_dir=str(tmp_path / "synthetic"),
        synthetic_train_clips=4,
        synthetic_val_clips=1,
        synthetic_test_clips=1,
        num_frames=2,
        describe_ratio=0.5,
    )
    trainer = build_trainer(script_args, sft_config(tmp_path), ModelConfig(model_name_or_path=str(tiny_vlm_dir)))
    rows = trainer.train_dataset
    assert len(rows) == 6  # 4 decisions + 2 descriptions
    clips = load_bddoia(tmp_path / "synthetic", "train", num_frames=2)
    scenes = dict(zip(clips["clip_id"], clips["scene"], strict=True))
    tokenizer = trainer.processing_class.tokenizer
    batch = trainer.data_collator([rows[4], rows[5]])
    for row, ids, labels in zip((rows[4], rows[5]), batch["input_ids"], batch["labels"], strict=True):
        assert [part["type"] for part in row["messages"][0]["content"]] == ["image", "image"]  # no instruction
        trained = labels != -100
        assert tokenizer.decode(ids[trained]) == f" {scenes[row['clip_id']]}{EOS_TOKEN}\n"


def test_describe_ratio_without_descriptions_names_the_option(monkeypatch):
    import vlmrl_trl.sft as sft

    clips = Dataset.from_dict(
        {
            "clip_id": ["a"],
            "images": [[Image.new("RGB", (8, 8))]],
            "num_frames": [1],
            "actions": [[0, 1, 0, 0]],
            "reasons": [[0] * 21],
            "scene": [None],
        }
    )
    monkeypatch.setattr(sft, "load_clips", lambda script_args, split: clips)
    with pytest.raises(ValueError, match="describe_ratio=1.0 needs a description"):
        sft.build_sft_dataset(
            SFTScriptArguments(describe_ratio=1.0), "train", max_samples=None, conversation=True, describe_ratio=1.0
        )


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    trainer = build_trainer(
        SFTScriptArguments(),
        sft_config(tmp_path),
        ModelConfig(model_name_or_path=str(tiny_vlm_dir)),
        train_dataset=to_messages(clips_dataset()),
    )
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 8
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.slow
def test_tiny_recipe_end_to_end_on_generated_clips(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    from vlmrl_trl.models import load_processor

    out = tmp_path / "sft"
    argv = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"),
        "--model_name_or_path", str(tiny_vlm_dir),
        "--data_dir", str(tmp_path / "synthetic"),
        "--synthetic_train_clips", "4",
        "--synthetic_val_clips", "2",
        "--synthetic_test_clips", "1",
        "--num_frames", "2",
        "--per_device_train_batch_size", "2",
        "--max_steps", "2",
        "--output_dir", str(out),
    ]  # fmt: skip
    assert cli(argv) == 0
    assert (tmp_path / "synthetic" / "train_25k_images_actions.json").is_file()
    assert (out / "model.safetensors").is_file()
    assert "{% generation %}" in load_processor(str(out)).chat_template


def test_an_interrupted_run_continues_from_its_last_checkpoint(
    tmp_path: Path, tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run again with the same output_dir, a stage script resumes from the last checkpoint instead of restarting."""
    from transformers import Trainer

    out = tmp_path / "sft"
    argv = [
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "sft" / "config_synthetic.yaml"),
        "--model_name_or_path", str(tiny_vlm_dir),
        "--data_dir", str(tmp_path / "synthetic"),
        "--synthetic_train_clips", "4", "--synthetic_val_clips", "1", "--synthetic_test_clips", "1",
        "--num_frames", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
        "--save_strategy", "steps", "--save_steps", "2",
        "--output_dir", str(out),
    ]  # fmt: skip
    assert cli([*argv, "--max_steps", "2"]) == 0  # the "interrupted" run: stopped after its checkpoint-2
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()

    steps = []
    training_step = Trainer.training_step

    def counted_step(self, *args, **kwargs):
        steps.append(1)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counted_step)
    assert cli([*argv, "--max_steps", "3"]) == 0
    assert len(steps) == 1, "only the step after checkpoint-2 is trained again"
    assert (out / "checkpoint-3").is_dir()
