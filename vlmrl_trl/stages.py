"""How the training stages connect: each recipe's ``model_name_or_path`` is the folder it starts from and its
``output_dir`` the folder it writes, so a stage's output is the next stage's input when the two agree.

``make`` asks this module, before each stage runs, which model an RL stage starts from (and says why it would train
one first), and whether a run is about to replace a model that other recipes start from: a run that changes its
recipe on the command line is refused there unless ``--overwrite`` (``make ... OVERWRITE=1``) says so.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

RECIPES = Path("recipes")
# The tiny recipes each make target runs by default (other recipes are named with RECIPE=...).
DEFAULT_RECIPES = {
    "sft": "recipes/tiny/sft/config_synthetic.yaml",
    "grpo-stage2": "recipes/tiny/grpo/config_stage2.yaml",
    "grpo-stage3": "recipes/tiny/grpo/config_stage3.yaml",
    "ppo-stage1": "recipes/tiny/ppo/config_stage1.yaml",
}


def recipe_value(recipe: str | Path, key: str) -> str | None:
    """A top-level key of a recipe YAML, as a string (None when absent)."""
    data = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}
    value = data.get(key) if isinstance(data, dict) else None
    return None if value is None else str(value)


def override(args: Sequence[str], key: str) -> str | None:
    """The value of ``--key V`` or ``--key=V`` among command-line overrides (the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == f"--{key}" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
    return value


def without(args: Sequence[str], key: str) -> list[str]:
    """The overrides other than ``--key V`` / ``--key=V``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == f"--{key}":
            skip = True
        elif not arg.startswith(f"--{key}="):
            kept.append(arg)
    return kept


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def make_command(recipe: Path) -> str:
    """How a user runs ``recipe`` with make: the target, plus RECIPE= when it is not the target's default."""
    stage = recipe.parent.name
    target = stage if stage == "sft" else f"{stage}-{recipe.stem.removeprefix('config_')}"
    if DEFAULT_RECIPES.get(target) == recipe.as_posix():
        return f"make {target}"
    return f"make {target} RECIPE={recipe.as_posix()}"


def starting_from(model_dir: str | Path, recipes: Path = RECIPES) -> list[str]:
    """The make commands whose recipes start from ``model_dir``."""
    return [
        make_command(recipe)
        for recipe in sorted(recipes.glob("*/*/*.yaml"))
        if (start := recipe_value(recipe, "model_name_or_path")) is not None and _same(start, model_dir)
    ]


def written_by(model_dir: str | Path, recipes: Path = RECIPES) -> list[str]:
    """The make commands whose recipes write ``model_dir``."""
    return [
        make_command(recipe)
        for recipe in sorted(recipes.glob("*/*/*.yaml"))
        if (out := recipe_value(recipe, "output_dir")) is not None and _same(out, model_dir)
    ]


def model_file(folder: str | Path) -> Path | None:
    """The file that makes ``folder`` a saved model (``config.json``) or adapter, or None."""
    for name in ("config.json", "adapter_config.json"):
        if (path := Path(folder) / name).is_file():
            return path
    return None


def replacement_check(output_dir: str | Path, changes: Sequence[str], overwrite: bool, recipes: Path = RECIPES) -> str:
    """What to say before a run writes ``output_dir``: nothing when no other recipe starts from the model there, a
    note when it is replaced by the same recipe; a ``ValueError`` when ``changes`` (overrides) would replace it with
    a different model unless ``overwrite``."""
    folder = Path(output_dir)
    users = starting_from(folder, recipes)
    saved = model_file(folder)
    if not users or saved is None:
        return ""
    what = f"{folder}, the model {', '.join(users)} start{'s' * (len(users) == 1)} from"
    if changes and not overwrite:
        given = shlex.join(changes)
        raise ValueError(
            f"refusing to replace {what}, with a run that changes its recipe ({given}). Write it elsewhere "
            f'(ARGS="{given} --output_dir outputs/my-run", then CHECKPOINT=outputs/my-run for the next stage) '
            "or replace it anyway with OVERWRITE=1."
        )
    trained = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved.stat().st_mtime))
    return f"note: replacing {what} (trained {trained})."


def start_message(
    target: str, recipe: str | Path, args: Sequence[str], checkpoint: str | None, trains_first: bool
) -> str:
    """Which model an RL target starts from and where it comes from. ``trains_first``: make trains the tiny SFT
    model first when it is missing; otherwise a missing local model is a ``FileNotFoundError`` saying what to run."""
    if checkpoint:
        if model_file(checkpoint) is None:
            raise FileNotFoundError(f"CHECKPOINT={checkpoint}: not a saved model folder (no config.json)")
        return f"{target} starts from CHECKPOINT={checkpoint}."
    start = override(args, "model_name_or_path") or recipe_value(recipe, "model_name_or_path")
    if start is None:
        raise ValueError(f"{recipe}: no model_name_or_path; pass CHECKPOINT=DIR")
    writers = written_by(start)
    source = f", written by {' or '.join(writers)}" if writers else ""
    if model_file(start) is not None:
        return f"{target} starts from {start}{source} (CHECKPOINT=DIR starts from another model)."
    if not writers:  # a hub id, or a folder no recipe writes: the stage script says if it is missing
        return f"{target} starts from {start}."
    if trains_first:
        return (
            f"{target} starts from {start}, which does not exist yet: training it first with {writers[0]} "
            "(the full tiny SFT recipe, about 5 minutes on 2 cores). CHECKPOINT=DIR starts from another model."
        )
    raise FileNotFoundError(
        f"{target} starts from {start}, which does not exist yet: train it with {writers[0]} first, or start from "
        "another model with CHECKPOINT=DIR"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmrl_trl.stages start|replace ... -- ARGS``: the checks ``make`` runs before a stage (exit 2 on
    refusal)."""
    parser = argparse.ArgumentParser(prog="python -m vlmrl_trl.stages", description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("start", "replace"), help="which model a stage starts from / replaces")
    parser.add_argument("--target", required=True, help="the make target, e.g. grpo-stage2")
    parser.add_argument("--recipe", required=True, help="the recipe YAML the stage runs")
    parser.add_argument("--checkpoint", default=None, help="make's CHECKPOINT, the model to start from instead")
    parser.add_argument("--overwrite", action="store_true", help="replace the output even if the recipe changed")
    parser.add_argument("--trains-first", action="store_true", help="make trains a missing starting model first")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: the stage's overrides (make's ARGS)
    opts, args = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    try:
        if opts.check == "start":
            message = start_message(opts.target, opts.recipe, args, opts.checkpoint, opts.trains_first)
        else:
            output_dir = override(args, "output_dir") or recipe_value(opts.recipe, "output_dir")
            changes = without(args, "output_dir")
            message = replacement_check(output_dir, changes, opts.overwrite) if output_dir else ""
    except (ValueError, OSError) as err:
        print(f"make {opts.target}: {err}", file=sys.stderr)
        return 2
    if message:
        print(message, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
