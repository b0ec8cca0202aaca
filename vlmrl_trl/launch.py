"""What a training script needs to run the same under `accelerate launch` on GPUs and on a machine without any.

On CPU, processes launched with a DeepSpeed config get no collective backend from accelerate unless the training
arguments name one (accelerate then counts one process while DeepSpeed counts all of them, and DeepSpeed's batch
check fails), and processes launched with the DDP config train alone unless ``ACCELERATE_USE_CPU=true``.
`set_launch_defaults` makes ``gloo`` the default ``ddp_backend`` there, `check_launch` turns the second case into a
clear error (as is ``ACCELERATE_USE_CPU=true`` with DeepSpeed, which would silently run plain DDP), and
`end_distributed` closes the process group at the end of a run. `parse_recipe` (the stage scripts' argument parsing)
applies the first two and picks the checkpoint to resume from (`checkpoint_to_resume`), and `run_script` (their entry
point) the last.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import DistributedType
from trl import TrlParser

if TYPE_CHECKING:
    from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 for a plain ``python`` run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def set_launch_defaults(parser: HfArgumentParser) -> None:
    """Default ``ddp_backend`` to ``gloo`` for launched processes on a machine without an accelerator (a recipe or
    the command line still overrides it); elsewhere the default stays the launcher's (NCCL on GPUs)."""
    if launched_processes() > 1 and not torch.accelerator.is_available():
        parser.set_defaults(ddp_backend="gloo")


def check_launch(args: TrainingArguments) -> None:
    """Raise ``ValueError`` when launched processes would each train on their own, or when a DeepSpeed launch
    would silently run without DeepSpeed."""
    processes = launched_processes()
    distributed_type = args.distributed_state.distributed_type
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and distributed_type not in (
        DistributedType.DEEPSPEED,
        DistributedType.NO,
    ):
        raise ValueError(
            f"accelerate launch asked for DeepSpeed, but the processes were set up for {distributed_type.value}: "
            "ACCELERATE_USE_CPU=true (or use_cpu=True) turns DeepSpeed off; DeepSpeed finds the CPU by itself, so "
            "unset it"
        )
    if processes > 1 and distributed_type == DistributedType.NO:
        raise ValueError(
            f"accelerate launch started {processes} processes, but they would not train together: without a GPU, "
            "plain DDP needs ACCELERATE_USE_CPU=true (ACCELERATE_USE_CPU=true accelerate launch --config_file "
            "recipes/accelerate_configs/ddp.yaml ...); DeepSpeed configs need no variable"
        )


# transformers 5 keeps `gradient_checkpointing*` as aliases that count only when the new name is unset.
_DEPRECATED_ALIASES = {
    "--gradient_checkpointing": "--activation_checkpointing",
    "--gradient_checkpointing_kwargs": "--activation_checkpointing_kwargs",
}


def renamed_aliases(argv: Sequence[str]) -> list[str]:
    """Command-line arguments with transformers' deprecated ``--gradient_checkpointing*`` spelt by their new names,
    so that, like any override, they win over a recipe's ``activation_checkpointing*`` instead of being ignored."""
    renamed = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        renamed.append(_DEPRECATED_ALIASES.get(name, name) + sep + value)
    return renamed


class RecipeParser(TrlParser):
    """`TrlParser` whose argument errors (a value of the wrong type, a missing value) raise ``ValueError`` with
    argparse's message, which names the option, so the stage scripts report them in one line like any bad option
    instead of argparse's usage text."""

    def error(self, message: str) -> None:
        raise ValueError(message)


def parse_recipe(dataclass_types: tuple[type, ...], argv: Sequence[str] | None = None) -> tuple:
    """A stage script's arguments: ``--config recipe.yaml`` plus command-line overrides of the same keys, parsed by
    ``TrlParser`` into ``dataclass_types`` (script arguments, training arguments, ``ModelConfig``). ``ddp_backend``
    defaults to gloo for launched processes without GPU; a recipe that is not YAML, unknown keys in the YAML or on
    the command line, a bad option value (`vlmrl_trl.options.validate_options`), or launched processes that would
    not train together raise ``ValueError``, all before any data or model is loaded."""
    from .options import read_recipe, validate_options

    parser = RecipeParser(dataclass_types)
    set_launch_defaults(parser)
    argv = renamed_aliases(sys.argv[1:] if argv is None else argv)
    recipe = recipe_path(argv)
    if recipe is not None:
        read_recipe(recipe)  # names the file on a YAML error (TRL's would not) and logs its env: variables
    try:
        parsed = parser.parse_args_and_config(args=argv, fail_with_unknown_args=True)
    except ValueError as err:
        raise unknown_option_error(parser, err, recipe) from None
    validate_options(parsed)
    check_launch(parsed[1])
    parsed[1].resume_from_checkpoint = checkpoint_to_resume(parsed[1])
    return tuple(parsed)


def unknown_option_error(parser: HfArgumentParser, err: ValueError, recipe: str | None) -> ValueError:
    """TRL's unknown-argument error as one line: each unknown key as the user wrote it, where it came from (the
    recipe or the command line) and the closest valid keys; other errors come back unchanged."""
    message = str(err)
    from_recipe = "config file" in message
    if not from_recipe and "not used by the HfArgumentParser" not in message:
        return err
    unknown = re.findall(r"'(--[^']+)'", message)
    valid = sorted({option for action in parser._actions for option in action.option_strings if "-" not in option[2:]})
    hints = []
    for option in unknown:
        key = option.split("=", 1)[0]
        close = difflib.get_close_matches(key, valid, n=2, cutoff=0.75)
        written = key[2:] if from_recipe else key
        suggestion = f" (did you mean {' or '.join(c[2:] if from_recipe else c for c in close)}?)" if close else ""
        hints.append(f"{written}{suggestion}")
    where = f"in the recipe {recipe}" if from_recipe else "on the command line"
    return ValueError(f"unknown key {', '.join(hints)} {where}; run with --help for the valid keys")


def recipe_path(argv: Sequence[str]) -> str | None:
    """The ``--config`` file named in ``argv``, if any."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.removeprefix("--config=")
    return None


def checkpoint_to_resume(args: TrainingArguments) -> str | None:
    """The checkpoint a run continues from, so that an interrupted run picks up where it stopped (as open-r1's
    scripts do): ``resume_from_checkpoint`` when it names a folder; the newest complete ``checkpoint-*`` of
    ``output_dir`` when it is ``true``, or when it is unset and ``output_dir`` holds one; none with ``false``.
    Incomplete checkpoints (a save that never finished) are skipped with one line each; the chosen one is verified
    against its manifest (`vlmrl_trl.checkpoints`), and a corrupt or missing file raises `CheckpointError`."""
    from .checkpoints import MANIFEST, is_complete, newest_complete, verify

    value = args.resume_from_checkpoint
    flag = str(value).lower() if isinstance(value, (bool, str)) else None
    if flag in ("false", "no", "0"):
        return None
    asked_for_last = flag in ("true", "yes", "1")
    if value is not None and not asked_for_last:
        if not os.path.isdir(value):
            raise FileNotFoundError(f"resume_from_checkpoint={value!r} is not a checkpoint folder")
        if not is_complete(value):
            raise FileNotFoundError(f"resume_from_checkpoint={value!r} has no {MANIFEST}: its save did not finish")
        verify(value)
        return str(value)
    last, skipped = newest_complete(args.output_dir)
    for folder in skipped:
        logger.warning("skipping %s: its save did not finish (no %s)", folder, MANIFEST)
    if last is None and asked_for_last:
        raise FileNotFoundError(
            f"resume_from_checkpoint=true, but output_dir={args.output_dir!r} holds no complete checkpoint-* folder"
        )
    if last is None:
        return None
    verify(last)
    if value is None:
        logger.warning(
            "%s holds %s: resuming from it (--resume_from_checkpoint false starts afresh)", args.output_dir, last
        )
    return str(last)


def end_distributed() -> None:
    """Wait for every process, then tear the process group down (a clean exit under ``accelerate launch``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_script(
    name: str,
    parse_args: Callable[[Sequence[str] | None], tuple],
    main: Callable[..., Any],
    argv: Sequence[str] | None = None,
) -> int:
    """The stage scripts' entry point: parse, train, close the process group; a bad recipe or option, and a data
    or checkpoint error while training, exit 2 with one readable line naming the script (``VLMRL_VERBOSE=1``
    raises instead, with the traceback)."""
    from .cli import one_line

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = parse_args(argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    try:
        main(*args)
    except (ValueError, OSError) as err:  # bad data (BDDOIADataError is a ValueError), a corrupt checkpoint
        if os.environ.get("VLMRL_VERBOSE", "") not in ("", "0"):
            raise
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    end_distributed()
    return 0
